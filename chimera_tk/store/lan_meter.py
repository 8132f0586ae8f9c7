"""The "Kept on your LAN" meter: messages and bytes that went over the LAN instead of the internet.

What counts, decided once here so both ends of a transfer agree to the byte:

* A message counts once, when its LAN delivery is committed: on the sender in the transaction
  that records the ACK (``delivered``), on the receiver in the transaction that stores the text,
  or, for a file, the one that marks the verified file complete. A message that goes out over
  Telegram never counts, not even after a LAN attempt that failed half-way.
* Its bytes are the UTF-8 bytes of its text (or caption) plus the size of its file. A resumed
  transfer therefore counts each byte of the file once: the bytes the interrupted attempt sent
  (which the receiver kept as its partial file, the offset it resumes from) plus the rest. A retry
  that had to send bytes again, and bytes of an attempt whose partial file was thrown away, do not
  count twice: they spared the internet nothing more.
* Edits, deletions, acknowledgements and protocol framing are not counted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from chimera_tk.store.database import transaction
from chimera_tk.store.records import Message

_UPSERT = """INSERT INTO lan_meter (day, dialog_id, outgoing, messages, bytes)
             VALUES (?, ?, ?, 1, ?)
             ON CONFLICT (day, dialog_id, outgoing)
             DO UPDATE SET messages = messages + 1, bytes = bytes + excluded.bytes"""


@dataclass(frozen=True, slots=True)
class MeterFigures:
    messages: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class DialogFigures:
    dialog_id: int
    title: str  # empty when the chat no longer exists
    figures: MeterFigures


class LanMeterRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def count_delivery(self, message: Message, *, on: date | None = None) -> int:
        """Count ``message`` as delivered over the LAN (call inside the delivering transaction);
        returns the bytes it added."""
        counted = len(message.text.encode("utf-8"))
        with transaction(self._conn):
            if message.file_id is not None:
                row = self._conn.execute("SELECT size FROM files WHERE id = ?",
                                         (message.file_id,)).fetchone()
                counted += row[0] if row is not None else 0
            day = (on or datetime.now().date()).isoformat()
            self._conn.execute(_UPSERT, (day, message.dialog_id, int(message.outgoing), counted))
        return counted

    def totals(self, dialog_id: int | None = None) -> MeterFigures:
        """Everything kept on the LAN, or that of one chat."""
        if dialog_id is None:
            row = self._conn.execute(
                "SELECT coalesce(sum(messages), 0), coalesce(sum(bytes), 0) FROM lan_meter"
            ).fetchone()
        else:
            row = self._conn.execute(
                """SELECT coalesce(sum(messages), 0), coalesce(sum(bytes), 0) FROM lan_meter
                   WHERE dialog_id = ?""", (dialog_id,)).fetchone()
        return MeterFigures(row[0], row[1])

    def by_dialog(self, limit: int = 10) -> list[DialogFigures]:
        """The chats that kept the most bytes on the LAN, most first."""
        rows = self._conn.execute(
            """SELECT m.dialog_id, coalesce(d.title, ''), sum(m.messages) AS messages,
                      sum(m.bytes) AS bytes
               FROM lan_meter AS m LEFT JOIN dialogs AS d ON d.id = m.dialog_id
               GROUP BY m.dialog_id ORDER BY bytes DESC, messages DESC, m.dialog_id LIMIT ?""",
            (limit,))
        return [DialogFigures(row[0], row[1], MeterFigures(row[2], row[3])) for row in rows]

    def by_day(self, days: int = 14, today: date | None = None) -> list[tuple[date, MeterFigures]]:
        """One entry for each of the last ``days`` days (oldest first), zero where nothing went."""
        today = today or datetime.now().date()
        first = today - timedelta(days=days - 1)
        rows = self._conn.execute(
            """SELECT day, sum(messages), sum(bytes) FROM lan_meter
               WHERE day BETWEEN ? AND ? GROUP BY day""",
            (first.isoformat(), today.isoformat()))
        found = {row[0]: MeterFigures(row[1], row[2]) for row in rows}
        return [(day, found.get(day.isoformat(), MeterFigures()))
                for day in (first + timedelta(days=n) for n in range(days))]
