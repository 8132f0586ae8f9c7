"""The LAN discovery protocol: datagram codec, peer table and announcement schedule, with no I/O.

Wire format (ASCII, one UDP datagram, at most 128 bytes, no whitespace or terminator)::

    1:<id>                          the seed's announcement; the TLS port is 50052
    1:<id>:<tls_port>               announcement with a TLS port
    1:<id>:<tls_port>:<instance>    announcement with the sender's per-start instance token
    0:<id>:<tls_port>:<instance>    goodbye, sent once when a node quits gracefully

``<id>`` is a Telegram user id, decimal digits without leading zeros, 1..2**63-1; ``<tls_port>``
is 1..65535 without leading zeros; ``<instance>`` is 1-32 characters of ``[A-Za-z0-9_-]``. The seed
only accepted datagrams whose first field is ``1``, so it drops a goodbye like any other noise. A
goodbye only removes the peer it names at the address it came from, and only while that peer's
current instance matches, so a late goodbye from a previous run cannot remove the new one.

Everything here is deterministic: time is passed in (``time.monotonic()`` seconds, as the worker
uses), randomness comes from a ``random.Random`` the caller gives. The worker beside this module
owns the sockets, the thread and the clock.

An announcement is only a hint that ``<id>`` is at that address; the peer link proves it with TLS.
Nothing here ever produces a datagram in reply to one: hearing a new instance may only move the
node's own next regular announcement earlier (jittered, at most once per interval), so the protocol
cannot be used to amplify traffic.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from chimera_tk.errors import LocalProtocolError, RemoteProtocolError
from chimera_tk.events import PeerAnnounced, PeerExpired

MAX_DATAGRAM = 128
DEFAULT_TLS_PORT = 50052
MAX_USER_ID = 2**63 - 1
MISSED_INTERVALS = 3  # a peer expires after this many intervals without an announcement
DEFAULT_MAX_PEERS = 1024
EARLY_DELAY_S = (0.05, 0.3)

ANNOUNCE = "1"
GOODBYE = "0"

_NUMBER = re.compile(r"[1-9][0-9]*")
_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,32}")


# -- datagrams -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """``user_id`` is reachable over TLS on ``tls_port`` at the datagram's source address."""

    user_id: int
    tls_port: int = DEFAULT_TLS_PORT
    instance: str | None = None

    def __post_init__(self) -> None:
        _check_fields(self.user_id, self.tls_port, self.instance, LocalProtocolError)


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The node ``user_id`` (this ``instance``) is quitting; forget it now rather than later."""

    user_id: int
    tls_port: int
    instance: str

    def __post_init__(self) -> None:
        _check_fields(self.user_id, self.tls_port, self.instance, LocalProtocolError)
        if self.instance is None:
            raise LocalProtocolError("a goodbye needs the instance it ends")


def encode_announcement(announcement: Announcement) -> bytes:
    """The shortest form that carries every field: ``1:<id>`` when the rest are defaults."""
    fields = [ANNOUNCE, str(announcement.user_id)]
    if announcement.instance is not None or announcement.tls_port != DEFAULT_TLS_PORT:
        fields.append(str(announcement.tls_port))
    if announcement.instance is not None:
        fields.append(announcement.instance)
    return ":".join(fields).encode("ascii")


def encode_goodbye(goodbye: Goodbye) -> bytes:
    return f"{GOODBYE}:{goodbye.user_id}:{goodbye.tls_port}:{goodbye.instance}".encode("ascii")


def decode_datagram(data: bytes) -> Announcement | Goodbye:
    """Parse one datagram; anything that is not exactly one of the forms above raises
    RemoteProtocolError (and nothing else does)."""
    if not data:
        raise RemoteProtocolError("empty datagram")
    if len(data) > MAX_DATAGRAM:
        raise RemoteProtocolError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM}")
    try:
        text = bytes(data).decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("datagram is not ASCII") from None
    fields = text.split(":")
    version = fields[0]
    if version == ANNOUNCE:
        if not 2 <= len(fields) <= 4:
            raise RemoteProtocolError(f"announcement has {len(fields)} fields, not 2-4")
        user_id = _parse_user_id(fields[1])
        port = _parse_port(fields[2]) if len(fields) > 2 else DEFAULT_TLS_PORT
        instance = _parse_instance(fields[3]) if len(fields) > 3 else None
        return Announcement(user_id, port, instance)
    if version == GOODBYE:
        if len(fields) != 4:
            raise RemoteProtocolError(f"goodbye has {len(fields)} fields, not 4")
        return Goodbye(_parse_user_id(fields[1]), _parse_port(fields[2]),
                       _parse_instance(fields[3]))
    raise RemoteProtocolError(f"unknown datagram kind {version[:8]!r}")


def _parse_user_id(text: str) -> int:
    if len(text) > 19 or not _NUMBER.fullmatch(text) or int(text) > MAX_USER_ID:
        raise RemoteProtocolError(f"bad user id {text[:24]!r}")
    return int(text)


def _parse_port(text: str) -> int:
    if len(text) > 5 or not _NUMBER.fullmatch(text) or int(text) > 65535:
        raise RemoteProtocolError(f"bad TLS port {text[:24]!r}")
    return int(text)


def _parse_instance(text: str) -> str:
    if not _INSTANCE.fullmatch(text):
        raise RemoteProtocolError(f"bad instance {text[:40]!r}")
    return text


def _check_fields(user_id: object, tls_port: object, instance: object,
                  error: type[Exception]) -> None:
    if type(user_id) is not int or not 1 <= user_id <= MAX_USER_ID:
        raise error(f"user id must be an int in 1..2**63-1, not {user_id!r}")
    if type(tls_port) is not int or not 1 <= tls_port <= 65535:
        raise error(f"TLS port must be an int in 1..65535, not {tls_port!r}")
    if instance is not None and (not isinstance(instance, str)
                                 or not _INSTANCE.fullmatch(instance)):
        raise error(f"instance must be 1-32 of [A-Za-z0-9_-], not {instance!r}")


# -- peer table ------------------------------------------------------------------------------------


class ChangeKind(StrEnum):
    NEW = "new"  # nothing known for this id at this address
    RESTARTED = "restarted"  # same id and address, a different instance
    MOVED = "moved"  # the same instance at another address, or a new TLS port
    REFRESHED = "refreshed"  # nothing changed (reported at most twice per interval)


@dataclass(frozen=True, slots=True)
class Peer:
    user_id: int
    address: str
    tls_port: int
    instance: str | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class PeerChange:
    kind: ChangeKind
    peer: Peer
    previous: Peer | None = None

    @property
    def needs_verification(self) -> bool:
        """Whatever was verified before does not vouch for this binding of id to endpoint."""
        return self.kind is not ChangeKind.REFRESHED


class PeerTable:
    """Who announced what from where, keyed by (user id, source address).

    The key includes the address so that one user on two machines (or one machine heard on two
    networks) gives two stable entries instead of one that flips at every datagram; an entry whose
    address stops announcing simply expires. Our own user id is never a peer.
    """

    def __init__(self, own_user_id: int, interval_s: float, *,
                 max_peers: int = DEFAULT_MAX_PEERS) -> None:
        if interval_s <= 0 or max_peers < 1:
            raise LocalProtocolError("interval_s and max_peers must be positive")
        self.own_user_id = own_user_id
        self.interval_s = interval_s
        self.expiry_s = MISSED_INTERVALS * interval_s
        self.max_peers = max_peers
        self.own_ignored = 0
        self.table_full = 0
        self._peers: dict[tuple[int, str], Peer] = {}
        self._reported: dict[tuple[int, str], float] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def observe(self, announcement: Announcement, address: str, now: float) -> PeerChange | None:
        """Record an announcement heard from ``address``; None when there is nothing to report."""
        uid = announcement.user_id
        if uid == self.own_user_id:
            self.own_ignored += 1
            return None
        key = (uid, address)
        old = self._peers.get(key)
        if old is None:
            if len(self._peers) >= self.max_peers:
                self.table_full += 1
                return None
            previous = self._same_instance_elsewhere(announcement, address)
            kind = ChangeKind.NEW if previous is None else ChangeKind.MOVED
            first_seen = now
        else:
            previous = old
            first_seen = old.first_seen
            if announcement.instance != old.instance:
                kind = ChangeKind.RESTARTED
                first_seen = now
            elif announcement.tls_port != old.tls_port:
                kind = ChangeKind.MOVED
            else:
                kind = ChangeKind.REFRESHED
        peer = Peer(uid, address, announcement.tls_port, announcement.instance, first_seen, now)
        self._peers[key] = peer
        if kind is ChangeKind.REFRESHED:
            # Several interfaces or a chatty peer must not turn into a stream of events.
            if now - self._reported.get(key, now) < self.interval_s / 2:
                return None
            previous = None
        self._reported[key] = now
        return PeerChange(kind, peer, previous)

    def goodbye(self, goodbye: Goodbye, address: str) -> Peer | None:
        """Forget the peer the goodbye names at ``address``; returns it if it was known."""
        if goodbye.user_id == self.own_user_id:
            self.own_ignored += 1
            return None
        key = (goodbye.user_id, address)
        peer = self._peers.get(key)
        if peer is None or peer.instance != goodbye.instance:
            return None
        self._forget(key)
        return peer

    def expire(self, now: float) -> list[Peer]:
        """Remove and return the peers not heard for MISSED_INTERVALS intervals."""
        gone = [key for key, peer in self._peers.items() if now - peer.last_seen >= self.expiry_s]
        return [self._forget(key) for key in gone]

    def next_expiry(self) -> float | None:
        """When the next peer would expire if it stays silent (None with no peers)."""
        if not self._peers:
            return None
        return min(peer.last_seen for peer in self._peers.values()) + self.expiry_s

    def snapshot(self) -> tuple[Peer, ...]:
        return tuple(sorted(self._peers.values(), key=lambda p: (p.user_id, p.address)))

    def _forget(self, key: tuple[int, str]) -> Peer:
        self._reported.pop(key, None)
        return self._peers.pop(key)

    def _same_instance_elsewhere(self, announcement: Announcement, address: str) -> Peer | None:
        if announcement.instance is None:
            return None
        for (uid, other_address), peer in self._peers.items():
            if (uid == announcement.user_id and other_address != address
                    and peer.instance == announcement.instance):
                return peer
        return None


# -- announcement schedule -------------------------------------------------------------------------


class AnnounceSchedule:
    """When to send our announcement: at start, then every interval.

    Hearing a new instance may bring the next announcement forward to a jittered 50-300 ms from
    now (so a node that just started learns about us in well under a second, and many nodes
    hearing it at once do not answer in one burst). That happens at most once per interval; the
    next regular announcement then follows one interval after the early one.
    """

    def __init__(self, interval_s: float, *, rng: random.Random,
                 early_delay_s: tuple[float, float] = EARLY_DELAY_S) -> None:
        if interval_s <= 0:
            raise LocalProtocolError("interval_s must be positive")
        self.interval_s = interval_s
        high = min(early_delay_s[1], interval_s / 2)
        self._early = (min(early_delay_s[0], high), high)
        self._rng = rng
        self._next: float | None = None
        self._last_early: float | None = None
        self.early_count = 0

    @property
    def next_at(self) -> float | None:
        return self._next

    def start(self, now: float) -> None:
        self._next = now

    def due(self, now: float) -> bool:
        return self._next is not None and now >= self._next

    def sent(self, now: float) -> None:
        self._next = now + self.interval_s

    def heard_new_instance(self, now: float) -> bool:
        """Move the next announcement earlier if allowed; True when it was moved."""
        if self._next is None:
            return False
        if self._last_early is not None and now - self._last_early < self.interval_s:
            return False
        at = now + self._rng.uniform(*self._early)
        if at >= self._next:
            return False  # the regular one comes sooner anyway; keep the early one for later
        self._next = at
        self._last_early = now
        self.early_count += 1
        return True


# -- the whole node, without sockets ---------------------------------------------------------------


class PeerInfo(NamedTuple):
    """One peer as :meth:`DiscoveryState.peers` reports it; ``last_seen`` is monotonic time."""

    address: str
    port: int
    instance: str | None
    last_seen: float


@dataclass(frozen=True, slots=True)
class DiscoveryStats:
    sent: int = 0  # datagrams sent (announcements and goodbyes, one per broadcast address)
    send_errors: int = 0
    received: int = 0  # every datagram, well-formed or not, our own included
    malformed: int = 0  # dropped because they did not parse
    own_ignored: int = 0  # our own user id (our own broadcasts come back to us)
    goodbyes: int = 0
    table_full: int = 0  # new peers dropped because the table was at its limit
    early_announcements: int = 0
    peers: int = 0


class DiscoveryState:
    """One node's discovery logic: datagrams in, events and datagrams to send out.

    The worker calls :meth:`receive` for each datagram, :meth:`tick` whenever
    :meth:`next_deadline` passes, and sends :attr:`announcement` whenever
    :meth:`announcement_due` says so, then reports how it went with :meth:`announced`.
    """

    def __init__(self, user_id: int, *, instance: str, interval_s: float,
                 tls_port: int = DEFAULT_TLS_PORT, rng: random.Random,
                 max_peers: int = DEFAULT_MAX_PEERS) -> None:
        ours = Announcement(user_id, tls_port, instance)
        self.user_id = user_id
        self.instance = instance
        self.announcement = encode_announcement(ours)
        self.goodbye = encode_goodbye(Goodbye(user_id, tls_port, instance))
        self.table = PeerTable(user_id, interval_s, max_peers=max_peers)
        self.schedule = AnnounceSchedule(interval_s, rng=rng)
        self._sent = 0
        self._send_errors = 0
        self._received = 0
        self._malformed = 0
        self._goodbyes = 0
        self.last_malformed_from: str | None = None

    def start(self, now: float) -> None:
        self.schedule.start(now)

    def receive(self, data: bytes, address: str, now: float) -> list[object]:
        """Handle one datagram from ``address``; returns the events to post. Never raises for
        bad input: malformed datagrams are counted and dropped."""
        self._received += 1
        try:
            message = decode_datagram(data)
        except RemoteProtocolError:
            self._malformed += 1
            self.last_malformed_from = address
            return []
        if isinstance(message, Goodbye):
            peer = self.table.goodbye(message, address)
            if peer is None:
                return []
            self._goodbyes += 1
            return [PeerExpired(peer.user_id, peer.address)]
        change = self.table.observe(message, address, now)
        if change is None:
            return []
        if change.kind in (ChangeKind.NEW, ChangeKind.RESTARTED):
            self.schedule.heard_new_instance(now)
        peer = change.peer
        return [PeerAnnounced(peer.user_id, peer.address, peer.tls_port, peer.instance,
                              new=change.needs_verification)]

    def tick(self, now: float) -> list[object]:
        """Expire silent peers; returns the events to post."""
        return [PeerExpired(peer.user_id, peer.address) for peer in self.table.expire(now)]

    def announcement_due(self, now: float) -> bool:
        return self.schedule.due(now)

    def announced(self, now: float, *, sent: int, failed: int = 0) -> None:
        """Our announcement went to ``sent`` addresses (``failed`` sends raised)."""
        self._sent += sent
        self._send_errors += failed
        self.schedule.sent(now)

    def goodbye_sent(self, *, sent: int, failed: int = 0) -> None:
        self._sent += sent
        self._send_errors += failed

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` or an announcement has work to do."""
        times = [t for t in (self.schedule.next_at, self.table.next_expiry()) if t is not None]
        return min(times) if times else None

    def stats(self) -> DiscoveryStats:
        return DiscoveryStats(
            sent=self._sent, send_errors=self._send_errors, received=self._received,
            malformed=self._malformed, own_ignored=self.table.own_ignored,
            goodbyes=self._goodbyes, table_full=self.table.table_full,
            early_announcements=self.schedule.early_count, peers=len(self.table))

    def peers(self) -> dict[int, PeerInfo]:
        """user id -> the most recently heard entry for that id."""
        result: dict[int, PeerInfo] = {}
        for peer in self.table.snapshot():
            known = result.get(peer.user_id)
            if known is None or peer.last_seen > known.last_seen:
                result[peer.user_id] = PeerInfo(peer.address, peer.tls_port, peer.instance,
                                                peer.last_seen)
        return result
