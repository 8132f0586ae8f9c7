-- A message can be held to the LAN on its own (chimera send --lan-only), not only per dialog.
ALTER TABLE outbox ADD COLUMN lan_only INTEGER NOT NULL DEFAULT 0 CHECK (lan_only IN (0, 1));
