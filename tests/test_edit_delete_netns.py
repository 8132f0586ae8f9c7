"""Edits and deletions between desktops on a real (namespaced) LAN.

Alice and Bob are the real ``chimera --headless`` processes, each in its own network namespace.
Alice's edits and deletions are made through the editor on her profile's database while her app
runs, as ``chimera send`` does for texts; her running app's outbox tick sends the notices.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.editing import MessageEditor
from chimera_tk.store import Store
from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns
from tests.pki_factory import TeamCA

pytestmark = pytest.mark.netns

ALICE, BOB = 1001, 2002


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b")) as net:
        yield net


@pytest.fixture
def ca() -> TeamCA:
    return TeamCA.create()


@pytest.fixture
def alice(network: Network, tmp_path: Path, ca: TeamCA) -> AppNode:
    return AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca)


@pytest.fixture
def bob(network: Network, tmp_path: Path, ca: TeamCA) -> AppNode:
    return AppNode(network["b"], tmp_path / "b", "bob", BOB, ca)


def _on_alices_side(alice: AppNode, change) -> None:
    """Edit or delete as Alice's window would, in her profile's database."""
    store = Store.open(alice.paths.database)
    try:
        change(MessageEditor(store, lambda _event: None), store)
    finally:
        store.close()


def _sent_id(alice: AppNode, text: str) -> int:
    store = Store.open(alice.paths.database)
    try:
        return store.conn.execute("SELECT id FROM messages WHERE text = ? AND outgoing = 1",
                                  (text,)).fetchone()[0]
    finally:
        store.close()


def _bobs_copy(bob: AppNode, uid: str) -> dict:
    return next(m for m in bob.export() if m["uid"] == uid)


def _eventually(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return condition()


def _pending_changes(alice: AppNode) -> int:
    store = Store.open(alice.paths.database)
    try:
        return len(store.changes.pending())
    finally:
        store.close()


def test_alices_edit_and_delete_reach_bobs_database(alice: AppNode, bob: AppNode) -> None:
    bob.start_headless()
    alice.start_headless()
    for text in ("meet at the lab", "ignore this"):
        result = alice.send(BOB, text)
        assert result.returncode == 0, result.stderr
    sent = {m["text"]: m["uid"] for m in alice.export() if m["direction"] == "out"}
    _on_alices_side(alice, lambda editor, _s: editor.edit(
        _sent_id(alice, "meet at the lab"), "meet at the library"))
    _on_alices_side(alice, lambda editor, _s: editor.delete(
        _sent_id(alice, "ignore this"), for_everyone=True))
    assert _eventually(lambda: _bobs_copy(bob, sent["meet at the lab"])["text"]
                       == "meet at the library")
    assert _bobs_copy(bob, sent["meet at the lab"])["edited_at"] is not None
    assert _eventually(lambda: _bobs_copy(bob, sent["ignore this"])["deleted"])
    assert _bobs_copy(bob, sent["ignore this"])["text"] == ""
    assert _eventually(lambda: _pending_changes(alice) == 0)  # both acknowledged
    assert alice.stop() == 0 and bob.stop() == 0


def test_bob_cannot_rewrite_alices_message_with_a_forged_edit(
        network: Network, alice: AppNode, bob: AppNode) -> None:
    alice.start_headless()
    bob.start_headless()
    assert alice.send(BOB, "the contract says 100").returncode == 0
    [mine] = [m for m in alice.export() if m["direction"] == "out"]
    forger = network["b"].python(
        "-m", "tests.edit_delete_forger", "--profile-dir", str(bob.paths.root),
        "--cert-id", str(BOB), "--to", str(ALICE), "--address", network["a"].address,
        "--uid", mine["uid"], "--text", "the contract says 1000")
    answer = json.loads(forger.stdout.readline())
    forger.wait(timeout=20)
    assert answer["dropped"] is True
    alice.wait_for_log("refused a change from user 2002 (1 refused so far)")
    [after] = [m for m in alice.export() if m["direction"] == "out"]
    assert after["text"] == "the contract says 100" and after["edited_at"] is None
    assert alice.stop() == 0 and bob.stop() == 0


def test_an_edit_made_while_bob_is_away_arrives_when_he_is_back(
        alice: AppNode, bob: AppNode) -> None:
    bob.start_headless()
    alice.start_headless()
    assert alice.send(BOB, "the train leaves at 9").returncode == 0
    [mine] = [m for m in alice.export() if m["direction"] == "out"]
    assert bob.stop() == 0
    _on_alices_side(alice, lambda editor, _s: editor.edit(
        _sent_id(alice, "the train leaves at 9"), "the train leaves at 10"))
    time.sleep(2)  # Alice's app has had its ticks: nobody to tell yet
    assert _pending_changes(alice) == 1
    assert _bobs_copy(bob, mine["uid"])["text"] == "the train leaves at 9"
    bob.start_headless()
    assert _eventually(lambda: _bobs_copy(bob, mine["uid"])["text"]
                       == "the train leaves at 10")
    assert _eventually(lambda: _pending_changes(alice) == 0)
    assert alice.stop() == 0 and bob.stop() == 0
