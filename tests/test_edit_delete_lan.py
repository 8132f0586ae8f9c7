"""EDIT and DELETE over the real peer link (mutual TLS on loopback), and what a peer may change.

The two sides are real PeerWorkers with real stores (tests/test_peer_link.py's Node). The
editor's LAN transport is a small adapter to the worker instead of the LanService, whose
presence comes from UDP discovery; that whole path runs in test_edit_delete_netns.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.editing import MessageEditor
from chimera_tk.errors import RemoteProtocolError
from chimera_tk.events import MessageChanged, MessageStored, PeerUnavailable
from chimera_tk.net.peer.changes import apply_peer_change
from chimera_tk.net.peer.protocol import Delete, Edit
from chimera_tk.store import Store
from chimera_tk.store.records import IncomingMessage, utc_now_ms
from tests.pki_factory import TeamCA
from tests.test_peer_link import ALICE, BOB, Node, running_pair

CAROL = 3003


class PeerAdapter:
    """The editor's "lan" transport straight onto a PeerWorker; ``online`` plays presence."""

    name = "lan"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.online = True

    def can_reach(self, dialog) -> bool:
        return self.online

    def submit_change(self, change, message) -> None:
        self.node.worker.submit_change(message.dialog_id, message.id, change.version)


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def pair(tmp_path: Path, ca: TeamCA) -> Iterator[tuple[Node, Node]]:
    with running_pair(tmp_path, ca) as nodes:
        yield nodes


def _editor(node: Node) -> tuple[MessageEditor, PeerAdapter]:
    adapter = PeerAdapter(node)
    return MessageEditor(node.store, lambda _e: None, {"lan": adapter}.get), adapter


def _delivered(alice: Node, bob: Node, text: str) -> int:
    message_id = alice.send_text(bob, text)
    assert alice.finished(message_id).message.state == "delivered"
    return message_id


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_an_edit_and_a_delete_reach_the_peer_and_are_acknowledged(pair) -> None:
    alice, bob = pair
    editor, _ = _editor(alice)
    first = _delivered(alice, bob, "meet at 5")
    second = _delivered(alice, bob, "bring the keys")
    uid_first, uid_second = (alice.store.messages.get(i).uid for i in (first, second))
    editor.edit(first, "meet at 6")
    changed = bob.wait_for(lambda e: isinstance(e, MessageChanged)
                           and e.message.uid == uid_first).message
    assert changed.text == "meet at 6" and changed.edited_at is not None
    assert _wait(lambda: alice.store.changes.find(first) is None)  # completed on the ACK
    editor.delete(second, for_everyone=True)
    gone = bob.wait_for(lambda e: isinstance(e, MessageChanged)
                        and e.message.uid == uid_second).message
    assert gone.deleted and not gone.deleted_here and gone.text == ""
    assert _wait(lambda: alice.store.changes.pending() == [])
    assert [m.text for m in bob.store.messages.search("6")] == ["meet at 6"]
    assert bob.store.messages.search("keys") == []


def test_a_forged_edit_of_someone_elses_message_is_refused_and_counted(pair) -> None:
    alice, bob = pair
    message_id = _delivered(alice, bob, "the original")
    uid = alice.store.messages.get(message_id).uid
    bob.wait_for(lambda e: isinstance(e, MessageStored))
    # Bob rewrites the message Alice wrote to him, and asks her to take his version
    bob.worker.learn_address(ALICE, "127.0.0.1", alice.worker.port)
    channel = bob.worker.connect(ALICE)
    channel.send(Edit(uid, "forged by Bob", utc_now_ms()))
    assert _wait(lambda: alice.worker.refused_changes == 1)
    assert alice.store.messages.get(message_id).text == "the original"
    assert _wait(lambda: channel.closed)  # a protocol violation ends the connection


def test_a_peer_may_change_only_what_it_wrote_to_us(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "c.db")
    store.dialogs.ensure(CAROL, "user", "Carol")
    store.messages.receive(IncomingMessage(CAROL, "carol-1", CAROL, "Carol", "hi", 1, "lan"))
    with pytest.raises(RemoteProtocolError):
        apply_peer_change(store, BOB, Edit("carol-1", "Bob's words", 5))
    with pytest.raises(RemoteProtocolError):
        apply_peer_change(store, BOB, Delete("carol-1"))
    assert apply_peer_change(store, BOB, Delete("never-seen")) is None  # acknowledged only
    assert apply_peer_change(store, CAROL, Edit("carol-1", "hello", 5)).text == "hello"
    store.close()


def test_an_edit_made_while_the_peer_is_away_is_delivered_when_it_is_back(
        pair, tmp_path: Path, ca: TeamCA) -> None:
    alice, bob = pair
    editor, presence = _editor(alice)
    message_id = _delivered(alice, bob, "see you at noon")
    uid = alice.store.messages.get(message_id).uid
    bob.close()
    presence.online = False
    editor.edit(message_id, "see you at one")
    assert alice.store.changes.get(message_id).attempts == 0  # waits: nobody to tell
    # the peer is announced but its link fails: the notice stays queued for the next time
    presence.online = True
    editor.dispatch_due()
    alice.wait_for(lambda e: isinstance(e, PeerUnavailable))
    assert _wait(lambda: not alice.store.changes.get(message_id).sending)
    assert alice.store.changes.get(message_id).last_error
    back = Node(tmp_path / "bob", BOB, ca)  # the same profile, started again
    try:
        alice.worker.learn_address(BOB, "127.0.0.1", back.worker.port)
        assert editor.dispatch_due() == 1
        assert _wait(lambda: alice.store.changes.find(message_id) is None)
        assert back.store.messages.find_by_uid(uid).text == "see you at one"
    finally:
        back.close()


def test_a_delete_for_me_sends_nothing(pair) -> None:
    alice, bob = pair
    editor, _ = _editor(alice)
    message_id = _delivered(alice, bob, "stays with Bob")
    uid = alice.store.messages.get(message_id).uid
    editor.delete(message_id, for_everyone=False)
    assert alice.store.changes.pending() == []
    assert bob.store.messages.find_by_uid(uid).text == "stays with Bob"


@pytest.mark.gui
def test_bobs_open_chat_shows_alices_edit_and_then_loses_her_deleted_message(
        app, tmp_path: Path, ca: TeamCA) -> None:
    """Bob is the whole app with its window; his LAN side is the real PeerWorker on his profile
    posting to his event queue, as LanService runs it (its UDP discovery is left out here)."""
    from types import SimpleNamespace

    from chimera_tk.net.peer.worker import PeerLimits, PeerWorker
    from tests.conftest import pump_until

    tls = ca.write_identity(app.paths.root, BOB)
    worker = PeerWorker(BOB, "Bob", tls, app.paths.database, app.paths.downloads,
                        app.events.post, host="127.0.0.1", port=0,
                        limits=PeerLimits(ack_timeout_s=5, retry_after_s=0))
    worker.start()
    alice = Node(tmp_path / "alice", ALICE, ca)
    try:
        editor, _ = _editor(alice)
        bob = SimpleNamespace(user_id=BOB, worker=worker)
        for text in ("the meeting is in room 1", "and bring cake"):
            assert alice.finished(alice.send_text(bob, text)).message.state == "delivered"
        assert pump_until(app, lambda: app.store.dialogs.find(ALICE) is not None)
        app.window.dialogs.refresh()
        app.window.dialogs.select(ALICE)
        view = app.window.chat.messages
        assert pump_until(app, lambda: "and bring cake" in view.visible_text())
        room, cake = (m.id for m in alice.store.messages.latest_page(BOB))
        editor.edit(room, "the meeting is in room 2")
        assert pump_until(app, lambda: "room 2" in view.visible_text(), 10)
        assert "room 1" not in view.visible_text() and "edited" in view.visible_text()
        editor.delete(cake, for_everyone=True)
        assert pump_until(app, lambda: "cake" not in view.visible_text(), 10)
        assert "This message was deleted." not in view.visible_text()  # the default: removed
    finally:
        alice.close()
        worker.stop()
        worker.join(10)
