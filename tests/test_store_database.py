"""Opening, migrating and refusing databases: real SQLite files on disk."""

import hashlib
import sqlite3
from pathlib import Path

import pytest

from chimera_tk.errors import StoreError
from chimera_tk.store import Store
from chimera_tk.store.database import (
    APPLICATION_ID,
    LATEST_VERSION,
    migrations,
    open_database,
    schema_version,
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_private_wal_and_current(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    conn = open_database(path)
    assert schema_version(conn) == LATEST_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    conn.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_migration_files_are_numbered_without_gaps() -> None:
    assert [version for version, _ in migrations()] == list(range(1, LATEST_VERSION + 1))
    assert LATEST_VERSION >= 3


def _fill_at_version(conn: sqlite3.Connection, version: int) -> None:
    """Rows as a Chimera at ``version`` would have written them (raw SQL of that schema)."""
    if version >= 1:
        conn.execute("INSERT INTO dialogs (id, kind, title) VALUES (7, 'user', 'Old Friend')")
        conn.execute(
            """INSERT INTO messages (dialog_id, uid, outgoing, text, sent_at, state, transport)
               VALUES (7, 'old-uid', 0, 'written before the upgrade', 1000, 'received', 'lan')""")
    if version >= 5:  # from 0005 on, the repository indexes new rows itself (no insert trigger)
        conn.execute("""INSERT INTO messages_fts (rowid, text, chat)
                        SELECT id, text, chat FROM messages_searchable""")
    if version >= 3:
        conn.execute("INSERT INTO files (name, size, state) VALUES ('a.txt', 3, 'complete')")


@pytest.mark.parametrize("start", range(LATEST_VERSION))
def test_every_earlier_schema_migrates_to_the_current_one(tmp_path: Path, start: int) -> None:
    path = tmp_path / "chimera.db"
    old = open_database(path, migrate_to=start)
    assert schema_version(old) == start
    _fill_at_version(old, start)
    old.close()

    store = Store.open(path)
    assert schema_version(store.conn) == LATEST_VERSION
    if start >= 1:
        message = store.messages.find_by_uid("old-uid")
        assert message is not None and message.text == "written before the upgrade"
        assert [m.uid for m in store.messages.search("upgrade")] == ["old-uid"]
        assert message.file_id is None
    store.dialogs.upsert(8, "user", "New")
    sent = store.messages.add_outgoing(8, "after the upgrade")
    store.outbox.enqueue(sent.id)
    assert [e.message_id for e in store.outbox.due()] == [sent.id]
    store.close()


def test_failed_migration_leaves_the_old_schema(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "chimera.db"
    open_database(path, migrate_to=1).close()
    broken = [*migrations()[:1], (2, "CREATE TABLE half_done (x);\nTHIS IS NOT SQL;")]
    monkeypatch.setattr("chimera_tk.store.database.migrations", lambda: broken)
    with pytest.raises(StoreError):
        open_database(path, migrate_to=2)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()


def test_database_from_a_newer_chimera_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.close()
    before = _digest(path)
    with pytest.raises(StoreError, match="newer Chimera"):
        open_database(path)
    assert _digest(path) == before


def test_corrupt_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    before = _digest(path)
    with pytest.raises(StoreError, match="damaged or is not a database"):
        open_database(path)
    assert _digest(path) == before
    assert not (tmp_path / "chimera.db-wal").exists()


def test_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    path.write_text("my shopping list\n" * 100)
    before = _digest(path)
    with pytest.raises(StoreError):
        open_database(path)
    assert _digest(path) == before


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    other.commit()
    other.close()
    before = _digest(path)
    with pytest.raises(StoreError, match=r"not a Chimera database.*invoices"):
        open_database(path)
    assert _digest(path) == before


def test_empty_file_is_taken_as_new(tmp_path: Path) -> None:
    path = tmp_path / "chimera.db"
    path.touch()
    conn = open_database(path)
    assert schema_version(conn) == LATEST_VERSION
    conn.close()


def test_in_memory_store_for_unit_tests() -> None:
    store = Store.open(None)
    store.dialogs.upsert(1, "user", "A")
    assert store.dialogs.get(1).title == "A"
    store.close()
