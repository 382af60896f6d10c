//! PostgreSQL: due device work, per-device leases, and the outcome of each engine step, each in
//! one transaction with the job that caused it.
//!
//! Several instances share the queue. A device is worked only by the holder of its lease
//! ([`EngineStore::claim_device`] is one atomic statement); the jobs it works are marked `taken`
//! ([`EngineStore::due_jobs`]) so that work queued meanwhile waits as a job of its own.

use std::time::Duration;

use async_trait::async_trait;
use keyway_model::{ActionAttempt, ActionType, EventType, Timestamp};
use sqlx::{Postgres, Transaction};

use super::access_codes::{
    fetch_attempt, fetch_code, insert_attempt, insert_event, insert_event_with, insert_job,
    resolve_attempt, CODE_COLUMNS,
};
use super::PgStore;
use crate::accounts::DeviceRecord;
use crate::engine::{
    external_change_warnings, gone_attempt_outcome, gone_events, unmanaged_changes,
    warnings_once_set, with_delay_warning, with_error, CodeOutcome, ConfirmedCode, DeviceJob,
    EngineCode, EngineStore, ExternalChange, KnownSlot, LockObservation, OutcomeRecord,
};
use crate::jobs_sql::{opening_at, other_work_at};
use crate::rows::AccessCodeRow;
use crate::{json, new_id, Result};

#[async_trait]
impl EngineStore for PgStore {
    async fn confirmed_codes(&self, device_id: &str) -> Result<Vec<ConfirmedCode>> {
        Ok(sqlx::query_as(
            "SELECT access_code_id, slot, confirmed_code, is_external_modification_allowed
             FROM access_codes WHERE device_id = $1 AND is_managed AND status = 'set'
             AND NOT deleted AND slot IS NOT NULL AND confirmed_code IS NOT NULL",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_external_change(
        &self,
        device: &DeviceRecord,
        code: &ConfirmedCode,
        change: ExternalChange,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let id = code.access_code_id.as_str();
        let event = match change {
            ExternalChange::Modified { .. } => EventType::AccessCodeModifiedExternalToSeam,
            ExternalChange::Deleted => EventType::AccessCodeDeletedExternalToSeam,
        };
        insert_event(&mut tx, event, device, Some(id), None, now).await?;
        match (code.is_external_modification_allowed, change) {
            (true, ExternalChange::Modified { pin }) => {
                sqlx::query(
                    "UPDATE access_codes SET code = $1, confirmed_code = $1
                     WHERE access_code_id = $2",
                )
                .bind(&pin)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            (true, ExternalChange::Deleted) => {
                sqlx::query("DELETE FROM access_codes WHERE access_code_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM device_jobs WHERE access_code_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            (false, change) => {
                let Some(row) = try_fetch_code(&mut tx, id).await? else {
                    return Ok(());
                };
                let warnings = external_change_warnings(&row, now)?;
                // What the slot holds now is what Keyway overwrites (the slot stays ours).
                let held = match change {
                    ExternalChange::Modified { pin } => Some(pin),
                    ExternalChange::Deleted => None,
                };
                sqlx::query(
                    "UPDATE access_codes SET status = 'setting', confirmed_code = $1,
                        warnings = $2, pending_since = $3 WHERE access_code_id = $4",
                )
                .bind(held)
                .bind(json(&warnings)?)
                .bind(now.millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                insert_job(&mut tx, &device.device_id, Some(id), now, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn schedule_read(&self, device_id: &str, at: Timestamp, attempts: i64) -> Result<()> {
        sqlx::query(SCHEDULE_READ)
            .bind(device_id)
            .bind(at.millis())
            .bind(attempts)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ensure_reads(&self, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
             SELECT d.device_id, NULL, $1, $1 FROM devices d WHERE NOT EXISTS (
                SELECT 1 FROM device_jobs j WHERE j.device_id = d.device_id
                AND j.access_code_id IS NULL AND j.action IS NULL)
             ON CONFLICT (device_id) WHERE access_code_id IS NULL AND action IS NULL AND NOT taken
             DO NOTHING",
        )
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn enqueue_lock_action(
        &self,
        device: &DeviceRecord,
        lock: bool,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let mut tx = self.pool.begin().await?;
        let action_type = if lock {
            ActionType::LockDoor
        } else {
            ActionType::UnlockDoor
        };
        let attempt = insert_attempt(
            &mut tx,
            &device.workspace_id,
            action_type,
            None,
            &device.device_id,
            now,
        )
        .await?;
        sqlx::query(
            "INSERT INTO device_jobs (device_id, run_after, created_at, action, action_attempt_id)
             VALUES ($1, $2, $2, $3, $4)",
        )
        .bind(&device.device_id)
        .bind(now.millis())
        .bind(if lock { "lock" } else { "unlock" })
        .bind(&attempt.action_attempt_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    async fn finish_lock_action(
        &self,
        device: &DeviceRecord,
        action_attempt_id: &str,
        lock: bool,
        outcome: std::result::Result<(), (&str, &str)>,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        match outcome {
            Ok(()) => {
                resolve_attempt(&mut tx, action_attempt_id, Ok(serde_json::json!({}))).await?;
                let event = if lock {
                    EventType::LockLocked
                } else {
                    EventType::LockUnlocked
                };
                let payload = serde_json::json!({
                    "method": "seamapi",
                    "action_attempt_id": action_attempt_id,
                });
                insert_event_with(&mut tx, event, device, None, None, Some(payload), now).await?;
            }
            Err(error) => resolve_attempt(&mut tx, action_attempt_id, Err(error)).await?,
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_keypad_entry(
        &self,
        device: &DeviceRecord,
        pin: &str,
        slot: Option<u32>,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let mut tx = self.pool.begin().await?;
        let matched: Option<(String, bool, bool)> = match slot {
            Some(slot) => {
                sqlx::query_as(
                    "SELECT access_code_id, is_managed, is_one_time_use FROM access_codes
                     WHERE device_id = $1 AND slot = $2 AND (code = $3 OR confirmed_code = $3)
                     LIMIT 1",
                )
                .bind(&device.device_id)
                .bind(i64::from(slot))
                .bind(pin)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let attempt = insert_attempt(
            &mut tx,
            &device.workspace_id,
            ActionType::SimulateKeypadCodeEntry,
            None,
            &device.device_id,
            now,
        )
        .await?;
        if slot.is_some() {
            sqlx::query("UPDATE sandbox_locks SET locked = FALSE WHERE device_id = $1")
                .bind(&device.device_id)
                .execute(&mut *tx)
                .await?;
            // A lock of a real provider: what it said last, until it reports again.
            sqlx::query("UPDATE devices SET locked = FALSE WHERE device_id = $1")
                .bind(&device.device_id)
                .execute(&mut *tx)
                .await?;
            let mut payload = serde_json::json!({
                "method": "keycode",
                "action_attempt_id": attempt.action_attempt_id,
            });
            if let Some((_, is_managed, _)) = &matched {
                payload["access_code_is_managed"] = serde_json::json!(is_managed);
            }
            let id = matched.as_ref().map(|(id, _, _)| id.as_str());
            insert_event_with(
                &mut tx,
                EventType::LockUnlocked,
                device,
                id,
                None,
                Some(payload),
                now,
            )
            .await?;
            if let Some((id, true, true)) = &matched {
                // A one-time code has been used: it goes.
                sqlx::query(
                    "UPDATE access_codes SET deleted = TRUE, status = 'removing',
                        pending_since = $1 WHERE access_code_id = $2",
                )
                .bind(now.millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                insert_job(&mut tx, &device.device_id, Some(id), now, now).await?;
            }
        } else {
            insert_event_with(
                &mut tx,
                EventType::LockAccessDenied,
                device,
                None,
                None,
                None,
                now,
            )
            .await?;
        }
        resolve_attempt(
            &mut tx,
            &attempt.action_attempt_id,
            Ok(serde_json::json!({})),
        )
        .await?;
        let attempt = fetch_attempt(&mut tx, &attempt.action_attempt_id).await?;
        tx.commit().await?;
        Ok(attempt)
    }

    async fn release_all_leases(&self) -> Result<()> {
        sqlx::query("UPDATE devices SET lease_owner = NULL, lease_until = NULL")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn due_devices(
        &self,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            // Due now, or opening a window by `due_by` (see `due_jobs`).
            concat!(
                "SELECT j.device_id FROM device_jobs j
                 JOIN devices d ON d.device_id = j.device_id
                 LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
                 WHERE j.run_after <= $3 AND (d.lease_until IS NULL OR d.lease_until < $1)
                 GROUP BY j.device_id
                 HAVING MIN(j.run_after) <= $1 OR MIN(",
                opening_at!(),
                ") < COALESCE(MIN(",
                other_work_at!(),
                "), $3 + 1) LIMIT $2"
            ),
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .bind(due_by.millis())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn next_job_at(
        &self,
        now: Timestamp,
        lead: Duration,
        horizon: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let lead = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        let at: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT MIN(COALESCE((",
            opening_at!(),
            ") - $2, j.run_after))
                 FROM device_jobs j JOIN devices d ON d.device_id = j.device_id
                 LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
                 WHERE (d.lease_until IS NULL OR d.lease_until < $1) AND j.run_after < $3"
        ))
        .bind(now.millis())
        .bind(lead)
        .bind(horizon.millis().saturating_add(lead))
        .fetch_one(&self.pool)
        .await?;
        Ok(at
            .filter(|at| *at < horizon.millis())
            .and_then(Timestamp::from_millis))
    }

    async fn claim_device(
        &self,
        device_id: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        // The row is locked while the lease is checked and taken; another instance claiming it
        // at that moment skips it instead of waiting, and gets nothing.
        let done = sqlx::query(
            "UPDATE devices SET lease_owner = $1, lease_until = $2
             WHERE device_id = (SELECT device_id FROM devices WHERE device_id = $3
                AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)
                FOR UPDATE SKIP LOCKED)",
        )
        .bind(owner)
        .bind(until.millis())
        .bind(device_id)
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_device(&self, device_id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET lease_owner = NULL, lease_until = NULL
             WHERE device_id = $1 AND lease_owner = $2",
        )
        .bind(device_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn due_jobs(
        &self,
        device_id: &str,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeviceJob>> {
        Ok(sqlx::query_as(concat!(
            "WITH due AS (
                UPDATE device_jobs SET taken = TRUE WHERE job_id IN (
                    SELECT job_id FROM device_jobs WHERE device_id = $1
                    AND run_after <= (SELECT CASE WHEN opening > $2
                        AND (other IS NULL OR other > opening) THEN opening ELSE $2 END
                        FROM (SELECT MIN(",
            opening_at!(),
            ") AS opening, MIN(",
            other_work_at!(),
            ") AS other
                        FROM device_jobs j
                        LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
                        WHERE j.device_id = $1 AND j.run_after <= $4) AS ahead)
                    ORDER BY run_after, job_id LIMIT $3)
                RETURNING job_id, access_code_id, attempts, action, action_attempt_id, run_after)
             SELECT job_id, access_code_id, attempts, action, action_attempt_id, run_after
             FROM due ORDER BY run_after, job_id"
        ))
        .bind(device_id)
        .bind(now.millis())
        .bind(i64::from(limit))
        .bind(due_by.millis())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_jobs(&self, job_ids: &[i64]) -> Result<()> {
        sqlx::query("DELETE FROM device_jobs WHERE job_id = ANY($1)")
            .bind(job_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_jobs(
        &self,
        device_id: &str,
        job_ids: &[i64],
        next_read: Option<(Timestamp, i64)>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM device_jobs WHERE job_id = ANY($1)")
            .bind(job_ids)
            .execute(&mut *tx)
            .await?;
        if let Some((at, attempts)) = next_read {
            sqlx::query(SCHEDULE_READ)
                .bind(device_id)
                .bind(at.millis())
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue_job(
        &self,
        device_id: &str,
        access_code_id: Option<&str>,
        run_after: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_job(&mut tx, device_id, access_code_id, run_after, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reserved_slots(&self, device_id: &str) -> Result<Vec<u32>> {
        let slots: Vec<i64> = sqlx::query_scalar(
            "SELECT slot FROM access_codes WHERE device_id = $1 AND is_managed
             AND slot IS NOT NULL",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(slots
            .into_iter()
            .filter_map(|s| u32::try_from(s).ok())
            .collect())
    }

    async fn wake_device(&self, device_id: &str, now: Timestamp) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Every code gets one job now (below): of its later waiting jobs, keep none if it
        // already has one due, else only the earliest, which moves to now. The engine sets the
        // next edge of each code again once it has looked at it.
        sqlx::query(
            "DELETE FROM device_jobs j WHERE j.device_id = $1 AND j.access_code_id IS NOT NULL
             AND NOT j.taken AND j.run_after > $2 AND EXISTS (
                SELECT 1 FROM device_jobs o WHERE o.access_code_id = j.access_code_id
                AND NOT o.taken AND (o.run_after <= $2 OR o.run_after < j.run_after
                    OR (o.run_after = j.run_after AND o.job_id < j.job_id)))",
        )
        .bind(device_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE device_jobs SET run_after = $2 WHERE device_id = $1 AND run_after > $2
             AND NOT taken",
        )
        .bind(device_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
             SELECT $1, access_code_id, $2, $2 FROM access_codes
             WHERE device_id = $1 AND is_managed
             ON CONFLICT (access_code_id, run_after)
                WHERE access_code_id IS NOT NULL AND NOT taken DO NOTHING",
        )
        .bind(device_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        insert_job(&mut tx, device_id, None, now, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn engine_device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.device_by_id(device_id).await
    }

    async fn engine_codes(&self, access_code_ids: &[String]) -> Result<Vec<EngineCode>> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = ANY($1)
             AND (is_managed OR deleted)"
        );
        let rows: Vec<AccessCodeRow> = sqlx::query_as(&sql)
            .bind(access_code_ids)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(EngineCode::from_row).collect()
    }

    async fn record_outcomes(
        &self,
        device: &DeviceRecord,
        records: Vec<OutcomeRecord>,
        now: Timestamp,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for record in records {
            let id = record.access_code_id.as_str();
            let Some(row) = try_fetch_code(&mut tx, id).await? else {
                continue;
            };
            if let Some(outcome) = record.outcome {
                apply_outcome(&mut tx, device, row, outcome, now).await?;
            }
            if let Some((at, attempts)) = record.follow_up {
                insert_job(&mut tx, &device.device_id, Some(id), at, now).await?;
                sqlx::query(
                    "UPDATE device_jobs SET attempts = $1 WHERE access_code_id = $2
                     AND run_after = $3 AND NOT taken",
                )
                .bind(attempts)
                .bind(id)
                .bind(at.millis())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn observe_lock(
        &self,
        device: &DeviceRecord,
        slots: &[LockObservation],
        now: Timestamp,
    ) -> Result<()> {
        let known: Vec<KnownSlot> = sqlx::query_as(
            "SELECT access_code_id, is_managed, slot, code, confirmed_code FROM access_codes
             WHERE device_id = $1 AND slot IS NOT NULL",
        )
        .bind(&device.device_id)
        .fetch_all(&self.pool)
        .await?;
        let changes = unmanaged_changes(&known, slots);
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for gone in changes.stale {
            sqlx::query("DELETE FROM access_codes WHERE access_code_id = $1")
                .bind(&gone.access_code_id)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                EventType::AccessCodeUnmanagedRemoved,
                device,
                Some(&gone.access_code_id),
                None,
                now,
            )
            .await?;
        }
        for slot in changes.fresh {
            let id = new_id();
            sqlx::query(
                "INSERT INTO access_codes (access_code_id, workspace_id, device_id, is_managed,
                    name, code, type, status, slot, confirmed_code, created_at)
                 VALUES ($1, $2, $3, FALSE, $4, $5, 'ongoing', 'set', $6, $5, $7)",
            )
            .bind(&id)
            .bind(&device.workspace_id)
            .bind(&device.device_id)
            .bind(&slot.name)
            .bind(&slot.code)
            .bind(i64::from(slot.slot))
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
            insert_event(
                &mut tx,
                EventType::AccessCodeUnmanagedCreated,
                device,
                Some(&id),
                None,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn try_fetch_code(
    tx: &mut Transaction<'_, Postgres>,
    access_code_id: &str,
) -> Result<Option<AccessCodeRow>> {
    let sql = format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(access_code_id)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn pending_attempts(
    tx: &mut Transaction<'_, Postgres>,
    access_code_id: &str,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT action_attempt_id, action_type FROM action_attempts
         WHERE access_code_id = $1 AND status = 'pending'",
    )
    .bind(access_code_id)
    .fetch_all(&mut **tx)
    .await?)
}

async fn apply_outcome(
    tx: &mut Transaction<'_, Postgres>,
    device: &DeviceRecord,
    row: AccessCodeRow,
    outcome: CodeOutcome,
    now: Timestamp,
) -> Result<()> {
    let id = row.access_code_id.clone();
    match outcome {
        CodeOutcome::Programming { slot } => {
            sqlx::query(
                "UPDATE access_codes SET slot = $1, status = 'setting',
                    pending_since = COALESCE(pending_since, $2) WHERE access_code_id = $3",
            )
            .bind(i64::from(slot))
            .bind(now.millis())
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        }
        CodeOutcome::Removing => {
            sqlx::query(
                "UPDATE access_codes SET status = 'removing',
                    pending_since = COALESCE(pending_since, $1) WHERE access_code_id = $2",
            )
            .bind(now.millis())
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        }
        CodeOutcome::Set { slot } => {
            let newly_set = row.status != "set" || row.confirmed_code != row.code;
            let warnings = warnings_once_set(&row)?;
            sqlx::query(
                "UPDATE access_codes SET slot = $1, confirmed_code = code, status = 'set',
                    errors = '[]', warnings = $2, pending_since = NULL WHERE access_code_id = $3",
            )
            .bind(i64::from(slot))
            .bind(json(&warnings)?)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            if newly_set {
                insert_event(
                    tx,
                    EventType::AccessCodeSetOnDevice,
                    device,
                    Some(&id),
                    row.code.as_deref(),
                    now,
                )
                .await?;
            }
            settle_attempts(tx, &id).await?;
        }
        CodeOutcome::Unset => {
            sqlx::query(
                "UPDATE access_codes SET slot = NULL, confirmed_code = NULL, status = 'unset',
                    errors = '[]', warnings = '[]', pending_since = NULL WHERE access_code_id = $1",
            )
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            settle_attempts(tx, &id).await?;
        }
        CodeOutcome::Gone { was_on_lock } => {
            sqlx::query("DELETE FROM access_codes WHERE access_code_id = $1")
                .bind(&id)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM device_jobs WHERE access_code_id = $1")
                .bind(&id)
                .execute(&mut **tx)
                .await?;
            for (event, code) in gone_events(&row, was_on_lock) {
                insert_event(tx, event, device, Some(&id), code, now).await?;
            }
            for (attempt_id, action_type) in pending_attempts(tx, &id).await? {
                resolve_attempt(tx, &attempt_id, gone_attempt_outcome(&action_type)).await?;
            }
        }
        CodeOutcome::Delayed {
            warning_code,
            message,
            event,
        } => {
            if let Some(warnings) = with_delay_warning(&row, warning_code, message, now)? {
                sqlx::query("UPDATE access_codes SET warnings = $1 WHERE access_code_id = $2")
                    .bind(json(&warnings)?)
                    .bind(&id)
                    .execute(&mut **tx)
                    .await?;
                insert_event(tx, event, device, Some(&id), None, now).await?;
            }
        }
        CodeOutcome::Failed {
            error_code,
            message,
            event,
            removal,
        } => {
            let errors = with_error(&row.errors, error_code, &message, now)?;
            let status = if removal { "removing" } else { "unset" };
            sqlx::query(
                "UPDATE access_codes SET errors = $1, status = $2, pending_since = NULL
                 WHERE access_code_id = $3",
            )
            .bind(json(&errors)?)
            .bind(status)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            insert_event(tx, event, device, Some(&id), None, now).await?;
            for (attempt_id, _) in pending_attempts(tx, &id).await? {
                resolve_attempt(tx, &attempt_id, Err((error_code, &message))).await?;
            }
        }
    }
    Ok(())
}

/// Settles the pending create/update attempts of a code with the code as it now stands.
async fn settle_attempts(tx: &mut Transaction<'_, Postgres>, access_code_id: &str) -> Result<()> {
    let pending = pending_attempts(tx, access_code_id).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let code = fetch_code(tx, access_code_id).await?.into_managed()?;
    let result = serde_json::json!({ "access_code": code });
    for (attempt_id, action_type) in pending {
        if action_type != ActionType::DeleteAccessCode.as_str() {
            resolve_attempt(tx, &attempt_id, Ok(result.clone())).await?;
        }
    }
    Ok(())
}

/// Makes sure a device has a read-back job due at `$2` at the latest (`$3` failed reads so far).
const SCHEDULE_READ: &str =
    "INSERT INTO device_jobs (device_id, access_code_id, run_after, attempts, created_at)
     VALUES ($1, NULL, $2, $3, $2)
     ON CONFLICT (device_id) WHERE access_code_id IS NULL AND action IS NULL AND NOT taken
     DO UPDATE SET run_after = excluded.run_after, attempts = excluded.attempts
        WHERE device_jobs.run_after > excluded.run_after";
