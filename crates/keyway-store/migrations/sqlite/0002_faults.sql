-- Faults that sandbox locks and connected accounts can be told to show.
ALTER TABLE sandbox_locks ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
-- The lock times out on its next N operations.
ALTER TABLE sandbox_locks ADD COLUMN fail_next INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connected_accounts ADD COLUMN disconnected INTEGER NOT NULL DEFAULT 0;
