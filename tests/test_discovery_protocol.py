"""The discovery protocol without sockets: codec, peer table, schedule, and two nodes joined in
memory on a simulated clock."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.errors import LocalProtocolError, RemoteProtocolError
from chimera_tk.events import PeerAnnounced, PeerExpired
from chimera_tk.net.discovery.protocol import (
    MAX_DATAGRAM,
    MAX_USER_ID,
    Announcement,
    AnnounceSchedule,
    ChangeKind,
    DiscoveryState,
    Goodbye,
    PeerTable,
    decode_datagram,
    encode_announcement,
    encode_goodbye,
)
from tests.discovery_node import malformed_datagrams

user_ids = st.integers(1, MAX_USER_ID)
ports = st.integers(1, 65535)
instances = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
announcements = st.builds(Announcement, user_ids, ports, st.none() | instances)
goodbyes = st.builds(Goodbye, user_ids, ports, instances)


# -- codec -----------------------------------------------------------------------------------------


def test_seed_announcement_means_port_50052_and_no_instance() -> None:
    assert decode_datagram(b"1:123456789") == Announcement(123456789, 50052, None)
    assert encode_announcement(Announcement(123456789)) == b"1:123456789"


@pytest.mark.parametrize(("data", "expected"), [
    (b"1:42:50052", Announcement(42, 50052)),
    (b"1:42:6000", Announcement(42, 6000)),
    (b"1:42:6000:Ab_-9", Announcement(42, 6000, "Ab_-9")),
    (b"1:9223372036854775807:65535:" + b"z" * 32, Announcement(MAX_USER_ID, 65535, "z" * 32)),
    (b"1:1:1:a", Announcement(1, 1, "a")),
    (b"0:42:6000:Ab_-9", Goodbye(42, 6000, "Ab_-9")),
])
def test_valid_datagrams_decode(data: bytes, expected: object) -> None:
    assert decode_datagram(data) == expected


def test_encoder_keeps_the_port_whenever_an_instance_follows() -> None:
    assert encode_announcement(Announcement(7, 50052, "x")) == b"1:7:50052:x"
    assert encode_announcement(Announcement(7, 6000)) == b"1:7:6000"
    assert encode_goodbye(Goodbye(7, 50052, "x")) == b"0:7:50052:x"


def test_goodbye_is_something_a_seed_node_drops() -> None:
    # The seed keeps only datagrams whose first field is "1".
    assert not encode_goodbye(Goodbye(7, 50052, "x")).startswith(b"1:")


@given(announcements)
def test_announcement_round_trip_fits_in_128_bytes(announcement: Announcement) -> None:
    data = encode_announcement(announcement)
    assert len(data) <= MAX_DATAGRAM
    assert decode_datagram(data) == announcement


@given(goodbyes)
def test_goodbye_round_trip(goodbye: Goodbye) -> None:
    assert decode_datagram(encode_goodbye(goodbye)) == goodbye


MALFORMED = [
    b"", b"1", b"1:", b"0", b":", b"::", b"1::", b"2:42", b"10:42", b"01:42", b"a:42",
    b" 1:42", b"1:42 ", b"1: 42", b"1:42\n", b"1:42\r\n", b"1:42\x00", b"1:\t42",
    b"1:0", b"1:042", b"1:-42", b"1:+42", b"1:4.2", b"1:42e3", b"1:0x2a", b"1:4_2",
    b"1:9223372036854775808", b"1:99999999999999999999", b"1:" + b"9" * 100,
    b"1:42:", b"1:42::", b"1::6000", b"1:42:0", b"1:42:65536", b"1:42:06000", b"1:42:-1",
    b"1:42:6000:", b"1:42:6000:" + b"x" * 33, b"1:42:6000:a.b", b"1:42:6000:a b",
    b"1:42:6000:a/b", b"1:42:6000:a:b", b"1:42::abc", b"1:42:6000:abc:",
    b"0:42", b"0:42:6000", b"0:42:6000:", b"0:0:6000:abc", b"0:42:0:abc", b"0:42:6000:abc:x",
    "1:4\u0662".encode(), "1:42:6000:caf\u00e9".encode(), b"\xff\xfe1:42", b"1:42\x80",
    b"1:42:6000:" + b"a" * 119,  # 129 bytes
    b"1:" + b"1" * 127,
]


@pytest.mark.parametrize("data", MALFORMED, ids=[repr(d[:24]) for d in MALFORMED])
def test_malformed_datagram_raises_remote_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_datagram(data)


def test_generated_flood_datagrams_are_all_malformed() -> None:
    for data in malformed_datagrams(seed=7, count=3000):
        with pytest.raises(RemoteProtocolError):
            decode_datagram(data)


def _decodes_or_raises_remote_error(data: bytes) -> None:
    try:
        message = decode_datagram(data)
    except RemoteProtocolError:
        return
    # Whatever parses is canonical enough to survive its own encoding.
    encoded = (encode_goodbye(message) if isinstance(message, Goodbye)
               else encode_announcement(message))
    assert decode_datagram(encoded) == message


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    _decodes_or_raises_remote_error(data)


@settings(max_examples=1000)
@given(st.text(alphabet="0123456789:aZ_- \n\x00\u0663", max_size=140))
def test_near_valid_text_decodes_or_raises_remote_protocol_error(text: str) -> None:
    _decodes_or_raises_remote_error(text.encode())


@pytest.mark.parametrize("fields", [
    (0, 50052, None), (MAX_USER_ID + 1, 50052, None), (True, 50052, None), (1, 0, None),
    (1, 65536, None), (1, 50052, ""), (1, 50052, "a:b"), (1, 50052, "x" * 33),
])
def test_invalid_announcement_is_our_bug(fields: tuple) -> None:
    with pytest.raises(LocalProtocolError):
        Announcement(*fields)


def test_goodbye_needs_an_instance() -> None:
    with pytest.raises(LocalProtocolError):
        Goodbye(1, 50052, None)  # type: ignore[arg-type]


# -- peer table ------------------------------------------------------------------------------------

OWN = 1000
INTERVAL = 5.0


def test_first_announcement_is_a_new_peer_that_needs_verification() -> None:
    table = PeerTable(OWN, INTERVAL)
    change = table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    assert change is not None and change.kind is ChangeKind.NEW and change.needs_verification
    assert (change.peer.user_id, change.peer.address, change.peer.tls_port) == (7, "10.0.0.7", 6000)


def test_refresh_is_reported_at_most_twice_per_interval() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    assert table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.1) is None
    change = table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=105.0)
    assert change is not None and change.kind is ChangeKind.REFRESHED
    assert not change.needs_verification
    assert table.snapshot()[0].last_seen == 105.0 and table.snapshot()[0].first_seen == 100.0


def test_new_instance_at_same_address_is_a_restart() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    change = table.observe(Announcement(7, 6000, "i2"), "10.0.0.7", now=101.0)
    assert change is not None and change.kind is ChangeKind.RESTARTED and change.needs_verification
    assert change.previous is not None and change.previous.instance == "i1"
    assert len(table) == 1


def test_same_instance_at_another_address_is_a_move_and_the_old_address_expires_later() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    change = table.observe(Announcement(7, 6000, "i1"), "10.0.0.8", now=101.0)
    assert change is not None and change.kind is ChangeKind.MOVED and change.needs_verification
    assert change.previous is not None and change.previous.address == "10.0.0.7"
    # Both keep refreshing quietly (a machine heard on two networks does not flip-flop).
    assert table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=101.1) is None
    assert table.observe(Announcement(7, 6000, "i1"), "10.0.0.8", now=101.2) is None
    assert [p.address for p in table.expire(now=115.0)] == []
    assert [p.address for p in table.expire(now=116.15)] == ["10.0.0.7"]


def test_new_tls_port_is_a_move() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    change = table.observe(Announcement(7, 6001, "i1"), "10.0.0.7", now=100.1)
    assert change is not None and change.kind is ChangeKind.MOVED and change.peer.tls_port == 6001


def test_own_announcements_are_ignored_and_counted() -> None:
    table = PeerTable(OWN, INTERVAL)
    assert table.observe(Announcement(OWN, 6000, "mine"), "10.0.0.1", now=1.0) is None
    assert table.observe(Announcement(OWN, 6000, "other-laptop"), "10.0.0.2", now=1.0) is None
    assert table.goodbye(Goodbye(OWN, 6000, "mine"), "10.0.0.1") is None
    assert table.own_ignored == 3 and len(table) == 0


def test_peer_expires_after_three_missed_intervals_exactly_once() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i1"), "10.0.0.7", now=100.0)
    assert table.next_expiry() == 115.0
    assert table.expire(now=114.99) == []
    expired = table.expire(now=115.0)
    assert [(p.user_id, p.address) for p in expired] == [(7, "10.0.0.7")]
    assert table.expire(now=200.0) == [] and table.next_expiry() is None


def test_goodbye_removes_only_the_current_instance_at_that_address() -> None:
    table = PeerTable(OWN, INTERVAL)
    table.observe(Announcement(7, 6000, "i2"), "10.0.0.7", now=100.0)
    assert table.goodbye(Goodbye(7, 6000, "i1"), "10.0.0.7") is None  # late, from the last run
    assert table.goodbye(Goodbye(7, 6000, "i2"), "10.0.0.9") is None  # someone else's address
    gone = table.goodbye(Goodbye(7, 6000, "i2"), "10.0.0.7")
    assert gone is not None and gone.instance == "i2" and len(table) == 0


def test_full_table_drops_and_counts_new_peers() -> None:
    table = PeerTable(OWN, INTERVAL, max_peers=2)
    for uid in (1, 2, 3):
        table.observe(Announcement(uid), f"10.0.0.{uid}", now=1.0)
    assert [p.user_id for p in table.snapshot()] == [1, 2] and table.table_full == 1
    assert table.observe(Announcement(1), "10.0.0.1", now=4.0) is not None  # known ones refresh


# -- schedule --------------------------------------------------------------------------------------


def test_schedule_announces_at_start_then_every_interval() -> None:
    schedule = AnnounceSchedule(INTERVAL, rng=random.Random(1))
    assert not schedule.due(0.0)
    schedule.start(10.0)
    assert schedule.due(10.0)
    schedule.sent(10.0)
    assert not schedule.due(14.99) and schedule.due(15.0)


def test_new_instance_brings_the_next_announcement_forward_with_jitter() -> None:
    schedule = AnnounceSchedule(INTERVAL, rng=random.Random(2))
    schedule.start(0.0)
    schedule.sent(0.0)
    assert schedule.heard_new_instance(1.0)
    assert schedule.next_at is not None and 1.05 <= schedule.next_at <= 1.3


def test_early_announcement_is_not_used_when_the_regular_one_is_sooner() -> None:
    schedule = AnnounceSchedule(INTERVAL, rng=random.Random(3))
    schedule.start(0.0)
    schedule.sent(0.0)
    assert not schedule.heard_new_instance(4.99)
    assert schedule.next_at == 5.0 and schedule.early_count == 0
    schedule.sent(5.0)
    assert schedule.heard_new_instance(6.0)  # the budget was not spent


def test_short_interval_keeps_the_early_delay_inside_it() -> None:
    schedule = AnnounceSchedule(0.2, rng=random.Random(4))
    schedule.start(0.0)
    schedule.sent(0.0)
    assert schedule.heard_new_instance(0.01)
    assert schedule.next_at is not None and schedule.next_at <= 0.01 + 0.1


@settings(max_examples=200)
@given(st.lists(st.floats(0.0, 60.0), max_size=300), st.integers(0, 2**32))
def test_at_most_one_early_announcement_per_interval(heard: list[float], seed: int) -> None:
    """However many new instances are heard, and whenever, early announcements are at least one
    interval apart, and the node never sends more than twice in any interval."""
    schedule = AnnounceSchedule(INTERVAL, rng=random.Random(seed))
    schedule.start(0.0)
    sends: list[float] = []
    early: list[float] = []
    now = 0.0
    events = sorted(heard)
    while now <= 60.0:  # a 10 ms clock
        if schedule.due(now):
            sends.append(now)
            schedule.sent(now)
        while events and events[0] <= now:
            if schedule.heard_new_instance(events.pop(0)):
                early.append(now)
        now = round(now + 0.01, 2)
    assert all(b - a >= INTERVAL - 0.011 for a, b in itertools.pairwise(early))
    assert all(c - a > INTERVAL for a, c in zip(sends, sends[2:], strict=False))
    assert len(sends) <= 2 * (60 / INTERVAL) + 1


# -- two nodes in memory ---------------------------------------------------------------------------


def _state(uid: int, instance: str, interval: float = INTERVAL, seed: int = 0) -> DiscoveryState:
    return DiscoveryState(uid, instance=instance, interval_s=interval, tls_port=50052,
                          rng=random.Random(seed))


def _run_lan(nodes: dict[str, DiscoveryState], starts: dict[str, float],
             until: float) -> list[tuple[float, str, object]]:
    """A broadcast LAN on a 1 ms clock: every sent announcement reaches every started node
    (its sender included, as a real broadcast does). Returns (time, receiver, event)."""
    log: list[tuple[float, str, object]] = []
    for step in range(int(until * 1000) + 1):
        now = step / 1000
        for name, node in nodes.items():
            if now == starts[name]:
                node.start(now)
        for name, node in nodes.items():
            if node.announcement_due(now):
                node.announced(now, sent=1)
                for other, receiver in nodes.items():
                    if starts[other] <= now:
                        address = f"10.0.0.{list(nodes).index(name) + 1}"
                        for event in receiver.receive(node.announcement, address, now):
                            log.append((now, other, event))
            for event in node.tick(now):
                log.append((now, name, event))
    return log


def test_two_nodes_see_each_other_within_a_second_though_the_first_announced_to_nobody() -> None:
    nodes = {"a": _state(1, "ia", seed=1), "b": _state(2, "ib", seed=2)}
    log = _run_lan(nodes, {"a": 0.0, "b": 0.4}, until=2.0)
    seen = {(who, e.user_id): t for t, who, e in log if isinstance(e, PeerAnnounced) and e.new}
    assert seen[("a", 2)] == 0.4  # b's start announcement
    assert 0.4 + 0.05 <= seen[("b", 1)] <= 0.4 + 0.3  # a's early announcement
    # Each moved one announcement earlier on first hearing the other, and that was all: the
    # second early announcement reached a node that already knew its sender.
    assert nodes["a"].stats().early_announcements == 1
    assert nodes["b"].stats().early_announcements == 1
    assert nodes["a"].stats().sent == nodes["b"].stats().sent == 2


def test_no_datagram_is_ever_produced_in_reply_to_malformed_input() -> None:
    node = _state(1, "ia")
    node.start(0.0)
    node.announced(0.0, sent=1)
    before = node.next_deadline()
    for data in malformed_datagrams(seed=3, count=2000):
        assert node.receive(data, "10.0.0.66", now=1.0) == []
    stats = node.stats()
    assert stats.malformed == 2000 and stats.received == 2000
    assert node.next_deadline() == before and not node.announcement_due(1.0)


def test_flood_of_new_instances_moves_the_announcement_at_most_once_per_interval() -> None:
    node = _state(1, "ia")
    node.start(0.0)
    sends = 0
    for step in range(30_000):  # 30 s on a 1 ms clock, a new instance every millisecond
        now = step / 1000
        node.receive(f"1:{2 + step % 500}:50052:x{step}".encode(), "10.0.0.66", now)
        if node.announcement_due(now):
            node.announced(now, sent=1)
            sends += 1
    assert node.stats().early_announcements <= 30 / INTERVAL
    assert sends <= 2 * 30 / INTERVAL + 1


def test_state_turns_datagrams_into_events() -> None:
    node = _state(1, "ia")
    node.start(0.0)
    peer = _state(2, "ib")
    [event] = node.receive(peer.announcement, "10.0.0.2", now=1.0)
    assert event == PeerAnnounced(2, "10.0.0.2", 50052, "ib", new=True)
    assert node.receive(node.announcement, "10.0.0.1", now=1.0) == []  # our own, looped back
    assert node.peers() == {2: ("10.0.0.2", 50052, "ib", 1.0)}
    assert node.receive(peer.goodbye, "10.0.0.2", now=2.0) == [PeerExpired(2, "10.0.0.2")]
    node.receive(peer.announcement, "10.0.0.2", now=3.0)
    assert node.tick(now=3.0 + 3 * INTERVAL) == [PeerExpired(2, "10.0.0.2")]
    stats = node.stats()
    assert (stats.own_ignored, stats.goodbyes, stats.malformed, stats.peers) == (1, 1, 0, 0)


def test_peers_reports_the_freshest_address_of_each_user() -> None:
    node = _state(1, "ia")
    node.receive(b"1:2:50052:ib", "10.0.0.2", now=1.0)
    node.receive(b"1:2:50052:ib", "10.0.1.2", now=2.0)
    assert node.peers()[2].address == "10.0.1.2"
