"""Files attached to messages: what the user sees, where the bytes are, how far a transfer got."""

from __future__ import annotations

import sqlite3

from chimera_tk.store.records import FileRecord

FILE_STATES = ("pending", "transferring", "complete", "failed", "cancelled")
_COLUMNS = "id, name, size, sha256, mime, path, state, bytes_done"


class FileRepository:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def create(self, name: str, size: int, *, sha256: str | None = None, mime: str | None = None,
               path: str | None = None, state: str = "pending") -> FileRecord:
        cursor = self._conn.execute(
            "INSERT INTO files (name, size, sha256, mime, path, state) VALUES (?, ?, ?, ?, ?, ?)",
            (name, size, sha256, mime, path, state))
        return self.get(cursor.lastrowid)

    def get(self, file_id: int) -> FileRecord:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(f"no file {file_id}")
        return FileRecord(*row)

    def record_progress(self, file_id: int, bytes_done: int) -> None:
        self._conn.execute(
            "UPDATE files SET bytes_done = ?, state = 'transferring' WHERE id = ?",
            (bytes_done, file_id))

    def set_state(self, file_id: int, state: str, *, path: str | None = None,
                  sha256: str | None = None, bytes_done: int | None = None) -> FileRecord:
        if state not in FILE_STATES:
            raise ValueError(f"unknown file state {state!r}")
        self._conn.execute(
            """UPDATE files SET state = ?, path = coalesce(?, path), sha256 = coalesce(?, sha256),
                                bytes_done = coalesce(?, bytes_done)
               WHERE id = ?""", (state, path, sha256, bytes_done, file_id))
        return self.get(file_id)
