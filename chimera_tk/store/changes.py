"""The durable to-do list of edit and delete notices for messages that have (or may have) left.

One row per message (migration 0007 says why this is not the outbox). Recording a change while an
older notice of the same message is waiting rewrites that row: the notice carries the message's
text as it is when it is sent, and a delete replaces an edit. A transport *claims* a row and later
*completes* it with the version it claimed; if the user changed the message again meanwhile, the
row stays and goes out once more. After a crash, :meth:`recover_interrupted` releases every claim.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from chimera_tk.store.database import transaction
from chimera_tk.store.records import utc_now_ms

CHANGE_KINDS = ("edit", "delete")
_SELECT = """SELECT c.message_id, m.dialog_id, c.kind, c.route, c.version, c.sending,
                    c.attempts, c.next_attempt_at, c.last_error
             FROM message_changes AS c JOIN messages AS m ON m.id = c.message_id"""


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    message_id: int
    dialog_id: int
    kind: str  # "edit" or "delete"
    route: str | None  # where the original went, when it was recorded; None: not known then
    version: int
    sending: bool
    attempts: int
    next_attempt_at: int
    last_error: str | None


class MessageChangeRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def record(self, message_id: int, kind: str, route: str | None) -> ChangeEntry:
        """Queue a notice; a delete wins over an edit, whichever came first."""
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change kind {kind!r}")
        self._conn.execute(
            """INSERT INTO message_changes (message_id, kind, route) VALUES (?, ?, ?)
               ON CONFLICT (message_id) DO UPDATE SET
                   kind = CASE WHEN kind = 'delete' THEN 'delete' ELSE excluded.kind END,
                   route = coalesce(excluded.route, route),
                   version = version + 1, next_attempt_at = 0, last_error = NULL""",
            (message_id, kind, route))
        return self.get(message_id)

    def find(self, message_id: int) -> ChangeEntry | None:
        row = self._conn.execute(f"{_SELECT} WHERE c.message_id = ?", (message_id,)).fetchone()
        return None if row is None else _entry(row)

    def get(self, message_id: int) -> ChangeEntry:
        entry = self.find(message_id)
        if entry is None:
            raise KeyError(f"message {message_id} has no pending change")
        return entry

    def due(self, now: int | None = None, limit: int = 100) -> list[ChangeEntry]:
        """Unclaimed notices whose time has come, oldest first. A notice waits while its message
        is itself still queued or in flight: it must not overtake the original (a deleted one
        back in the queue never goes out again, so its notice need not wait)."""
        rows = self._conn.execute(
            f"""{_SELECT} WHERE c.sending = 0 AND c.next_attempt_at <= ?
                              AND (m.state NOT IN ('queued', 'sending')
                                   OR m.state = 'queued' AND m.deleted = 1)
                ORDER BY c.next_attempt_at, c.id LIMIT ?""",
            (utc_now_ms() if now is None else now, limit))
        return [_entry(row) for row in rows]

    def pending(self) -> list[ChangeEntry]:
        return [_entry(row) for row in self._conn.execute(f"{_SELECT} ORDER BY c.id")]

    def claim(self, message_id: int) -> ChangeEntry:
        with transaction(self._conn):
            self._conn.execute(
                """UPDATE message_changes SET sending = 1, attempts = attempts + 1
                   WHERE message_id = ?""", (message_id,))
            return self.get(message_id)

    def complete(self, message_id: int, version: int) -> bool:
        """The notice of ``version`` reached its destination. False when the message changed
        again meanwhile: the row is released to carry the newer change."""
        with transaction(self._conn):
            done = self._conn.execute(
                "DELETE FROM message_changes WHERE message_id = ? AND version = ?",
                (message_id, version)).rowcount
            if not done:
                self._conn.execute(
                    "UPDATE message_changes SET sending = 0 WHERE message_id = ?", (message_id,))
            return bool(done)

    def retry_later(self, message_id: int, error: str, not_before: int) -> None:
        self._conn.execute(
            """UPDATE message_changes SET sending = 0, last_error = ?, next_attempt_at = ?
               WHERE message_id = ?""", (error, not_before, message_id))

    def drop(self, message_id: int) -> None:
        """Nothing left to tell (the original never reached anyone), or told in another way."""
        self._conn.execute("DELETE FROM message_changes WHERE message_id = ?", (message_id,))

    def recover_interrupted(self) -> int:
        return self._conn.execute(
            "UPDATE message_changes SET sending = 0 WHERE sending = 1").rowcount


def _entry(row: sqlite3.Row) -> ChangeEntry:
    return ChangeEntry(message_id=row[0], dialog_id=row[1], kind=row[2], route=row[3],
                       version=row[4], sending=bool(row[5]), attempts=row[6],
                       next_attempt_at=row[7], last_error=row[8])
