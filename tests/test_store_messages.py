"""Messages and dialogs on a real SQLite file: idempotency, full-text search, keyset paging."""

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_tk.errors import InvalidTransition
from chimera_tk.store import Store
from chimera_tk.store.messages import chat_token, fts_query, telegram_uid
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


def test_search_in_one_chat_ignores_chat_tokens_written_in_texts(chat: Store) -> None:
    chat.dialogs.upsert(-1001, "supergroup", "Big group")
    assert (chat_token(1001), chat_token(-1001)) == ("c1001", "cn1001")
    mine, _ = chat.messages.receive(_incoming("g1", "cn1001 lunch", dialog=-1001))
    other, _ = chat.messages.receive(_incoming("g2", "c1 cn1001 lunch", dialog=2))
    assert [m.id for m in chat.messages.search("lunch", dialog_id=-1001)] == [mine.id]
    assert [m.id for m in chat.messages.search("cn1001", dialog_id=-1001)] == [mine.id]
    assert [m.id for m in chat.messages.search("lunch", dialog_id=1)] == []
    # a word typed by the user never matches the chat column
    assert [m.id for m in chat.messages.search("c")] == [other.id, mine.id]
    assert [m.id for m in chat.messages.search("c1")] == [other.id]


def test_every_write_path_keeps_the_index_in_sync(chat: Store) -> None:
    sent = chat.messages.add_outgoing(1, "outgoing words")
    got, _ = chat.messages.receive(_incoming("r", "received words"))
    with chat.transaction():  # a batch joining a transaction that already indexed rows
        chat.messages.add_outgoing(2, "before the batch words")
        assert chat.messages.receive_many(
            [_incoming("m1", "batch words"), _incoming("m1", "repeat"), _incoming("r", "old"),
             _incoming("m2", "other words", dialog=2)]) == 2
    assert chat.messages.receive_many([]) == 0
    assert len(chat.messages.search("words")) == 5
    assert chat.messages.search("repeat") == [] and chat.messages.search("old") == []
    chat.messages.edit(got.id, "changed")
    chat.messages.mark_deleted(sent.id)
    assert len(chat.messages.search("words")) == 3
    assert [m.id for m in chat.messages.search("changed")] == [got.id]
    chat.conn.execute("DELETE FROM dialogs WHERE id = 2")  # cascades to its messages
    assert [m.text for m in chat.messages.search("words")] == ["batch words"]
    assert _index_instances(chat) == _expected_instances(chat)
    chat.conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_search_walks_the_index_newest_first_without_sorting(chat: Store) -> None:
    statements: list[str] = []
    chat.conn.set_trace_callback(statements.append)
    chat.messages.search("word", dialog_id=1)
    chat.conn.set_trace_callback(None)
    query = next(sql for sql in statements if "MATCH" in sql)
    plan = " ".join(row[3] for row in chat.conn.execute("EXPLAIN QUERY PLAN " + query))
    assert "VIRTUAL TABLE INDEX" in plan
    assert "TEMP B-TREE" not in plan


def test_batch_statements_read_only_the_new_rows(chat: Store) -> None:
    statements: list[str] = []
    chat.conn.set_trace_callback(statements.append)
    chat.messages.receive_many([_incoming("n1"), _incoming("n2", dialog=2)])
    chat.conn.set_trace_callback(None)
    reads = [sql for sql in statements if "id >" in sql]
    assert len(reads) == 2  # the dialogs' activity and the index
    for sql in reads:
        plan = " ".join(row[3] for row in chat.conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "INTEGER PRIMARY KEY (rowid>?)" in plan
        assert "SCAN messages" not in plan


# Words chosen to collide: prefixes of each other (1 to 3 letters have prefix indexes, longer ones
# do not), case variants, and the chat tokens of the dialogs the texts are written in.
_WORDS = ("a", "ab", "abc", "abcd", "abcde", "the", "THE", "then", "there", "c", "c1", "cn2", "n2")
_CHATS = (1, -2)
_texts = st.lists(st.sampled_from(_WORDS), max_size=4).map(" ".join)
_operations = st.lists(st.one_of(
    st.tuples(st.just("receive"), st.sampled_from(_CHATS), st.integers(0, 15), _texts),
    st.tuples(st.just("receive_many"), st.lists(
        st.tuples(st.sampled_from(_CHATS), st.integers(0, 15), _texts), max_size=6)),
    st.tuples(st.just("add_outgoing"), st.sampled_from(_CHATS), _texts),
    st.tuples(st.just("edit"), st.integers(0, 50), _texts),
    st.tuples(st.just("mark_deleted"), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("delete_chat"), st.sampled_from(_CHATS)),
), max_size=25)
_queries = st.lists(st.tuples(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=2),
                              st.integers(1, 5), st.sampled_from((None, *_CHATS))), max_size=6)


def _index_instances(store: Store) -> list[tuple[int, str, str, int]]:
    """(message id, column, term, position) of every entry in the index itself."""
    store.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_instances "
                       "USING fts5vocab(main, messages_fts, instance)")
    return sorted(tuple(row) for row in store.conn.execute(
        "SELECT doc, col, term, offset FROM temp.fts_instances"))


def _expected_instances(store: Store) -> list[tuple[int, str, str, int]]:
    expected = []
    for id_, dialog_id, text in store.conn.execute(
            "SELECT id, dialog_id, text FROM messages WHERE deleted = 0"):
        expected += [(id_, "text", word.lower(), i) for i, word in enumerate(text.split())]
        expected.append((id_, "chat", chat_token(dialog_id), 0))
    return sorted(expected)


def _brute_force_search(store: Store, words: list[str], dialog_id: int | None) -> list[int]:
    """Ids a search must return: each word a whole word of the text, the last one a prefix."""
    found = []
    for id_, in_dialog, text in store.conn.execute(
            "SELECT id, dialog_id, text FROM messages WHERE deleted = 0 ORDER BY id DESC"):
        tokens = text.lower().split()
        if (dialog_id in (None, in_dialog)
                and all(word.lower() in tokens for word in words[:-1])
                and any(token.startswith(words[-1].lower()) for token in tokens)):
            found.append(id_)
    return found


def _apply(store: Store, operation: tuple) -> None:
    kind, *args = operation
    ids = [row[0] for row in store.conn.execute("SELECT id FROM messages ORDER BY id")]
    if kind in ("receive", "add_outgoing", "receive_many"):
        for dialog_id in _CHATS:  # a deleted chat comes back before a message arrives in it
            store.dialogs.upsert(dialog_id, "user" if dialog_id > 0 else "group", "")
    if kind == "receive":
        store.messages.receive(_incoming(f"u{args[1]}", args[2], dialog=args[0]))
    elif kind == "receive_many":
        store.messages.receive_many(
            _incoming(f"u{uid}", text, dialog=dialog_id) for dialog_id, uid, text in args[0])
    elif kind == "add_outgoing":
        store.messages.add_outgoing(args[0], args[1])
    elif kind == "delete_chat":
        store.conn.execute("DELETE FROM dialogs WHERE id = ?", (args[0],))
    elif ids:
        message_id = ids[args[0] % len(ids)]
        if kind == "edit":
            store.messages.edit(message_id, args[1])
        elif kind == "mark_deleted":
            store.messages.mark_deleted(message_id)
        else:
            store.conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))


@given(_operations, _queries)
@settings(max_examples=150, deadline=None)
def test_index_holds_exactly_the_undeleted_texts_after_any_writes(
        operations: list[tuple], queries: list[tuple[list[str], int, int | None]]) -> None:
    store = Store.open(None)
    for operation in operations:
        _apply(store, operation)
    indexed = _index_instances(store)
    assert indexed == _expected_instances(store)
    for words, prefix_length, dialog_id in queries:
        words = [*words[:-1], words[-1][:prefix_length]]
        assert [m.id for m in store.messages.search(" ".join(words), dialog_id=dialog_id,
                                                    limit=1000)] == \
            _brute_force_search(store, words, dialog_id), (words, dialog_id)
    # the view the index is defined over rebuilds exactly what the write paths maintained
    store.conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    assert _index_instances(store) == indexed
    store.conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
    store.close()


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
