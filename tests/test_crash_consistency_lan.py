"""The moments a SIGKILL can hit, one by one, over the real peer link on loopback.

The random-kill run (test_crash_consistency_netns.py) hits these windows by chance; here each is
set up on purpose: the receiver committed but its ACK never reached the sender (the sender died,
or the link broke), so the sender, restarted, sends the same uid again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.events import MessageStored, TransferProgress
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from tests.test_peer_link import Node, running_pair

ALICE, BOB = 1001, 2002


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with running_pair(tmp_path) as nodes:
        yield nodes


def _restarted_sender_sends(alice: Node, bob: Node, message_id: int) -> str:
    """What a restarted Alice does: recover the claimed row, claim it again, submit."""
    assert alice.store.outbox.recover_interrupted() == [message_id]
    alice.store.outbox.claim(message_id, "lan")
    alice.worker.learn_address(BOB, "127.0.0.1", bob.worker.port)
    alice.worker.submit(BOB, message_id)
    return alice.finished(message_id).message.state


def _stored_at_bob_already(bob: Node, uid: str, text: str, file_id: int | None = None) -> None:
    bob.store.dialogs.ensure(ALICE, "user", "alice")
    bob.store.messages.receive(IncomingMessage(
        dialog_id=ALICE, uid=uid, sender_id=ALICE, sender_name="alice", text=text,
        sent_at=utc_now_ms(), transport="lan", file_id=file_id))


def test_text_whose_ack_was_lost_is_stored_once_when_sent_again(pair) -> None:
    alice, bob = pair
    alice.store.dialogs.ensure(BOB, "user", "bob")
    with alice.store.transaction():
        message = alice.store.messages.add_outgoing(BOB, "exactly once, please")
        alice.store.outbox.enqueue(message.id)
    alice.store.outbox.claim(message.id, "lan")  # Alice was sending it when she died
    _stored_at_bob_already(bob, message.uid, "exactly once, please")
    assert _restarted_sender_sends(alice, bob, message.id) == "delivered"
    assert bob.store.messages.count(ALICE) == 1
    assert not [e for e in bob.events if isinstance(e, MessageStored)]  # nothing new to show
    assert alice.store.outbox.pending() == []


def test_file_whose_ack_was_lost_is_not_sent_again_nor_saved_twice(pair, tmp_path: Path) -> None:
    alice, bob = pair
    data = os.urandom(500_000)
    source = tmp_path / "scan.pdf"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    alice.store.dialogs.ensure(BOB, "user", "bob")
    with alice.store.transaction():
        file = alice.store.files.create("scan.pdf", len(data), sha256=digest,
                                        path=str(source), state="complete")
        message = alice.store.messages.add_outgoing(BOB, "", file_id=file.id)
        alice.store.outbox.enqueue(message.id)
    alice.store.outbox.claim(message.id, "lan")
    saved = bob.downloads / "scan.pdf"  # Bob committed the file, then the ACK was lost
    saved.write_bytes(data)
    with bob.store.transaction():
        bobs_file = bob.store.files.create("scan.pdf", len(data), sha256=digest,
                                           path=str(saved.resolve()), state="complete")
        _stored_at_bob_already(bob, message.uid, "", bobs_file.id)
    assert _restarted_sender_sends(alice, bob, message.id) == "delivered"
    assert sorted(p.name for p in bob.downloads.iterdir() if p.is_file()) == ["scan.pdf"]
    assert not [e for e in bob.events if isinstance(e, TransferProgress)]  # no byte resent
    assert bob.store.messages.count(ALICE) == 1
