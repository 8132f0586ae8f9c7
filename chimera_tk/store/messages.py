"""Messages of every route in one table, with full-text search and keyset paging.

Receiving is idempotent: the same ``uid``, or the same Telegram (dialog, message id), is stored
once however often it arrives; a repeat returns the stored row and changes nothing.

New rows are added to the full-text index here, in the transaction that inserts them (migration
0005 says why this is not a trigger): insert messages only through this repository.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable

from chimera_tk.store.database import transaction
from chimera_tk.store.records import IncomingMessage, Message, PageKey, utc_now_ms
from chimera_tk.store.states import check_transition

_COLUMNS = ("id, dialog_id, uid, tg_msg_id, sender_id, sender_name, outgoing, text, sent_at, "
            "edited_at, transport, state, deleted, reply_to, file_id, deleted_here")
# Positional parameters: binding a tuple is measurably cheaper than a dict in bulk ingest.
_INSERT = """INSERT INTO messages (dialog_id, uid, tg_msg_id, sender_id, sender_name, outgoing,
                                   text, sent_at, transport, state, reply_to, file_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING"""
_INDEX_FROM = """INSERT INTO messages_fts (rowid, text, chat)
                 SELECT id, text, chat FROM messages_searchable WHERE id > ?"""
_INDEX_ONE = """INSERT INTO messages_fts (rowid, text, chat)
                SELECT id, text, chat FROM messages_searchable WHERE id = ?"""
# The activity a batch brings to each of its dialogs, from the rows it really inserted. NOT
# INDEXED keeps the rowid range: to skip sorting the groups the planner would otherwise walk all
# of messages_by_dialog_time, the whole history, for every batch.
_TOUCH_DIALOGS_FROM = """
    UPDATE dialogs SET last_activity = max(last_activity, batch.last),
                       unread_count = unread_count + batch.unread
    FROM (SELECT dialog_id, max(sent_at) AS last, sum(outgoing = 0) AS unread
          FROM messages NOT INDEXED WHERE id > ? GROUP BY dialog_id) AS batch
    WHERE dialogs.id = batch.dialog_id"""


def telegram_uid(dialog_id: int, tg_msg_id: int) -> str:
    """The global uid of a cloud message, derived from its Telegram identity."""
    return f"tg:{dialog_id}:{tg_msg_id}"


def new_lan_uid() -> str:
    return str(uuid.uuid4())


class MessageRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # -- writes ---------------------------------------------------------------------------------

    def add_outgoing(self, dialog_id: int, text: str, *, sender_id: int | None = None,
                     sent_at: int | None = None, uid: str | None = None,
                     reply_to: int | None = None, file_id: int | None = None) -> Message:
        """Store a message the user wrote, in state ``queued`` (the outbox row is the caller's)."""
        uid = uid or new_lan_uid()
        sent_at = utc_now_ms() if sent_at is None else sent_at
        with transaction(self._conn):
            cursor = self._conn.execute(_INSERT, (
                dialog_id, uid, None, sender_id, "", 1, text, sent_at, None, "queued", reply_to,
                file_id))
            if cursor.rowcount != 1:
                raise ValueError(f"a message with uid {uid} exists already")
            self._touch_dialog(dialog_id, sent_at, unread=0)
            self._index_one(cursor.lastrowid)
            return self.get(cursor.lastrowid)

    def receive(self, incoming: IncomingMessage) -> tuple[Message, bool]:
        """Store a message from a transport once; returns (stored row, whether it was new)."""
        with transaction(self._conn):
            cursor = self._conn.execute(_INSERT, _incoming_row(incoming))
            if cursor.rowcount == 1:
                self._touch_dialog(incoming.dialog_id, incoming.sent_at,
                                   unread=0 if incoming.outgoing else 1)
                self._index_one(cursor.lastrowid)
                return self.get(cursor.lastrowid), True
            return self._existing(incoming), False

    def receive_many(self, batch: Iterable[IncomingMessage]) -> int:
        """Bulk form of :meth:`receive` for sync and import; returns how many rows were new."""
        rows = [_incoming_row(incoming) for incoming in batch]
        if not rows:
            return 0
        with transaction(self._conn):
            # While this transaction holds the write lock a new row's id is the highest id plus
            # one, so the new rows are those above ``last``. (Only once some id is 2**63 - 1 does
            # SQLite pick random ids; the count check then refuses the batch rather than leave
            # rows out of the index.)
            last = self._conn.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]
            inserted = self._conn.executemany(_INSERT, rows).rowcount
            if inserted:
                self._conn.execute(_TOUCH_DIALOGS_FROM, (last,))
                indexed = self._conn.execute(_INDEX_FROM, (last,)).rowcount
                if indexed != inserted:
                    raise RuntimeError(f"indexed {indexed} of {inserted} new messages")
        return inserted

    def set_state(self, message_id: int, new_state: str, *, transport: str | None = None,
                  tg_msg_id: int | None = None) -> Message:
        with transaction(self._conn):
            current = self.get(message_id)
            check_transition(current.state, new_state)
            self._conn.execute(
                """UPDATE messages SET state = ?, transport = coalesce(?, transport),
                                      tg_msg_id = coalesce(?, tg_msg_id)
                   WHERE id = ?""", (new_state, transport, tg_msg_id, message_id))
            return self.get(message_id)

    def edit(self, message_id: int, text: str, edited_at: int | None = None) -> Message:
        """New text, marked edited (the full-text index follows by trigger). An edit never
        brings a deleted message back, and an edit older than the stored one changes nothing
        (edits may arrive out of order: LAN and Telegram, a retried notice)."""
        self._conn.execute(
            """UPDATE messages SET text = :text, edited_at = :at
               WHERE id = :id AND deleted = 0 AND coalesce(edited_at, 0) <= :at""",
            {"text": text, "at": utc_now_ms() if edited_at is None else edited_at,
             "id": message_id})
        return self.get(message_id)

    def rewrite(self, message_id: int, text: str) -> Message:
        """Change the text of a message that has not left yet: no *edited* mark, nobody saw it."""
        self._conn.execute("UPDATE messages SET text = ? WHERE id = ? AND deleted = 0",
                           (text, message_id))
        return self.get(message_id)

    def mark_deleted(self, message_id: int, *, here: bool = False) -> Message:
        """Keep the row as a tombstone: its text goes (and with it the search index entry) but
        the uid stays, so the same message arriving again is still recognised and not shown.
        ``here``: the user deleted it on this machine (the chat never shows it)."""
        self._conn.execute(
            """UPDATE messages SET deleted = 1, text = '', deleted_here = max(deleted_here, ?)
               WHERE id = ?""", (int(here), message_id))
        return self.get(message_id)

    def latest_own(self, dialog_id: int) -> Message | None:
        """The user's newest message in a chat that is not deleted (Up in the composer)."""
        row = self._conn.execute(
            f"""SELECT {_COLUMNS} FROM messages
                WHERE dialog_id = ? AND outgoing = 1 AND deleted = 0
                ORDER BY sent_at DESC, id DESC LIMIT 1""", (dialog_id,)).fetchone()
        return None if row is None else _message(row)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, message_id: int) -> Message:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(f"no message {message_id}")
        return _message(row)

    def find_by_uid(self, uid: str) -> Message | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else _message(row)

    def find_by_telegram_id(self, dialog_id: int, tg_msg_id: int) -> Message | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE dialog_id = ? AND tg_msg_id = ?",
            (dialog_id, tg_msg_id)).fetchone()
        return None if row is None else _message(row)

    def newest_telegram_id(self, dialog_id: int) -> int | None:
        """The highest Telegram message id stored for a dialog (catch-up starts after it)."""
        return self._conn.execute(
            "SELECT max(tg_msg_id) FROM messages WHERE dialog_id = ?", (dialog_id,)).fetchone()[0]

    def find_by_account_message_id(self, tg_msg_id: int) -> list[Message]:
        """Messages of private chats and basic groups with this id (their ids are account-wide;
        a deletion update names only the id)."""
        rows = self._conn.execute(
            f"""SELECT {_COLUMNS} FROM messages
                WHERE tg_msg_id = ? AND dialog_id > -1000000000000""", (tg_msg_id,))
        return [_message(row) for row in rows]

    def latest_page(self, dialog_id: int, limit: int = 50) -> list[Message]:
        """The newest ``limit`` messages of a chat, oldest first."""
        rows = self._conn.execute(
            f"""SELECT {_COLUMNS} FROM messages WHERE dialog_id = ?
                ORDER BY sent_at DESC, id DESC LIMIT ?""", (dialog_id, limit)).fetchall()
        return [_message(row) for row in reversed(rows)]

    def page_before(self, dialog_id: int, key: PageKey, limit: int = 50) -> list[Message]:
        """Up to ``limit`` messages just older than ``key``, oldest first."""
        rows = self._conn.execute(
            f"""SELECT {_COLUMNS} FROM messages
                WHERE dialog_id = ? AND (sent_at, id) < (?, ?)
                ORDER BY sent_at DESC, id DESC LIMIT ?""",
            (dialog_id, key.sent_at, key.id, limit)).fetchall()
        return [_message(row) for row in reversed(rows)]

    def page_after(self, dialog_id: int, key: PageKey, limit: int = 50) -> list[Message]:
        """Up to ``limit`` messages just newer than ``key``, oldest first."""
        rows = self._conn.execute(
            f"""SELECT {_COLUMNS} FROM messages
                WHERE dialog_id = ? AND (sent_at, id) > (?, ?)
                ORDER BY sent_at, id LIMIT ?""",
            (dialog_id, key.sent_at, key.id, limit)).fetchall()
        return [_message(row) for row in rows]

    def around(self, dialog_id: int, message_id: int, before: int = 50, after: int = 50
               ) -> tuple[list[Message], Message, list[Message]] | None:
        """A window of a chat centred on one message: (up to ``before`` older messages, the
        message, up to ``after`` newer ones), oldest first; None if the chat has no such message.
        Both sides are keyset pages, so a jump deep into a long history costs two index seeks."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE id = ? AND dialog_id = ?",
            (message_id, dialog_id)).fetchone()
        if row is None:
            return None
        middle = _message(row)
        return (self.page_before(dialog_id, middle.page_key, before), middle,
                self.page_after(dialog_id, middle.page_key, after))

    def count(self, dialog_id: int) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM messages WHERE dialog_id = ?", (dialog_id,)).fetchone()[0]

    def search(self, query: str, *, dialog_id: int | None = None,
               limit: int = 50) -> list[Message]:
        """Messages matching every word of ``query`` (the last as a prefix), newest first.

        Newest means highest id, the order of arrival in this store: FTS5 walks its index in rowid
        order and stops after ``limit`` hits, where ordering by ``sent_at`` would first collect
        and sort every match (600,000 of a million messages for "the"). The orders differ only
        for messages stored after newer ones: an older Telegram backlog fetched late, or a LAN
        peer whose clock is off.
        """
        match = _match_expression(query, dialog_id)
        if match is None:
            return []
        rows = self._conn.execute(
            f"""SELECT {", ".join("m." + c.strip() for c in _COLUMNS.split(","))}
                FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid
                WHERE messages_fts MATCH :match
                ORDER BY messages_fts.rowid DESC LIMIT :limit""",
            {"match": match, "limit": limit}).fetchall()
        return [_message(row) for row in rows]

    def search_positions(self, query: str, dialog_id: int, limit: int = 1000) -> list[PageKey]:
        """Where the newest ``limit`` matches of ``query`` are in one chat, in chat order (the
        find bar steps through these and loads the page around each)."""
        match = _match_expression(query, dialog_id)
        if match is None:
            return []
        rows = self._conn.execute(
            """SELECT m.sent_at, m.id
               FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid
               WHERE messages_fts MATCH :match
               ORDER BY messages_fts.rowid DESC LIMIT :limit""",
            {"match": match, "limit": limit}).fetchall()
        return sorted(PageKey(sent_at, message_id) for sent_at, message_id in rows)

    def _index_one(self, message_id: int) -> None:
        # The transaction's last write: FTS5 writes its pending terms out as a segment of their
        # own whenever a later statement of the same transaction opens a savepoint.
        self._conn.execute(_INDEX_ONE, (message_id,))

    def _existing(self, incoming: IncomingMessage) -> Message:
        found = self.find_by_uid(incoming.uid)
        if found is None and incoming.tg_msg_id is not None:
            found = self.find_by_telegram_id(incoming.dialog_id, incoming.tg_msg_id)
        if found is None:
            raise RuntimeError(f"insert of {incoming.uid} ignored but no row conflicts")
        return found

    def _touch_dialog(self, dialog_id: int, at: int, *, unread: int) -> None:
        self._conn.execute(
            """UPDATE dialogs SET last_activity = max(last_activity, ?),
                                  unread_count = unread_count + ?
               WHERE id = ?""", (at, unread, dialog_id))


def fts_query(text: str) -> str:
    """Turn what a person typed into a safe FTS5 query: every word quoted, the last one a prefix."""
    # NUL ends a C string inside SQLite's query parser, so it can never be part of a word
    words = [word.replace('"', '""') for word in text.replace("\x00", " ").split()]
    if not words:
        return ""
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _match_expression(query: str, dialog_id: int | None) -> str | None:
    """The MATCH argument for what a person typed, optionally limited to one chat."""
    words = fts_query(query)
    if not words:
        return None
    # The words must be in the text: the chat column's tokens would otherwise match "c*".
    match = f"text : ({words})"
    if dialog_id is not None:
        match += f' AND chat : "{chat_token(dialog_id)}"'
    return match


def chat_token(dialog_id: int) -> str:
    """The token of a dialog in the index's ``chat`` column, as the view messages_searchable
    writes it: "c1001", or "cn1001" for dialog -1001 (a "-" would split the token)."""
    return f"c{dialog_id}".replace("-", "n")


def _incoming_row(incoming: IncomingMessage) -> tuple[object, ...]:
    """The parameters of :data:`_INSERT` for a received message."""
    return (incoming.dialog_id, incoming.uid, incoming.tg_msg_id, incoming.sender_id,
            incoming.sender_name, int(incoming.outgoing), incoming.text, incoming.sent_at,
            incoming.transport, "sent" if incoming.outgoing else "received", incoming.reply_to,
            incoming.file_id)


def _message(row: sqlite3.Row) -> Message:
    return Message(id=row[0], dialog_id=row[1], uid=row[2], tg_msg_id=row[3], sender_id=row[4],
                   sender_name=row[5], outgoing=bool(row[6]), text=row[7], sent_at=row[8],
                   edited_at=row[9], transport=row[10], state=row[11], deleted=bool(row[12]),
                   reply_to=row[13], file_id=row[14], deleted_here=bool(row[15]))
