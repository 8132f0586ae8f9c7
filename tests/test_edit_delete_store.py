"""Editing and deleting messages in the store and the editor service (real SQLite on disk)."""

from __future__ import annotations

import pytest

from chimera_tk.editing import MessageEditor, hidden_in_chat
from chimera_tk.errors import UserError
from chimera_tk.events import MessageChanged
from chimera_tk.store import Store
from chimera_tk.store.database import migrate, open_database, schema_version
from chimera_tk.store.records import IncomingMessage

PEER = 2002


class FakeTransport:
    """A transport that records what it was handed (the real ones need a peer or Telegram;
    they are tested in test_edit_delete_lan.py and test_edit_delete_telegram.py)."""

    def __init__(self, name: str, reachable: bool = True) -> None:
        self.name = name
        self.reachable = reachable
        self.changes: list[tuple[int, str, int]] = []

    def can_reach(self, dialog: object) -> bool:
        return self.reachable

    def submit_change(self, change, message) -> None:
        self.changes.append((message.id, change.kind, change.version))


@pytest.fixture
def events() -> list[object]:
    return []


@pytest.fixture
def lan() -> FakeTransport:
    return FakeTransport("lan")


@pytest.fixture
def editor(store: Store, events: list[object], lan: FakeTransport) -> MessageEditor:
    store.dialogs.ensure(PEER, "user", "Bob")
    return MessageEditor(store, events.append, {"lan": lan}.get)


def _sent(store: Store, text: str, route: str = "lan", tg_id: int | None = None) -> int:
    with store.transaction():
        message = store.messages.add_outgoing(PEER, text)
        store.outbox.enqueue(message.id)
    store.outbox.claim(message.id, route)
    store.outbox.complete(message.id, delivered=route == "lan", tg_msg_id=tg_id)
    return message.id


def _queued(store: Store, text: str) -> int:
    with store.transaction():
        message = store.messages.add_outgoing(PEER, text)
        store.outbox.enqueue(message.id)
    return message.id


def _received(store: Store, text: str, uid: str = "peer-uid-1") -> int:
    message, _ = store.messages.receive(IncomingMessage(
        dialog_id=PEER, uid=uid, sender_id=PEER, sender_name="Bob", text=text, sent_at=1000,
        transport="lan"))
    return message.id


def _search(store: Store, words: str) -> list[str]:
    return [m.text for m in store.messages.search(words)]


def test_migration_7_adds_the_change_list_and_the_deleted_here_flag(tmp_path) -> None:
    conn = open_database(tmp_path / "old.db", migrate_to=6)
    conn.execute("INSERT INTO dialogs (id, kind, title) VALUES (5, 'user', 'x')")
    conn.execute("""INSERT INTO messages (dialog_id, uid, outgoing, text, sent_at, state)
                    VALUES (5, 'u1', 1, 'before', 1, 'sent')""")
    migrate(conn, 7)
    assert schema_version(conn) == 7
    store = Store(conn)
    message = store.messages.find_by_uid("u1")
    assert message is not None and message.deleted_here is False
    assert store.changes.record(message.id, "edit", "lan").version == 1
    conn.close()


def test_an_edit_replaces_the_searchable_text_and_marks_the_message_edited(
        store: Store, editor: MessageEditor) -> None:
    message_id = _sent(store, "meet at the harbour")
    edited = editor.edit(message_id, "meet at the station")
    assert edited.text == "meet at the station" and edited.edited_at is not None
    assert _search(store, "harbour") == []
    assert _search(store, "station") == ["meet at the station"]


def test_a_deleted_message_leaves_the_search_index_and_keeps_no_text(
        store: Store, editor: MessageEditor) -> None:
    message_id = _sent(store, "secret plans")
    deleted = editor.delete(message_id, for_everyone=True)
    assert deleted.deleted and deleted.deleted_here and deleted.text == ""
    assert _search(store, "secret") == []
    assert store.messages.get(message_id).uid  # the tombstone keeps the uid


def test_editing_a_sent_lan_message_queues_a_notice_and_hands_it_to_the_lan(
        store: Store, editor: MessageEditor, lan: FakeTransport,
        events: list[object]) -> None:
    message_id = _sent(store, "v1")
    editor.edit(message_id, "v2")
    assert lan.changes == [(message_id, "edit", 1)]
    assert store.changes.get(message_id).sending
    assert isinstance(events[-1], MessageChanged) and events[-1].message.text == "v2"


def test_a_second_edit_in_flight_is_not_lost_when_the_first_completes(
        store: Store, editor: MessageEditor, lan: FakeTransport) -> None:
    message_id = _sent(store, "v1")
    editor.edit(message_id, "v2")
    editor.edit(message_id, "v3")  # while v2's notice is still in flight
    first_version = lan.changes[0][2]
    assert store.changes.complete(message_id, first_version) is False
    assert editor.dispatch_due() == 1
    assert lan.changes[-1] == (message_id, "edit", 2)
    assert store.changes.complete(message_id, 2) is True
    assert store.changes.find(message_id) is None


def test_a_delete_replaces_a_waiting_edit(store: Store, editor: MessageEditor,
                                          lan: FakeTransport) -> None:
    lan.reachable = False
    message_id = _sent(store, "v1")
    editor.edit(message_id, "v2")
    editor.delete(message_id, for_everyone=True)
    assert store.changes.get(message_id).kind == "delete"
    assert lan.changes == []  # the peer is away: the notice waits
    lan.reachable = True
    assert editor.dispatch_due() == 1
    assert lan.changes == [(message_id, "delete", 2)]


def test_a_queued_message_is_changed_or_withdrawn_locally_without_a_notice(
        store: Store, editor: MessageEditor, lan: FakeTransport) -> None:
    edited_id = _queued(store, "draft one")
    edited = editor.edit(edited_id, "draft two")
    assert edited.text == "draft two" and edited.edited_at is None  # nobody saw the first
    assert store.outbox.get(edited_id).message_id == edited_id  # still goes out, new text
    deleted_id = _queued(store, "never mind")
    editor.delete(deleted_id, for_everyone=True)
    assert [e.message_id for e in store.outbox.due()] == [edited_id]
    assert store.changes.pending() == [] and lan.changes == []


def test_a_message_deleted_while_in_flight_is_never_sent_again(
        store: Store, editor: MessageEditor, lan: FakeTransport) -> None:
    message_id = _queued(store, "oops")
    store.outbox.claim(message_id, "lan")  # in flight
    editor.delete(message_id, for_everyone=True)
    assert lan.changes == []  # waits: it must not overtake the original
    store.outbox.retry_later(message_id, "no ACK", 0)  # the ACK was lost
    assert store.outbox.due() == []
    assert editor.dispatch_due() == 1  # the peer may have it: the DELETE goes anyway
    assert lan.changes == [(message_id, "delete", 1)]
    with pytest.raises(KeyError):
        store.outbox.get(message_id)


def test_a_telegram_message_that_never_got_a_telegram_id_has_no_notice_to_send(
        store: Store, events: list[object]) -> None:
    telegram = FakeTransport("telegram")
    editor = MessageEditor(store, events.append, {"telegram": telegram}.get)
    store.dialogs.ensure(PEER, "user", "Bob")
    with_id = _sent(store, "cloud", route="telegram", tg_id=77)
    editor.edit(with_id, "cloud, edited")
    assert telegram.changes == [(with_id, "edit", 1)]
    message_id = _queued(store, "x")
    store.outbox.claim(message_id, "telegram")
    editor.edit(message_id, "y")
    store.outbox.give_up(message_id, "Telegram refused it")
    editor.dispatch_due()
    assert store.changes.find(message_id) is None
    assert telegram.changes == [(with_id, "edit", 1)]


def test_only_own_messages_can_be_edited_or_deleted_for_everyone(
        store: Store, editor: MessageEditor) -> None:
    theirs = _received(store, "from Bob")
    with pytest.raises(UserError, match="own"):
        editor.edit(theirs, "forged")
    with pytest.raises(UserError, match="own"):
        editor.delete(theirs, for_everyone=True)
    gone = editor.delete(theirs, for_everyone=False)
    assert gone.deleted and gone.deleted_here
    assert store.changes.pending() == []
    mine = _sent(store, "mine")
    with pytest.raises(UserError, match="nothing"):
        editor.edit(mine, "  \n")
    editor.delete(mine, for_everyone=False)
    assert store.changes.pending() == []  # "for me": the peer keeps its copy
    with pytest.raises(UserError, match="deleted"):
        editor.edit(mine, "back from the dead")


def test_received_edits_never_go_back_in_time_nor_revive_a_deleted_message(
        store: Store, editor: MessageEditor) -> None:
    message_id = _received(store, "v1")
    store.messages.edit(message_id, "v3", 3000)
    assert store.messages.edit(message_id, "v2", 2000).text == "v3"
    store.messages.mark_deleted(message_id)
    assert store.messages.edit(message_id, "v4", 4000).deleted


def test_up_arrow_finds_the_newest_own_message_that_is_not_deleted(
        store: Store, editor: MessageEditor) -> None:
    first = _sent(store, "first")
    second = _sent(store, "second")
    _received(store, "theirs", uid="later")
    assert editor.latest_editable(PEER).id == second
    editor.delete(second, for_everyone=True)
    assert editor.latest_editable(PEER).id == first


def test_the_chat_hides_deletions_by_setting_and_always_hides_the_users_own(
        store: Store, editor: MessageEditor) -> None:
    by_author = store.messages.mark_deleted(_received(store, "a", uid="a"))
    by_me = editor.delete(_received(store, "b", uid="b"), for_everyone=False)
    assert hidden_in_chat(by_author, "remove") and not hidden_in_chat(by_author, "mark")
    assert hidden_in_chat(by_me, "remove") and hidden_in_chat(by_me, "mark")
    assert not hidden_in_chat(store.messages.get(_sent(store, "c")), "remove")


def test_a_restart_releases_notices_that_were_in_flight(
        store: Store, editor: MessageEditor, lan: FakeTransport) -> None:
    message_id = _sent(store, "v1")
    editor.edit(message_id, "v2")
    assert editor.dispatch_due() == 0  # claimed: not handed twice
    assert editor.recover() == 1
    assert editor.dispatch_due() == 1
