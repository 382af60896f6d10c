-- Keyway core schema. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE workspaces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    company_name TEXT NOT NULL,
    is_sandbox INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- API keys are stored as SHA-256 hashes only.
CREATE TABLE api_keys (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    created_at INTEGER NOT NULL
);

CREATE TABLE connected_accounts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    connected_account_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    account_type TEXT NOT NULL,
    account_type_display_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX connected_accounts_workspace ON connected_accounts (workspace_id, seq);

CREATE TABLE devices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    connected_account_id TEXT NOT NULL REFERENCES connected_accounts (connected_account_id),
    provider TEXT NOT NULL,
    device_type TEXT NOT NULL,
    name TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    -- JSON: supported_code_lengths, max_active_codes_supported, code_constraints, ...
    code_rules TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- One worker at a time per lock.
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX devices_workspace ON devices (workspace_id, seq);

-- The memory of simulated locks: what a real lock would hold itself.
CREATE TABLE sandbox_locks (
    device_id TEXT PRIMARY KEY REFERENCES devices (device_id),
    online INTEGER NOT NULL DEFAULT 1,
    delay_ms INTEGER NOT NULL,
    operations INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sandbox_slots (
    device_id TEXT NOT NULL REFERENCES sandbox_locks (device_id),
    slot INTEGER NOT NULL,
    code TEXT NOT NULL,
    name TEXT,
    PRIMARY KEY (device_id, slot)
);

CREATE TABLE access_codes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    access_code_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    device_id TEXT NOT NULL REFERENCES devices (device_id),
    is_managed INTEGER NOT NULL,
    name TEXT,
    code TEXT,
    type TEXT NOT NULL,
    starts_at INTEGER,
    ends_at INTEGER,
    status TEXT NOT NULL,
    -- The client asked for deletion; the row goes once the lock confirmed removal.
    deleted INTEGER NOT NULL DEFAULT 0,
    -- The lock slot chosen for this code, and the PIN the lock last confirmed in it.
    slot INTEGER,
    confirmed_code TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    warnings TEXT NOT NULL DEFAULT '[]',
    is_external_modification_allowed INTEGER NOT NULL DEFAULT 0,
    is_one_time_use INTEGER NOT NULL DEFAULT 0,
    is_offline_access_code INTEGER NOT NULL DEFAULT 0,
    common_code_key TEXT,
    -- Since when the lock has had work to do for this code.
    pending_since INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX access_codes_device ON access_codes (device_id, seq);
CREATE INDEX access_codes_workspace ON access_codes (workspace_id, seq);
CREATE UNIQUE INDEX access_codes_unmanaged_slot ON access_codes (device_id, slot) WHERE is_managed = 0;

-- Device work: reconcile one access code with its lock (access_code_id set) or read a lock back.
-- `run_after` doubles as the scheduler: time-bound windows are jobs due at their edges.
CREATE TABLE device_jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    access_code_id TEXT,
    run_after INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX device_jobs_due ON device_jobs (run_after);
CREATE INDEX device_jobs_device ON device_jobs (device_id, run_after);
CREATE INDEX device_jobs_access_code ON device_jobs (access_code_id, run_after);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    device_id TEXT,
    connected_account_id TEXT,
    access_code_id TEXT,
    code TEXT,
    created_at INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX events_workspace ON events (workspace_id, seq);

CREATE TABLE action_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action_attempt_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    access_code_id TEXT,
    device_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX action_attempts_workspace ON action_attempts (workspace_id, seq);
CREATE INDEX action_attempts_pending ON action_attempts (access_code_id) WHERE status = 'pending';
