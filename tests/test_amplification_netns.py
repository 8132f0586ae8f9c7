"""Amplification: what a node sends in response to unsolicited datagrams, measured on its wire.

Alice is the real headless app in host a. Host c sends her 10,000 datagrams per test from a raw
socket (fuzz/live_attacks.py), some with its own source address and some spoofed to come from
host b, the victim of a reflection attack. A packet capture on Alice's interface records every
frame she sends; her regular announcements (UDP 50051 -> 50050 to the broadcast address, her own
announcement text) are accounted for, and everything else is counted per destination.

- Malformed datagrams at the discovery and announce ports: 0 bytes to anyone.
- Well-formed announcements for 10,000 made-up users "at" the victim's address: the node calls
  an announced peer back to verify it (that is how the LAN proves identities), so the victim
  gets TCP connection attempts. They are budgeted per source address and interval
  (chimera_tk/net/callback_budget.py), so the count does not grow with the flood.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.errors import RemoteProtocolError
from chimera_tk.net.discovery.protocol import decode_datagram
from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE = 1001
DATAGRAMS = 10_000
RATE = 2000  # datagrams per second


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


@pytest.fixture
def alice(network: Network, tmp_path: Path) -> AppNode:
    node = AppNode(network["a"], tmp_path / "a", "alice", ALICE, TeamCA.create())
    node.start_headless()
    return node


def _attack(network: Network, *, source: str, kind: str, count: int, seed: int,
            ports: str = "50050,50051") -> dict:
    process = network["c"].popen(
        [sys.executable, "-m", "fuzz.live_attacks", "datagrams", "--target", network["a"].address,
         "--source", source, "--kind", kind, "--count", str(count), "--rate", str(RATE),
         "--seed", str(seed), "--ports", ports],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out)


def _is_regular_announcement(frame: dict, network: Network) -> bool:
    if (frame.get("protocol"), frame.get("sport"), frame.get("dport"), frame.get("dst")) != \
            (17, 50051, 50050, network.broadcast):
        return False
    try:
        message = decode_datagram(bytes.fromhex(frame["payload"]))
    except RemoteProtocolError:
        return False
    return message.user_id == ALICE


def _responses(frames: list[dict], network: Network) -> tuple[list[dict], list[dict], int]:
    """(IPv4 frames that are not Alice's regular announcements, ARP frames, announcements)."""
    ipv4 = [f for f in frames if f["ethertype"] == 0x0800]
    regular = [f for f in ipv4 if _is_regular_announcement(f, network)]
    others = [f for f in ipv4 if not _is_regular_announcement(f, network)]
    arp = [f for f in frames if f["ethertype"] == 0x0806]
    return others, arp, len(regular)


def test_malformed_datagrams_from_anyone_get_zero_bytes_in_response(network: Network,
                                                                    alice: AppNode) -> None:
    a, b, c = network["a"], network["b"], network["c"]
    capture = a.capture_outgoing()
    own = _attack(network, source=c.address, kind="malformed", count=DATAGRAMS // 2, seed=1)
    spoofed = _attack(network, source=b.address, kind="malformed", count=DATAGRAMS // 2, seed=2)
    time.sleep(1.0)  # anything the node would still send in response
    frames, drops = capture.stop()
    assert drops == 0

    others, arp, announcements = _responses(frames, network)
    assert others == [], others[:5]
    bytes_in = own["bytes"] + spoofed["bytes"]
    print(f"\n{DATAGRAMS} malformed datagrams ({bytes_in} payload bytes) at 50050/50051, half "
          f"spoofed from {b.address}: 0 bytes sent in response (besides {announcements} "
          f"regular announcements and {len(arp)} ARP frames)")
    assert alice.process is not None and alice.process.poll() is None


def test_spoofed_announcement_flood_gets_a_bounded_number_of_callbacks(network: Network,
                                                                      alice: AppNode) -> None:
    a, b = network["a"], network["b"]
    capture = a.capture_outgoing()
    started = time.monotonic()
    flood = _attack(network, source=b.address, kind="announce", count=DATAGRAMS, seed=3,
                    ports="50050")
    time.sleep(2.0)  # connection attempts still on their way
    took = time.monotonic() - started
    frames, drops = capture.stop()
    assert drops == 0

    others, _arp, _announcements = _responses(frames, network)
    assert all(f["dst"] == b.address for f in others), others[:5]  # nobody else is called
    sent = sum(f["length"] for f in others)
    assert all(f["protocol"] == 6 for f in others), others[:5]  # TCP connection attempts only
    interval = 5.0
    budget = 4 * (int(took / interval) + 2)  # per address and interval, see callback_budget.py
    assert len(others) <= budget, (len(others), budget)
    print(f"\n{DATAGRAMS} spoofed announcements ({flood['bytes']} payload bytes) for made-up "
          f"users at {b.address}: {len(others)} TCP segments ({sent} bytes) to it in "
          f"{took:.1f} s, amplification {sent / flood['bytes']:.5f}")
    assert alice.process is not None and alice.process.poll() is None
