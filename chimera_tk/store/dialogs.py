"""Dialogs (conversations): one row per Telegram peer or LAN person."""

from __future__ import annotations

import sqlite3

from chimera_tk.store.records import DIALOG_KINDS, Dialog

_COLUMNS = "id, kind, title, username, phone, unread_count, last_activity, lan_only, muted"


class DialogRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def upsert(self, dialog_id: int, kind: str, title: str, *, username: str | None = None,
               phone: str | None = None, last_activity: int | None = None) -> Dialog:
        """Create the dialog or update its descriptive fields; counters and flags are kept."""
        if kind not in DIALOG_KINDS:
            raise ValueError(f"unknown dialog kind {kind!r}")
        self._conn.execute(
            """INSERT INTO dialogs (id, kind, title, username, phone, last_activity)
               VALUES (?, ?, ?, ?, ?, coalesce(?, 0))
               ON CONFLICT (id) DO UPDATE SET
                   kind = excluded.kind, title = excluded.title,
                   username = coalesce(excluded.username, username),
                   phone = coalesce(excluded.phone, phone),
                   last_activity = max(last_activity, excluded.last_activity)""",
            (dialog_id, kind, title, username, phone, last_activity))
        return self.get(dialog_id)

    def ensure(self, dialog_id: int, kind: str, title: str) -> Dialog:
        """Create the dialog if it is new; an existing one (e.g. titled by Telegram) is kept."""
        self._conn.execute(
            "INSERT INTO dialogs (id, kind, title) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (dialog_id, kind, title))
        return self.get(dialog_id)

    def learn_name(self, dialog_id: int, name: str, placeholder: str) -> bool:
        """Replace a placeholder title (we only knew the id) by the name the person gave."""
        cursor = self._conn.execute(
            "UPDATE dialogs SET title = ? WHERE id = ? AND title IN (?, '')",
            (name, dialog_id, placeholder))
        return cursor.rowcount == 1

    def delete_group_or_channel(self, dialog_id: int) -> bool:
        """Forget a group or channel Telegram says we left (its messages go with it).
        Private chats are never removed this way: a person's history is not Telegram's to end."""
        cursor = self._conn.execute("DELETE FROM dialogs WHERE id = ? AND kind != 'user'",
                                    (dialog_id,))
        return cursor.rowcount == 1

    def get(self, dialog_id: int) -> Dialog:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM dialogs WHERE id = ?", (dialog_id,)).fetchone()
        if row is None:
            raise KeyError(f"no dialog {dialog_id}")
        return _dialog(row)

    def find(self, dialog_id: int) -> Dialog | None:
        try:
            return self.get(dialog_id)
        except KeyError:
            return None

    def list(self, search: str = "", limit: int = 500) -> list[Dialog]:
        """Most recently active first; ``search`` matches title, username or phone."""
        if search:
            pattern = "%" + _escape_like(search) + "%"
            rows = self._conn.execute(
                f"""SELECT {_COLUMNS} FROM dialogs
                    WHERE title LIKE :p ESCAPE '\\' OR username LIKE :p ESCAPE '\\'
                          OR phone LIKE :p ESCAPE '\\'
                    ORDER BY last_activity DESC, id DESC LIMIT :limit""",
                {"p": pattern, "limit": limit})
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM dialogs ORDER BY last_activity DESC, id DESC LIMIT ?",
                (limit,))
        return [_dialog(row) for row in rows]

    def mark_read(self, dialog_id: int) -> None:
        self._conn.execute("UPDATE dialogs SET unread_count = 0 WHERE id = ?", (dialog_id,))

    def set_lan_only(self, dialog_id: int, lan_only: bool) -> None:
        self._conn.execute("UPDATE dialogs SET lan_only = ? WHERE id = ?",
                           (int(lan_only), dialog_id))

    def set_muted(self, dialog_id: int, muted: bool) -> None:
        """A muted dialog raises no notification and does not count on the tray badge."""
        self._conn.execute("UPDATE dialogs SET muted = ? WHERE id = ?", (int(muted), dialog_id))

    def total_unread(self) -> int:
        """Unread messages in dialogs that are not muted: the tray badge's number."""
        return self._conn.execute(
            "SELECT coalesce(sum(unread_count), 0) FROM dialogs "
            "WHERE unread_count > 0 AND muted = 0").fetchone()[0]


def _dialog(row: sqlite3.Row) -> Dialog:
    return Dialog(id=row[0], kind=row[1], title=row[2], username=row[3], phone=row[4],
                  unread_count=row[5], last_activity=row[6], lan_only=bool(row[7]),
                  muted=bool(row[8]))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
