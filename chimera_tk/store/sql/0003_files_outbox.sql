-- Attached files (LAN transfers and Telegram media) and the durable outbox of the router.
CREATE TABLE files (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,          -- the name shown to the user
    size       INTEGER NOT NULL CHECK (size >= 0),
    sha256     TEXT,
    mime       TEXT,
    path       TEXT,                      -- absolute path on disk once known
    state      TEXT    NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'transferring', 'complete', 'failed', 'cancelled')),
    bytes_done INTEGER NOT NULL DEFAULT 0 CHECK (bytes_done >= 0)
);

ALTER TABLE messages ADD COLUMN file_id INTEGER REFERENCES files (id) ON DELETE SET NULL;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    route           TEXT    CHECK (route IN ('lan', 'telegram')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_by_due_time ON outbox (next_attempt_at, id);
