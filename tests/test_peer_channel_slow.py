"""A DATA frame that trickles in slower than the receive low-water mark fills: real TLS over
loopback, the real Channel on the receiving side, a bare TLS client writing frames by hand."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chimera_tk.net.peer.channel import RECEIVE_LOW_WATER, Channel
from chimera_tk.net.peer.protocol import (
    Data,
    FileAccept,
    FileDone,
    FileOffer,
    Hello,
    PeerSession,
    data_frame_header,
    encode_event,
)
from chimera_tk.net.peer.tls import client_context
from tests.peer_channels import serve_one_channel, stop_served
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002
IDLE_TIMEOUT_S = 1.0
PIECE = 4 * 1024
PIECE_INTERVAL_S = 0.1  # 40 KiB/s: the 128 KiB mark would take 3.2 s, past 1.5 x the timeout


def test_a_frame_slower_than_the_low_water_mark_still_counts_as_heard(tmp_path: Path) -> None:
    ca = TeamCA.create()
    alice_tls = ca.write_identity(tmp_path / "alice", ALICE)
    bob_tls = ca.write_identity(tmp_path / "bob", BOB)
    payload = bytes(range(256)) * ((RECEIVE_LOW_WATER + 32 * 1024) // 256)  # past one mark
    received: list[object] = []
    closed: list[str] = []
    done = threading.Event()

    def on_closed(_channel: Channel, reason: str) -> None:
        closed.append(reason)
        done.set()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server, channels = serve_one_channel(listener, bob_tls, ALICE, _bob_accepts(done, received),
                                         on_closed, IDLE_TIMEOUT_S)
    client = client_context(alice_tls).wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname=None)
    server.join(10)
    session = PeerSession()
    offer = FileOffer("slow-file", "slow.bin", len(payload), "0" * 64, "application/x", 0)
    client.sendall(session.send(Hello(name="alice")) + session.send(offer))
    while not any(isinstance(event, FileAccept) for event in _drain(client, session)):
        pass
    started = time.monotonic()
    try:
        client.sendall(data_frame_header(len(payload)))
        for start in range(0, len(payload), PIECE):
            client.sendall(payload[start:start + PIECE])  # one TLS record each
            time.sleep(PIECE_INTERVAL_S)
        client.sendall(encode_event(FileDone("slow-file")))
    except (ssl.SSLError, OSError) as exc:
        raise AssertionError(f"the receiver dropped a live sender: {closed} ({exc})") from None
    took = time.monotonic() - started
    assert done.wait(10)
    try:
        assert took > 3 * IDLE_TIMEOUT_S  # the frame was much slower than the idle rule allows
        assert closed == [], f"the receiver dropped a live sender: {closed}"
        data = [event for event in received if isinstance(event, Data)]
        assert b"".join(bytes(event.chunk) for event in data) == payload
    finally:
        client.close()
        stop_served(channels, listener)


def _bob_accepts(done: threading.Event,
                 received: list[object]) -> Callable[[Channel, object], None]:
    """Bob's side of the exchange: answers HELLO, accepts the offer, sets ``done`` at FILE_DONE."""

    def on_event(channel: Channel, event: object) -> None:
        received.append(event)
        if isinstance(event, Hello):
            channel.send(Hello(name="bob"))
        elif isinstance(event, FileOffer):
            channel.send_raw(lambda session: session.accept_file(event, 0))
        elif isinstance(event, FileDone):
            done.set()

    return on_event


def _drain(client, session: PeerSession) -> list[object]:
    session.receive_data(client.recv(65536))
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


class _RecordClient:
    """A TLS client over a memory BIO: its records go out only when the test sends them, so a
    record can be cut in two across TCP sends."""

    def __init__(self, tls, port: int) -> None:
        self.raw = socket.socket()
        # Ethernet-sized segments: with loopback's 64 KiB ones the kernel wakes a reader below
        # its low-water mark whenever the receive window is under one segment
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        self.raw.connect(("127.0.0.1", port))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context(tls).wrap_bio(self.incoming, self.outgoing,
                                                server_hostname=None)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.incoming.write(self.raw.recv(65536))
        self.flush()

    def records(self, data: bytes) -> bytes:
        """``data`` encrypted, not yet sent."""
        self.tls.write(data)
        return self.outgoing.read()

    def flush(self) -> None:
        if pending := self.outgoing.read():
            self.raw.sendall(pending)

    def events(self, session: PeerSession) -> list[object]:
        self.incoming.write(self.raw.recv(65536))
        with contextlib.suppress(ssl.SSLWantReadError):
            while True:
                session.receive_data(self.tls.read(65536))
        found = []
        while (event := session.next_event()) is not None:
            found.append(event)
        return found


def test_the_end_of_a_frame_wakes_the_reader_when_openssl_holds_part_of_a_record(
        tmp_path: Path) -> None:
    """The receiver's OpenSSL can hold the first part of a record the low-water mark cannot see.
    The mark counted it as still to come, so a frame's last bytes (and the FILE_DONE after them)
    stayed unread until the idle rule lowered the mark 15 s later: a 1 GiB transfer now and then
    ran at 60 MiB/s in the benchmark."""
    ca = TeamCA.create()
    alice_tls = ca.write_identity(tmp_path / "alice", ALICE)
    bob_tls = ca.write_identity(tmp_path / "bob", BOB)
    payload = bytes(range(256)) * (100 * 1024 // 256)
    done = threading.Event()
    closed: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    server, channels = serve_one_channel(listener, bob_tls, ALICE, _bob_accepts(done, []),
                                         lambda _channel, reason: closed.append(reason))
    client = _RecordClient(alice_tls, listener.getsockname()[1])
    server.join(10)
    session = PeerSession()
    try:
        offer = FileOffer("cut-record", "cut.bin", len(payload), "0" * 64, "application/x", 0)
        client.raw.sendall(client.records(session.send(Hello(name="alice")) +
                                          session.send(offer)))
        while not any(isinstance(event, FileAccept) for event in client.events(session)):
            pass
        head = client.records(data_frame_header(len(payload)) + payload[:10 * 1024])
        cut = client.records(payload[10 * 1024:26 * 1024])  # one 16 KiB record
        rest = client.records(payload[26 * 1024:]) + client.records(
            encode_event(FileDone("cut-record")))
        client.raw.sendall(head + cut[:8 * 1024])  # Bob reads it all: a record and a half
        time.sleep(0.5)
        client.raw.sendall(cut[8 * 1024:] + rest)  # less than the 90 KiB the frame lacked
        assert done.wait(5), f"the end of the frame was left unread ({closed})"
    finally:
        client.raw.close()
        stop_served(channels, listener)
