-- Backup access codes: a pool of codes programmed ahead of time on a lock, handed out when a
-- time-bound code cannot be trusted.
-- Pool size of the device; 0 = the device has no pool (yet).
ALTER TABLE devices ADD COLUMN backup_pool_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_codes ADD COLUMN is_backup INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_codes ADD COLUMN use_backup_access_code_pool INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_codes ADD COLUMN pulled_backup_access_code_id TEXT;
-- On a backup code: the code it was handed out for. A backup is handed out once.
ALTER TABLE access_codes ADD COLUMN pulled_for_access_code_id TEXT;
CREATE UNIQUE INDEX access_codes_pulled_for ON access_codes (pulled_for_access_code_id)
    WHERE pulled_for_access_code_id IS NOT NULL;
CREATE INDEX access_codes_backups ON access_codes (device_id, is_backup) WHERE is_backup = 1;
