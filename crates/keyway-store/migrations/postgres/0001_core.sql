-- Keyway schema for PostgreSQL: the same tables as migrations/sqlite (0001-0004), in one step.
-- Times are milliseconds since the Unix epoch (UTC), as BIGINT. JSON documents (errors,
-- warnings, code rules, payloads) are TEXT written and read by Keyway, as on SQLite.
-- Several Keyway processes may share this database.

CREATE TABLE workspaces (
    seq BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    company_name TEXT NOT NULL,
    is_sandbox BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

-- API keys are stored as SHA-256 hashes only.
CREATE TABLE api_keys (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    created_at BIGINT NOT NULL
);

CREATE TABLE connected_accounts (
    seq BIGSERIAL PRIMARY KEY,
    connected_account_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    account_type TEXT NOT NULL,
    account_type_display_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disconnected BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX connected_accounts_workspace ON connected_accounts (workspace_id, seq);

CREATE TABLE devices (
    seq BIGSERIAL PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    connected_account_id TEXT NOT NULL REFERENCES connected_accounts (connected_account_id),
    provider TEXT NOT NULL,
    device_type TEXT NOT NULL,
    name TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    -- JSON: supported_code_lengths, max_active_codes_supported, code_constraints, ...
    code_rules TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- One worker at a time per lock, across all instances.
    lease_owner TEXT,
    lease_until BIGINT,
    -- Pool size of the device; 0 = the device has no pool (yet).
    backup_pool_size BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_workspace ON devices (workspace_id, seq);

-- The memory of simulated locks: what a real lock would hold itself.
CREATE TABLE sandbox_locks (
    device_id TEXT PRIMARY KEY REFERENCES devices (device_id),
    online BOOLEAN NOT NULL DEFAULT TRUE,
    delay_ms BIGINT NOT NULL,
    -- Write operations carried out (slots written or cleared).
    operations BIGINT NOT NULL DEFAULT 0,
    removed BOOLEAN NOT NULL DEFAULT FALSE,
    -- The lock times out on its next N operations.
    fail_next BIGINT NOT NULL DEFAULT 0,
    locked BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE sandbox_slots (
    device_id TEXT NOT NULL REFERENCES sandbox_locks (device_id),
    slot BIGINT NOT NULL,
    code TEXT NOT NULL,
    name TEXT,
    PRIMARY KEY (device_id, slot)
);

CREATE TABLE access_codes (
    seq BIGSERIAL PRIMARY KEY,
    access_code_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    device_id TEXT NOT NULL REFERENCES devices (device_id),
    is_managed BOOLEAN NOT NULL,
    name TEXT,
    code TEXT,
    type TEXT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    status TEXT NOT NULL,
    -- The client asked for deletion; the row goes once the lock confirmed removal.
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    -- The lock slot chosen for this code, and the PIN the lock last confirmed in it.
    slot BIGINT,
    confirmed_code TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    warnings TEXT NOT NULL DEFAULT '[]',
    is_external_modification_allowed BOOLEAN NOT NULL DEFAULT FALSE,
    is_one_time_use BOOLEAN NOT NULL DEFAULT FALSE,
    is_offline_access_code BOOLEAN NOT NULL DEFAULT FALSE,
    common_code_key TEXT,
    -- Since when the lock has had work to do for this code.
    pending_since BIGINT,
    created_at BIGINT NOT NULL,
    -- Backup access codes: a pool of codes programmed ahead of time on a lock.
    is_backup BOOLEAN NOT NULL DEFAULT FALSE,
    use_backup_access_code_pool BOOLEAN NOT NULL DEFAULT FALSE,
    pulled_backup_access_code_id TEXT,
    -- On a backup code: the code it was handed out for. A backup is handed out once.
    pulled_for_access_code_id TEXT
);
CREATE INDEX access_codes_device ON access_codes (device_id, seq);
CREATE INDEX access_codes_workspace ON access_codes (workspace_id, is_managed, seq);
CREATE UNIQUE INDEX access_codes_unmanaged_slot ON access_codes (device_id, slot)
    WHERE NOT is_managed;
CREATE UNIQUE INDEX access_codes_pulled_for ON access_codes (pulled_for_access_code_id)
    WHERE pulled_for_access_code_id IS NOT NULL;
CREATE INDEX access_codes_backups ON access_codes (device_id) WHERE is_backup;
CREATE INDEX access_codes_common_key ON access_codes (workspace_id, common_code_key)
    WHERE common_code_key IS NOT NULL;

-- Device work: reconcile one access code with its lock (access_code_id set), read a lock back
-- (neither access_code_id nor action), or carry out a door command (action set).
-- `run_after` doubles as the scheduler: time-bound windows are jobs due at their edges.
CREATE TABLE device_jobs (
    job_id BIGSERIAL PRIMARY KEY,
    device_id TEXT NOT NULL,
    access_code_id TEXT,
    run_after BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    action TEXT,
    action_attempt_id TEXT,
    -- Taken by the holder of the device's lease, which deletes it once done. New work queued
    -- meanwhile becomes a job of its own instead of merging into one already being worked on.
    taken BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX device_jobs_due ON device_jobs (run_after);
CREATE INDEX device_jobs_device ON device_jobs (device_id, run_after);
-- One waiting job per code and due time: writers on several instances de-duplicate through it.
CREATE UNIQUE INDEX device_jobs_code ON device_jobs (access_code_id, run_after)
    WHERE access_code_id IS NOT NULL AND NOT taken;
-- One waiting read-back per lock: scheduling a read is an atomic upsert.
CREATE UNIQUE INDEX device_jobs_read ON device_jobs (device_id)
    WHERE access_code_id IS NULL AND action IS NULL AND NOT taken;

-- Events carry two numbers: `id` in insertion order, and `seq`, the order of `events/list`.
-- `seq` is given when an event is first listed, under the `event_sequence` row lock, to every
-- committed event without one, in `id` order. So `seq` follows commit order: an event that
-- commits after a page was read gets a higher `seq` than anything on that page, and paging by
-- `seq` never skips it.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT UNIQUE,
    event_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    device_id TEXT,
    connected_account_id TEXT,
    access_code_id TEXT,
    code TEXT,
    created_at BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    -- Event fields beyond the common ones (method, action_attempt_id, ...), as a JSON object.
    payload TEXT
);
CREATE INDEX events_workspace ON events (workspace_id, seq);
CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;

CREATE TABLE event_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO event_sequence (id, last_seq) VALUES (1, 0);

CREATE TABLE action_attempts (
    seq BIGSERIAL PRIMARY KEY,
    action_attempt_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    access_code_id TEXT,
    device_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX action_attempts_workspace ON action_attempts (workspace_id, seq);
CREATE INDEX action_attempts_pending ON action_attempts (access_code_id) WHERE status = 'pending';
