"""TlsStream: TLS over memory buffers, with few and big socket calls. Real TLS 1.3 with the team
CA's certificates over real sockets (a socket pair, or loopback TCP for the Channel test)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

from chimera_tk.net.peer.channel import Channel
from chimera_tk.net.peer.protocol import Hello, PeerSession
from chimera_tk.net.peer.tls import client_context, server_context
from chimera_tk.net.peer.tls_stream import BATCH, TlsStream
from tests.peer_channels import serve_one_channel, stop_served
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002


class CountingSocket(socket.socket):
    """A real socket that counts its send() calls."""

    sends = 0

    def send(self, data, flags: int = 0) -> int:  # type: ignore[override]
        self.sends += 1
        return super().send(data, flags)


@pytest.fixture
def identities(tmp_path: Path):
    ca = TeamCA.create()
    return ca.write_identity(tmp_path / "alice", ALICE), ca.write_identity(tmp_path / "bob", BOB)


def _connected_pair(identities) -> tuple[TlsStream, TlsStream]:
    alice_tls, bob_tls = identities
    left, right = socket.socketpair()
    alice = TlsStream(CountingSocket(fileno=left.detach()), client_context(alice_tls),
                      server_side=False)
    bob = TlsStream(CountingSocket(fileno=right.detach()), server_context(bob_tls),
                    server_side=True)
    for stream in (alice, bob):
        stream.settimeout(10)
    server = threading.Thread(target=bob.do_handshake)
    server.start()
    alice.do_handshake()
    server.join(10)
    assert bob.getpeercert()["subject"] == ((("commonName", str(ALICE)),),)
    for stream in (alice, bob):
        stream.setblocking(False)
    return alice, bob


def _read_all(stream: TlsStream, size: int) -> bytes:
    import selectors

    received = bytearray()
    buffer = bytearray(64 * 1024)
    with selectors.DefaultSelector() as selector:
        selector.register(stream.fileno(), selectors.EVENT_READ)
        while len(received) < size:
            try:
                count = stream.recv_into(buffer)
            except ssl.SSLWantReadError:
                assert selector.select(10), "no data for 10 s"
                continue
            assert count, "closed early"
            received += buffer[:count]
    return bytes(received)


def _start_reader(stream: TlsStream, size: int) -> tuple[threading.Thread, list[bytes]]:
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(stream, size)))
    reader.start()
    return reader, received


def _send_all(stream: TlsStream, data: bytes, sent: int = 0) -> None:
    """Send ``data[sent:]`` as a channel would: wait while the kernel refuses, then flush."""
    while sent < len(data):
        try:
            sent += stream.send(memoryview(data)[sent:])
        except ssl.SSLWantWriteError:
            threading.Event().wait(0.005)
    while not stream.flush():
        threading.Event().wait(0.005)


def test_a_batch_of_records_leaves_in_one_socket_call(identities) -> None:
    alice, bob = _connected_pair(identities)
    data = os.urandom(4 * BATCH)  # 64 TLS records
    reader, received = _start_reader(bob, len(data))
    calls_before = alice.raw.sends
    _send_all(alice, data)
    reader.join(10)
    assert received == [data]
    # one send() per record would be 64 or more; a batch goes in one call, or in a few when the
    # socket buffer (about 200 KiB) fills before the reader empties it
    assert alice.raw.sends - calls_before <= 32


def test_a_full_send_buffer_keeps_the_encrypted_rest_and_loses_nothing(identities) -> None:
    alice, bob = _connected_pair(identities)
    alice.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    data = os.urandom(8 * BATCH)
    sent = 0
    refused = 0
    while sent < len(data) and refused == 0:
        try:
            sent += alice.send(memoryview(data)[sent:])
        except ssl.SSLWantWriteError:
            refused += 1
    assert refused == 1 and alice.unsent > 0  # nobody reads: the kernel stopped taking bytes
    reader, received = _start_reader(bob, len(data))
    _send_all(alice, data, sent)
    assert alice.unsent == 0
    reader.join(10)
    assert len(received) == 1
    assert hashlib.sha256(received[0]).digest() == hashlib.sha256(data).digest()


def test_a_closed_peer_reads_as_zero_bytes(identities) -> None:
    alice, bob = _connected_pair(identities)
    with pytest.raises(ssl.SSLWantReadError):
        alice.recv_into(bytearray(100))  # takes in Bob's session tickets (left unread: a reset)
    alice.send(b"last words")
    alice.close()  # no close_notify, as when a process dies
    assert _read_all(bob, 10) == b"last words"
    assert bob.recv_into(bytearray(100)) == 0


def test_frames_that_came_with_the_last_handshake_message_are_read_at_once(
        identities) -> None:
    """The client's first frame can arrive in the same TCP read as its Finished message. It then
    waits in TlsStream's buffer, where select() cannot see it: the channel must still read it."""
    alice_tls, bob_tls = identities
    listener = socket.create_server(("127.0.0.1", 0))
    heard = threading.Event()
    server, channels = serve_one_channel(
        listener, bob_tls, ALICE,
        on_event=lambda _c, event: heard.set() if isinstance(event, Hello) else None,
        on_closed=lambda _c, _reason: None)
    raw = socket.create_connection(listener.getsockname())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(alice_tls).wrap_bio(incoming, outgoing, server_hostname=None)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := outgoing.read():
                    raw.sendall(pending)
                incoming.write(raw.recv(65536))
        tls.write(PeerSession().send(Hello(name="alice")))
        raw.sendall(outgoing.read())  # Finished and the HELLO in one send
        server.join(10)
        assert heard.wait(3), "the HELLO that came with the handshake was left unread"
    finally:
        raw.close()
        stop_served(channels, listener)


def test_an_abort_while_a_piece_is_being_sent_ends_the_channel_cleanly(identities,
                                                                      caplog) -> None:
    """abort() from another thread empties the queue while the I/O thread is inside send():
    the I/O thread must notice instead of failing on the queue it took the piece from."""
    alice, _bob = _connected_pair(identities)
    closed = threading.Event()
    channel = Channel(alice, BOB, "test", outgoing=True, on_event=lambda _c, _e: None,
                      on_closed=lambda _c, _reason: closed.set())
    real_send = alice.send

    def send_then_abort(data) -> int:  # the abort lands between send() and the bookkeeping
        sent = real_send(data)
        channel.abort("cancelled by the test")
        return sent

    alice.send = send_then_abort  # type: ignore[method-assign]
    channel.start()
    with caplog.at_level("ERROR", logger="chimera_tk.net.peer.channel"):
        channel.begin_file("abort-race", 0, 64 * 1024)
        channel.send_data(os.urandom(64 * 1024))
        assert closed.wait(5)
        assert channel.join(5)
    assert channel.closed_reason == "cancelled by the test"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
