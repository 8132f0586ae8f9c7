"""Messages and dialogs on a real SQLite file: idempotency, full-text search, keyset paging."""

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.errors import InvalidTransition
from chimera_tk.store import Store
from chimera_tk.store.messages import fts_query, telegram_uid
from chimera_tk.store.records import IncomingMessage, PageKey


def _incoming(uid: str, text: str = "hello", *, dialog: int = 1, at: int = 1000,
              tg: int | None = None) -> IncomingMessage:
    return IncomingMessage(dialog, uid, 99, "Ana", text, at, "telegram" if tg else "lan",
                           tg_msg_id=tg)


@pytest.fixture
def chat(store: Store) -> Store:
    store.dialogs.upsert(1, "user", "Ana")
    store.dialogs.upsert(2, "group", "Office")
    return store


def test_same_lan_uid_is_stored_once(chat: Store) -> None:
    first, new = chat.messages.receive(_incoming("u-1"))
    again, new_again = chat.messages.receive(_incoming("u-1", "a different text"))
    assert new and not new_again
    assert again == first
    assert chat.messages.count(1) == 1
    assert chat.dialogs.get(1).unread_count == 1


def test_same_telegram_message_is_stored_once_even_under_another_uid(chat: Store) -> None:
    chat.messages.receive(_incoming(telegram_uid(1, 5), tg=5))
    _, new = chat.messages.receive(_incoming("some-other-uid", tg=5))
    assert not new
    assert chat.messages.count(1) == 1
    # the same Telegram id in another dialog is another message
    _, new_elsewhere = chat.messages.receive(_incoming(telegram_uid(2, 5), dialog=2, tg=5))
    assert new_elsewhere


def test_batch_receive_skips_repeats_and_counts_unread(chat: Store) -> None:
    batch = [_incoming(f"b-{i}", at=1000 + i) for i in range(10)]
    assert chat.messages.receive_many(batch) == 10
    assert chat.messages.receive_many([*batch, _incoming("b-new", at=5000)]) == 1
    dialog = chat.dialogs.get(1)
    assert dialog.unread_count == 11
    assert dialog.last_activity == 5000


def test_bad_rows_are_refused_not_silently_dropped(chat: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        chat.messages.receive(_incoming("x", dialog=12345))  # no such dialog
    with pytest.raises(sqlite3.IntegrityError):
        chat.messages.receive(IncomingMessage(1, "y", 1, "", "t", 1, "pigeon"))


def test_full_text_index_follows_insert_edit_and_delete(chat: Store) -> None:
    message, _ = chat.messages.receive(_incoming("f-1", "the quarterly report is ready"))
    assert [m.id for m in chat.messages.search("quarterly")] == [message.id]
    assert [m.id for m in chat.messages.search("QUART")] == [message.id]  # prefix, any case
    chat.messages.edit(message.id, "the yearly summary is ready")
    assert chat.messages.search("quarterly") == []
    assert [m.id for m in chat.messages.search("summary")] == [message.id]
    assert chat.messages.get(message.id).edited_at is not None
    chat.messages.mark_deleted(message.id)
    assert chat.messages.search("summary") == []
    chat.conn.execute("DELETE FROM messages WHERE id = ?", (message.id,))
    assert chat.conn.execute(
        "INSERT INTO messages_fts(messages_fts) VALUES('integrity-check')").rowcount != 0


def test_search_handles_accents_quotes_and_operators_safely(chat: Store) -> None:
    chat.messages.receive(_incoming("a", "Reunião amanhã às 10h"))
    chat.messages.receive(_incoming("b", 'he said "NOT" OR maybe AND'))
    assert len(chat.messages.search("reuniao")) == 1
    assert len(chat.messages.search('"NOT" OR')) == 1
    assert chat.messages.search("   ") == []
    assert chat.messages.search("(") == []
    assert chat.messages.search("NEAR(") == []


def test_search_can_be_limited_to_one_dialog(chat: Store) -> None:
    chat.messages.receive(_incoming("d1", "lunch plans", dialog=1))
    chat.messages.receive(_incoming("d2", "lunch menu", dialog=2))
    assert len(chat.messages.search("lunch")) == 2
    assert [m.uid for m in chat.messages.search("lunch", dialog_id=2)] == ["d2"]


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_typed_text_makes_a_valid_fts_query(text: str) -> None:
    store = Store.open(None)
    store.dialogs.upsert(1, "user", "A")
    store.messages.search(text)  # must never raise sqlite3.OperationalError
    assert fts_query(text) == "" or fts_query(text).endswith("*")
    store.close()


def test_keyset_pages_walk_the_whole_chat_in_order(chat: Store) -> None:
    # equal timestamps on purpose: the id breaks ties so no message is skipped or repeated
    chat.messages.receive_many(_incoming(f"p-{i}", f"m{i}", at=1000 + i // 3) for i in range(257))
    page = chat.messages.latest_page(1, 50)
    seen = [m.uid for m in page]
    while True:
        older = chat.messages.page_before(1, page[0].page_key, 50)
        if not older:
            break
        seen = [m.uid for m in older] + seen
        page = older
    assert seen == [f"p-{i}" for i in range(257)]
    forward = chat.messages.page_after(1, PageKey(0, 0), 100)
    assert [m.uid for m in forward] == [f"p-{i}" for i in range(100)]


def test_page_queries_use_the_index(chat: Store) -> None:
    plan = " ".join(row[3] for row in chat.conn.execute(
        """EXPLAIN QUERY PLAN SELECT id FROM messages WHERE dialog_id = 1
           AND (sent_at, id) < (5, 5) ORDER BY sent_at DESC, id DESC LIMIT 50"""))
    assert "messages_by_dialog_time" in plan
    assert "TEMP B-TREE" not in plan


def test_outgoing_messages_follow_the_state_table(chat: Store) -> None:
    message = chat.messages.add_outgoing(1, "hi")
    assert message.state == "queued" and message.outgoing
    with pytest.raises(InvalidTransition):
        chat.messages.set_state(message.id, "delivered")
    chat.messages.set_state(message.id, "sending")
    done = chat.messages.set_state(message.id, "delivered", transport="lan")
    assert (done.state, done.transport) == ("delivered", "lan")
    with pytest.raises(InvalidTransition):
        chat.messages.set_state(message.id, "queued")


def test_dialog_search_escapes_like_wildcards(chat: Store) -> None:
    chat.dialogs.upsert(3, "user", "100% Real")
    assert [d.id for d in chat.dialogs.list("100%")] == [3]
    assert [d.id for d in chat.dialogs.list("_")] == []
    assert {d.id for d in chat.dialogs.list("")} == {1, 2, 3}


def test_upsert_keeps_counters_and_updates_title(chat: Store) -> None:
    chat.messages.receive(_incoming("u", at=5000))
    chat.dialogs.upsert(1, "user", "Ana S.", phone="+55")
    dialog = chat.dialogs.get(1)
    assert (dialog.title, dialog.phone, dialog.unread_count, dialog.last_activity) == (
        "Ana S.", "+55", 1, 5000)
    chat.dialogs.mark_read(1)
    assert chat.dialogs.get(1).unread_count == 0
