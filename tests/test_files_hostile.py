"""Files that try to hurt the receiver: damaged, empty, colliding, huge, or a disk that fills up.

Real peer workers over real TLS on loopback, real SQLite, real files; the disk-space tests mount a
small tmpfs as the receiver's downloads folder (root only, unmounted in teardown), and the
disk-that-fills-up test runs two real ``chimera --headless`` in network namespaces. Hostile names
alone are covered in test_peer_files.py and test_peer_link.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chimera_tk.config import LanSettings
from chimera_tk.errors import RemoteProtocolError
from chimera_tk.net.peer.files import PARTIAL_DIR, move_into_place, partial_path
from chimera_tk.net.peer.protocol import (
    Ack,
    FileAccept,
    FileDone,
    FileOffer,
    FileReject,
    Hello,
    PeerSession,
)
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns
from tests.pki_factory import TeamCA
from tests.test_peer_link import Node

ALICE, BOB, CAROL = 1001, 2002, 3003
MiB = 1 << 20


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def nodes(tmp_path: Path, ca: TeamCA) -> Iterator[Callable[[str, int], Node]]:
    made: dict[str, Node] = {}

    def make(name: str, user_id: int) -> Node:
        made[name] = Node(tmp_path / name, user_id, ca)
        return made[name]

    yield make
    for node in made.values():
        node.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _queue_file(sender: Node, to: Node, path: Path, *, name: str | None = None,
                sha256: str | None = None) -> int:
    """A file message claimed for the LAN but not yet handed to the worker (see _submit)."""
    data = path.read_bytes()
    sender.store.dialogs.ensure(to.user_id, "user", f"user{to.user_id}")
    with sender.store.transaction():
        file = sender.store.files.create(name or path.name, len(data),
                                         sha256=sha256 or _sha(data),
                                         mime="application/octet-stream",
                                         path=str(path.resolve()), state="complete")
        message = sender.store.messages.add_outgoing(to.user_id, "", file_id=file.id)
        sender.store.outbox.enqueue(message.id)
    sender.store.outbox.claim(message.id, "lan")
    return message.id


def _submit(sender: Node, to: Node, message_id: int) -> None:
    sender.worker.learn_address(to.user_id, "127.0.0.1", to.worker.port)
    sender.worker.submit(to.user_id, message_id)


def _finals(node: Node) -> list[str]:
    return sorted(p.name for p in node.downloads.iterdir() if p.is_file())


def _partials(node: Node) -> list[Path]:
    folder = node.downloads / PARTIAL_DIR
    return list(folder.iterdir()) if folder.exists() else []


def _outbox_error(node: Node, message_id: int) -> str:
    return node.store.outbox.get(message_id).last_error or ""


# -- the protocol: a receiver may refuse a finished file -------------------------------------------


def _joined_pair() -> tuple[PeerSession, PeerSession]:
    sender, receiver = PeerSession(), PeerSession()
    for one, other in ((sender, receiver), (receiver, sender)):
        other.receive_data(one.send(Hello()))
        assert isinstance(other.next_event(), Hello)
    return sender, receiver


def test_file_reject_answering_file_done_reaches_the_sender_as_an_event() -> None:
    sender, receiver = _joined_pair()
    offer = FileOffer("uid-1", "a.bin", 3, _sha(b"abc"), "application/octet-stream", 0)
    receiver.receive_data(sender.send(offer))
    assert receiver.next_event() == offer
    sender.receive_data(receiver.accept_file(offer, 0))
    assert sender.next_event() == FileAccept("uid-1", 0)
    sender.start_sending_file("uid-1", 0, 3)
    receiver.receive_data(sender.data_header(3) + b"abc" + sender.finish_sending_file())
    receiver.next_event()
    assert receiver.next_event() == FileDone("uid-1")
    sender.receive_data(receiver.send(FileReject("uid-1", "the disk is full")))
    assert sender.next_event() == FileReject("uid-1", "the disk is full")
    # once answered, a second refusal of the same file is the peer breaking the rules
    sender.receive_data(receiver.send(FileReject("uid-1", "again")))
    with pytest.raises(RemoteProtocolError):
        sender.next_event()


def test_an_ack_closes_the_file_so_a_late_reject_is_refused() -> None:
    sender, receiver = _joined_pair()
    offer = FileOffer("uid-2", "b.bin", 0, _sha(b""), "application/octet-stream", 0)
    receiver.receive_data(sender.send(offer))
    receiver.next_event()
    sender.receive_data(receiver.accept_file(offer, 0))
    sender.next_event()
    sender.start_sending_file("uid-2", 0, 0)
    sender.finish_sending_file()
    sender.receive_data(receiver.send(Ack("uid-2")))
    assert sender.next_event() == Ack("uid-2")
    sender.receive_data(receiver.send(FileReject("uid-2", "late")))
    with pytest.raises(RemoteProtocolError):
        sender.next_event()


# -- damaged, empty and colliding files ------------------------------------------------------------


def _deliver_like_the_router(sender: Node, to: Node, message_id: int) -> tuple[str, int]:
    """Submit, and submit again whenever the worker puts the message back in the queue (the
    router's outbox tick does that in the app); returns (final state, submissions)."""
    submissions = 0
    while True:
        sender.events.clear()
        _submit(sender, to, message_id)
        submissions += 1
        state = sender.finished(message_id).message.state
        if state != "queued" or submissions > 10:
            return state, submissions
        sender.store.outbox.claim(message_id, "lan")


def test_file_changed_after_it_was_queued_fails_after_two_resends_with_the_reason(
        nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    alice, bob = nodes("alice", ALICE), nodes("bob", BOB)
    source = tmp_path / "draft.txt"
    source.write_bytes(b"the version Alice meant to send")
    message_id = _queue_file(alice, bob, source, sha256=_sha(b"an older version"))
    with caplog.at_level(logging.WARNING, logger="chimera_tk.net.peer.worker"):
        state, submissions = _deliver_like_the_router(alice, bob, message_id)
    # before: the refusal broke the sender's protocol state, the link dropped and the file was
    # sent again and again, forever
    assert (state, submissions) == ("failed", 3)
    assert _outbox_error(alice, message_id) == (
        "refused by the receiver: the file arrived damaged (SHA-256 mismatch); it was discarded")
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 3
    assert _finals(bob) == [] and _partials(bob) == []
    # the link survived the refusal: a text still goes through on it
    assert alice.finished(alice.send_text(bob, "still here?")).message.state == "delivered"


def test_empty_file_arrives_as_an_empty_file(nodes, tmp_path: Path) -> None:
    alice, bob = nodes("alice", ALICE), nodes("bob", BOB)
    source = tmp_path / "empty.log"
    source.write_bytes(b"")
    message_id = _queue_file(alice, bob, source)
    _submit(alice, bob, message_id)
    assert alice.finished(message_id).message.state == "delivered"
    assert _finals(bob) == ["empty.log"]
    assert (bob.downloads / "empty.log").stat().st_size == 0
    received = bob.store.messages.latest_page(ALICE, 1)[0]
    assert bob.store.files.get(received.file_id).state == "complete"


def test_same_name_from_two_peers_at_once_keeps_every_file_and_the_users_own(
        nodes, tmp_path: Path) -> None:
    alice, carol, bob = nodes("alice", ALICE), nodes("carol", CAROL), nodes("bob", BOB)
    (bob.downloads / "report.pdf").write_bytes(b"Bob's own report")
    sent: list[tuple[Node, int, bytes]] = []
    for sender in (alice, carol):
        for round_ in range(4):
            source = tmp_path / sender.root.name / str(round_) / "report.pdf"
            source.parent.mkdir(parents=True)
            source.write_bytes(os.urandom(200_000 + round_))
            sent.append((sender, _queue_file(sender, bob, source), source.read_bytes()))
    for sender, message_id, _data in sent:
        _submit(sender, bob, message_id)
    for sender, message_id, _data in sent:
        assert sender.finished(message_id).message.state == "delivered"
    assert (bob.downloads / "report.pdf").read_bytes() == b"Bob's own report"
    finals = _finals(bob)
    assert len(finals) == 9 and set(finals) == {"report.pdf"} | {
        f"report ({n}).pdf" for n in range(1, 9)}
    stored = {Path(bob.store.files.get(m.file_id).path).read_bytes()
              for dialog in (ALICE, CAROL) for m in bob.store.messages.latest_page(dialog, 10)}
    assert stored == {data for _sender, _id, data in sent}
    assert _partials(bob) == []


def test_final_name_is_taken_only_with_the_whole_file(tmp_path: Path) -> None:
    partial = tmp_path / PARTIAL_DIR / "x.part"
    partial.parent.mkdir()
    partial.write_bytes(b"every byte")
    (tmp_path / "a.txt").write_bytes(b"someone else's")
    seen: list[Path] = []

    def before(final: Path) -> None:
        assert not final.exists()  # no empty placeholder under the final name
        seen.append(final)

    final = move_into_place(partial, tmp_path, "a.txt", before=before)
    assert seen == [final] and final.name == "a (1).txt"
    assert final.read_bytes() == b"every byte" and not partial.exists()
    assert (tmp_path / "a.txt").read_bytes() == b"someone else's"


def test_file_renamed_before_a_crash_is_found_not_saved_twice(nodes, tmp_path: Path) -> None:
    """Bob's process died after giving the file its final name and before committing that:
    his database still says 'transferring'; Alice repeats her offer after the restart."""
    alice, bob = nodes("alice", ALICE), nodes("bob", BOB)
    data = os.urandom(300_000)
    source = tmp_path / "plan.pdf"
    source.write_bytes(data)
    message_id = _queue_file(alice, bob, source)
    uid = alice.store.messages.get(message_id).uid
    final = bob.downloads / "plan.pdf"
    final.write_bytes(data)
    partial = partial_path(bob.downloads, uid)
    partial.parent.mkdir()
    os.link(final, partial)  # killed between the link and the unlink of the partial
    bob.store.dialogs.ensure(ALICE, "user", "alice")
    with bob.store.transaction():
        file = bob.store.files.create("plan.pdf", len(data), sha256=_sha(data),
                                      state="transferring", path=str(final.resolve()))
        bob.store.messages.receive(IncomingMessage(
            dialog_id=ALICE, uid=uid, sender_id=ALICE, sender_name="alice", text="",
            sent_at=utc_now_ms(), transport="lan", file_id=file.id))
    _submit(alice, bob, message_id)
    assert alice.finished(message_id).message.state == "delivered"
    assert _finals(bob) == ["plan.pdf"] and _partials(bob) == []
    assert bob.store.files.get(file.id).state == "complete"
    assert final.read_bytes() == data


# -- a small disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, int], Path]]:
    """Mount an N MiB tmpfs at a given folder (root only); unmounted in teardown."""
    mounted: list[Path] = []

    def mount(folder: Path, mib: int) -> Path:
        if os.geteuid() != 0:
            pytest.fail("this test mounts a tmpfs: run it as root, as CI does", pytrace=False)
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs",
                        str(folder)], check=True, capture_output=True, text=True)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def _free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@pytest.mark.netns  # needs root (mount), like the namespace tests
def test_offers_bigger_than_the_free_space_are_refused_up_front_with_a_reason(
        nodes, small_disk, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bob_root = tmp_path / "bob"
    small_disk(bob_root / "downloads", 8)
    alice, bob, carol = nodes("alice", ALICE), nodes("bob", BOB), nodes("carol", CAROL)
    free_before = _free(bob.downloads)
    # Carol declares 4 GiB (she has no such file: the offer alone must be refused)
    uid = str(uuid.uuid4())
    carol.worker.learn_address(BOB, "127.0.0.1", bob.worker.port)
    channel = carol.worker.connect(BOB)
    waiter = carol.worker.expect(BOB, uid)
    with caplog.at_level(logging.WARNING, logger="chimera_tk.net.peer.worker"):
        channel.send(FileOffer(uid, "huge.iso", 4 << 30, "0" * 64, "application/x-iso9660-image",
                               utc_now_ms()))
        answer = waiter.wait(10)
        assert answer == FileReject(uid, "not enough free disk space on the receiver")
        # a real 20 MiB file from Alice: refused, her message fails with the reason
        source = tmp_path / "video.mp4"
        source.write_bytes(os.urandom(20 * MiB))
        message_id = _queue_file(alice, bob, source)
        _submit(alice, bob, message_id)
        assert alice.finished(message_id).message.state == "failed"
    assert _outbox_error(alice, message_id) == (
        "refused by the receiver: not enough free disk space on the receiver")
    refusals = [r.getMessage() for r in caplog.records if "refused file" in r.getMessage()]
    assert len(refusals) == 2 and all("not enough free disk space" in r for r in refusals)
    assert _finals(bob) == [] and _partials(bob) == []
    assert _free(bob.downloads) == free_before
    assert not channel.closed  # a refusal is an answer, not a broken link
    assert alice.finished(alice.send_text(bob, "sent you a video")).message.state == "delivered"


# -- a disk that fills up in the middle of a transfer (real processes, namespaces) ----------------


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Take all but ``leave_bytes`` of the folder's file system with one file."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as out:
        block = b"\xff" * MiB
        while _free(folder) > leave_bytes + MiB:
            out.write(block)
            out.flush()
    return filler


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.netns
def test_disk_filling_up_mid_transfer_fails_cleanly_on_both_sides(
        small_disk, tmp_path: Path, ca: TeamCA) -> None:
    require_netns()
    with Network(("a", "b")) as network:
        alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca, lan=LanSettings())
        bob = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca, lan=LanSettings())
        # 96 MiB: the 20 MiB offer passes the free-space check (64 MiB reserve), then
        # something else on Bob's machine takes the space while the bytes flow
        downloads = small_disk(bob.paths.downloads, 96)
        # ~20 s for 20 MiB, so the disk can be filled while the transfer is under way
        network["a"].run(["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "8mbit",
                          "burst", "32kb", "latency", "400ms"])
        source = tmp_path / "dataset.bin"
        source.write_bytes(os.urandom(20 * MiB))
        bob.start_headless()
        alice.start_headless()
        free_empty = _free(downloads)
        outcome: dict[str, subprocess.CompletedProcess] = {}
        sender = threading.Thread(target=lambda: outcome.update(
            sent=alice.send(BOB, file=source, wait=90)))
        sender.start()
        partial_dir = downloads / PARTIAL_DIR

        def transfer_under_way() -> bool:
            parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
            return bool(parts) and parts[0].stat().st_size >= 2 * MiB

        _wait(transfer_under_way, 60, "the transfer to start")
        filler = _fill(downloads, leave_bytes=2 * MiB)
        filler_size = filler.stat().st_size
        sender.join(150)
        result = outcome["sent"]
        assert result.returncode != 0
        assert "not delivered" in result.stderr and "disk space" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        bob.wait_for_log("the disk is full")
        assert [p.name for p in downloads.iterdir() if p.is_file()] == ["filler.bin"]
        assert not partial_dir.exists() or not list(partial_dir.iterdir())
        # the partial file's space is back: only the filler is used
        assert _free(downloads) >= free_empty - filler_size - 64 * 1024
        [received] = [m for m in bob.export() if m["direction"] == "in"]
        assert received["file"]["state"] == "failed" and received["file"]["path"] is None
        filler.unlink()
        assert _free(downloads) >= free_empty - 64 * 1024
        network["a"].run(["tc", "qdisc", "del", "dev", "eth0", "root"])
        after = alice.send(BOB, "the dataset did not fit, sorry")
        assert after.returncode == 0, after.stderr
        assert any(m["text"] == "the dataset did not fit, sorry" for m in bob.export())
        assert alice.stop() == 0 and bob.stop() == 0
