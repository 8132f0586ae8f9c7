"""A file offered again on a new connection while the old one is still receiving it.

A sender whose link broke mid-file reconnects and offers the file again; the receiver may not have
seen the old connection close yet (CI caught it: a resumed file "arrived damaged"). Two writers on
one partial file must never happen. Real PeerWorker for Bob over real TLS on loopback; Alice is
two bare TLS clients writing frames by hand, so the old connection stays open exactly as long as
the test wants.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

from chimera_tk.net.peer.files import partial_path
from chimera_tk.net.peer.protocol import (
    Ack,
    FileAccept,
    FileDone,
    FileOffer,
    Hello,
    PeerSession,
    data_frame_header,
    encode_event,
)
from chimera_tk.net.peer.tls import TlsFiles, client_context
from chimera_tk.store.records import utc_now_ms
from tests.pki_factory import TeamCA
from tests.test_peer_link import Node

ALICE, BOB = 1001, 2002
MiB = 1 << 20


class RawSender:
    """One connection of Alice's, frames written by hand."""

    def __init__(self, tls: TlsFiles, port: int) -> None:
        self.sock = client_context(tls).wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname=None)
        self.sock.settimeout(10)
        self.session = PeerSession()
        self.events: list[object] = []
        self.sock.sendall(self.session.send(Hello(name="alice")))

    def offer(self, offer: FileOffer) -> int:
        self.sock.sendall(self.session.send(offer))
        accept = self.wait_for(FileAccept)
        assert isinstance(accept, FileAccept)
        return accept.offset

    def send_chunks(self, data: bytes) -> None:
        for start in range(0, len(data), MiB):
            piece = data[start:start + MiB]
            self.sock.sendall(data_frame_header(len(piece)) + piece)

    def wait_for(self, kind: type) -> object:
        while True:
            for event in self.events:
                if isinstance(event, kind):
                    self.events.remove(event)
                    return event
            received = self.sock.recv(65536)
            if not received:
                raise ConnectionError("Bob closed the connection")
            self.session.receive_data(received)
            while (event := self.session.next_event()) is not None:
                self.events.append(event)

    def closed_by_peer(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.1)
        try:
            while time.monotonic() < deadline:
                try:
                    if not self.sock.recv(65536):
                        return True
                except TimeoutError:
                    continue  # still open
                except (ssl.SSLError, OSError):
                    return True  # reset
            return False
        finally:
            self.sock.settimeout(10)


def _wait_for_size(path: Path, size: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {size} bytes")


def test_a_file_offered_again_on_a_new_connection_arrives_whole(tmp_path: Path) -> None:
    ca = TeamCA.create()
    bob = Node(tmp_path / "bob", BOB, ca)
    alice_tls = ca.write_identity(tmp_path / "alice", ALICE)
    payload = os.urandom(6 * MiB)
    offer = FileOffer(str(uuid.uuid4()), "report.bin", len(payload),
                      hashlib.sha256(payload).hexdigest(), "application/octet-stream",
                      utc_now_ms())
    old = new = None
    try:
        old = RawSender(alice_tls, bob.worker.port)
        assert old.offer(offer) == 0
        old.send_chunks(payload[:2 * MiB])
        _wait_for_size(partial_path(bob.downloads, offer.uid), 2 * MiB)

        new = RawSender(alice_tls, bob.worker.port)  # the old connection is still open
        offset = new.offer(offer)
        # Bob let go of the old connection before he answered: it is closed, and the new one
        # resumes exactly where the old one's writes ended
        assert old.closed_by_peer(timeout=5), "the old connection was left open"
        assert offset == 2 * MiB
        with_late_bytes = payload[offset:offset + 4096]
        # the old sender goes on writing: nothing of it may reach the file any more
        with contextlib.suppress(ssl.SSLError, OSError):
            old.sock.sendall(data_frame_header(len(with_late_bytes)) + with_late_bytes)
        new.send_chunks(payload[offset:])
        new.sock.sendall(encode_event(FileDone(offer.uid)))
        ack = new.wait_for(Ack)
        assert isinstance(ack, Ack) and ack.uid == offer.uid
    finally:
        for sender in (old, new):
            if sender is not None:
                sender.sock.close()
        bob.close()
    finals = [path for path in bob.downloads.iterdir() if path.is_file()]
    assert [path.name for path in finals] == ["report.bin"]
    assert finals[0].read_bytes() == payload
