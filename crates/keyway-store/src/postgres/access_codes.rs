//! PostgreSQL: access codes as the API sees them — each write with its device job, action
//! attempt and event in the same transaction.
//!
//! Checks that SQLite's single writer makes safe (no duplicate PIN on a lock, a backup handed
//! out once) take a per-device advisory lock first, so that instances writing codes of one lock
//! at the same time take turns; codes of different locks do not wait for each other.

use async_trait::async_trait;
use keyway_model::{
    AccessCode, ActionAttempt, ActionType, EventType, Timestamp, UnmanagedAccessCode,
};
use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::access_codes::{
    add_device_errors, AccessCodeChanges, AccessCodeFilter, AccessCodeStore, CodeLookup,
    NewAccessCode, UpdateOutcome,
};
use crate::accounts::{paginate, DeviceRecord};
use crate::rows::{AccessCodeRow, ActionAttemptRow};
use crate::{new_id, Page, Result, StoreError};

pub(crate) const CODE_COLUMNS: &str = "seq, access_code_id, workspace_id, device_id, is_managed, \
    name, code, type, starts_at, ends_at, status, deleted, slot, confirmed_code, errors, warnings, \
    is_external_modification_allowed, is_one_time_use, is_offline_access_code, common_code_key, \
    pending_since, created_at, is_backup, pulled_backup_access_code_id, \
    (use_backup_access_code_pool AND pulled_backup_access_code_id IS NULL AND EXISTS ( \
        SELECT 1 FROM access_codes b WHERE b.device_id = access_codes.device_id \
        AND b.is_backup AND b.pulled_for_access_code_id IS NULL AND b.status = 'set' \
        AND NOT b.deleted)) AS is_backup_access_code_available";

/// First key of the advisory locks that serialize code writes per device ("kw").
const DEVICE_CODES_LOCK: i32 = 0x6b77;

#[async_trait]
impl AccessCodeStore for PgStore {
    async fn create_access_codes(
        &self,
        codes: Vec<NewAccessCode<'_>>,
        now: Timestamp,
    ) -> Result<Vec<(AccessCode, ActionAttempt)>> {
        let mut tx = self.pool.begin().await?;
        // Always in the same order, so that two batches on the same locks cannot deadlock.
        let mut devices: Vec<&str> = codes.iter().map(|c| c.device.device_id.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        for device_id in devices {
            lock_device_codes(&mut tx, device_id).await?;
        }
        let mut created = Vec::with_capacity(codes.len());
        for new in codes {
            created.push(insert_code(&mut tx, new, now).await?);
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn update_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        changes: AccessCodeChanges,
        now: Timestamp,
    ) -> Result<UpdateOutcome> {
        let mut tx = self.pool.begin().await?;
        if changes.reprogram.is_some() {
            lock_device_codes(&mut tx, &device.device_id).await?;
            ensure_no_duplicate(
                &mut tx,
                &device.device_id,
                &changes.code,
                changes.starts_at,
                changes.ends_at,
                Some(access_code_id),
            )
            .await?;
        }
        sqlx::query(
            "UPDATE access_codes SET name = $1, code = $2, type = $3, starts_at = $4, ends_at = $5,
                is_external_modification_allowed = $6
             WHERE access_code_id = $7 AND workspace_id = $8",
        )
        .bind(&changes.name)
        .bind(&changes.code)
        .bind(changes.kind.as_str())
        .bind(changes.starts_at.map(|t| t.millis()))
        .bind(changes.ends_at.map(|t| t.millis()))
        .bind(changes.is_external_modification_allowed)
        .bind(access_code_id)
        .bind(&device.workspace_id)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            EventType::AccessCodeChanged,
            device,
            Some(access_code_id),
            None,
            now,
        )
        .await?;
        let attempt = insert_attempt(
            &mut tx,
            &device.workspace_id,
            ActionType::UpdateAccessCode,
            Some(access_code_id),
            &device.device_id,
            now,
        )
        .await?;
        let action_attempt = match changes.reprogram {
            Some((status, job_at)) => {
                sqlx::query(
                    "UPDATE access_codes SET status = $1, errors = '[]', warnings = '[]',
                        pending_since = $2 WHERE access_code_id = $3",
                )
                .bind(status.as_str())
                .bind(now.millis())
                .bind(access_code_id)
                .execute(&mut *tx)
                .await?;
                insert_job(
                    &mut tx,
                    &device.device_id,
                    Some(access_code_id),
                    job_at,
                    now,
                )
                .await?;
                attempt
            }
            None => {
                // Nothing to change on the lock: the update is done.
                let code = fetch_code(&mut tx, access_code_id).await?.into_managed()?;
                let result = serde_json::json!({ "access_code": code });
                resolve_attempt(&mut tx, &attempt.action_attempt_id, Ok(result)).await?;
                fetch_attempt(&mut tx, &attempt.action_attempt_id).await?
            }
        };
        tx.commit().await?;
        Ok(UpdateOutcome { action_attempt })
    }

    async fn delete_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE access_codes SET deleted = TRUE, status = 'removing', warnings = '[]',
                errors = '[]', pending_since = $1
             WHERE access_code_id = $2 AND workspace_id = $3 AND is_managed",
        )
        .bind(now.millis())
        .bind(access_code_id)
        .bind(&device.workspace_id)
        .execute(&mut *tx)
        .await?;
        insert_job(&mut tx, &device.device_id, Some(access_code_id), now, now).await?;
        let attempt = insert_attempt(
            &mut tx,
            &device.workspace_id,
            ActionType::DeleteAccessCode,
            Some(access_code_id),
            &device.device_id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    async fn convert_unmanaged(
        &self,
        workspace_id: &str,
        access_code_id: &str,
        is_external_modification_allowed: bool,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE access_codes SET is_managed = TRUE, status = 'set', confirmed_code = code,
                is_external_modification_allowed = $1
             WHERE access_code_id = $2 AND workspace_id = $3 AND NOT is_managed AND NOT deleted",
        )
        .bind(is_external_modification_allowed)
        .bind(access_code_id)
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let row = fetch_code(&mut tx, access_code_id).await?;
        let device = super::accounts::device_in_tx(&mut tx, &row.device_id).await?;
        insert_event(
            &mut tx,
            EventType::AccessCodeUnmanagedConvertedToManaged,
            &device,
            Some(access_code_id),
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_unmanaged(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE access_codes SET deleted = TRUE, pending_since = $1
             WHERE access_code_id = $2 AND workspace_id = $3 AND NOT is_managed",
        )
        .bind(now.millis())
        .bind(access_code_id)
        .bind(&device.workspace_id)
        .execute(&mut *tx)
        .await?;
        insert_job(&mut tx, &device.device_id, Some(access_code_id), now, now).await?;
        let attempt = insert_attempt(
            &mut tx,
            &device.workspace_id,
            ActionType::DeleteAccessCode,
            Some(access_code_id),
            &device.device_id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    async fn get_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCode>> {
        let Some(code) = self.find_code(workspace_id, true, lookup).await? else {
            return Ok(None);
        };
        let mut codes = vec![code.into_managed()?];
        add_device_errors(self, None, &mut codes, |c| (&c.device_id, &mut c.errors)).await?;
        Ok(codes.pop())
    }

    async fn get_unmanaged_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<UnmanagedAccessCode>> {
        let Some(code) = self.find_code(workspace_id, false, lookup).await? else {
            return Ok(None);
        };
        let mut codes = vec![code.into_unmanaged()?];
        add_device_errors(self, None, &mut codes, |c| (&c.device_id, &mut c.errors)).await?;
        Ok(codes.pop())
    }

    async fn list_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<AccessCode>> {
        let rows = self.list_codes(workspace_id, true, &filter).await?;
        let mut page = paginate(rows, filter.limit, |r| r.seq, AccessCodeRow::into_managed)?;
        add_device_errors(self, filter.known_device, &mut page.items, |c| {
            (&c.device_id, &mut c.errors)
        })
        .await?;
        Ok(page)
    }

    async fn list_unmanaged_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<UnmanagedAccessCode>> {
        let rows = self.list_codes(workspace_id, false, &filter).await?;
        let mut page = paginate(rows, filter.limit, |r| r.seq, AccessCodeRow::into_unmanaged)?;
        add_device_errors(self, filter.known_device, &mut page.items, |c| {
            (&c.device_id, &mut c.errors)
        })
        .await?;
        Ok(page)
    }

    async fn enable_backup_pool(&self, device: &DeviceRecord, size: u32) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET backup_pool_size = GREATEST(backup_pool_size, $1)
             WHERE device_id = $2",
        )
        .bind(i64::from(size))
        .bind(&device.device_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn backup_pool_shortfall(&self, device_id: &str) -> Result<u32> {
        let missing: i64 = sqlx::query_scalar(
            "SELECT d.backup_pool_size - (SELECT COUNT(*) FROM access_codes b
                WHERE b.device_id = d.device_id AND b.is_backup
                AND b.pulled_for_access_code_id IS NULL AND NOT b.deleted)
             FROM devices d WHERE d.device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(0);
        Ok(u32::try_from(missing.max(0)).unwrap_or(0))
    }

    async fn add_backup_codes(
        &self,
        device: &DeviceRecord,
        pins: &[String],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for pin in pins {
            let id = new_id();
            sqlx::query(
                "INSERT INTO access_codes (access_code_id, workspace_id, device_id, is_managed, name,
                    code, type, status, is_backup, pending_since, created_at)
                 VALUES ($1, $2, $3, TRUE, 'Backup Access Code', $4, 'ongoing', 'setting', TRUE,
                    $5, $5)",
            )
            .bind(&id)
            .bind(&device.workspace_id)
            .bind(&device.device_id)
            .bind(pin)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
            insert_job(&mut tx, &device.device_id, Some(&id), now, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pull_backup_code(
        &self,
        device: &DeviceRecord,
        original: &AccessCode,
        now: Timestamp,
    ) -> Result<Option<AccessCode>> {
        let mut tx = self.pool.begin().await?;
        lock_device_codes(&mut tx, &device.device_id).await?;
        let already: Option<String> = sqlx::query_scalar(
            "SELECT pulled_backup_access_code_id FROM access_codes WHERE access_code_id = $1",
        )
        .bind(&original.access_code_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        let backup_id = match already {
            Some(id) => id,
            None => {
                // Prefer a backup the lock already holds.
                let Some(id): Option<String> = sqlx::query_scalar(
                    "SELECT access_code_id FROM access_codes WHERE device_id = $1 AND is_backup
                     AND pulled_for_access_code_id IS NULL AND NOT deleted
                     ORDER BY status = 'set' DESC, seq LIMIT 1",
                )
                .bind(&device.device_id)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE access_codes SET pulled_for_access_code_id = $1, type = 'time_bound',
                        starts_at = $2, ends_at = $3, name = $4 WHERE access_code_id = $5",
                )
                .bind(&original.access_code_id)
                .bind(
                    original
                        .starts_at
                        .map(|t| t.millis())
                        .unwrap_or(now.millis())
                        .min(now.millis()),
                )
                .bind(original.ends_at.map(|t| t.millis()))
                .bind(original.name.as_deref().map(|n| format!("Backup of {n}")))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE access_codes SET pulled_backup_access_code_id = $1
                     WHERE access_code_id = $2",
                )
                .bind(&id)
                .bind(&original.access_code_id)
                .execute(&mut *tx)
                .await?;
                // The engine now knows when the backup must leave the lock.
                insert_job(&mut tx, &device.device_id, Some(&id), now, now).await?;
                let payload = serde_json::json!({ "backup_access_code_id": id });
                insert_event_with(
                    &mut tx,
                    EventType::AccessCodeBackupAccessCodePulled,
                    device,
                    Some(&original.access_code_id),
                    None,
                    Some(payload),
                    now,
                )
                .await?;
                id
            }
        };
        let backup = fetch_code(&mut tx, &backup_id).await?.into_managed()?;
        tx.commit().await?;
        Ok(Some(backup))
    }

    async fn codes_with_common_key(
        &self,
        workspace_id: &str,
        common_code_key: &str,
    ) -> Result<Vec<AccessCode>> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = $1 AND is_managed
             AND NOT deleted AND common_code_key = $2 ORDER BY seq"
        );
        let rows: Vec<AccessCodeRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(common_code_key)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(AccessCodeRow::into_managed).collect()
    }

    async fn codes_on_device(&self, device_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT code FROM access_codes WHERE device_id = $1 AND code IS NOT NULL
             UNION SELECT code FROM sandbox_slots WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_action_attempt(
        &self,
        workspace_id: &str,
        action_attempt_id: &str,
    ) -> Result<Option<ActionAttempt>> {
        let row: Option<ActionAttemptRow> = sqlx::query_as(
            "SELECT action_attempt_id, action_type, status, result, error FROM action_attempts
             WHERE workspace_id = $1 AND action_attempt_id = $2",
        )
        .bind(workspace_id)
        .bind(action_attempt_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ActionAttemptRow::into_model).transpose()
    }

    async fn list_action_attempts(
        &self,
        workspace_id: &str,
        ids: Option<&[String]>,
        device_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ActionAttempt>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i64,
            #[sqlx(flatten)]
            attempt: ActionAttemptRow,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, action_attempt_id, action_type, status, result, error FROM action_attempts
             WHERE workspace_id = $1 AND ($2::text IS NULL OR device_id = $2)
             AND ($3::text[] IS NULL OR action_attempt_id = ANY($3))
             AND seq > $4 ORDER BY seq LIMIT $5",
        )
        .bind(workspace_id)
        .bind(device_id)
        .bind(ids)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, limit, |r| r.seq, |r| r.attempt.into_model())
    }
}

impl PgStore {
    async fn find_code(
        &self,
        workspace_id: &str,
        managed: bool,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCodeRow>> {
        let (access_code_id, device_id, code) = lookup.parts();
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = $1 AND is_managed = $2
             AND (is_managed OR NOT deleted)
             AND ($3::text IS NULL OR access_code_id = $3) AND ($4::text IS NULL OR device_id = $4)
             AND ($5::text IS NULL OR code = $5) ORDER BY deleted, seq LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(managed)
            .bind(access_code_id)
            .bind(device_id)
            .bind(code)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_codes(
        &self,
        workspace_id: &str,
        managed: bool,
        filter: &AccessCodeFilter<'_>,
    ) -> Result<Vec<AccessCodeRow>> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = $1 AND is_managed = $2
             AND (is_managed OR NOT deleted) AND NOT is_backup
             AND ($3::text IS NULL OR device_id = $3)
             AND ($4::text[] IS NULL OR access_code_id = ANY($4))
             AND seq > $5 ORDER BY seq LIMIT $6"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(managed)
            .bind(filter.device_id)
            .bind(filter.access_code_ids)
            .bind(filter.after.unwrap_or(0))
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Serializes, until the transaction ends, the code writes of one device that check other codes
/// first (duplicate PINs, backup hand-outs).
async fn lock_device_codes(tx: &mut Transaction<'_, Postgres>, device_id: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(DEVICE_CODES_LOCK)
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_code(
    tx: &mut Transaction<'_, Postgres>,
    new: NewAccessCode<'_>,
    now: Timestamp,
) -> Result<(AccessCode, ActionAttempt)> {
    let access_code_id = new_id();
    ensure_no_duplicate(
        tx,
        &new.device.device_id,
        &new.code,
        new.starts_at,
        new.ends_at,
        None,
    )
    .await?;
    sqlx::query(
        "INSERT INTO access_codes (access_code_id, workspace_id, device_id, is_managed, name,
            code, type, starts_at, ends_at, status, is_external_modification_allowed,
            is_one_time_use, is_offline_access_code, common_code_key, pending_since, created_at,
            use_backup_access_code_pool)
         VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
    )
    .bind(&access_code_id)
    .bind(&new.device.workspace_id)
    .bind(&new.device.device_id)
    .bind(&new.name)
    .bind(&new.code)
    .bind(new.kind.as_str())
    .bind(new.starts_at.map(|t| t.millis()))
    .bind(new.ends_at.map(|t| t.millis()))
    .bind(new.status.as_str())
    .bind(new.is_external_modification_allowed)
    .bind(new.is_one_time_use)
    .bind(new.is_offline_access_code)
    .bind(&new.common_code_key)
    .bind(now.millis())
    .bind(new.use_backup_access_code_pool)
    .execute(&mut **tx)
    .await?;
    insert_job(
        tx,
        &new.device.device_id,
        Some(&access_code_id),
        new.job_at,
        now,
    )
    .await?;
    insert_event(
        tx,
        EventType::AccessCodeCreated,
        new.device,
        Some(&access_code_id),
        None,
        now,
    )
    .await?;
    let attempt = insert_attempt(
        tx,
        &new.device.workspace_id,
        ActionType::CreateAccessCode,
        Some(&access_code_id),
        &new.device.device_id,
        now,
    )
    .await?;
    let code = fetch_code(tx, &access_code_id).await?.into_managed()?;
    Ok((code, attempt))
}

/// A PIN conflicts with another code on the same lock only when their windows overlap
/// (unmanaged and ongoing codes are always active). The caller holds the device's code lock.
async fn ensure_no_duplicate(
    tx: &mut Transaction<'_, Postgres>,
    device_id: &str,
    code: &str,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    except: Option<&str>,
) -> Result<()> {
    let clash: Option<String> = sqlx::query_scalar(
        "SELECT access_code_id FROM access_codes
         WHERE device_id = $1 AND code = $2 AND NOT deleted
           AND access_code_id IS DISTINCT FROM $3::text
           AND (starts_at IS NULL OR $4::bigint IS NULL OR starts_at < $4)
           AND (ends_at IS NULL OR $5::bigint IS NULL OR $5 < ends_at)
         LIMIT 1",
    )
    .bind(device_id)
    .bind(code)
    .bind(except)
    .bind(ends_at.map(|t| t.millis()))
    .bind(starts_at.map(|t| t.millis()))
    .fetch_optional(&mut **tx)
    .await?;
    match clash {
        Some(_) => Err(StoreError::Conflict(format!(
            "Cannot set duplicate access code {code} on device {device_id}"
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn fetch_code(
    tx: &mut Transaction<'_, Postgres>,
    access_code_id: &str,
) -> Result<AccessCodeRow> {
    let sql = format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(access_code_id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Queues work for a device, unless the same work already waits (a job the lease holder has
/// taken does not count: it may have looked at the code before this change).
///
/// A code job waits once per due time; a read-back waits once per lock, and is only ever moved
/// earlier.
pub(crate) async fn insert_job(
    tx: &mut Transaction<'_, Postgres>,
    device_id: &str,
    access_code_id: Option<&str>,
    run_after: Timestamp,
    now: Timestamp,
) -> Result<()> {
    let sql = match access_code_id {
        Some(_) => {
            "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (access_code_id, run_after)
                WHERE access_code_id IS NOT NULL AND NOT taken DO NOTHING"
        }
        None => {
            "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (device_id) WHERE access_code_id IS NULL AND action IS NULL AND NOT taken
             DO UPDATE SET run_after = excluded.run_after, attempts = 0
                WHERE device_jobs.run_after > excluded.run_after"
        }
    };
    sqlx::query(sql)
        .bind(device_id)
        .bind(access_code_id)
        .bind(run_after.millis())
        .bind(now.millis())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    event_type: EventType,
    device: &DeviceRecord,
    access_code_id: Option<&str>,
    code: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    insert_event_with(tx, event_type, device, access_code_id, code, None, now).await
}

/// An event with fields particular to its type (`payload`, a JSON object). Its list order
/// (`seq`) is given when it is first listed.
pub(crate) async fn insert_event_with(
    tx: &mut Transaction<'_, Postgres>,
    event_type: EventType,
    device: &DeviceRecord,
    access_code_id: Option<&str>,
    code: Option<&str>,
    payload: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<()> {
    let event_id = new_id();
    sqlx::query(
        "INSERT INTO events (event_id, workspace_id, event_type, device_id, connected_account_id,
            access_code_id, code, created_at, occurred_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(&event_id)
    .bind(&device.workspace_id)
    .bind(event_type.as_str())
    .bind(&device.device_id)
    .bind(&device.connected_account_id)
    .bind(access_code_id)
    .bind(code)
    .bind(now.millis())
    .bind(payload.map(|p| p.to_string()))
    .execute(&mut **tx)
    .await?;
    // The webhook outbox: one delivery per matching webhook, in this same transaction.
    let order_key = access_code_id.unwrap_or(&device.device_id);
    super::webhooks::enqueue_deliveries(
        tx,
        &event_id,
        &device.workspace_id,
        event_type,
        order_key,
        now,
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_attempt(
    tx: &mut Transaction<'_, Postgres>,
    workspace_id: &str,
    action_type: ActionType,
    access_code_id: Option<&str>,
    device_id: &str,
    now: Timestamp,
) -> Result<ActionAttempt> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO action_attempts (action_attempt_id, workspace_id, action_type, status,
            access_code_id, device_id, created_at)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
    )
    .bind(&id)
    .bind(workspace_id)
    .bind(action_type.as_str())
    .bind(access_code_id)
    .bind(device_id)
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    Ok(ActionAttempt {
        action_attempt_id: id,
        action_type,
        status: keyway_model::ActionAttemptStatus::Pending,
        result: None,
        error: None,
    })
}

pub(crate) async fn fetch_attempt(
    tx: &mut Transaction<'_, Postgres>,
    action_attempt_id: &str,
) -> Result<ActionAttempt> {
    let row: ActionAttemptRow = sqlx::query_as(
        "SELECT action_attempt_id, action_type, status, result, error FROM action_attempts
         WHERE action_attempt_id = $1",
    )
    .bind(action_attempt_id)
    .fetch_one(&mut **tx)
    .await?;
    row.into_model()
}

/// Settles one pending attempt: `Ok(result)` = success, `Err((type, message))` = error.
pub(crate) async fn resolve_attempt(
    tx: &mut Transaction<'_, Postgres>,
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
    sqlx::query(
        "UPDATE action_attempts SET status = $1, result = $2, error = $3
         WHERE action_attempt_id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(result)
    .bind(error)
    .bind(action_attempt_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
