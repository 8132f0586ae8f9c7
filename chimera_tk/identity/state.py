"""The CA's records in SQLite: invites (only a hash of each secret), issued certificates, their
revocations, and the ids of spent tokens. All SQL of the identity provider lives here, always
with parameters.

Several processes may use the file at once (``serve`` and an admin running ``invite``), so it runs
in WAL mode with a busy timeout, and every check-then-write happens inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chimera_tk.errors import UserError
from chimera_tk.fsutil import create_private_file

_MIGRATIONS = [
    """
    CREATE TABLE invites (
        secret_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
    );
    -- serials are 159-bit numbers, too wide for INTEGER: kept as decimal text
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        issued_at INTEGER NOT NULL
    );
    CREATE INDEX certificates_by_user ON certificates (user_id, not_after);
    CREATE TABLE used_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE revocations (
        serial TEXT PRIMARY KEY REFERENCES certificates (serial),
        reason_code INTEGER NOT NULL,
        note TEXT NOT NULL,
        revoked_at INTEGER NOT NULL
    );
    """,
    """
    -- one live code per user id: a new request replaces it (and its attempt count)
    CREATE TABLE telegram_codes (
        user_id INTEGER PRIMARY KEY,
        salt TEXT NOT NULL,
        code_hmac TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        used_at INTEGER
    );
    -- recent code requests, by 'id:N' and by 'addr:IP', for the rate limits
    CREATE TABLE code_requests (
        bucket TEXT NOT NULL,
        requested_at INTEGER NOT NULL
    );
    CREATE INDEX code_requests_by_bucket ON code_requests (bucket, requested_at);
    """,
]


# The holder of a step-ca certificate revoked by serial before anyone reported it (user ids
# start at 1).
UNKNOWN_USER_ID = 0


class InviteOutcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    OTHER_USER = "other user"


class CodeOutcome(enum.Enum):
    ACCEPTED = "accepted"
    NONE = "no code"
    WRONG = "wrong code"
    LOCKED = "locked"
    EXPIRED = "expired"
    USED = "used"


class TokenAlreadyUsed(Exception):
    """The token's jti is on record: a replay."""


@dataclass(frozen=True, slots=True)
class InviteRecord:
    user_id: int
    name: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: int
    user_id: int
    not_before: datetime
    not_after: datetime
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    serial: int
    user_id: int
    reason_code: int
    note: str
    revoked_at: datetime


class AuthorityState:
    """One connection to the CA's state file, or to an in-memory database for ``None``."""

    def __init__(self, path: Path | None) -> None:
        if path is not None and not path.exists():
            create_private_file(path)
        self._conn = sqlite3.connect(":memory:" if path is None else path,
                                     isolation_level=None, timeout=5.0)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        if path is not None:
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._migrate()

    def close(self) -> None:
        self._conn.close()

    def add_invite(self, secret_sha256: str, user_id: int, name: str, created_at: datetime,
                   expires_at: datetime) -> None:
        with self._transaction():
            self._conn.execute(
                "INSERT INTO invites (secret_sha256, user_id, name, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (secret_sha256, user_id, name, _ts(created_at), _ts(expires_at)))

    def consume_invite(self, secret_sha256: str, user_id: int, now: datetime) -> InviteOutcome:
        """Mark the invite used if it exists, is unused, unexpired and for ``user_id``."""
        with self._transaction():
            row = self._conn.execute(
                "SELECT user_id, expires_at, used_at FROM invites WHERE secret_sha256 = ?",
                (secret_sha256,)).fetchone()
            if row is None:
                return InviteOutcome.UNKNOWN
            invited_id, expires_at, used_at = row
            if used_at is not None:
                return InviteOutcome.USED
            if _ts(now) >= expires_at:
                return InviteOutcome.EXPIRED
            if invited_id != user_id:
                return InviteOutcome.OTHER_USER
            self._conn.execute("UPDATE invites SET used_at = ? WHERE secret_sha256 = ?",
                               (_ts(now), secret_sha256))
            return InviteOutcome.ACCEPTED

    def note_code_request(self, bucket: str, now: datetime, window: int, limit: int) -> bool:
        """Count one code request in ``bucket``; False (and not counted) past ``limit`` per
        ``window`` seconds."""
        with self._transaction():
            self._conn.execute("DELETE FROM code_requests WHERE requested_at <= ?",
                               (_ts(now) - window,))
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM code_requests WHERE bucket = ?", (bucket,)).fetchone()
            if count >= limit:
                return False
            self._conn.execute("INSERT INTO code_requests (bucket, requested_at) VALUES (?, ?)",
                               (bucket, _ts(now)))
        return True

    def put_code(self, user_id: int, salt: str, code_hmac: str, expires_at: datetime) -> None:
        """Store the new code of ``user_id``, replacing any earlier one and its attempts."""
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO telegram_codes "
                "(user_id, salt, code_hmac, expires_at, attempts, used_at) "
                "VALUES (?, ?, ?, ?, 0, NULL)", (user_id, salt, code_hmac, _ts(expires_at)))

    def drop_code(self, user_id: int) -> None:
        with self._transaction():
            self._conn.execute("DELETE FROM telegram_codes WHERE user_id = ?", (user_id,))

    def check_code(self, user_id: int, matches: Callable[[str, str], bool], now: datetime,
                   max_attempts: int) -> tuple[CodeOutcome, int]:
        """Spend one attempt on the code of ``user_id``: ``matches(salt, code_hmac)`` says
        whether the offered code is right. Returns the outcome and the attempts left."""
        with self._transaction():
            row = self._conn.execute(
                "SELECT salt, code_hmac, expires_at, attempts, used_at FROM telegram_codes "
                "WHERE user_id = ?", (user_id,)).fetchone()
            if row is None:
                return CodeOutcome.NONE, 0
            salt, code_hmac, expires_at, attempts, used_at = row
            if used_at is not None:
                return CodeOutcome.USED, 0
            if attempts >= max_attempts:
                return CodeOutcome.LOCKED, 0
            if _ts(now) >= expires_at:
                return CodeOutcome.EXPIRED, 0
            # The attempt is counted before the comparison, in the same transaction, so
            # parallel guesses cannot get more than max_attempts between them.
            attempts += 1
            accepted = matches(salt, code_hmac)
            self._conn.execute(
                "UPDATE telegram_codes SET attempts = ?, used_at = ? WHERE user_id = ?",
                (attempts, _ts(now) if accepted else None, user_id))
        if accepted:
            return CodeOutcome.ACCEPTED, max_attempts - attempts
        return CodeOutcome.WRONG, max_attempts - attempts

    def record_issued(self, *, jti: str, token_expires_at: datetime, serial: int, user_id: int,
                      not_before: datetime, not_after: datetime, now: datetime) -> None:
        """Spend the token and record the certificate, both or neither; TokenAlreadyUsed."""
        with self._transaction():
            # A token past its expiry is refused anyway, so its jti need not be kept any longer.
            self._conn.execute("DELETE FROM used_tokens WHERE expires_at < ?",
                               (_ts(now) - 86400,))
            try:
                self._conn.execute("INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?)",
                                   (jti, _ts(token_expires_at)))
            except sqlite3.IntegrityError:
                raise TokenAlreadyUsed(jti) from None
            self._conn.execute(
                "INSERT INTO certificates (serial, user_id, not_before, not_after, issued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (str(serial), user_id, _ts(not_before), _ts(not_after), _ts(now)))

    def record_renewed(self, *, serial: int, user_id: int, not_before: datetime,
                       not_after: datetime, now: datetime) -> None:
        """Record a certificate issued by renewal (no token: the old certificate was the proof)."""
        with self._transaction():
            self._conn.execute(
                "INSERT INTO certificates (serial, user_id, not_before, not_after, issued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (str(serial), user_id, _ts(not_before), _ts(not_after), _ts(now)))

    def note_certificate(self, *, serial: int, user_id: int, not_before: datetime,
                         not_after: datetime, now: datetime) -> bool:
        """Record a certificate issued elsewhere (the team's step-ca); False if already known."""
        with self._transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO certificates "
                "(serial, user_id, not_before, not_after, issued_at) VALUES (?, ?, ?, ?, ?)",
                (str(serial), user_id, _ts(not_before), _ts(not_after), _ts(now)))
        return cursor.rowcount == 1

    def spend_token(self, jti: str, expires_at: datetime) -> None:
        """Mark a token used (for tokens that do not sign anything); TokenAlreadyUsed."""
        with self._transaction():
            try:
                self._conn.execute("INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?)",
                                   (jti, _ts(expires_at)))
            except sqlite3.IntegrityError:
                raise TokenAlreadyUsed(jti) from None

    def certificate(self, serial: int) -> CertificateRecord | None:
        row = self._conn.execute(
            "SELECT serial, user_id, not_before, not_after, issued_at FROM certificates "
            "WHERE serial = ?", (str(serial),)).fetchone()
        if row is None:
            return None
        _, user_id, nb, na, issued = row
        return CertificateRecord(serial, user_id, _dt(nb), _dt(na), _dt(issued))

    def revoke(self, serial: int, reason_code: int, note: str, now: datetime) -> bool:
        """Record the revocation of a known certificate; False if it was already revoked."""
        with self._transaction():
            try:
                self._conn.execute(
                    "INSERT INTO revocations (serial, reason_code, note, revoked_at) "
                    "VALUES (?, ?, ?, ?)", (str(serial), reason_code, note, _ts(now)))
            except sqlite3.IntegrityError:
                return False
        return True

    def revocation(self, serial: int) -> RevocationRecord | None:
        row = self._conn.execute(
            "SELECT r.serial, c.user_id, r.reason_code, r.note, r.revoked_at "
            "FROM revocations r JOIN certificates c ON c.serial = r.serial "
            "WHERE r.serial = ?", (str(serial),)).fetchone()
        return None if row is None else _revocation(row)

    def revocations(self) -> list[RevocationRecord]:
        rows = self._conn.execute(
            "SELECT r.serial, c.user_id, r.reason_code, r.note, r.revoked_at "
            "FROM revocations r JOIN certificates c ON c.serial = r.serial "
            "ORDER BY r.revoked_at, r.serial").fetchall()
        return [_revocation(row) for row in rows]

    def certificates(self) -> list[CertificateRecord]:
        rows = self._conn.execute(
            "SELECT serial, user_id, not_before, not_after, issued_at FROM certificates "
            "ORDER BY issued_at, serial").fetchall()
        return [CertificateRecord(int(serial), user_id, _dt(nb), _dt(na), _dt(issued))
                for serial, user_id, nb, na, issued in rows]

    def open_invites(self, now: datetime) -> list[InviteRecord]:
        rows = self._conn.execute(
            "SELECT user_id, name, created_at, expires_at, used_at FROM invites "
            "WHERE used_at IS NULL AND expires_at > ? ORDER BY created_at",
            (_ts(now),)).fetchall()
        return [InviteRecord(user_id, name, _dt(created), _dt(expires), None)
                for user_id, name, created, expires, _ in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):
                raise UserError("the CA's state.db was written by a newer Chimera")
            for script in _MIGRATIONS[version:]:
                for statement in _statements(script):
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")


def _statements(script: str) -> list[str]:
    # executescript() would commit the open transaction; these scripts hold no ';' in literals.
    return [part for part in script.split(";") if part.strip()]


def _revocation(row: tuple[str, int, int, str, int]) -> RevocationRecord:
    serial, user_id, code, note, revoked = row
    return RevocationRecord(int(serial), user_id, code, note, _dt(revoked))


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
