-- Edits and deletions of messages that have already left (or may have), and local deletions.
--
-- message_changes is the durable to-do list of EDIT/DELETE notices, one row per message: a second
-- edit rewrites the row (the notice always carries the message's current text) and a delete
-- replaces an edit. It is not the outbox: an outbox row drives its message through queued ->
-- sending -> sent, while a change of a delivered message must leave that state alone.
--   route     where the original went; NULL until it is known (the message was still in flight)
--   version   bumped by every rewrite, so finishing an older notice in flight keeps the newer one
--   sending   claimed by a transport; back to 0 on retry and after a restart
CREATE TABLE message_changes (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('edit', 'delete')),
    route           TEXT    CHECK (route IN ('lan', 'telegram')),
    version         INTEGER NOT NULL DEFAULT 1,
    sending         INTEGER NOT NULL DEFAULT 0 CHECK (sending IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX message_changes_by_due_time ON message_changes (next_attempt_at, id);

-- Deleted by the user on this machine (their own message, or someone else's "for me"): the chat
-- never shows it, whatever ui.received_deletes says about deletions made by the author elsewhere.
ALTER TABLE messages ADD COLUMN deleted_here INTEGER NOT NULL DEFAULT 0
    CHECK (deleted_here IN (0, 1));
