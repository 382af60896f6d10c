-- Lock and unlock commands ride the device job queue (one operation at a time per lock).
ALTER TABLE device_jobs ADD COLUMN action TEXT;
ALTER TABLE device_jobs ADD COLUMN action_attempt_id TEXT;
ALTER TABLE sandbox_locks ADD COLUMN locked INTEGER NOT NULL DEFAULT 1;
-- Event fields beyond the common ones (method, action_attempt_id, ...), as a JSON object.
ALTER TABLE events ADD COLUMN payload TEXT;
