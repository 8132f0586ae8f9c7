"""Admission of connections that have not proved who they are yet (before and during TLS).

Every accepted TCP connection costs a thread until its handshake ends, so idle connections,
half-open handshakes and garbage must not crowd out a real peer. Three limits:

- per address: at most ``per_address`` handshakes at once from one IP address;
- global: at most ``total`` at once. When full, a pending handshake is evicted rather than the
  newcomer refused: the oldest one of the address that holds the most. A real peer finishes in
  milliseconds with one connection, so the connections that have waited longest, from the
  busiest address, are the ones an attacker is holding open;
- one deadline for the whole handshake, kept here as well as by the socket timeout (``TlsStream.
  do_handshake`` applies its timeout to the whole call), so it also holds for what the
  thread does around the TLS call and for a thread stuck anywhere else.

A stuck handshake is ended with ``shutdown()`` on its socket (which wakes the thread blocked in
it); the handshake thread itself closes the socket after :meth:`Admission.finish`, so a socket is
never shut down after its descriptor was closed and reused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

LOG_BUDGET = 20  # refusals logged one by one per window; the rest only in the counters
LOG_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class AdmissionCounters:
    """What the admission saw since the worker started (for logs, tests and the figures)."""

    admitted: int = 0
    refused_per_address: int = 0  # the address already had its quota of handshakes pending
    evicted: int = 0  # the global cap was full: the oldest pending handshake made room
    timed_out: int = 0  # the handshake passed its deadline
    failed: int = 0  # garbage, wrong certificate, closed early
    verified: int = 0
    pending: int = 0  # handshakes under way now
    peak_pending: int = 0
    peak_pending_per_address: int = 0


class PendingHandshake:
    """One admitted connection; ``sock`` is its plain socket, which the TLS stream reads and
    writes (the handshake thread confirms it through ``update_socket`` once TLS starts)."""

    __slots__ = ("address", "deadline", "ended", "sock", "started")

    def __init__(self, sock: socket.socket, address: str, timeout_s: float) -> None:
        self.sock = sock
        self.address = address
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s
        self.ended = ""  # why the admission cut it short ("evicted", "timed out", "stopping")


class Admission:
    def __init__(self, *, per_address: int, total: int, timeout_s: float) -> None:
        if per_address < 1 or total < 1 or timeout_s <= 0:
            raise ValueError("admission limits must be positive")
        self._per_address_cap = per_address
        self._total_cap = total
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[PendingHandshake, None] = {}  # insertion order = age
        self._by_address: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._peak = 0
        self._peak_per_address = 0
        self._log_window_start = -LOG_WINDOW_S
        self._logged = 0

    def admit(self, sock: socket.socket, address: str) -> PendingHandshake | None:
        """A ticket for a new connection from ``address``, or None: refuse it (close it)."""
        with self._lock:
            if self._by_address[address] >= self._per_address_cap:
                self._counts["refused_per_address"] += 1
                return None
            if len(self._pending) >= self._total_cap:
                self._cut(self._eviction_candidate(), "evicted")
                self._counts["evicted"] += 1
            ticket = PendingHandshake(sock, address, self._timeout_s)
            self._pending[ticket] = None
            self._by_address[address] += 1
            self._counts["admitted"] += 1
            self._peak = max(self._peak, len(self._pending))
            self._peak_per_address = max(self._peak_per_address, self._by_address[address])
            return ticket

    def remaining(self, ticket: PendingHandshake) -> float:
        """Seconds left before the deadline (never below a small positive floor)."""
        return max(0.05, ticket.deadline - time.monotonic())

    def update_socket(self, ticket: PendingHandshake, sock: socket.socket) -> bool:
        """The handshake thread wrapped the socket; False if the ticket was cut meanwhile."""
        with self._lock:
            ticket.sock = sock
            if ticket.ended:
                _shutdown(sock)
                return False
            return True

    def finish(self, ticket: PendingHandshake, *, verified: bool, timed_out: bool = False) -> str:
        """The handshake thread is done with ``ticket``: why it ended early ("" if it did not).
        After this the admission never touches the socket again."""
        with self._lock:
            if ticket in self._pending:
                self._remove(ticket)
            if not ticket.ended:
                self._counts["verified" if verified else
                             "timed_out" if timed_out else "failed"] += 1
            return ticket.ended

    def reap(self, now: float | None = None) -> int:
        """Cut every handshake past its deadline; returns how many."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            overdue = [t for t in self._pending if t.deadline <= moment]
            for ticket in overdue:
                self._cut(ticket, "timed out")
                self._counts["timed_out"] += 1
            return len(overdue)

    def close_all(self) -> None:
        """Shutting down: every pending handshake ends now."""
        with self._lock:
            for ticket in list(self._pending):
                self._cut(ticket, "stopping")

    def may_log(self, now: float | None = None) -> bool:
        """True for the first LOG_BUDGET refusals in each LOG_WINDOW_S: a flood of garbage
        must not fill the disk with one log line per connection."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            if moment - self._log_window_start >= LOG_WINDOW_S:
                self._log_window_start, self._logged = moment, 0
            self._logged += 1
            return self._logged <= LOG_BUDGET

    def counters(self) -> AdmissionCounters:
        with self._lock:
            return AdmissionCounters(
                admitted=self._counts["admitted"],
                refused_per_address=self._counts["refused_per_address"],
                evicted=self._counts["evicted"], timed_out=self._counts["timed_out"],
                failed=self._counts["failed"], verified=self._counts["verified"],
                pending=len(self._pending), peak_pending=self._peak,
                peak_pending_per_address=self._peak_per_address)

    # -- under the lock --------------------------------------------------------------------------

    def _cut(self, ticket: PendingHandshake, why: str) -> None:
        ticket.ended = why
        self._remove(ticket)
        _shutdown(ticket.sock)

    def _eviction_candidate(self) -> PendingHandshake:
        # the oldest handshake of the address holding the most: a real peer has one under way
        busiest = max(self._by_address.values())
        return next(t for t in self._pending if self._by_address[t.address] == busiest)

    def _remove(self, ticket: PendingHandshake) -> None:
        del self._pending[ticket]
        self._by_address[ticket.address] -= 1
        if self._by_address[ticket.address] <= 0:
            del self._by_address[ticket.address]


def _shutdown(sock: socket.socket) -> None:
    # Only the system call on the plain socket, which wakes a thread blocked in the handshake
    # without touching the OpenSSL object it is using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
