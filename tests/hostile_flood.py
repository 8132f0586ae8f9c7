"""Hostile clients against a peer port on loopback: idle TCP connections, half-open TLS
handshakes, byte-tricklers and garbage, from many source addresses (127.0.0.0/8 is all local,
so each attacker address is a real, distinct source address without any network setup).

A :class:`Flood` keeps its connections up: whenever the server closes one, the attacker opens
another from the same address, as a real flood would.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass


def client_hello() -> bytes:
    """The bytes of a genuine TLS ClientHello (what a half-open handshake sends, then stops)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def attacker_addresses(count: int, first: int = 20) -> list[str]:
    return [f"127.0.{first + i // 200}.{1 + i % 200}" for i in range(count)]


def open_from(source: str, port: int) -> socket.socket | None:
    """A non-blocking connection from ``source`` to the loopback ``port``, under way."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.setblocking(False)
    try:
        sock.bind((source, 0))
        sock.connect_ex(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


@dataclass
class FloodStats:
    opened: int = 0
    closed_by_server: int = 0
    failed_to_open: int = 0


class Flood:
    """``kinds`` maps a kind ("idle", "half_open", "trickle", "garbage") to how many connections
    of it to hold open, spread over ``addresses``."""

    def __init__(self, port: int, kinds: dict[str, int], addresses: list[str]) -> None:
        self._port = port
        self._kinds = kinds
        self._addresses = addresses
        self._hello = client_hello()
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._trickle: dict[socket.socket, int] = {}  # bytes of the hello sent so far
        self.stats = FloodStats()
        self.thread = threading.Thread(target=self._run, name="hostile-flood", daemon=True)
        self._slots = [(kind, addresses[i % len(addresses)])
                       for kind, n in kinds.items() for i in range(n)]

    def start(self) -> Flood:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()

    def _open(self, kind: str, source: str) -> None:
        sock = open_from(source, self._port)
        if sock is None:
            self.stats.failed_to_open += 1
            return
        self.stats.opened += 1
        self._selector.register(sock, selectors.EVENT_WRITE, (kind, source, False))

    def _connected(self, sock: socket.socket, kind: str, source: str) -> None:
        with contextlib.suppress(OSError):
            if kind == "half_open":
                sock.send(self._hello)
            elif kind == "garbage":
                sock.send(os.urandom(512))
        if kind == "trickle":
            self._trickle[sock] = 0
        self._selector.modify(sock, selectors.EVENT_READ, (kind, source, True))

    def _run(self) -> None:
        for kind, source in self._slots:
            if self._stop.is_set():
                return
            self._open(kind, source)
        last_trickle = time.monotonic()
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                sock = key.fileobj
                kind, source, connected = key.data
                if not connected and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._connected(sock, kind, source)
                    continue
                try:
                    data = sock.recv(65536) if connected else b""
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # a server hello to a half-open client: ignore, stay silent
                self._selector.unregister(sock)
                self._trickle.pop(sock, None)
                sock.close()
                self.stats.closed_by_server += 1
                self._open(kind, source)  # the attacker comes straight back
            if time.monotonic() - last_trickle >= 0.3:
                last_trickle = time.monotonic()
                for sock, sent in list(self._trickle.items()):
                    if sent < len(self._hello):
                        with contextlib.suppress(OSError):
                            sock.send(self._hello[sent:sent + 1])
                        self._trickle[sock] = sent + 1
