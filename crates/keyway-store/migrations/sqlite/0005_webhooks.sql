-- Webhooks and their transactional outbox. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    url TEXT NOT NULL,
    -- JSON array of event types; ["*"] lets every event through.
    event_types TEXT NOT NULL,
    -- `whsec_` + base64 of the signing key.
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, seq);

-- One event on its way to one webhook. Rows are written in the transaction that writes the
-- event, so a committed event always has its deliveries. Deliveries that share `order_key`
-- (the access code, else the device) go out one after the other, oldest first.
CREATE TABLE webhook_deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    order_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- The sender working on it, and until when.
    lease_owner TEXT,
    lease_until INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    last_attempt_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_chain ON webhook_deliveries (webhook_id, order_key, delivery_id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, delivery_id);
