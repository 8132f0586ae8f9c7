"""A TLS connection whose records pass through memory buffers, so the socket sees few, big calls.

Python's ``SSLSocket`` lets OpenSSL use the socket itself: every TLS record (16 KiB at most) is
then one ``send()``, and two ``recv()`` calls (header, then body) on the other end. Here OpenSSL
works on two ``MemoryBIO``s instead: up to a quarter MiB of plaintext is encrypted into one
``send()``, and one ``recv()`` brings whatever records have arrived, up to a quarter MiB. Between
two network namespaces that cut the CPU both ends spend on a GiB by about a sixth (docs/
PERFORMANCE.md, "Fewer, bigger socket calls").

:class:`TlsStream` offers the part of ``SSLSocket``'s API that the peer link uses: a blocking
handshake bounded by the socket's timeout as a whole, then non-blocking ``recv``/``recv_into``/
``send`` that raise ``SSLWantReadError``/``SSLWantWriteError`` like ``SSLSocket`` does. Encrypted
bytes the kernel did not take yet wait in :attr:`unsent` (one batch at most) until
:meth:`flush`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from typing import Any

BATCH = 256 * 1024  # plaintext encrypted per send(); raw bytes taken per recv()
HANDSHAKE_READ = 16 * 1024  # a handshake flight with a certificate chain is a few KiB


class TlsStream:
    def __init__(self, raw: socket.socket, context: ssl.SSLContext, *,
                 server_side: bool) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._unsent = memoryview(b"")
        self._buffer: memoryview | None = None  # BATCH bytes, once verified (not per handshake)
        # Whether the incoming buffer may hold a whole record: the socket will not report those
        # bytes again, so pending() must (and must not, once a read found only part of one).
        self._records_waiting = False

    # -- set-up ----------------------------------------------------------------------------------

    def do_handshake(self) -> None:
        """Blocking. The socket's timeout bounds the whole handshake, as CPython's does."""
        timeout = self.raw.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._send_blocking(deadline)
                    self._receive_blocking(deadline)
            self._send_blocking(deadline)
        except ssl.SSLError:
            with contextlib.suppress(OSError):  # the alert tells the peer why
                self._send_blocking(deadline or time.monotonic() + 1.0)
            raise
        finally:
            self.raw.settimeout(timeout)
        # the peer's first frames may have come in with its last handshake message
        self._records_waiting = self._incoming.pending > 0

    def _remaining(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the TLS handshake timed out")
        return left

    def _send_blocking(self, deadline: float | None) -> None:
        data = self._outgoing.read()
        if data:
            self.raw.settimeout(self._remaining(deadline))
            self.raw.sendall(data)

    def _receive_blocking(self, deadline: float | None) -> None:
        self.raw.settimeout(self._remaining(deadline))
        data = self.raw.recv(HANDSHAKE_READ)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()  # OpenSSL then raises SSLEOFError, as on a socket

    # -- what SSLSocket offers -------------------------------------------------------------------

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def fileno(self) -> int:
        return self.raw.fileno()

    def setblocking(self, flag: bool) -> None:
        self.raw.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self.raw.settimeout(value)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.raw.setsockopt(level, option, value)

    def close(self) -> None:
        self.raw.close()

    def pending(self) -> int:
        """Bytes readable without the socket: decrypted ones, or records already taken in."""
        waiting = self._incoming.pending if self._records_waiting else 0
        return self._tls.pending() + waiting

    def recv_into(self, target: memoryview | bytearray) -> int:
        """Decrypted bytes into ``target`` (one record's at most); 0 once the peer closed."""
        try:
            while True:
                try:
                    return self._tls.read(len(target), target)
                except ssl.SSLWantReadError:
                    if not self._take_in():
                        raise
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return 0  # closed, with or without close_notify (as suppress_ragged_eofs)
        finally:
            self._answer_protocol()

    def recv(self, size: int) -> bytes:
        buffer = bytearray(size)
        count = self.recv_into(buffer)
        del buffer[count:]
        return bytes(buffer)

    def send(self, data: memoryview | bytes) -> int:
        """Encrypt up to BATCH bytes of ``data`` and hand them to the kernel; the count taken.

        Raises SSLWantWriteError (nothing taken) while the kernel still refuses the last batch.
        """
        if not self.flush():
            raise ssl.SSLWantWriteError("the socket's send buffer is full")
        taken = self._tls.write(data[:BATCH])
        self._unsent = memoryview(self._outgoing.read())
        self.flush()
        return taken

    @property
    def unsent(self) -> int:
        """Encrypted bytes waiting for room in the kernel's send buffer."""
        return len(self._unsent) + self._outgoing.pending

    def flush(self) -> bool:
        """Give the kernel what it takes of the waiting bytes; True when none are left."""
        if self._outgoing.pending:  # protocol messages (a KeyUpdate answer) go out in order
            self._unsent = memoryview(bytes(self._unsent) + self._outgoing.read())
        while self._unsent:
            try:
                sent = self.raw.send(self._unsent)
            except BlockingIOError:
                return False
            self._unsent = self._unsent[sent:]
        return True

    # -- internals -------------------------------------------------------------------------------

    def _take_in(self) -> bool:
        """Move what the socket has into the incoming buffer; False when it has nothing."""
        self._records_waiting = False
        if self._buffer is None:
            self._buffer = memoryview(bytearray(BATCH))
        try:
            count = self.raw.recv_into(self._buffer)
        except BlockingIOError:
            return False
        if count:
            self._incoming.write(self._buffer[:count])
            self._records_waiting = True
        else:
            self._incoming.write_eof()
        return True

    def _answer_protocol(self) -> None:
        # Reading can make OpenSSL answer (a TLS 1.3 KeyUpdate, an alert at the end); it goes out
        # now if the kernel takes it. A broken connection shows at the next read or write, not
        # here, where it would hide what the read returned (the 0 of a closed connection).
        if self._outgoing.pending:
            with contextlib.suppress(OSError):
                self.flush()
