-- "Kept on your LAN": messages and bytes that went over the LAN instead of the internet, summed
-- per local calendar day, chat and direction (a few rows a day, so totals are cheap to sum).
-- A message is counted once, in the transaction that commits its delivery: the sender's when the
-- ACK arrives, the receiver's when the message (or the verified file) is stored. No foreign key
-- on dialog_id: what was kept on the LAN stays counted after a chat is removed.
CREATE TABLE lan_meter (
    day       TEXT    NOT NULL,  -- YYYY-MM-DD, local date of the delivery
    dialog_id INTEGER NOT NULL,
    outgoing  INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    messages  INTEGER NOT NULL DEFAULT 0 CHECK (messages >= 0),
    bytes     INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    PRIMARY KEY (day, dialog_id, outgoing)
) WITHOUT ROWID;
