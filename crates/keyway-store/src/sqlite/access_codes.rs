//! SQLite: access codes as the API sees them — each write with its device job, action attempt
//! and event in the same transaction.

use async_trait::async_trait;
use keyway_model::{
    AccessCode, AccessCodeStatus, AccessCodeType, ActionAttempt, ActionType, EventType, Timestamp,
    UnmanagedAccessCode,
};
use rusqlite::{params, Connection};

use super::db::{column, exec, row, rows, scalar};
use super::{tx, SqliteStore};
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
    (use_backup_access_code_pool = 1 AND pulled_backup_access_code_id IS NULL AND EXISTS ( \
        SELECT 1 FROM access_codes b WHERE b.device_id = access_codes.device_id \
        AND b.is_backup = 1 AND b.pulled_for_access_code_id IS NULL AND b.status = 'set' \
        AND b.deleted = 0)) AS is_backup_access_code_available";

/// A row of `SELECT {CODE_COLUMNS}`, read by position: on the engine's paths a code is read
/// once per step, and looking every column up by name cost as much as the query itself.
pub(crate) fn code_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessCodeRow> {
    Ok(AccessCodeRow {
        seq: r.get(0)?,
        access_code_id: r.get(1)?,
        workspace_id: r.get(2)?,
        device_id: r.get(3)?,
        is_managed: r.get(4)?,
        name: r.get(5)?,
        code: r.get(6)?,
        kind: r.get(7)?,
        starts_at: r.get(8)?,
        ends_at: r.get(9)?,
        status: r.get(10)?,
        deleted: r.get(11)?,
        slot: r.get(12)?,
        confirmed_code: r.get(13)?,
        errors: r.get(14)?,
        warnings: r.get(15)?,
        is_external_modification_allowed: r.get(16)?,
        is_one_time_use: r.get(17)?,
        is_offline_access_code: r.get(18)?,
        common_code_key: r.get(19)?,
        pending_since: r.get(20)?,
        created_at: r.get(21)?,
        is_backup: r.get(22)?,
        pulled_backup_access_code_id: r.get(23)?,
        is_backup_access_code_available: r.get(24)?,
    })
}

/// The code rows `sql` (a `SELECT {CODE_COLUMNS}`) answers.
pub(crate) fn code_rows(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AccessCodeRow>> {
    super::db::mapped(c, sql, params, code_from_row)
}

const ATTEMPT_COLUMNS: &str = "action_attempt_id, action_type, status, result, error";

#[async_trait]
impl AccessCodeStore for SqliteStore {
    async fn create_access_codes(
        &self,
        codes: Vec<NewAccessCode<'_>>,
        now: Timestamp,
    ) -> Result<Vec<(AccessCode, ActionAttempt)>> {
        let codes: Vec<NewCode> = codes.into_iter().map(NewCode::from).collect();
        self.db
            .write(move |c| {
                let mut created = Vec::with_capacity(codes.len());
                for new in &codes {
                    created.push(insert_code(c, new, now)?);
                }
                Ok(created)
            })
            .await
    }

    async fn update_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        changes: AccessCodeChanges,
        now: Timestamp,
    ) -> Result<UpdateOutcome> {
        let (device, id) = (device.clone(), access_code_id.to_owned());
        self.db
            .write(move |c| {
                if changes.reprogram.is_some() {
                    ensure_no_duplicate(
                        c,
                        &device.device_id,
                        &changes.code,
                        changes.starts_at,
                        changes.ends_at,
                        Some(&id),
                    )?;
                }
                exec(
                    c,
                    "UPDATE access_codes SET name = ?, code = ?, type = ?, starts_at = ?,
                        ends_at = ?, is_external_modification_allowed = ?
                     WHERE access_code_id = ? AND workspace_id = ?",
                    params![
                        changes.name,
                        changes.code,
                        changes.kind.as_str(),
                        changes.starts_at.map(|t| t.millis()),
                        changes.ends_at.map(|t| t.millis()),
                        changes.is_external_modification_allowed,
                        id,
                        device.workspace_id,
                    ],
                )?;
                tx::insert_event(
                    c,
                    EventType::AccessCodeChanged,
                    &device,
                    Some(&id),
                    None,
                    now,
                )?;
                let attempt = tx::insert_attempt(
                    c,
                    &device.workspace_id,
                    ActionType::UpdateAccessCode,
                    Some(&id),
                    &device.device_id,
                    now,
                )?;
                let action_attempt = match changes.reprogram {
                    Some((status, job_at)) => {
                        exec(
                            c,
                            "UPDATE access_codes SET status = ?, errors = '[]', warnings = '[]',
                                pending_since = ? WHERE access_code_id = ?",
                            params![status.as_str(), now.millis(), id],
                        )?;
                        tx::insert_job(c, &device.device_id, Some(&id), job_at, now)?;
                        attempt
                    }
                    None => {
                        // Nothing to change on the lock: the update is done.
                        let code = tx::fetch_code(c, &id)?.into_managed()?;
                        let result = serde_json::json!({ "access_code": code });
                        tx::resolve_attempt(c, &attempt.action_attempt_id, Ok(result))?;
                        tx::fetch_attempt(c, &attempt.action_attempt_id)?
                    }
                };
                Ok(UpdateOutcome { action_attempt })
            })
            .await
    }

    async fn delete_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let (device, id) = (device.clone(), access_code_id.to_owned());
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE access_codes SET deleted = 1, status = 'removing', warnings = '[]',
                        errors = '[]', pending_since = ?
                     WHERE access_code_id = ? AND workspace_id = ? AND is_managed = 1",
                    params![now.millis(), id, device.workspace_id],
                )?;
                tx::insert_job(c, &device.device_id, Some(&id), now, now)?;
                tx::insert_attempt(
                    c,
                    &device.workspace_id,
                    ActionType::DeleteAccessCode,
                    Some(&id),
                    &device.device_id,
                    now,
                )
            })
            .await
    }

    async fn convert_unmanaged(
        &self,
        workspace_id: &str,
        access_code_id: &str,
        is_external_modification_allowed: bool,
        now: Timestamp,
    ) -> Result<bool> {
        let (workspace_id, id) = (workspace_id.to_owned(), access_code_id.to_owned());
        self.db
            .write(move |c| {
                let done = exec(
                    c,
                    "UPDATE access_codes SET is_managed = 1, status = 'set', confirmed_code = code,
                        is_external_modification_allowed = ?
                     WHERE access_code_id = ? AND workspace_id = ? AND is_managed = 0
                        AND deleted = 0",
                    params![is_external_modification_allowed, id, workspace_id],
                )?;
                if done == 0 {
                    return Ok(false);
                }
                let row = tx::fetch_code(c, &id)?;
                let device = tx::device(c, &row.device_id)?;
                tx::insert_event(
                    c,
                    EventType::AccessCodeUnmanagedConvertedToManaged,
                    &device,
                    Some(&id),
                    None,
                    now,
                )?;
                Ok(true)
            })
            .await
    }

    async fn delete_unmanaged(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let (device, id) = (device.clone(), access_code_id.to_owned());
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE access_codes SET deleted = 1, pending_since = ?
                     WHERE access_code_id = ? AND workspace_id = ? AND is_managed = 0",
                    params![now.millis(), id, device.workspace_id],
                )?;
                tx::insert_job(c, &device.device_id, Some(&id), now, now)?;
                tx::insert_attempt(
                    c,
                    &device.workspace_id,
                    ActionType::DeleteAccessCode,
                    Some(&id),
                    &device.device_id,
                    now,
                )
            })
            .await
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

    fn device_codes_version(&self, device_id: &str) -> Option<u64> {
        Some(self.db.code_version(device_id))
    }

    async fn enable_backup_pool(&self, device: &DeviceRecord, size: u32) -> Result<()> {
        let device_id = device.device_id.clone();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE devices SET backup_pool_size = MAX(backup_pool_size, ?)
                     WHERE device_id = ?",
                    params![i64::from(size), device_id],
                )?;
                Ok(())
            })
            .await
    }

    async fn backup_pool_shortfall(&self, device_id: &str) -> Result<u32> {
        let device_id = device_id.to_owned();
        // On the writer, as before: it counts after every write queued ahead of it.
        let missing: i64 = self
            .db
            .write(move |c| {
                Ok(scalar(
                    c,
                    "SELECT d.backup_pool_size - (SELECT COUNT(*) FROM access_codes b
                        WHERE b.device_id = d.device_id AND b.is_backup = 1
                        AND b.pulled_for_access_code_id IS NULL AND b.deleted = 0)
                     FROM devices d WHERE d.device_id = ?",
                    params![device_id],
                )?
                .unwrap_or(0))
            })
            .await?;
        Ok(u32::try_from(missing.max(0)).unwrap_or(0))
    }

    async fn add_backup_codes(
        &self,
        device: &DeviceRecord,
        pins: &[String],
        now: Timestamp,
    ) -> Result<()> {
        let (device, pins) = (device.clone(), pins.to_vec());
        self.db
            .write(move |c| {
                for pin in &pins {
                    let id = new_id();
                    exec(
                        c,
                        "INSERT INTO access_codes (access_code_id, workspace_id, device_id,
                            is_managed, name, code, type, status, is_backup, pending_since,
                            created_at)
                         VALUES (?1, ?2, ?3, 1, 'Backup Access Code', ?4, 'ongoing', 'setting', 1,
                            ?5, ?5)",
                        params![id, device.workspace_id, device.device_id, pin, now.millis()],
                    )?;
                    tx::insert_job(c, &device.device_id, Some(&id), now, now)?;
                }
                Ok(())
            })
            .await
    }

    async fn pull_backup_code(
        &self,
        device: &DeviceRecord,
        original: &AccessCode,
        now: Timestamp,
    ) -> Result<Option<AccessCode>> {
        let device = device.clone();
        let original_id = original.access_code_id.clone();
        let starts_at = original
            .starts_at
            .map(|t| t.millis())
            .unwrap_or(now.millis())
            .min(now.millis());
        let ends_at = original.ends_at.map(|t| t.millis());
        let name = original.name.as_deref().map(|n| format!("Backup of {n}"));
        self.db
            .write(move |c| {
                let already: Option<String> = scalar::<Option<String>>(
                    c,
                    "SELECT pulled_backup_access_code_id FROM access_codes
                     WHERE access_code_id = ?",
                    params![original_id],
                )?
                .flatten();
                let backup_id = match already {
                    Some(id) => id,
                    None => {
                        // Prefer a backup the lock already holds.
                        let Some(id) = scalar::<String>(
                            c,
                            "SELECT access_code_id FROM access_codes WHERE device_id = ?
                             AND is_backup = 1 AND pulled_for_access_code_id IS NULL
                             AND deleted = 0
                             ORDER BY status = 'set' DESC, seq LIMIT 1",
                            params![device.device_id],
                        )?
                        else {
                            return Ok(None);
                        };
                        exec(
                            c,
                            "UPDATE access_codes SET pulled_for_access_code_id = ?,
                                type = 'time_bound', starts_at = ?, ends_at = ?, name = ?
                             WHERE access_code_id = ?",
                            params![original_id, starts_at, ends_at, name, id],
                        )?;
                        exec(
                            c,
                            "UPDATE access_codes SET pulled_backup_access_code_id = ?
                             WHERE access_code_id = ?",
                            params![id, original_id],
                        )?;
                        // The engine now knows when the backup must leave the lock.
                        tx::insert_job(c, &device.device_id, Some(&id), now, now)?;
                        let payload = serde_json::json!({ "backup_access_code_id": id });
                        tx::insert_event_with(
                            c,
                            EventType::AccessCodeBackupAccessCodePulled,
                            &device,
                            Some(&original_id),
                            None,
                            Some(payload),
                            now,
                        )?;
                        id
                    }
                };
                Ok(Some(tx::fetch_code(c, &backup_id)?.into_managed()?))
            })
            .await
    }

    async fn codes_with_common_key(
        &self,
        workspace_id: &str,
        common_code_key: &str,
    ) -> Result<Vec<AccessCode>> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE workspace_id = ? AND is_managed = 1
             AND deleted = 0 AND common_code_key = ? ORDER BY seq"
        );
        let (workspace_id, key) = (workspace_id.to_owned(), common_code_key.to_owned());
        let rows: Vec<AccessCodeRow> = self
            .db
            .read(move |c| rows(c, &sql, params![workspace_id, key]))
            .await?;
        rows.into_iter().map(AccessCodeRow::into_managed).collect()
    }

    async fn codes_on_device(&self, device_id: &str) -> Result<Vec<String>> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| {
                column(
                    c,
                    "SELECT code FROM access_codes WHERE device_id = ?1 AND code IS NOT NULL
                     UNION SELECT code FROM sandbox_slots WHERE device_id = ?1",
                    params![device_id],
                )
            })
            .await
    }

    async fn get_action_attempt(
        &self,
        workspace_id: &str,
        action_attempt_id: &str,
    ) -> Result<Option<ActionAttempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM action_attempts
             WHERE workspace_id = ? AND action_attempt_id = ?"
        );
        let (workspace_id, id) = (workspace_id.to_owned(), action_attempt_id.to_owned());
        let row: Option<ActionAttemptRow> = self
            .db
            .read(move |c| row(c, &sql, params![workspace_id, id]))
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
        #[derive(serde::Deserialize)]
        struct Row {
            seq: i64,
            action_attempt_id: String,
            action_type: String,
            status: String,
            result: Option<String>,
            error: Option<String>,
        }
        let sql = format!(
            "SELECT seq, {ATTEMPT_COLUMNS} FROM action_attempts
             WHERE workspace_id = ?1 AND (?2 IS NULL OR device_id = ?2)
             AND (?3 IS NULL OR action_attempt_id IN (SELECT value FROM json_each(?3)))
             AND seq > ?4 ORDER BY seq LIMIT ?5"
        );
        let ids_json = ids.map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        let (workspace_id, device_id) = (workspace_id.to_owned(), device_id.map(str::to_owned));
        let (after, fetch) = (after.unwrap_or(0), i64::from(limit) + 1);
        let rows: Vec<Row> = self
            .db
            .read(move |c| {
                rows(
                    c,
                    &sql,
                    params![workspace_id, device_id, ids_json, after, fetch],
                )
            })
            .await?;
        paginate(
            rows,
            limit,
            |r| r.seq,
            |r| {
                ActionAttemptRow {
                    action_attempt_id: r.action_attempt_id,
                    action_type: r.action_type,
                    status: r.status,
                    result: r.result,
                    error: r.error,
                }
                .into_model()
            },
        )
    }
}

impl SqliteStore {
    async fn find_code(
        &self,
        workspace_id: &str,
        managed: bool,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCodeRow>> {
        // One plan per lookup, so that SQLite uses the id or (device, seq) index.
        let (key, sql) = match lookup {
            CodeLookup::Id(id) => (
                (id.to_owned(), None),
                format!(
                    "SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = ? AND ? IS NULL
                     AND workspace_id = ? AND is_managed = ? AND (is_managed = 1 OR deleted = 0)"
                ),
            ),
            CodeLookup::Pin { device_id, code } => (
                (device_id.to_owned(), Some(code.to_owned())),
                format!(
                    "SELECT {CODE_COLUMNS} FROM access_codes WHERE device_id = ? AND code = ?
                     AND workspace_id = ? AND is_managed = ? AND (is_managed = 1 OR deleted = 0)
                     ORDER BY deleted, seq LIMIT 1"
                ),
            ),
        };
        let workspace_id = workspace_id.to_owned();
        self.db
            .read(move |c| row(c, &sql, params![key.0, key.1, workspace_id, managed]))
            .await
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
        // With a device, the (device_id, seq) index serves the page directly. The unary `+`
        // keeps the planner off the (workspace_id, seq) index, which also yields rows in `seq`
        // order but would walk every code of the workspace to find the device's (measured:
        // 262 ms for a page of 100 among 1,000,000 codes).
        let (by_device, workspace) = if filter.device_id.is_some() {
            ("device_id = ?1", "+workspace_id")
        } else {
            ("?1 IS NULL", "workspace_id")
        };
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM access_codes WHERE {by_device} AND {workspace} = ?2
             AND is_managed = ?3 AND (is_managed = 1 OR deleted = 0) AND is_backup = 0
             AND (?4 IS NULL OR access_code_id IN (SELECT value FROM json_each(?4)))
             AND seq > ?5 ORDER BY seq LIMIT ?6"
        );
        let (workspace_id, device_id) =
            (workspace_id.to_owned(), filter.device_id.map(str::to_owned));
        let (after, fetch) = (filter.after.unwrap_or(0), i64::from(filter.limit) + 1);
        self.db
            .read(move |c| {
                rows(
                    c,
                    &sql,
                    params![device_id, workspace_id, managed, ids_json, after, fetch],
                )
            })
            .await
    }
}

/// A [`NewAccessCode`] that owns its device, to move into a write closure.
struct NewCode {
    device: DeviceRecord,
    name: Option<String>,
    code: String,
    kind: AccessCodeType,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    status: AccessCodeStatus,
    is_external_modification_allowed: bool,
    is_one_time_use: bool,
    is_offline_access_code: bool,
    common_code_key: Option<String>,
    use_backup_access_code_pool: bool,
    job_at: Timestamp,
}

impl From<NewAccessCode<'_>> for NewCode {
    fn from(new: NewAccessCode<'_>) -> NewCode {
        NewCode {
            device: new.device.clone(),
            name: new.name,
            code: new.code,
            kind: new.kind,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            status: new.status,
            is_external_modification_allowed: new.is_external_modification_allowed,
            is_one_time_use: new.is_one_time_use,
            is_offline_access_code: new.is_offline_access_code,
            common_code_key: new.common_code_key,
            use_backup_access_code_pool: new.use_backup_access_code_pool,
            job_at: new.job_at,
        }
    }
}

fn insert_code(
    c: &Connection,
    new: &NewCode,
    now: Timestamp,
) -> Result<(AccessCode, ActionAttempt)> {
    let access_code_id = new_id();
    ensure_no_duplicate(
        c,
        &new.device.device_id,
        &new.code,
        new.starts_at,
        new.ends_at,
        None,
    )?;
    exec(
        c,
        "INSERT INTO access_codes (access_code_id, workspace_id, device_id, is_managed, name,
            code, type, starts_at, ends_at, status, is_external_modification_allowed,
            is_one_time_use, is_offline_access_code, common_code_key, pending_since, created_at,
            use_backup_access_code_pool)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)",
        params![
            access_code_id,
            new.device.workspace_id,
            new.device.device_id,
            new.name,
            new.code,
            new.kind.as_str(),
            new.starts_at.map(|t| t.millis()),
            new.ends_at.map(|t| t.millis()),
            new.status.as_str(),
            new.is_external_modification_allowed,
            new.is_one_time_use,
            new.is_offline_access_code,
            new.common_code_key,
            now.millis(),
            new.use_backup_access_code_pool,
        ],
    )?;
    let seq = c.last_insert_rowid();
    tx::insert_job(
        c,
        &new.device.device_id,
        Some(&access_code_id),
        new.job_at,
        now,
    )?;
    tx::insert_event(
        c,
        EventType::AccessCodeCreated,
        &new.device,
        Some(&access_code_id),
        None,
        now,
    )?;
    let attempt = tx::insert_attempt(
        c,
        &new.device.workspace_id,
        ActionType::CreateAccessCode,
        Some(&access_code_id),
        &new.device.device_id,
        now,
    )?;
    let row = if new.use_backup_access_code_pool {
        // Whether a backup is available depends on the device's other codes.
        tx::fetch_code(c, &access_code_id)?
    } else {
        // The row as just inserted, without reading it back.
        AccessCodeRow {
            seq,
            access_code_id,
            workspace_id: new.device.workspace_id.clone(),
            device_id: new.device.device_id.clone(),
            is_managed: true,
            name: new.name.clone(),
            code: Some(new.code.clone()),
            kind: new.kind.as_str().to_owned(),
            starts_at: new.starts_at.map(|t| t.millis()),
            ends_at: new.ends_at.map(|t| t.millis()),
            status: new.status.as_str().to_owned(),
            deleted: false,
            slot: None,
            confirmed_code: None,
            errors: "[]".to_owned(),
            warnings: "[]".to_owned(),
            is_external_modification_allowed: new.is_external_modification_allowed,
            is_one_time_use: new.is_one_time_use,
            is_offline_access_code: new.is_offline_access_code,
            common_code_key: new.common_code_key.clone(),
            pending_since: Some(now.millis()),
            created_at: now.millis(),
            is_backup: false,
            pulled_backup_access_code_id: None,
            is_backup_access_code_available: false,
        }
    };
    Ok((row.into_managed()?, attempt))
}

/// Another live code with the PIN on the device whose window overlaps (`?4`, `?5`), other
/// than `?3`; the index `access_codes_device_code` finds it.
pub(crate) const CLASH_SQL: &str = "SELECT access_code_id FROM access_codes
    WHERE device_id = ?1 AND code = ?2 AND deleted = 0 AND access_code_id IS NOT ?3
      AND (starts_at IS NULL OR ?4 IS NULL OR starts_at < ?4)
      AND (ends_at IS NULL OR ?5 IS NULL OR ?5 < ends_at)
    LIMIT 1";

/// A PIN conflicts with another code on the same lock only when their windows overlap
/// (unmanaged and ongoing codes are always active).
fn ensure_no_duplicate(
    c: &Connection,
    device_id: &str,
    code: &str,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    except: Option<&str>,
) -> Result<()> {
    let clash: Option<String> = scalar(
        c,
        CLASH_SQL,
        params![
            device_id,
            code,
            except,
            ends_at.map(|t| t.millis()),
            starts_at.map(|t| t.millis())
        ],
    )?;
    match clash {
        Some(_) => Err(StoreError::Conflict(format!(
            "Cannot set duplicate access code {code} on device {device_id}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use keyway_model::ActionAttemptStatus;

    use super::super::testing::{at, seeded};
    use super::*;
    use crate::SEED;

    #[tokio::test]
    async fn a_code_read_by_position_is_the_code_read_by_column_name() {
        let (dir, store, device) = seeded().await;
        let (code, _) = store
            .create_access_code(new_code(&device, "2468", Some((1_000, 2_000))), at(0))
            .await
            .expect("created");
        let conn = Connection::open(dir.path().join("keyway.sqlite")).expect("opens");
        // Every column its own value, so that two columns read in each other's place show.
        conn.execute(
            "UPDATE access_codes SET name = 'n', code = 'c', errors = '[1]', warnings = '[2]',
                slot = 7, confirmed_code = 'cc', common_code_key = 'k', pending_since = 11,
                starts_at = 12, ends_at = 13, created_at = 14, is_backup = 1, deleted = 1,
                pulled_backup_access_code_id = 'p', is_one_time_use = 1, status = 's',
                is_external_modification_allowed = 0, is_offline_access_code = 1
             WHERE access_code_id = ?",
            params![code.access_code_id],
        )
        .expect("updated");
        let sql = format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE access_code_id = ?");
        let by_name: AccessCodeRow = row(&conn, &sql, params![code.access_code_id])
            .expect("read")
            .expect("row");
        // The columns in the order `code_from_row` reads them (flags share values above).
        let names: Vec<String> = conn
            .prepare(&sql)
            .expect("prepares")
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            names,
            [
                "seq",
                "access_code_id",
                "workspace_id",
                "device_id",
                "is_managed",
                "name",
                "code",
                "type",
                "starts_at",
                "ends_at",
                "status",
                "deleted",
                "slot",
                "confirmed_code",
                "errors",
                "warnings",
                "is_external_modification_allowed",
                "is_one_time_use",
                "is_offline_access_code",
                "common_code_key",
                "pending_since",
                "created_at",
                "is_backup",
                "pulled_backup_access_code_id",
                "is_backup_access_code_available"
            ]
        );
        let by_position = code_rows(&conn, &sql, params![code.access_code_id]).expect("read");
        assert_eq!(by_position.len(), 1);
        assert_eq!(format!("{:?}", by_position[0]), format!("{by_name:?}"));
    }

    fn new_code<'a>(
        device: &'a DeviceRecord,
        pin: &str,
        window: Option<(i64, i64)>,
    ) -> NewAccessCode<'a> {
        NewAccessCode {
            device,
            name: Some(format!("code {pin}")),
            code: pin.into(),
            kind: if window.is_some() {
                AccessCodeType::TimeBound
            } else {
                AccessCodeType::Ongoing
            },
            starts_at: window.map(|(s, _)| at(s)),
            ends_at: window.map(|(_, e)| at(e)),
            status: AccessCodeStatus::Setting,
            is_external_modification_allowed: false,
            is_one_time_use: false,
            is_offline_access_code: false,
            common_code_key: Some("group".into()),
            use_backup_access_code_pool: true,
            job_at: at(1),
        }
    }

    fn filter<'a>(device_id: Option<&'a str>, limit: u32) -> AccessCodeFilter<'a> {
        AccessCodeFilter {
            device_id,
            access_code_ids: None,
            after: None,
            limit,
            known_device: None,
        }
    }

    #[tokio::test]
    async fn a_created_code_is_answered_as_it_is_stored() {
        let (_dir, store, device) = seeded().await;
        let mut plain = new_code(&device, "4321", Some((10, 20)));
        plain.use_backup_access_code_pool = false;
        plain.is_one_time_use = true;
        plain.is_external_modification_allowed = true;
        let mut ongoing = new_code(&device, "8765", None);
        ongoing.use_backup_access_code_pool = false;
        ongoing.name = None;
        ongoing.common_code_key = None;
        let pooled = new_code(&device, "1357", Some((10, 20)));
        let created = store
            .create_access_codes(vec![plain, ongoing, pooled], at(1))
            .await
            .expect("created");
        for (code, _) in created {
            let stored = store
                .get_access_code(SEED.seed_workspace_1, CodeLookup::Id(&code.access_code_id))
                .await
                .expect("query")
                .expect("found");
            assert_eq!(
                serde_json::to_value(&code).expect("json"),
                serde_json::to_value(&stored).expect("json")
            );
        }
    }

    #[tokio::test]
    async fn codes_are_created_found_listed_updated_and_deleted() {
        let (_dir, store, device) = seeded().await;
        let ws = SEED.seed_workspace_1;
        let created = store
            .create_access_codes(
                vec![
                    new_code(&device, "1234", None),
                    new_code(&device, "5678", Some((10, 20))),
                ],
                at(1),
            )
            .await
            .expect("created");
        assert_eq!(created.len(), 2);
        let (first, attempt) = &created[0];
        assert_eq!(first.code.as_deref(), Some("1234"));
        assert_eq!(attempt.status, ActionAttemptStatus::Pending);

        // The same PIN in an overlapping window clashes; all of the batch is rolled back.
        let clash = store
            .create_access_codes(
                vec![
                    new_code(&device, "9999", None),
                    new_code(&device, "5678", Some((15, 30))),
                ],
                at(2),
            )
            .await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))));
        // A window that does not overlap is fine.
        store
            .create_access_code(new_code(&device, "5678", Some((20, 30))), at(2))
            .await
            .expect("no overlap");
        let pins = store
            .codes_on_device(&device.device_id)
            .await
            .expect("pins");
        assert!(!pins.contains(&"9999".to_owned()));
        assert!(pins.contains(&"1234".to_owned()));

        let by_id = store
            .get_access_code(ws, CodeLookup::Id(&first.access_code_id))
            .await
            .expect("query")
            .expect("found");
        assert_eq!(by_id.access_code_id, first.access_code_id);
        let by_pin = store
            .get_access_code(
                ws,
                CodeLookup::Pin {
                    device_id: &device.device_id,
                    code: "5678",
                },
            )
            .await
            .expect("query")
            .expect("found");
        assert_eq!(by_pin.access_code_id, created[1].0.access_code_id);
        let unmanaged = store
            .get_unmanaged_access_code(ws, CodeLookup::Id(&first.access_code_id))
            .await
            .expect("query");
        assert!(unmanaged.is_none());

        let page = store
            .list_access_codes(ws, filter(Some(&device.device_id), 2))
            .await
            .expect("page");
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].access_code_id, first.access_code_id);
        let rest = store
            .list_access_codes(
                ws,
                AccessCodeFilter {
                    after: page.next_cursor,
                    ..filter(None, 10)
                },
            )
            .await
            .expect("page");
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next_cursor.is_none());
        let ids = [created[1].0.access_code_id.clone()];
        let picked = store
            .list_access_codes(
                ws,
                AccessCodeFilter {
                    access_code_ids: Some(&ids),
                    ..filter(None, 10)
                },
            )
            .await
            .expect("page");
        assert_eq!(picked.items.len(), 1);
        assert_eq!(picked.items[0].access_code_id, ids[0]);
        let grouped = store
            .codes_with_common_key(ws, "group")
            .await
            .expect("group");
        assert_eq!(grouped.len(), 3);

        // A rename alone is done at once; a new PIN goes back to the lock.
        let rename = store
            .update_access_code(
                &device,
                &first.access_code_id,
                AccessCodeChanges {
                    name: Some("renamed".into()),
                    code: "1234".into(),
                    kind: AccessCodeType::Ongoing,
                    starts_at: None,
                    ends_at: None,
                    is_external_modification_allowed: true,
                    reprogram: None,
                },
                at(3),
            )
            .await
            .expect("updated");
        assert_eq!(rename.action_attempt.status, ActionAttemptStatus::Success);
        let repin = store
            .update_access_code(
                &device,
                &first.access_code_id,
                AccessCodeChanges {
                    name: Some("renamed".into()),
                    code: "5678".into(),
                    kind: AccessCodeType::Ongoing,
                    starts_at: None,
                    ends_at: None,
                    is_external_modification_allowed: true,
                    reprogram: Some((AccessCodeStatus::Setting, at(3))),
                },
                at(3),
            )
            .await;
        assert!(matches!(repin, Err(StoreError::Conflict(_))));
        let renamed = store
            .get_access_code(ws, CodeLookup::Id(&first.access_code_id))
            .await
            .expect("query")
            .expect("found");
        assert_eq!(renamed.name.as_deref(), Some("renamed"));
        assert_eq!(renamed.code.as_deref(), Some("1234"));

        let deleted = store
            .delete_access_code(&device, &first.access_code_id, at(4))
            .await
            .expect("deleted");
        let fetched = store
            .get_action_attempt(ws, &deleted.action_attempt_id)
            .await
            .expect("query")
            .expect("found");
        assert_eq!(fetched.action_type, ActionType::DeleteAccessCode);
        let attempts = store
            .list_action_attempts(ws, None, Some(&device.device_id), None, 3)
            .await
            .expect("attempts");
        assert_eq!(attempts.items.len(), 3);
        assert!(attempts.next_cursor.is_some());
        let chosen = [deleted.action_attempt_id.clone()];
        let attempts = store
            .list_action_attempts(ws, Some(&chosen), None, None, 10)
            .await
            .expect("attempts");
        assert_eq!(attempts.items.len(), 1);
        assert!(!store
            .convert_unmanaged(ws, &first.access_code_id, false, at(5))
            .await
            .expect("query"));
    }

    #[tokio::test]
    async fn a_devices_code_version_moves_with_its_codes_and_no_others() {
        let (_dir, store, device) = seeded().await;
        let other = store
            .get_device(SEED.seed_workspace_1, Some(SEED.august_device_2), None)
            .await
            .expect("query")
            .expect("seeded device");
        let version = |id: &str| store.device_codes_version(id).expect("SQLite tells");
        let (before, other_before) = (version(&device.device_id), version(&other.device_id));
        let created = store
            .create_access_code(new_code(&device, "1234", None), at(1))
            .await
            .expect("created")
            .0;
        let after_create = version(&device.device_id);
        assert_ne!(after_create, before);
        assert_eq!(version(&other.device_id), other_before);
        store
            .delete_access_code(&device, &created.access_code_id, at(2))
            .await
            .expect("deleted");
        assert_ne!(version(&device.device_id), after_create);
        // A write that changes no code leaves it.
        let unchanged = version(&device.device_id);
        store.enable_backup_pool(&device, 2).await.expect("enabled");
        assert_eq!(version(&device.device_id), unchanged);
        assert_eq!(version(&other.device_id), other_before);
    }

    #[tokio::test]
    async fn a_backup_code_is_pulled_once() {
        let (_dir, store, device) = seeded().await;
        assert_eq!(
            store
                .backup_pool_shortfall(&device.device_id)
                .await
                .expect("query"),
            0
        );
        store.enable_backup_pool(&device, 2).await.expect("enabled");
        assert_eq!(
            store
                .backup_pool_shortfall(&device.device_id)
                .await
                .expect("query"),
            2
        );
        store
            .add_backup_codes(&device, &["1111".into(), "2222".into()], at(1))
            .await
            .expect("added");
        assert_eq!(
            store
                .backup_pool_shortfall(&device.device_id)
                .await
                .expect("query"),
            0
        );
        let (original, _) = store
            .create_access_code(new_code(&device, "3333", Some((10, 20))), at(2))
            .await
            .expect("created");
        let backup = store
            .pull_backup_code(&device, &original, at(3))
            .await
            .expect("pulled")
            .expect("a backup");
        assert_eq!(backup.name.as_deref(), Some("Backup of code 3333"));
        assert_eq!(backup.starts_at, Some(at(3)));
        assert_eq!(backup.ends_at, Some(at(20)));
        let again = store
            .pull_backup_code(&device, &original, at(4))
            .await
            .expect("pulled")
            .expect("a backup");
        assert_eq!(again.access_code_id, backup.access_code_id);
        assert_eq!(
            store
                .backup_pool_shortfall(&device.device_id)
                .await
                .expect("query"),
            1
        );
        // Backups are not listed with the workspace's codes.
        let page = store
            .list_access_codes(SEED.seed_workspace_1, filter(None, 10))
            .await
            .expect("page");
        assert_eq!(page.items.len(), 1);
    }
}
