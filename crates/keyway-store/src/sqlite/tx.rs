//! Statements that several SQLite writes share, run inside the caller's transaction (the
//! closure given to [`super::db::Db::write`]).

use std::sync::LazyLock;

use keyway_model::{ActionAttempt, ActionType, EventType, Timestamp};
use rusqlite::{params, Connection};

use super::access_codes::{code_rows, CODE_COLUMNS};
use super::accounts::DEVICE_SELECT;
use super::db::{exec, row, scalar};
use crate::accounts::DeviceRecord;
use crate::rows::{AccessCodeRow, ActionAttemptRow};
use crate::{new_id, Result, StoreError};
use keyway_model::ALL_EVENT_TYPES;

/// A row that must be there (the statement's own transaction just wrote or checked it).
pub(crate) fn one<T>(found: Option<T>) -> Result<T> {
    found.ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

pub(crate) fn fetch_code(c: &Connection, access_code_id: &str) -> Result<AccessCodeRow> {
    one(try_fetch_code(c, access_code_id)?)
}

pub(crate) fn try_fetch_code(
    c: &Connection,
    access_code_id: &str,
) -> Result<Option<AccessCodeRow>> {
    // Built once: the statement cache finds statements by their text.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = ?")
    });
    Ok(code_rows(c, &SQL, params![access_code_id])?.pop())
}

pub(crate) fn device(c: &Connection, device_id: &str) -> Result<DeviceRecord> {
    let sql = format!("{DEVICE_SELECT} WHERE d.device_id = ?");
    one(row(c, &sql, params![device_id])?)
}

pub(crate) fn insert_job(
    c: &Connection,
    device_id: &str,
    access_code_id: Option<&str>,
    run_after: Timestamp,
    now: Timestamp,
) -> Result<()> {
    // A job already due may be in a worker's hands (and deleted when it is done), so only a
    // future job can stand in for this one. (A plain INSERT after the look: an INSERT … SELECT
    // from the same table would be staged in a temporary table and journaled.)
    if run_after > now {
        let queued: Option<bool> = scalar(
            c,
            "SELECT 1 FROM device_jobs
             WHERE device_id = ? AND access_code_id IS ? AND run_after = ?",
            params![device_id, access_code_id, run_after.millis()],
        )?;
        if queued.is_some() {
            return Ok(());
        }
    }
    exec(
        c,
        "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
         VALUES (?, ?, ?, ?)",
        params![device_id, access_code_id, run_after.millis(), now.millis()],
    )?;
    Ok(())
}

pub(crate) fn insert_event(
    c: &Connection,
    event_type: EventType,
    device: &DeviceRecord,
    access_code_id: Option<&str>,
    code: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    insert_event_with(c, event_type, device, access_code_id, code, None, now)
}

/// An event with fields particular to its type (`payload`, a JSON object).
pub(crate) fn insert_event_with(
    c: &Connection,
    event_type: EventType,
    device: &DeviceRecord,
    access_code_id: Option<&str>,
    code: Option<&str>,
    payload: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<()> {
    let event_id = new_id();
    exec(
        c,
        "INSERT INTO events (event_id, workspace_id, event_type, device_id, connected_account_id,
            access_code_id, code, created_at, occurred_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
        params![
            event_id,
            device.workspace_id,
            event_type.as_str(),
            device.device_id,
            device.connected_account_id,
            access_code_id,
            code,
            now.millis(),
            payload.map(|p| p.to_string()),
        ],
    )?;
    // The webhook outbox: one delivery per matching webhook, in this same transaction.
    let order_key = access_code_id.unwrap_or(&device.device_id);
    enqueue_deliveries(
        c,
        &event_id,
        &device.workspace_id,
        event_type,
        order_key,
        now,
    )
}

/// Queues the event for every webhook of its workspace whose filter lets it through.
pub(crate) fn enqueue_deliveries(
    c: &Connection,
    event_id: &str,
    workspace_id: &str,
    event_type: EventType,
    order_key: &str,
    now: Timestamp,
) -> Result<()> {
    // Most workspaces have no webhook: a look at the index is cheaper than setting up the
    // INSERT (its statement journal, cursors on the outbox and its indexes).
    let any: Option<bool> = scalar(
        c,
        "SELECT 1 FROM webhooks WHERE workspace_id = ? LIMIT 1",
        params![workspace_id],
    )?;
    if any.is_none() {
        return Ok(());
    }
    exec(
        c,
        "INSERT INTO webhook_deliveries (message_id, webhook_id, event_id, order_key,
            next_attempt_at, created_at)
         SELECT 'msg_' || lower(hex(randomblob(16))), webhook_id, ?1, ?2, ?3, ?3
         FROM webhooks
         WHERE workspace_id = ?4 AND EXISTS (SELECT 1 FROM json_each(webhooks.event_types)
             WHERE value = ?5 OR value = ?6)
         ORDER BY seq",
        params![
            event_id,
            order_key,
            now.millis(),
            workspace_id,
            ALL_EVENT_TYPES,
            event_type.as_str()
        ],
    )?;
    Ok(())
}

pub(crate) fn insert_attempt(
    c: &Connection,
    workspace_id: &str,
    action_type: ActionType,
    access_code_id: Option<&str>,
    device_id: &str,
    now: Timestamp,
) -> Result<ActionAttempt> {
    let id = new_id();
    exec(
        c,
        "INSERT INTO action_attempts (action_attempt_id, workspace_id, action_type, status,
            access_code_id, device_id, created_at)
         VALUES (?, ?, ?, 'pending', ?, ?, ?)",
        params![
            id,
            workspace_id,
            action_type.as_str(),
            access_code_id,
            device_id,
            now.millis()
        ],
    )?;
    Ok(ActionAttempt {
        action_attempt_id: id,
        action_type,
        status: keyway_model::ActionAttemptStatus::Pending,
        result: None,
        error: None,
    })
}

pub(crate) fn fetch_attempt(c: &Connection, action_attempt_id: &str) -> Result<ActionAttempt> {
    let found: Option<ActionAttemptRow> = row(
        c,
        "SELECT action_attempt_id, action_type, status, result, error FROM action_attempts
         WHERE action_attempt_id = ?",
        params![action_attempt_id],
    )?;
    one(found)?.into_model()
}

/// Settles one pending attempt: `Ok(result)` = success, `Err((type, message))` = error.
pub(crate) fn resolve_attempt(
    c: &Connection,
    action_attempt_id: &str,
    outcome: std::result::Result<serde_json::Value, (&str, &str)>,
) -> Result<()> {
    let (status, result, error) = match outcome {
        Ok(result) => ("success", Some(result.to_string()), None),
        Err((kind, message)) => (
            "error",
            None,
            Some(serde_json::json!({ "type": kind, "message": message }).to_string()),
        ),
    };
    exec(
        c,
        "UPDATE action_attempts SET status = ?, result = ?, error = ?
         WHERE action_attempt_id = ? AND status = 'pending'",
        params![status, result, error, action_attempt_id],
    )?;
    Ok(())
}
