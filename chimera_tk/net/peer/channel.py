"""One verified TLS connection to a peer, driven by a single I/O thread.

Only the I/O thread touches the TLS stream (OpenSSL objects must not be used from two threads at
once); other threads queue frames and wake it through a socket pair. Writers block while more than
HIGH_WATER bytes are queued (until LOW_WATER), so a fast file reader never buffers a whole file in
memory. A peer that stays silent past the idle timeout is pinged once and dropped if it still says
nothing.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from chimera_tk.errors import LocalProtocolError, RemoteProtocolError
from chimera_tk.net.peer.protocol import Event, PeerSession, Ping, Pong
from chimera_tk.net.peer.tls_stream import TlsStream

log = logging.getLogger(__name__)

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = HIGH_WATER // 2  # a writer blocked at HIGH_WATER is woken once the queue is this low
# One SSL read returns at most one TLS record, 16 KiB. Asking for more only made every read
# allocate (and, past malloc's mmap threshold, map and fault in) a buffer it then shrank.
READ_SIZE = 16 * 1024
WRITE_SIZE = 256 * 1024
WRITE_PROGRESS = 1024 * 1024  # bytes the kernel must take to count as a sign of life
SMALL_FRAME = 16 * 1024
# While the rest of a DATA frame is on its way, the socket reports readable only once this much
# (or that rest, if smaller) has arrived: a reader woken for every TCP segment spent more CPU on
# wake-ups and empty reads than on decryption. The sender always completes a frame it started,
# and a closed connection wakes the reader whatever the mark; on a link too slow to fill the mark
# well within the idle timeout the mark goes back to one byte (see _check_idle).
RECEIVE_LOW_WATER = 128 * 1024
# The TLS stream may already hold the first part of the next record (taken in, not yet
# decryptable), which the socket will never report again: the mark leaves one whole record of
# the frame's rest out. (It holds less than a record whenever a read ends for want of data.)
TLS_RECORD_MAX = 16 * 1024 + 256 + 5 + 16 + 1  # plaintext, padding, header, tag, content type


class ChannelClosed(Exception):
    """The connection is gone; ``reason`` says why."""


class Channel:
    def __init__(self, sock: TlsStream, peer_id: int, address: str, *, outgoing: bool,
                 on_event: Callable[[Channel, Event], None],
                 on_closed: Callable[[Channel, str], None],
                 idle_timeout: float = 60.0) -> None:
        self.sock = sock
        self.peer_id = peer_id
        self.address = address
        self.outgoing = outgoing
        self.session = PeerSession()
        self.peer_name = ""
        self._on_event = on_event
        self._on_closed = on_closed
        self._idle_timeout = idle_timeout
        self._lock = threading.Condition()
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._closed_reason: str | None = None
        self._aborted = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._last_heard = time.monotonic()
        # when the kernel last took another WRITE_PROGRESS bytes from us (see _check_idle)
        self._last_written = self._last_heard
        self._written_since = 0
        self._pinged = False
        self._receive_mark = 1  # the socket's SO_RCVLOWAT
        self.bytes_sent = 0
        self.bytes_received = 0
        self._thread = threading.Thread(target=self._run, name=f"peer-{peer_id}")

    # -- public, any thread ----------------------------------------------------------------------

    def start(self) -> None:
        self.sock.setblocking(False)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    def send(self, event: Event) -> None:
        """Queue one control frame (HELLO, TEXT, ACK, ...)."""
        with self._lock:
            self._check_open()
            self._enqueue(self.session.send(event))

    def send_raw(self, make_frame: Callable[[PeerSession], bytes]) -> None:
        """Queue a frame built by a session method under the channel lock (FILE_ACCEPT, ...)."""
        with self._lock:
            self._check_open()
            self._enqueue(make_frame(self.session))

    def begin_file(self, uid: str, offset: int, size: int) -> None:
        with self._lock:
            self._check_open()
            self.session.start_sending_file(uid, offset, size)

    def send_data(self, chunk: bytes, *, timeout: float = 60.0) -> None:
        """Queue one DATA frame of file bytes, waiting while the queue is above HIGH_WATER."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._out_bytes > HIGH_WATER and self._closed_reason is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChannelClosed("the peer stopped reading")
                self._lock.wait(remaining)
            self._check_open()
            self._enqueue(self.session.data_header(len(chunk)), chunk)

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._out_bytes and self._closed_reason is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return self._closed_reason is None

    def abort(self, reason: str) -> None:
        """Close at once and discard whatever is still queued or in the kernel's send buffer.

        After a lost ACK the bytes of an unacknowledged message must not trickle out later
        (when a cut link comes back) while the message is already on its way through Telegram.
        """
        self._aborted = True
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._lock:
            self._out.clear()
            self._out_bytes = 0
        self.close(reason)

    def close(self, reason: str) -> None:
        with self._lock:
            if self._closed_reason is None:
                self._closed_reason = reason
                self._lock.notify_all()
        self._wake()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise ChannelClosed(self._closed_reason)

    def _enqueue(self, *parts: bytes) -> None:
        for part in parts:
            self._out.append(memoryview(part))
            self._out_bytes += len(part)
        self._wake()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: the pair is closed
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        selector.register(self.sock, selectors.EVENT_READ)
        want_write = False
        try:
            while self._closed_reason is None:
                with self._lock:
                    pending_out = bool(self._out) or self.sock.unsent > 0
                if pending_out != want_write:
                    want_write = pending_out
                    selector.modify(self.sock, selectors.EVENT_READ |
                                    (selectors.EVENT_WRITE if want_write else 0))
                ready = selector.select(timeout=0 if self.sock.pending() else 1.0)
                for key, mask in ready:
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    elif mask & selectors.EVENT_READ:
                        self._read()
                if self.sock.pending():
                    self._read()
                if want_write or pending_out:
                    self._write()
                self._check_idle()
            self._flush_before_close()
        except (RemoteProtocolError, LocalProtocolError) as exc:
            self._set_reason(f"protocol error: {exc}")
            log.warning("peer %s at %s: %s", self.peer_id, self.address, exc)
        except (OSError, ssl.SSLError) as exc:
            self._set_reason(f"connection lost: {exc}")
        except Exception:
            log.exception("peer channel %s failed", self.peer_id)
            self._set_reason("internal error")
        finally:
            selector.close()
            self._shutdown_socket()
            self._on_closed(self, self._closed_reason or "closed")

    def _set_reason(self, reason: str) -> None:
        with self._lock:
            if self._closed_reason is None:
                self._closed_reason = reason
            self._lock.notify_all()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _read(self) -> None:
        while self._closed_reason is None:
            with self._lock:
                target = self.session.payload_buffer()
            try:
                if target is not None:
                    count = self._read_into(target)
                    data = None
                else:
                    data = self.sock.recv(READ_SIZE)
                    count = len(data)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            if not count:
                self._set_reason("the peer closed the connection")
                return
            self.bytes_received += count
            self._last_heard = time.monotonic()
            self._pinged = False
            events = []
            with self._lock:
                if data is None:
                    self.session.received_into(count)
                else:
                    self.session.receive_data(data)
                while (event := self.session.next_event()) is not None:
                    events.append(event)
            for event in events:
                if isinstance(event, Ping):
                    self.send(Pong(event.token))
                elif not isinstance(event, Pong):
                    self._on_event(self, event)
            self._set_receive_mark()

    def _set_receive_mark(self, mark: int | None = None) -> None:
        if mark is None:
            with self._lock:
                rest = self.session.payload_buffer()
            mark = 1 if rest is None else max(1, min(len(rest) - TLS_RECORD_MAX,
                                                     RECEIVE_LOW_WATER))
        if mark != self._receive_mark:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
                self._receive_mark = mark

    def _read_into(self, target: memoryview) -> int:
        """Decrypt records straight into a DATA payload until it is full or the socket has no
        more for now; the count, or 0 when the peer closed. Raises SSLWantRead only when nothing
        at all was read."""
        filled = 0
        while filled < len(target):
            try:
                got = self.sock.recv_into(target[filled:])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                if filled:
                    return filled
                raise
            if not got:
                break
            filled += got
        return filled

    def _write(self) -> None:
        if not self.sock.flush():  # the kernel has not taken the last batch yet
            return
        while True:
            with self._lock:
                if not self._out:
                    return
                view = self._out[0]
                if len(view) < SMALL_FRAME and len(self._out) > 1:
                    view = self._coalesce_small()
            piece = view[:WRITE_SIZE]
            try:
                sent = self.sock.send(piece)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return
            # counted when encrypted: at most one TlsStream batch (a quarter of WRITE_PROGRESS)
            # ahead of what the kernel took, since send() takes no more until that is gone
            self._written_since += sent
            if self._written_since >= WRITE_PROGRESS:
                self._written_since = 0
                self._last_written = time.monotonic()
            with self._lock:
                if not self._out or self._out[0] is not view:
                    return  # abort() emptied the queue meanwhile
                was_above = self._out_bytes > LOW_WATER
                self.bytes_sent += sent
                self._out_bytes -= sent
                if sent == len(view):
                    self._out.popleft()
                else:
                    self._out[0] = view[sent:]
                # wake waiters only when their wait can end (not after every piece: each wake
                # costs the writing thread a GIL round trip)
                if not self._out_bytes or (was_above and self._out_bytes <= LOW_WATER):
                    self._lock.notify_all()

    def _coalesce_small(self) -> memoryview:
        """Join queued small frames into one write (fewer TLS records); called under the lock."""
        parts, total = [], 0
        while self._out and len(self._out[0]) < SMALL_FRAME and total < WRITE_SIZE:
            part = self._out.popleft()
            parts.append(part)
            total += len(part)
        joined = memoryview(b"".join(parts))
        self._out.appendleft(joined)
        return joined

    def _check_idle(self) -> None:
        # A peer receiving a file says nothing until the end, and our PING waits behind the
        # queued data: on a slow link its PONG comes too late. Megabytes taken by the kernel
        # show the peer is reading; a dead or frozen peer stops taking them once the socket
        # buffers are full (a few MB), so it is still found out, one idle period later at most.
        silent = time.monotonic() - max(self._last_heard, self._last_written)
        if self._receive_mark > 1 and silent > self._idle_timeout / 4:
            # a slow link: the mark would hide the records that do arrive; take each again
            self._set_receive_mark(1)
        if silent > self._idle_timeout * 1.5:
            self._set_reason(f"idle for {silent:.0f} s")
        elif silent > self._idle_timeout and not self._pinged:
            self._pinged = True
            with self._lock:
                if self.session.hello_sent:
                    self._enqueue(self.session.send(Ping(int(time.monotonic()))))

    def _flush_before_close(self) -> None:
        """Best effort: let queued frames (a final ACK, a goodbye) out before closing."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not self._aborted:
            with self._lock:
                if not self._out and not self.sock.unsent:
                    return
            self._write()
            time.sleep(0.005)

    def _shutdown_socket(self) -> None:
        for closeable in (self.sock, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                closeable.close()
