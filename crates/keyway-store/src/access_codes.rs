//! Access codes as the API sees them: create, read, update, delete — each write with its device
//! job, action attempt and event in the same transaction.

use keyway_model::{
    AccessCode, AccessCodeStatus, AccessCodeType, ActionAttempt, ActionType, EventType, Timestamp,
    UnmanagedAccessCode,
};
use sqlx::{Sqlite, Transaction};

use crate::accounts::{paginate, DeviceRecord};
use crate::rows::{AccessCodeRow, ActionAttemptRow};
use crate::{new_id, Page, Result, Store, StoreError};

pub(crate) const CODE_COLUMNS: &str = "seq, access_code_id, workspace_id, device_id, is_managed, \
    name, code, type, starts_at, ends_at, status, deleted, slot, confirmed_code, errors, warnings, \
    is_external_modification_allowed, is_one_time_use, is_offline_access_code, common_code_key, \
    pending_since, created_at";

/// A managed code to record. The caller has validated it against the lock's rules.
pub struct NewAccessCode<'a> {
    pub device: &'a DeviceRecord,
    pub name: Option<String>,
    pub code: String,
    pub kind: AccessCodeType,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub status: AccessCodeStatus,
    pub is_external_modification_allowed: bool,
    pub is_one_time_use: bool,
    pub is_offline_access_code: bool,
    pub common_code_key: Option<String>,
    /// When the engine should first look at the code.
    pub job_at: Timestamp,
}

/// The new state of a managed code after an update.
pub struct AccessCodeChanges {
    pub name: Option<String>,
    pub code: String,
    pub kind: AccessCodeType,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub is_external_modification_allowed: bool,
    /// Whether the lock must be programmed again (PIN or window changed), and the status and
    /// first job time that go with it.
    pub reprogram: Option<(AccessCodeStatus, Timestamp)>,
}

pub struct UpdateOutcome {
    pub action_attempt: ActionAttempt,
}

/// How a single code is looked up: by id, or by its lock and PIN.
#[derive(Debug, Clone, Copy)]
pub enum CodeLookup<'a> {
    Id(&'a str),
    Pin { device_id: &'a str, code: &'a str },
}

impl<'a> CodeLookup<'a> {
    fn parts(self) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        match self {
            CodeLookup::Id(id) => (Some(id), None, None),
            CodeLookup::Pin { device_id, code } => (None, Some(device_id), Some(code)),
        }
    }
}

#[derive(Default)]
pub struct AccessCodeFilter<'a> {
    pub device_id: Option<&'a str>,
    pub access_code_ids: Option<&'a [String]>,
    pub after: Option<i64>,
    pub limit: u32,
}

impl Store {
    pub async fn create_access_code(
        &self,
        new: NewAccessCode<'_>,
        now: Timestamp,
    ) -> Result<(AccessCode, ActionAttempt)> {
        let access_code_id = new_id();
        let mut tx = self.writer.begin().await?;
        ensure_no_duplicate(
            &mut tx,
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
                is_one_time_use, is_offline_access_code, common_code_key, pending_since, created_at)
             VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        insert_job(
            &mut tx,
            &new.device.device_id,
            Some(&access_code_id),
            new.job_at,
            now,
        )
        .await?;
        insert_event(
            &mut tx,
            EventType::AccessCodeCreated,
            new.device,
            Some(&access_code_id),
            None,
            now,
        )
        .await?;
        let attempt = insert_attempt(
            &mut tx,
            &new.device.workspace_id,
            ActionType::CreateAccessCode,
            Some(&access_code_id),
            &new.device.device_id,
            now,
        )
        .await?;
        let code = fetch_code(&mut tx, &access_code_id).await?.into_managed()?;
        tx.commit().await?;
        Ok((code, attempt))
    }

    pub async fn update_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        changes: AccessCodeChanges,
        now: Timestamp,
    ) -> Result<UpdateOutcome> {
        let mut tx = self.writer.begin().await?;
        if changes.reprogram.is_some() {
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
            "UPDATE access_codes SET name = ?, code = ?, type = ?, starts_at = ?, ends_at = ?,
                is_external_modification_allowed = ?
             WHERE access_code_id = ? AND workspace_id = ?",
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
                    "UPDATE access_codes SET status = ?, errors = '[]', warnings = '[]',
                        pending_since = ? WHERE access_code_id = ?",
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

    /// Marks the code for removal; the engine takes it off the lock and then deletes it.
    pub async fn delete_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE access_codes SET deleted = 1, status = 'removing', warnings = '[]',
                errors = '[]', pending_since = ?
             WHERE access_code_id = ? AND workspace_id = ? AND is_managed = 1",
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

    /// A managed code of the workspace, by id or by (device, PIN).
    pub async fn get_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCode>> {
        self.find_code(workspace_id, true, lookup)
            .await?
            .map(AccessCodeRow::into_managed)
            .transpose()
    }

    pub async fn get_unmanaged_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<UnmanagedAccessCode>> {
        self.find_code(workspace_id, false, lookup)
            .await?
            .map(AccessCodeRow::into_unmanaged)
            .transpose()
    }

    async fn find_code(
        &self,
        workspace_id: &str,
        managed: bool,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCodeRow>> {
        let (access_code_id, device_id, code) = lookup.parts();
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = ? AND is_managed = ?
             AND (? IS NULL OR access_code_id = ?) AND (? IS NULL OR device_id = ?)
             AND (? IS NULL OR code = ?) ORDER BY deleted, seq LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(managed)
            .bind(access_code_id)
            .bind(access_code_id)
            .bind(device_id)
            .bind(device_id)
            .bind(code)
            .bind(code)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn list_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<AccessCode>> {
        let rows = self.list_codes(workspace_id, true, &filter).await?;
        paginate(rows, filter.limit, |r| r.seq, AccessCodeRow::into_managed)
    }

    pub async fn list_unmanaged_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<UnmanagedAccessCode>> {
        let rows = self.list_codes(workspace_id, false, &filter).await?;
        paginate(rows, filter.limit, |r| r.seq, AccessCodeRow::into_unmanaged)
    }

    async fn list_codes(
        &self,
        workspace_id: &str,
        managed: bool,
        filter: &AccessCodeFilter<'_>,
    ) -> Result<Vec<AccessCodeRow>> {
        let ids_json = filter
            .access_code_ids
            .map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = ? AND is_managed = ?
             AND (? IS NULL OR device_id = ?)
             AND (? IS NULL OR access_code_id IN (SELECT value FROM json_each(?)))
             AND seq > ? ORDER BY seq LIMIT ?"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(managed)
            .bind(filter.device_id)
            .bind(filter.device_id)
            .bind(&ids_json)
            .bind(&ids_json)
            .bind(filter.after.unwrap_or(0))
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.reader)
            .await?)
    }

    /// PINs currently on, or meant for, the device (managed and unmanaged).
    pub async fn codes_on_device(&self, device_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT code FROM access_codes WHERE device_id = ? AND code IS NOT NULL
             UNION SELECT code FROM sandbox_slots WHERE device_id = ?",
        )
        .bind(device_id)
        .bind(device_id)
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn get_action_attempt(
        &self,
        workspace_id: &str,
        action_attempt_id: &str,
    ) -> Result<Option<ActionAttempt>> {
        let row: Option<ActionAttemptRow> = sqlx::query_as(
            "SELECT action_attempt_id, action_type, status, result, error FROM action_attempts
             WHERE workspace_id = ? AND action_attempt_id = ?",
        )
        .bind(workspace_id)
        .bind(action_attempt_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(ActionAttemptRow::into_model).transpose()
    }

    pub async fn list_action_attempts(
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
        let ids_json = ids.map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, action_attempt_id, action_type, status, result, error FROM action_attempts
             WHERE workspace_id = ? AND (? IS NULL OR device_id = ?)
             AND (? IS NULL OR action_attempt_id IN (SELECT value FROM json_each(?)))
             AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(workspace_id)
        .bind(device_id)
        .bind(device_id)
        .bind(&ids_json)
        .bind(&ids_json)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        paginate(rows, limit, |r| r.seq, |r| r.attempt.into_model())
    }
}

/// A PIN conflicts with another code on the same lock only when their windows overlap
/// (unmanaged and ongoing codes are always active).
async fn ensure_no_duplicate(
    tx: &mut Transaction<'_, Sqlite>,
    device_id: &str,
    code: &str,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    except: Option<&str>,
) -> Result<()> {
    let clash: Option<String> = sqlx::query_scalar(
        "SELECT access_code_id FROM access_codes
         WHERE device_id = ? AND code = ? AND deleted = 0 AND access_code_id IS NOT ?
           AND (starts_at IS NULL OR ? IS NULL OR starts_at < ?)
           AND (ends_at IS NULL OR ? IS NULL OR ? < ends_at)
         LIMIT 1",
    )
    .bind(device_id)
    .bind(code)
    .bind(except)
    .bind(ends_at.map(|t| t.millis()))
    .bind(ends_at.map(|t| t.millis()))
    .bind(starts_at.map(|t| t.millis()))
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
    tx: &mut Transaction<'_, Sqlite>,
    access_code_id: &str,
) -> Result<AccessCodeRow> {
    let sql = format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = ?");
    Ok(sqlx::query_as(&sql)
        .bind(access_code_id)
        .fetch_one(&mut **tx)
        .await?)
}

pub(crate) async fn insert_job(
    tx: &mut Transaction<'_, Sqlite>,
    device_id: &str,
    access_code_id: Option<&str>,
    run_after: Timestamp,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
         SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM device_jobs
            WHERE device_id = ? AND access_code_id IS ? AND run_after = ?)",
    )
    .bind(device_id)
    .bind(access_code_id)
    .bind(run_after.millis())
    .bind(now.millis())
    .bind(device_id)
    .bind(access_code_id)
    .bind(run_after.millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Sqlite>,
    event_type: EventType,
    device: &DeviceRecord,
    access_code_id: Option<&str>,
    code: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    let event_id = new_id();
    sqlx::query(
        "INSERT INTO events (event_id, workspace_id, event_type, device_id, connected_account_id,
            access_code_id, code, created_at, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&event_id)
    .bind(&device.workspace_id)
    .bind(event_type.as_str())
    .bind(&device.device_id)
    .bind(&device.connected_account_id)
    .bind(access_code_id)
    .bind(code)
    .bind(now.millis())
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    // The webhook outbox: one delivery per matching webhook, in this same transaction.
    let order_key = access_code_id.unwrap_or(&device.device_id);
    crate::webhooks::enqueue_deliveries(
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
    tx: &mut Transaction<'_, Sqlite>,
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
         VALUES (?, ?, ?, 'pending', ?, ?, ?)",
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
    tx: &mut Transaction<'_, Sqlite>,
    action_attempt_id: &str,
) -> Result<ActionAttempt> {
    let row: ActionAttemptRow = sqlx::query_as(
        "SELECT action_attempt_id, action_type, status, result, error FROM action_attempts
         WHERE action_attempt_id = ?",
    )
    .bind(action_attempt_id)
    .fetch_one(&mut **tx)
    .await?;
    row.into_model()
}

/// Settles one pending attempt: `Ok(result)` = success, `Err((type, message))` = error.
pub(crate) async fn resolve_attempt(
    tx: &mut Transaction<'_, Sqlite>,
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
        "UPDATE action_attempts SET status = ?, result = ?, error = ?
         WHERE action_attempt_id = ? AND status = 'pending'",
    )
    .bind(status)
    .bind(result)
    .bind(error)
    .bind(action_attempt_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
