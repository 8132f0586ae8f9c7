-- Full-text search over message texts, kept in sync by triggers; deleted messages drop out.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_after_insert AFTER INSERT ON messages WHEN new.deleted = 0
BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER messages_fts_after_delete AFTER DELETE ON messages WHEN old.deleted = 0
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER messages_fts_after_update AFTER UPDATE OF text, deleted ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text)
        SELECT 'delete', old.id, old.text WHERE old.deleted = 0;
    INSERT INTO messages_fts (rowid, text)
        SELECT new.id, new.text WHERE new.deleted = 0;
END;

INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE deleted = 0;
