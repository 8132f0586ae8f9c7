"""The peer link over real TLS on loopback: texts, files, identity checks, refusals."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.events import MessageChanged, MessageStored, PeerUnavailable, PeerVerified
from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
from chimera_tk.store import Store
from tests.event_recorder import EventRecorder
from tests.pki_factory import TeamCA

ALICE, BOB = 1001, 2002


class Node:
    """One side: a profile folder, its store, its peer worker, and the events it emitted."""

    def __init__(self, root: Path, user_id: int, ca: TeamCA, **identity_options: object) -> None:
        self.user_id = user_id
        self.root = root
        self.recorder = EventRecorder()
        self.tls = ca.write_identity(root, user_id, **identity_options)
        self.db = root / "chimera.db"
        self.downloads = root / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(self.db)
        self.worker = PeerWorker(user_id, f"user{user_id}", self.tls, self.db, self.downloads,
                                 self.recorder, host="127.0.0.1", port=0,
                                 limits=PeerLimits(ack_timeout_s=5, retry_after_s=0))
        self.worker.start()

    @property
    def events(self) -> list[object]:
        return self.recorder.events

    def wait_for(self, predicate, timeout: float = 10.0) -> object:
        return self.recorder.wait_for(predicate, timeout)

    def send_text(self, to: Node, text: str) -> int:
        self.store.dialogs.ensure(to.user_id, "user", f"user{to.user_id}")
        with self.store.transaction():
            message = self.store.messages.add_outgoing(to.user_id, text)
            self.store.outbox.enqueue(message.id)
        self.store.outbox.claim(message.id, "lan")
        self.worker.learn_address(to.user_id, "127.0.0.1", to.worker.port)
        self.worker.submit(to.user_id, message.id)
        return message.id

    def send_file(self, to: Node, path: Path, name: str | None = None) -> int:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.store.dialogs.ensure(to.user_id, "user", f"user{to.user_id}")
        with self.store.transaction():
            file = self.store.files.create(name or path.name, path.stat().st_size, sha256=digest,
                                           mime="application/octet-stream",
                                           path=str(path.resolve()), state="complete")
            message = self.store.messages.add_outgoing(to.user_id, "", file_id=file.id)
            self.store.outbox.enqueue(message.id)
        self.store.outbox.claim(message.id, "lan")
        self.worker.learn_address(to.user_id, "127.0.0.1", to.worker.port)
        self.worker.submit(to.user_id, message.id)
        return message.id

    def finished(self, message_id: int) -> MessageChanged:
        return self.wait_for(lambda e: isinstance(e, MessageChanged)
                             and e.message.id == message_id
                             and e.message.state in ("delivered", "failed", "queued"))

    def close(self) -> None:
        self.worker.stop()
        assert self.worker.join(10)
        self.store.close()


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@contextlib.contextmanager
def running_pair(root: Path, ca: TeamCA | None = None) -> Iterator[tuple[Node, Node]]:
    """Alice and Bob, each with a peer worker on loopback, trusting one team CA."""
    ca = ca or TeamCA.create()
    alice, bob = Node(root / "alice", ALICE, ca), Node(root / "bob", BOB, ca)
    try:
        yield alice, bob
    finally:
        alice.close()
        bob.close()


@pytest.fixture
def pair(tmp_path: Path, ca: TeamCA) -> Iterator[tuple[Node, Node]]:
    with running_pair(tmp_path, ca) as nodes:
        yield nodes


def test_text_is_delivered_once_stored_on_both_sides_and_acked(pair) -> None:
    alice, bob = pair
    message_id = alice.send_text(bob, "olá, Bob")
    assert alice.finished(message_id).message.state == "delivered"
    sent = alice.store.messages.get(message_id)
    assert (sent.state, sent.transport) == ("delivered", "lan")
    stored = bob.wait_for(lambda e: isinstance(e, MessageStored)).message
    assert (stored.uid, stored.text, stored.dialog_id, stored.sender_id) == (
        sent.uid, "olá, Bob", ALICE, ALICE)
    assert bob.store.messages.count(ALICE) == 1
    verified = bob.wait_for(lambda e: isinstance(e, PeerVerified))
    assert verified.user_id == ALICE and verified.name == f"user{ALICE}"


def test_one_connection_is_reused_for_many_messages(pair) -> None:
    alice, bob = pair
    ids = [alice.send_text(bob, f"message {i}") for i in range(50)]
    for message_id in ids:
        assert alice.finished(message_id).message.state == "delivered"
    assert bob.store.messages.count(ALICE) == 50
    connects = [e for e in bob.events if isinstance(e, PeerVerified)]
    assert len(connects) == 1


def test_replies_travel_back_over_the_same_connection(pair) -> None:
    alice, bob = pair
    assert alice.finished(alice.send_text(bob, "ping")).message.state == "delivered"
    bob.wait_for(lambda e: isinstance(e, PeerVerified))
    # bob has no address for alice: only the connection alice opened can carry the reply
    bob.store.dialogs.ensure(ALICE, "user", "alice")
    with bob.store.transaction():
        reply = bob.store.messages.add_outgoing(ALICE, "pong")
        bob.store.outbox.enqueue(reply.id)
    bob.store.outbox.claim(reply.id, "lan")
    bob.worker.submit(ALICE, reply.id)
    assert bob.finished(reply.id).message.state == "delivered"
    assert alice.store.messages.latest_page(BOB, 5)[-1].text == "pong"


def test_one_mebibyte_text_arrives_whole(pair) -> None:
    alice, bob = pair
    text = "".join(chr(0x20 + (i * 7919) % 0x2000) for i in range(1_000_000))
    assert alice.finished(alice.send_text(bob, text)).message.state == "delivered"
    assert bob.store.messages.latest_page(ALICE, 1)[0].text == text


def test_file_arrives_identical_under_a_safe_name(pair, tmp_path: Path) -> None:
    alice, bob = pair
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    message_id = alice.send_file(bob, source)
    assert alice.finished(message_id).message.state == "delivered"
    received = bob.store.messages.latest_page(ALICE, 1)[0]
    file = bob.store.files.get(received.file_id)
    assert file.state == "complete" and file.name == "report.bin"
    assert Path(file.path).read_bytes() == source.read_bytes()
    assert Path(file.path).parent == bob.downloads.resolve()
    assert not any((bob.downloads / ".partial").iterdir())


def test_same_file_name_twice_gets_a_suffix(pair, tmp_path: Path) -> None:
    alice, bob = pair
    source = tmp_path / "notes.txt"
    source.write_text("first")
    assert alice.finished(alice.send_file(bob, source)).message.state == "delivered"
    source.write_text("second version")
    assert alice.finished(alice.send_file(bob, source)).message.state == "delivered"
    assert sorted(p.name for p in bob.downloads.iterdir() if p.is_file()) == [
        "notes (1).txt", "notes.txt"]


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/abs/path", "CON", "x" * 3000,
                                     "nul\x00byte", "new\nline"])
def test_hostile_offered_names_are_saved_inside_downloads(pair, tmp_path: Path,
                                                          hostile: str) -> None:
    alice, bob = pair
    source = tmp_path / "payload"
    source.write_bytes(b"not what the name says")
    message_id = alice.send_file(bob, source, name=hostile)
    assert alice.wait_for(lambda e: isinstance(e, MessageChanged) and e.message.id == message_id
                          and e.message.state == "delivered")
    saved = [p for p in bob.downloads.rglob("*") if p.is_file() and ".partial" not in p.parts]
    assert len(saved) == 1
    assert saved[0].parent == bob.downloads
    assert saved[0].read_bytes() == b"not what the name says"


def test_caller_refuses_a_callee_with_another_id(tmp_path: Path, ca: TeamCA) -> None:
    alice = Node(tmp_path / "alice", ALICE, ca)
    impostor = Node(tmp_path / "carol", 3003, ca)  # valid team certificate, different id
    try:
        alice.store.dialogs.ensure(BOB, "user", "bob")
        with alice.store.transaction():
            message = alice.store.messages.add_outgoing(BOB, "for Bob only")
            alice.store.outbox.enqueue(message.id)
        alice.store.outbox.claim(message.id, "lan")
        alice.worker.learn_address(BOB, "127.0.0.1", impostor.worker.port)  # c announced B
        alice.worker.submit(BOB, message.id)
        refusal = alice.wait_for(lambda e: isinstance(e, PeerUnavailable))
        assert "identity mismatch" in refusal.reason
        assert alice.finished(message.id).message.state == "queued"
        time.sleep(0.3)
        assert impostor.store.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    finally:
        alice.close()
        impostor.close()


def _raw_client(port: int, files, *, version=ssl.TLSVersion.TLSv1_3):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if files is not None:
        context.load_cert_chain(files.certificate_chain, files.key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw)


def _refused(port: int, files, **kw) -> bool:
    """True when the server will not talk to this client (handshake or first read fails)."""
    try:
        sock = _raw_client(port, files, **kw)
        sock.settimeout(3)
        data = sock.recv(100)
        sock.close()
        return data == b""
    except (ssl.SSLError, OSError):
        return True


def test_server_refuses_foreign_missing_expired_and_tls12_clients(pair, tmp_path: Path,
                                                                  ca: TeamCA) -> None:
    _, bob = pair
    foreign = TeamCA.create("Other Team").write_identity(tmp_path / "foreign", ALICE)
    expired = ca.write_identity(tmp_path / "expired", ALICE, days=1, starts_in_days=-3)
    future = ca.write_identity(tmp_path / "future", ALICE, starts_in_days=2)
    good = ca.write_identity(tmp_path / "good", ALICE)
    assert _refused(bob.worker.port, foreign)
    assert _refused(bob.worker.port, None)
    assert _refused(bob.worker.port, expired)
    assert _refused(bob.worker.port, future)
    assert _refused(bob.worker.port, good, version=ssl.TLSVersion.TLSv1_2)
    assert not _refused(bob.worker.port, good)  # the same client with a good certificate
    assert bob.worker.refused_handshakes >= 5
