"""The router's durable to-do list: one row per outgoing message that still has to leave.

A message and its outbox row are written in one transaction. A transport *claims* a row
(message ``queued`` -> ``sending``), then *completes* it (-> ``sent``/``delivered``, row removed),
asks to *retry later* (-> ``queued``), or *gives up* (-> ``failed``, row kept with the error so the
user can retry). After a crash, :meth:`recover_interrupted` returns every ``sending`` row to
``queued``; the receiver's idempotency absorbs a message that had in fact arrived.
"""

from __future__ import annotations

import sqlite3

from chimera_tk.errors import InvalidTransition
from chimera_tk.store.database import transaction
from chimera_tk.store.messages import MessageRepository
from chimera_tk.store.records import TRANSPORTS, OutboxEntry, utc_now_ms

_SELECT = """SELECT o.id, o.message_id, m.dialog_id, o.route, o.attempts, o.next_attempt_at,
                    o.last_error, o.lan_only
             FROM outbox AS o JOIN messages AS m ON m.id = o.message_id"""


class OutboxRepository:
    def __init__(self, conn: sqlite3.Connection, messages: MessageRepository) -> None:
        self._conn = conn
        self._messages = messages

    def enqueue(self, message_id: int, *, not_before: int = 0,
                lan_only: bool = False) -> OutboxEntry:
        self._conn.execute(
            "INSERT INTO outbox (message_id, next_attempt_at, lan_only) VALUES (?, ?, ?)",
            (message_id, not_before, int(lan_only)))
        return self.get(message_id)

    def get(self, message_id: int) -> OutboxEntry:
        row = self._conn.execute(f"{_SELECT} WHERE o.message_id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(f"message {message_id} is not in the outbox")
        return OutboxEntry(*row)

    def due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Queued rows whose next attempt time has come, oldest first (a message deleted while
        in flight is never sent again: :meth:`withdraw` takes it out)."""
        rows = self._conn.execute(
            f"""{_SELECT} WHERE m.state = 'queued' AND m.deleted = 0 AND o.next_attempt_at <= ?
                ORDER BY o.next_attempt_at, o.id LIMIT ?""",
            (utc_now_ms() if now is None else now, limit))
        return [OutboxEntry(*row) for row in rows]

    def pending(self, limit: int = 1000) -> list[OutboxEntry]:
        """Every row not yet completed (queued, sending or failed), oldest first."""
        rows = self._conn.execute(f"{_SELECT} ORDER BY o.id LIMIT ?", (limit,))
        return [OutboxEntry(*row) for row in rows]

    def claim(self, message_id: int, route: str) -> OutboxEntry:
        """Take a queued message for sending over ``route``; raises InvalidTransition otherwise."""
        _check_route(route)
        with transaction(self._conn):
            self.get(message_id)
            self._messages.set_state(message_id, "sending")
            self._conn.execute(
                "UPDATE outbox SET route = ?, attempts = attempts + 1 WHERE message_id = ?",
                (route, message_id))
            return self.get(message_id)

    def complete(self, message_id: int, *, delivered: bool,
                 tg_msg_id: int | None = None) -> None:
        """The transport succeeded: the message is ``delivered`` (LAN ACK) or ``sent`` (cloud)."""
        with transaction(self._conn):
            entry = self.get(message_id)
            self._messages.set_state(message_id, "delivered" if delivered else "sent",
                                     transport=entry.route, tg_msg_id=tg_msg_id)
            self._conn.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))

    def retry_later(self, message_id: int, error: str, not_before: int) -> OutboxEntry:
        with transaction(self._conn):
            self.get(message_id)
            self._messages.set_state(message_id, "queued")
            self._conn.execute(
                "UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE message_id = ?",
                (error, not_before, message_id))
            return self.get(message_id)

    def give_up(self, message_id: int, error: str) -> OutboxEntry:
        with transaction(self._conn):
            self.get(message_id)
            self._messages.set_state(message_id, "failed")
            self._conn.execute("UPDATE outbox SET last_error = ? WHERE message_id = ?",
                               (error, message_id))
            return self.get(message_id)

    def requeue(self, message_id: int) -> OutboxEntry:
        """The user asked to try a failed message again."""
        with transaction(self._conn):
            self.get(message_id)
            self._messages.set_state(message_id, "queued")
            self._conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE message_id = ?",
                               (message_id,))
            return self.get(message_id)

    def withdraw(self, message_id: int) -> bool:
        """The user deleted a message that has not left (queued or failed): it never will. A
        queued message becomes ``failed`` so that it no longer counts as waiting. False when the
        message has no outbox row (it left already, or is in flight)."""
        with transaction(self._conn):
            try:
                self.get(message_id)
            except KeyError:
                return False
            if self._messages.get(message_id).state == "sending":
                return False
            if self._messages.get(message_id).state == "queued":
                self._messages.set_state(message_id, "failed")
            self._conn.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
            return True

    def recover_interrupted(self) -> list[int]:
        """After a restart: every claimed-but-unfinished message goes back to ``queued``."""
        with transaction(self._conn):
            ids = [row[0] for row in self._conn.execute(
                """SELECT m.id FROM messages AS m JOIN outbox AS o ON o.message_id = m.id
                   WHERE m.state = 'sending'""")]
            if ids:
                self._conn.executemany(
                    "UPDATE messages SET state = 'queued' WHERE id = ?", [(i,) for i in ids])
        return ids


def _check_route(route: str) -> None:
    if route not in TRANSPORTS:
        raise InvalidTransition(f"unknown route {route!r}")
