"""Discovery between real hosts: UDP broadcast across a bridge, one namespace per node.

Each node is a separate process (tests/discovery_node.py) running the real DiscoveryWorker with
the broadcast address it detects itself (the namespaces have nothing but loopback and their link
to the test bridge). Times are CLOCK_MONOTONIC, which all namespaces share.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.discovery_node import NodeClient
from tests.netns import Host, Network, require_netns

pytestmark = pytest.mark.netns

FLOOD = 10_000
BATCH = 50
FLOOD_SECONDS = 1.5  # spread over several announcement intervals


@pytest.fixture
def net() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as network:
        yield network


def start_node(host: Host, user_id: int, interval: float, **env: str) -> NodeClient:
    process = host.python("-m", "tests.discovery_node", "node", "--user-id", str(user_id),
                          "--interval", str(interval), env=host.network.env(**env))
    return NodeClient(process, f"node {user_id} in {host.name}")


def started(node: NodeClient) -> dict[str, Any]:
    return node.wait_for(lambda line: line["kind"] == "started", timeout=10)


def announced(node: NodeClient, user_id: int, timeout: float, *, after: int = 0,
              new: bool | None = None) -> dict[str, Any]:
    return node.wait_for(
        lambda line: line["kind"] == "PeerAnnounced" and line["user_id"] == user_id
        and (new is None or line["new"] is new), timeout, after=after)


def expired(node: NodeClient, user_id: int, timeout: float, *, after: int = 0) -> dict[str, Any]:
    return node.wait_for(
        lambda line: line["kind"] == "PeerExpired" and line["user_id"] == user_id,
        timeout, after=after)


def test_two_nodes_discover_each_other_both_ways_within_two_seconds(net: Network) -> None:
    # A regular interval of 5 s: only the start and early announcements can make this fast.
    # b starts after a's start announcement is gone, so a's early announcement must reach it.
    a = start_node(net["a"], 1001, 5.0)
    a_start = started(a)
    launched = time.monotonic()
    b = start_node(net["b"], 1002, 5.0)
    b_start = started(b)
    a_sees_b = announced(a, 1002, timeout=3)
    b_sees_a = announced(b, 1001, timeout=3)
    a_took, b_took = a_sees_b["t"] - b_start["starting"], b_sees_a["t"] - b_start["starting"]
    assert a_took < 2.0 and b_took < 2.0
    assert (a_sees_b["address"], a_sees_b["port"], a_sees_b["instance"], a_sees_b["new"]) == (
        net["b"].address, 50052, b_start["instance"], True)
    assert (b_sees_a["address"], b_sees_a["instance"], b_sees_a["new"]) == (
        net["a"].address, a_start["instance"], True)
    print(f"\ndiscovery after b's worker started: a saw b in {a_took * 1000:.0f} ms, b saw a in "
          f"{b_took * 1000:.0f} ms ({(b_sees_a['t'] - launched) * 1000:.0f} ms after launching "
          "b's process)")
    assert a.stats()["early_announcements"] == 1


def test_killed_peer_expires_after_three_intervals(net: Network) -> None:
    env = {"CHIMERA_BROADCAST_ADDRESSES": net.broadcast}  # the override works in a host too
    a = start_node(net["a"], 1001, 0.5, **env)
    b = start_node(net["b"], 1002, 0.5, **env)
    announced(a, 1002, timeout=3)
    mark = len(a.lines)
    b.process.send_signal(signal.SIGKILL)  # no goodbye
    killed_at = time.monotonic()
    gone = expired(a, 1002, timeout=4, after=mark)
    waited = gone["t"] - killed_at
    assert 0.9 <= waited <= 2.0, f"expired {waited:.2f} s after the kill; 3 intervals is 1.5 s"
    assert gone["address"] == net["b"].address
    assert "1002" not in a.request("peers", "peers")["peers"]


def test_goodbye_removes_the_peer_at_once(net: Network) -> None:
    a = start_node(net["a"], 1001, 5.0)
    b = start_node(net["b"], 1002, 5.0)
    announced(a, 1002, timeout=3)
    mark = len(a.lines)
    b.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    gone = expired(a, 1002, timeout=2, after=mark)
    assert gone["t"] - stopped_at < 0.5  # expiry alone would take 15 s
    assert b.wait_for(lambda line: line["kind"] == "stopped", 5)["joined"] is True


def test_restarted_peer_is_noticed_as_new(net: Network) -> None:
    a = start_node(net["a"], 1001, 5.0)
    b = start_node(net["b"], 1002, 5.0)
    first = announced(a, 1002, timeout=3)
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(5)
    mark = len(a.lines)
    b2 = start_node(net["b"], 1002, 5.0)
    again = announced(a, 1002, timeout=3, after=mark, new=True)
    assert again["instance"] == started(b2)["instance"] != first["instance"]
    assert not [line for line in a.lines[mark:] if line["kind"] == "PeerExpired"]


def test_flood_of_malformed_datagrams_is_counted_and_answered_with_nothing(net: Network) -> None:
    a_host, c_host = net["a"], net["c"]
    interval = 0.25
    a = start_node(a_host, 1001, interval)
    b = start_node(net["b"], 1002, interval)
    announcement = started(a)["announcement"].encode()
    announced(a, 1002, timeout=3)
    announced(b, 1001, timeout=3)

    capture = a_host.capture_outgoing()
    before = a.stats()
    flooder = NodeClient(c_host.python("-m", "tests.discovery_node", "flood", "--target",
                                       a_host.address, "--seed", "1", "--count", str(FLOOD)),
                         "flooder in c")
    flood_began = time.monotonic()
    sent = 0
    while sent < FLOOD:
        time.sleep(max(0.0, flood_began + FLOOD_SECONDS * sent / FLOOD - time.monotonic()))
        # Closed loop: the next batch goes only when the node has taken the last one, so the
        # count below is exact rather than at the mercy of a socket buffer.
        sent = flooder.request(f"send {BATCH}", "flooded")["sent"]
        for attempt in itertools.count():
            if a.stats()["malformed"] >= sent:
                break
            assert attempt < 2000, f"node counted {a.stats()['malformed']} of {sent}"
            time.sleep(0.002)
    flood_took = time.monotonic() - flood_began
    after = a.stats()
    frames, drops = capture.stop()
    assert drops == 0

    # Every datagram counted, none raised, the node still running.
    assert after["malformed"] - before["malformed"] == FLOOD == sent
    assert before["malformed"] == 0 and a.process.poll() is None

    # What a sent while 10,000 datagrams arrived: its own announcement on its schedule, and
    # nothing else (ARP is the kernel's, not a datagram, and has no UDP payload to amplify).
    datagrams = [f for f in frames if f["ethertype"] == 0x0800]
    assert all((f["protocol"], f["sport"], f["dport"], f["dst"]) == (17, 50051, 50050,
                                                                    net.broadcast)
               for f in datagrams), datagrams
    assert all(bytes.fromhex(f["payload"]) == announcement for f in datagrams)
    bytes_sent = sum(len(bytes.fromhex(f["payload"])) for f in datagrams)
    scheduled = after["sent"] - before["sent"]
    assert after["early_announcements"] == before["early_announcements"]
    assert scheduled <= len(datagrams) <= scheduled + 2  # the capture window is a bit wider
    assert bytes_sent == len(datagrams) * len(announcement)
    gaps = [y["t"] - x["t"] for x, y in itertools.pairwise(datagrams)]
    assert all(gap >= interval * 0.9 for gap in gaps), gaps  # one per interval, no extras
    assert len(datagrams) <= flood_took / interval + 2
    print(f"\nflood of {FLOOD} took {flood_took:.2f} s; a sent {len(datagrams)} datagrams "
          f"({bytes_sent} bytes), its {scheduled} scheduled announcements")

    # And it keeps discovering: b never expired, and a newcomer in c is found at once.
    assert not a.events("PeerExpired")
    mark = len(a.lines)
    start_node(c_host, 1003, interval)
    announced(a, 1003, timeout=2, after=mark, new=True)


def test_peer_behind_a_cut_link_expires_and_returns_when_it_is_restored(net: Network) -> None:
    a = start_node(net["a"], 1001, 0.25)
    b = start_node(net["b"], 1002, 0.25)
    announced(b, 1001, timeout=3)
    mark = len(b.lines)
    net["a"].cut_link()
    expired(b, 1001, timeout=3, after=mark)
    net["a"].restore_link()
    assert announced(b, 1001, timeout=3, after=mark, new=True)["address"] == net["a"].address
    assert a.process.poll() is None


def test_node_whose_interface_goes_down_carries_on_and_is_found_again(net: Network) -> None:
    a = start_node(net["a"], 1001, 0.25)
    b = start_node(net["b"], 1002, 0.25)
    announced(b, 1001, timeout=3)
    announced(a, 1002, timeout=3)
    mark_a, mark_b = len(a.lines), len(b.lines)
    net["a"].interface_down()  # a finds no broadcast address while it is down
    expired(b, 1001, timeout=3, after=mark_b)
    expired(a, 1002, timeout=3, after=mark_a)
    net["a"].interface_up()
    announced(b, 1001, timeout=3, after=mark_b, new=True)
    announced(a, 1002, timeout=3, after=mark_a, new=True)
    assert a.process.poll() is None
