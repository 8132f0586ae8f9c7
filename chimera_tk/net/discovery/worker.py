"""The discovery worker: the sockets, the thread and the clock around :mod:`.protocol`.

One thread (not a daemon) waits in ``select`` on the receiving socket and a wake-up socket, with a
timeout up to the next deadline (announcement due, peer about to expire, periodic log line), so it
reacts to ``stop()`` at once and never sleeps blindly. Announcements go out from
``lan.announce_port`` to every address that :func:`chimera_tk.net.interfaces.broadcast_addresses`
returns, on ``lan.discovery_port``; the receiving socket is bound to ``lan.discovery_port`` with
address (and port) reuse so that two profiles on one machine can both listen. On stop the thread
sends one goodbye and closes the sockets.

Events (posted with ``emit``): ``PeerAnnounced(new=True)`` when a peer appears, restarts or moves
(verify it), ``PeerAnnounced(new=False)`` as it keeps announcing (at most twice per interval),
``PeerExpired`` when it falls silent for three intervals or says goodbye, and ``StatusChanged``
(component ``lan``) if the thread fails.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable

from chimera_tk.config import LanSettings
from chimera_tk.errors import ConfigError, UserError
from chimera_tk.events import StatusChanged
from chimera_tk.net.discovery.protocol import (
    MAX_DATAGRAM,
    DiscoveryState,
    DiscoveryStats,
    PeerInfo,
)
from chimera_tk.net.interfaces import broadcast_addresses

log = logging.getLogger(__name__)

STATS_LOG_INTERVAL_S = 60.0
_MAX_WAIT_S = 1.0  # an upper bound on select(), so a missed wake-up can never hang the thread
_BATCH = 256  # datagrams handled per wake-up before deadlines are checked again


def new_instance() -> str:
    """A random token naming this process start (12 characters of [A-Za-z0-9_-])."""
    return secrets.token_urlsafe(9)


class DiscoveryWorker:
    """Announces ``user_id`` on the LAN and reports the peers it hears (see module docstring)."""

    name = "discovery"

    def __init__(self, user_id: int, tls_port: int, settings: LanSettings,
                 emit: Callable[[object], None], *, instance: str | None = None) -> None:
        self._settings = settings
        self._emit = emit
        self._state = DiscoveryState(user_id, instance=instance or new_instance(),
                                     interval_s=settings.interval_s, tls_port=tls_port,
                                     rng=random.Random())
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()  # stop() must not write to a wake socket being closed
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._receiver: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._warned_no_address = False
        self._failing_addresses: set[str] = set()

    @property
    def instance(self) -> str:
        return self._state.instance

    @property
    def announcement(self) -> bytes:
        """The datagram this node announces itself with."""
        return self._state.announcement

    # -- Worker protocol -------------------------------------------------------------------------

    def start(self) -> None:
        """Open both sockets and start the thread. Raises UserError when a port cannot be used
        or ConfigError when a configured broadcast address is not valid."""
        if self._thread is not None:
            raise RuntimeError("DiscoveryWorker.start() called twice")
        if not self._settings.enabled:
            log.info("LAN discovery is disabled in the settings")
            return
        broadcast_addresses(self._settings.broadcast_addresses)  # a bad address fails here
        try:
            self._receiver = _bind_udp(self._settings.discovery_port, "listen for announcements")
            self._receiver.setblocking(False)
            self._sender = _bind_udp(self._settings.announce_port, "send announcements")
            self._sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._run, name="chimera-discovery", daemon=False)
        self._thread.start()
        log.info("LAN discovery started: user %d, instance %s, UDP %d -> %d every %.1f s",
                 self._state.user_id, self.instance, self._settings.announce_port,
                 self._settings.discovery_port, self._settings.interval_s)

    def stop(self) -> None:
        """Ask the thread to send its goodbye and end; returns at once."""
        self._stopping.set()
        with self._wake_lock:
            # OSError means its buffer is full: the thread has a wake-up waiting already.
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"x")

    def join(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- for other threads -----------------------------------------------------------------------

    def stats(self) -> DiscoveryStats:
        with self._lock:
            return self._state.stats()

    def peers(self) -> dict[int, PeerInfo]:
        """user id -> (address, port, instance, last_seen as time.monotonic())."""
        with self._lock:
            return self._state.peers()

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
            self._send(self._state.goodbye, goodbye=True)
        except Exception as exc:
            log.exception("LAN discovery failed")
            self._emit(StatusChanged("lan", f"LAN discovery stopped: {exc}", "error"))
        finally:
            self._close_sockets()
            stats = self.stats()
            log.info("LAN discovery stopped: %s", stats)

    def _loop(self) -> None:
        assert self._receiver is not None and self._wake_r is not None
        with self._lock:
            self._state.start(time.monotonic())
        next_log = time.monotonic() + STATS_LOG_INTERVAL_S
        logged_malformed = 0
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                events = self._state.tick(now)
                due = self._state.announcement_due(now)
            self._post(events)
            if due:
                self._send(self._state.announcement, goodbye=False)
            if now >= next_log:
                logged_malformed = self._log_malformed(logged_malformed)
                next_log = now + STATS_LOG_INTERVAL_S
            with self._lock:
                deadline = self._state.next_deadline()
            wait = min(_MAX_WAIT_S, next_log - now)
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            readable, _, _ = select.select([self._receiver, self._wake_r], [], [], max(0.0, wait))
            if self._wake_r in readable:
                _drain(self._wake_r)
            if self._receiver in readable:
                self._receive_batch()

    def _receive_batch(self) -> None:
        assert self._receiver is not None
        for _ in range(_BATCH):
            try:
                # One byte over the limit is enough to see that a datagram is too long.
                data, source = self._receiver.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("discovery receive failed: %s", exc)
                return
            with self._lock:
                events = self._state.receive(data, source[0], time.monotonic())
            self._post(events)

    def _send(self, payload: bytes, *, goodbye: bool) -> None:
        assert self._sender is not None
        try:
            addresses = broadcast_addresses(self._settings.broadcast_addresses)
        except (ConfigError, OSError) as exc:
            log.warning("LAN discovery cannot list broadcast addresses: %s", exc)
            addresses = []
        if not addresses and not self._warned_no_address:
            log.warning("LAN discovery has no broadcast address to announce to (no network up?)")
        self._warned_no_address = not addresses
        sent = failed = 0
        for address in addresses:
            try:
                self._sender.sendto(payload, (address, self._settings.discovery_port))
            except OSError as exc:
                failed += 1
                if address not in self._failing_addresses:
                    self._failing_addresses.add(address)
                    log.warning("LAN discovery cannot send to %s: %s", address, exc)
            else:
                sent += 1
                self._failing_addresses.discard(address)
        with self._lock:
            if goodbye:
                self._state.goodbye_sent(sent=sent, failed=failed)
            else:
                self._state.announced(time.monotonic(), sent=sent, failed=failed)

    def _post(self, events: list[object]) -> None:
        for event in events:
            self._emit(event)

    def _log_malformed(self, logged: int) -> int:
        with self._lock:
            malformed = self._state.stats().malformed
            source = self._state.last_malformed_from
        if malformed != logged:
            log.info("LAN discovery dropped %d malformed datagrams in the last %.0f s "
                     "(%d in all, the last from %s)", malformed - logged, STATS_LOG_INTERVAL_S,
                     malformed, source)
        return malformed

    def _close_sockets(self) -> None:
        with self._wake_lock:
            for sock in (self._receiver, self._sender, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._receiver = self._sender = self._wake_r = self._wake_w = None


def _bind_udp(port: int, purpose: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "another program is using it and does not share it"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied"
        else:
            reason = exc.strerror or str(exc)
        raise UserError(
            f"LAN discovery cannot use UDP port {port} to {purpose}: {reason}. Close the other "
            "program or choose another port in the [lan] section of config.toml.") from None
    return sock


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(64):
            pass
    except (BlockingIOError, InterruptedError):
        pass
