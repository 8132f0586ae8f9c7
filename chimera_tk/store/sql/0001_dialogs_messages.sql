-- Conversations and their messages. Timestamps are UTC milliseconds since the Unix epoch.
CREATE TABLE dialogs (
    id            INTEGER PRIMARY KEY,  -- Telegram peer id as Telethon marks it (users positive)
    kind          TEXT    NOT NULL CHECK (kind IN ('user', 'group', 'channel', 'supergroup')),
    title         TEXT    NOT NULL DEFAULT '',
    username      TEXT,
    phone         TEXT,
    unread_count  INTEGER NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    last_activity INTEGER NOT NULL DEFAULT 0,
    lan_only      INTEGER NOT NULL DEFAULT 0 CHECK (lan_only IN (0, 1)),
    muted         INTEGER NOT NULL DEFAULT 0 CHECK (muted IN (0, 1))
);
CREATE INDEX dialogs_by_activity ON dialogs (last_activity DESC, id DESC);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    dialog_id   INTEGER NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    uid         TEXT    NOT NULL UNIQUE,  -- UUID for LAN messages, "tg:<dialog>:<msg id>" for cloud ones
    tg_msg_id   INTEGER,
    sender_id   INTEGER,
    sender_name TEXT    NOT NULL DEFAULT '',
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    text        TEXT    NOT NULL DEFAULT '',
    sent_at     INTEGER NOT NULL,
    edited_at   INTEGER,
    transport   TEXT    CHECK (transport IN ('lan', 'telegram')),
    state       TEXT    NOT NULL
                CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'received')),
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    reply_to    INTEGER REFERENCES messages (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX messages_by_telegram_id ON messages (dialog_id, tg_msg_id)
    WHERE tg_msg_id IS NOT NULL;
-- Keyset paging of one chat: (dialog_id, sent_at, id) is the page key.
CREATE INDEX messages_by_dialog_time ON messages (dialog_id, sent_at, id);
