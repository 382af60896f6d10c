-- Locks of real providers (Z-Wave JS): their state as their server last reported it.
-- Sandbox locks keep theirs in sandbox_locks, which wins where both are set.
ALTER TABLE devices ADD COLUMN online BOOLEAN;
ALTER TABLE devices ADD COLUMN locked BOOLEAN;
-- JSON: model, battery level.
ALTER TABLE devices ADD COLUMN details TEXT;
-- Where a connected account's server is (Z-Wave JS: its ws:// URL).
ALTER TABLE connected_accounts ADD COLUMN endpoint TEXT;
