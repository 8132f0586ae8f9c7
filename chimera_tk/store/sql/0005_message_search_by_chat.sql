-- Full-text search rebuilt to stay fast at a million messages.
--
-- What is searchable is defined once, by the view messages_searchable: the text of every message
-- not deleted, and a per-chat token ("c1001"; "cn1001" for dialog -1001). The FTS5 table is an
-- external-content index over that view, so a 'rebuild' recreates exactly what the triggers and
-- the repository maintain (over the bare table it would bring deleted messages back).
--   prefix = '1 2 3'  search as you type makes the last word a prefix; without a prefix index "t*"
--                     merges the doclist of every word starting with "t" (140 ms at 1M messages)
--   chat              search in one chat is `text : (...) AND chat : "c1001"`, answered inside
--                     FTS5, instead of matching the whole history and filtering afterwards
--   columnsize = 0    nothing reads column sizes (results are ordered by rowid, not bm25), so the
--                     per-message row in a %_docsize table is not written
--
-- New messages are indexed by MessageRepository, one INSERT ... SELECT per call in the same
-- transaction, not by an insert trigger: FTS5 writes its pending terms out as a new segment
-- whenever a statement opens a savepoint, and every INSERT that fires a trigger opens one, so a
-- batch inserted row by row wrote a segment per message, merged again later (ingest 27k/s).
-- Insert messages only through the repository. Edits, deletions and DELETE (a dialog's cascade
-- included) are rare and go through the triggers below, which remove the row's old indexed form
-- before the change and add its new one after.
DROP TRIGGER messages_fts_after_insert;
DROP TRIGGER messages_fts_after_delete;
DROP TRIGGER messages_fts_after_update;
DROP TABLE messages_fts;

CREATE VIEW messages_searchable AS
    SELECT id, text, 'c' || replace(dialog_id, '-', 'n') AS chat FROM messages WHERE deleted = 0;

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    chat,
    content = 'messages_searchable',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3',
    columnsize = 0
);

CREATE TRIGGER messages_fts_before_delete BEFORE DELETE ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text, chat)
        SELECT 'delete', id, text, chat FROM messages_searchable WHERE id = old.id;
END;

CREATE TRIGGER messages_fts_before_update BEFORE UPDATE OF id, dialog_id, text, deleted ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text, chat)
        SELECT 'delete', id, text, chat FROM messages_searchable WHERE id = old.id;
END;

CREATE TRIGGER messages_fts_after_update AFTER UPDATE OF id, dialog_id, text, deleted ON messages
BEGIN
    INSERT INTO messages_fts (rowid, text, chat)
        SELECT id, text, chat FROM messages_searchable WHERE id = new.id;
END;

INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
