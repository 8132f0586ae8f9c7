"""A live node under malformed input keeps serving: the real headless app, in a namespace.

Host c attacks Bob (the real ``chimera --headless`` in host b) from two sides at once: 10,000
random and malformed datagrams at the discovery port (tests/discovery_node.py's flood), and
malformed peer frames after a valid mutual-TLS handshake with a real team certificate
(fuzz/live_attacks.py, each stream checked to be malformed by our own session first). Then
Alice (a cold ``chimera send`` in host a) must still get her message delivered over the LAN, and
Bob's own counters must show every attack dropped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery_node import NodeClient
from tests.lan_nodes import AppNode
from tests.netns import Host, Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE, BOB, CAROL = 1001, 2002, 3003
DATAGRAMS = 10_000
BATCH = 100
FRAME_CONNECTIONS = 140  # 10 of each of the 14 kinds in fuzz/live_attacks.py


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


def _udp_receive_errors(host: Host) -> int:
    """The kernel's count of datagrams dropped in ``host`` because a socket buffer was full."""
    snmp = host.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = [line.split()[1:] for line in snmp if line.startswith("Udp:")][:2]
    return int(dict(zip(names, values, strict=True))["RcvbufErrors"])


def test_node_flooded_with_bad_datagrams_and_frames_still_delivers(network: Network,
                                                                   tmp_path: Path) -> None:
    ca = TeamCA.create()
    alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca)
    bob = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca)
    attacker_dir = tmp_path / "carol"
    ca.write_identity(attacker_dir, CAROL)  # a real team member turned hostile
    b, c = network["b"], network["c"]
    bob.start_headless()
    drops_before = _udp_receive_errors(b)

    flooder = NodeClient(c.python("-m", "tests.discovery_node", "flood", "--target", b.address,
                                  "--seed", "7", "--count", str(DATAGRAMS)), "flooder in c")
    framer = c.popen([sys.executable, "-m", "fuzz.live_attacks", "frames", "--target", b.address,
                      "--profile-dir", str(attacker_dir), "--user-id", str(CAROL),
                      "--count", str(FRAME_CONNECTIONS)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = 0
    while sent < DATAGRAMS:  # paced, so that a drop would be the node's slowness, not a burst
        sent = flooder.request(f"send {BATCH}", "flooded", timeout=30)["sent"]
        time.sleep(0.05)
    out, err = framer.communicate(timeout=300)
    assert framer.returncode == 0, err[-3000:]
    frames = json.loads(out.splitlines()[-1])
    drops = _udp_receive_errors(b) - drops_before

    # Every malformed connection was closed by Bob, none left hanging.
    assert frames["closed_by_node"] == FRAME_CONNECTIONS and not frames["left_open"], frames

    # Bob still serves a legitimate peer.
    result = alice.send(BOB, "still there after the storm?")
    assert result.returncode == 0, result.stderr
    assert "delivered over the LAN" in result.stdout
    received = [m for m in bob.export() if m["direction"] == "in"]
    assert [(m["dialog"], m["text"]) for m in received] == [(ALICE, "still there after the storm?")]

    # Bob's counters: each bad datagram counted as malformed (or dropped by the kernel before it
    # reached him: RcvbufErrors), each bad connection dropped as the peer's protocol error, and
    # nothing treated as an internal error.
    assert bob.process is not None and bob.process.poll() is None
    bob.stop()
    log = bob.log()
    [stats] = re.findall(r"LAN discovery stopped: DiscoveryStats\((.*)\)", log)
    malformed = int(re.search(r"\bmalformed=(\d+)", stats)[1])
    assert malformed <= DATAGRAMS <= malformed + drops, (malformed, drops)
    protocol_errors = log.count(f"peer {CAROL} at {c.address}: ")
    assert protocol_errors == FRAME_CONNECTIONS, log[-4000:]
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]
    print(f"\n{DATAGRAMS} datagrams: {malformed} counted malformed, {drops} dropped by the "
          f"kernel; {FRAME_CONNECTIONS} malformed TLS streams: {protocol_errors} dropped as "
          f"protocol errors ({frames['kinds']}); Alice's message delivered")
