"""SQLite storage: one database per profile, one repository per aggregate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chimera_tk.store.changes import MessageChangeRepository
from chimera_tk.store.database import open_database, transaction
from chimera_tk.store.dialogs import DialogRepository
from chimera_tk.store.files import FileRepository
from chimera_tk.store.lan_meter import LanMeterRepository
from chimera_tk.store.messages import MessageRepository
from chimera_tk.store.outbox import OutboxRepository


class Store:
    """One connection and its repositories. Open one per thread; never share across threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.dialogs = DialogRepository(conn)
        self.messages = MessageRepository(conn)
        self.files = FileRepository(conn)
        self.outbox = OutboxRepository(conn, self.messages)
        self.changes = MessageChangeRepository(conn)
        self.lan_meter = LanMeterRepository(conn)

    @classmethod
    def open(cls, path: Path | None) -> Store:
        return cls(open_database(path))

    def transaction(self):
        return transaction(self.conn)

    def leave_checkpoints_to_others(self) -> Store:
        """This connection's commits never run the WAL's automatic checkpoint (which costs the
        committing call several fsyncs); some other thread calls :meth:`checkpoint`."""
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        return self

    def checkpoint(self) -> None:
        """Copy the WAL into the database; PASSIVE never waits for nor blocks other writers."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        self.conn.close()


__all__ = ["Store", "open_database", "transaction"]
