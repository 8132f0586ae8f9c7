"""A DATA frame that trickles in slower than the receive low-water mark fills: real TLS over
loopback, the real Channel on the receiving side, a bare TLS client writing frames by hand."""

from __future__ import annotations

import socket
import ssl
import threading
import time
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
from chimera_tk.net.peer.tls import client_context, server_context
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

    def on_event(channel: Channel, event: object) -> None:
        received.append(event)
        if isinstance(event, Hello):
            channel.send(Hello(name="bob"))
        elif isinstance(event, FileOffer):
            channel.send_raw(lambda session: session.accept_file(event, 0))
        elif isinstance(event, FileDone):
            done.set()

    def on_closed(_channel: Channel, reason: str) -> None:
        closed.append(reason)
        done.set()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    channels: list[Channel] = []

    def serve() -> None:
        raw, address = listener.accept()
        sock = server_context(bob_tls).wrap_socket(raw, server_side=True)
        channel = Channel(sock, ALICE, address[0], outgoing=False, on_event=on_event,
                          on_closed=on_closed, idle_timeout=IDLE_TIMEOUT_S)
        channels.append(channel)
        channel.start()

    server = threading.Thread(target=serve)
    server.start()
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
        for channel in channels:
            channel.close("test over")
            assert channel.join(5)
        listener.close()


def _drain(client, session: PeerSession) -> list[object]:
    session.receive_data(client.recv(65536))
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events
