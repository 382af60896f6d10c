//! SQLite: due device work, per-device leases, and the outcome of each engine step, each in one
//! transaction with the job that caused it. One process owns the file, so a lease is only ever
//! contended by that process's own workers.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use keyway_model::{AccessCode, ActionAttempt, ActionType, EventType, Timestamp};
use rusqlite::{params, Connection};

use super::access_codes::{code_rows, CODE_COLUMNS};
use super::accounts::DEVICE_SELECT;
use super::db::{column, exec, mapped, row, rows, scalar};
use super::tx::{
    fetch_attempt, insert_attempt, insert_event, insert_event_with, insert_job, one,
    resolve_attempt, try_fetch_code,
};
use super::SqliteStore;
use crate::accounts::DeviceRecord;
use crate::engine::{
    external_change_warnings, gone_attempt_outcome, gone_events, stored_warnings_once_set,
    unmanaged_changes, with_delay_warning, with_error, CodeOutcome, ConfirmedCode, DeviceJob,
    EngineCode, EngineStore, ExternalChange, KnownSlot, LockObservation, OutcomeRecord, RoundStart,
};
use crate::jobs_sql::{opening_at, other_work_at};
use crate::{json, new_id, Result, StoreError};

#[async_trait]
impl EngineStore for SqliteStore {
    async fn confirmed_codes(&self, device_id: &str) -> Result<Vec<ConfirmedCode>> {
        let device_id = device_id.to_owned();
        self.db.read(move |c| confirmed_in(c, &device_id)).await
    }

    async fn record_external_change(
        &self,
        device: &DeviceRecord,
        code: &ConfirmedCode,
        change: ExternalChange,
        now: Timestamp,
    ) -> Result<()> {
        let device = device.clone();
        let id = code.access_code_id.clone();
        let allowed = code.is_external_modification_allowed;
        self.db
            .write(move |c| {
                let id = id.as_str();
                let event = match &change {
                    ExternalChange::Modified { .. } => EventType::AccessCodeModifiedExternalToSeam,
                    ExternalChange::Deleted => EventType::AccessCodeDeletedExternalToSeam,
                };
                insert_event(c, event, &device, Some(id), None, now)?;
                match (allowed, &change) {
                    (true, ExternalChange::Modified { pin }) => {
                        exec(
                            c,
                            "UPDATE access_codes SET code = ?1, confirmed_code = ?1
                             WHERE access_code_id = ?2",
                            params![pin, id],
                        )?;
                    }
                    (true, ExternalChange::Deleted) => {
                        exec(
                            c,
                            "DELETE FROM access_codes WHERE access_code_id = ?",
                            params![id],
                        )?;
                        exec(
                            c,
                            "DELETE FROM device_jobs WHERE access_code_id = ?",
                            params![id],
                        )?;
                    }
                    (false, change) => {
                        let Some(row) = try_fetch_code(c, id)? else {
                            return Ok(());
                        };
                        let warnings = external_change_warnings(&row, now)?;
                        // What the slot holds now is what Keyway overwrites (the slot stays ours).
                        let held = match change {
                            ExternalChange::Modified { pin } => Some(pin),
                            ExternalChange::Deleted => None,
                        };
                        exec(
                            c,
                            "UPDATE access_codes SET status = 'setting', confirmed_code = ?,
                                warnings = ?, pending_since = ? WHERE access_code_id = ?",
                            params![held, json(&warnings)?, now.millis(), id],
                        )?;
                        insert_job(c, &device.device_id, Some(id), now, now)?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn schedule_read(&self, device_id: &str, at: Timestamp, attempts: i64) -> Result<()> {
        let device_id = device_id.to_owned();
        self.db
            .write(move |c| schedule_read_in(c, &device_id, at, attempts))
            .await
    }

    async fn ensure_reads(&self, now: Timestamp) -> Result<()> {
        self.db
            .write(move |c| {
                exec(
                    c,
                    "INSERT INTO device_jobs (device_id, access_code_id, run_after, created_at)
                     SELECT d.device_id, NULL, ?1, ?1 FROM devices d WHERE NOT EXISTS (
                        SELECT 1 FROM device_jobs j WHERE j.device_id = d.device_id
                        AND j.access_code_id IS NULL AND j.action IS NULL)",
                    params![now.millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn enqueue_lock_action(
        &self,
        device: &DeviceRecord,
        lock: bool,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let (workspace_id, device_id) = (device.workspace_id.clone(), device.device_id.clone());
        self.db
            .write(move |c| {
                let action_type = if lock {
                    ActionType::LockDoor
                } else {
                    ActionType::UnlockDoor
                };
                let attempt = insert_attempt(c, &workspace_id, action_type, None, &device_id, now)?;
                exec(
                    c,
                    "INSERT INTO device_jobs (device_id, run_after, created_at, action,
                        action_attempt_id)
                     VALUES (?1, ?2, ?2, ?3, ?4)",
                    params![
                        device_id,
                        now.millis(),
                        if lock { "lock" } else { "unlock" },
                        attempt.action_attempt_id
                    ],
                )?;
                Ok(attempt)
            })
            .await
    }

    async fn finish_lock_action(
        &self,
        device: &DeviceRecord,
        action_attempt_id: &str,
        lock: bool,
        outcome: std::result::Result<(), (&str, &str)>,
        now: Timestamp,
    ) -> Result<()> {
        let device = device.clone();
        let action_attempt_id = action_attempt_id.to_owned();
        let outcome = outcome.map_err(|(kind, message)| (kind.to_owned(), message.to_owned()));
        self.db
            .write(move |c| {
                match &outcome {
                    Ok(()) => {
                        resolve_attempt(c, &action_attempt_id, Ok(serde_json::json!({})))?;
                        let event = if lock {
                            EventType::LockLocked
                        } else {
                            EventType::LockUnlocked
                        };
                        let payload = serde_json::json!({
                            "method": "seamapi",
                            "action_attempt_id": action_attempt_id,
                        });
                        insert_event_with(c, event, &device, None, None, Some(payload), now)?;
                    }
                    Err((kind, message)) => resolve_attempt(
                        c,
                        &action_attempt_id,
                        Err((kind.as_str(), message.as_str())),
                    )?,
                }
                Ok(())
            })
            .await
    }

    async fn record_keypad_entry(
        &self,
        device: &DeviceRecord,
        pin: &str,
        slot: Option<u32>,
        now: Timestamp,
    ) -> Result<ActionAttempt> {
        let device = device.clone();
        let pin = pin.to_owned();
        self.db
            .write(move |c| {
                let matched: Option<(String, bool, bool)> = match slot {
                    Some(slot) => row(
                        c,
                        "SELECT access_code_id, is_managed, is_one_time_use FROM access_codes
                         WHERE device_id = ?1 AND slot = ?2 AND (code = ?3 OR confirmed_code = ?3)
                         LIMIT 1",
                        params![device.device_id, i64::from(slot), pin],
                    )?,
                    None => None,
                };
                let attempt = insert_attempt(
                    c,
                    &device.workspace_id,
                    ActionType::SimulateKeypadCodeEntry,
                    None,
                    &device.device_id,
                    now,
                )?;
                if slot.is_some() {
                    exec(
                        c,
                        "UPDATE sandbox_locks SET locked = 0 WHERE device_id = ?",
                        params![device.device_id],
                    )?;
                    // A lock of a real provider: what it said last, until it reports again.
                    exec(
                        c,
                        "UPDATE devices SET locked = 0 WHERE device_id = ?",
                        params![device.device_id],
                    )?;
                    let mut payload = serde_json::json!({
                        "method": "keycode",
                        "action_attempt_id": attempt.action_attempt_id,
                    });
                    if let Some((_, is_managed, _)) = &matched {
                        payload["access_code_is_managed"] = serde_json::json!(is_managed);
                    }
                    let id = matched.as_ref().map(|(id, _, _)| id.as_str());
                    insert_event_with(
                        c,
                        EventType::LockUnlocked,
                        &device,
                        id,
                        None,
                        Some(payload),
                        now,
                    )?;
                    if let Some((id, true, true)) = &matched {
                        // A one-time code has been used: it goes.
                        exec(
                            c,
                            "UPDATE access_codes SET deleted = 1, status = 'removing',
                                pending_since = ? WHERE access_code_id = ?",
                            params![now.millis(), id],
                        )?;
                        insert_job(c, &device.device_id, Some(id), now, now)?;
                    }
                } else {
                    insert_event_with(
                        c,
                        EventType::LockAccessDenied,
                        &device,
                        None,
                        None,
                        None,
                        now,
                    )?;
                }
                resolve_attempt(c, &attempt.action_attempt_id, Ok(serde_json::json!({})))?;
                fetch_attempt(c, &attempt.action_attempt_id)
            })
            .await
    }

    async fn release_all_leases(&self) -> Result<()> {
        self.db
            .write(|c| {
                exec(
                    c,
                    "UPDATE devices SET lease_owner = NULL, lease_until = NULL",
                    [],
                )?;
                Ok(())
            })
            .await
    }

    async fn due_devices(
        &self,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>> {
        self.db
            .read(move |c| {
                column(
                    c,
                    DUE_DEVICES_SQL,
                    params![now.millis(), i64::from(limit), due_by.millis()],
                )
            })
            .await
    }

    async fn next_job_at(
        &self,
        now: Timestamp,
        lead: Duration,
        horizon: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let lead = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        let at: Option<i64> = self
            .db
            .read(move |c| {
                // MIN always answers one row (NULL when nothing is waiting).
                Ok(scalar::<Option<i64>>(
                    c,
                    NEXT_JOB_AT_SQL,
                    params![now.millis(), lead, horizon.millis().saturating_add(lead)],
                )?
                .flatten())
            })
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
        let (device_id, owner) = (device_id.to_owned(), owner.to_owned());
        self.db
            .write(move |c| claim_in(c, &device_id, &owner, now, until))
            .await
    }

    async fn release_device(&self, device_id: &str, owner: &str) -> Result<()> {
        let (device_id, owner) = (device_id.to_owned(), owner.to_owned());
        self.db
            .write(move |c| release_in(c, &device_id, &owner))
            .await
    }

    async fn due_jobs(
        &self,
        device_id: &str,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeviceJob>> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| due_jobs_in(c, &device_id, now, due_by, limit))
            .await
    }

    async fn delete_jobs(&self, job_ids: &[i64]) -> Result<()> {
        let ids = json(&job_ids)?;
        self.db.write(move |c| delete_jobs_in(c, &ids)).await
    }

    async fn finish_jobs(
        &self,
        device_id: &str,
        job_ids: &[i64],
        next_read: Option<(Timestamp, i64)>,
    ) -> Result<()> {
        let ids = json(&job_ids)?;
        let device_id = device_id.to_owned();
        self.db
            .write(move |c| {
                delete_jobs_in(c, &ids)?;
                if let Some((at, attempts)) = next_read {
                    schedule_read_in(c, &device_id, at, attempts)?;
                }
                Ok(())
            })
            .await
    }

    async fn enqueue_job(
        &self,
        device_id: &str,
        access_code_id: Option<&str>,
        run_after: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let device_id = device_id.to_owned();
        let access_code_id = access_code_id.map(str::to_owned);
        self.db
            .write(move |c| insert_job(c, &device_id, access_code_id.as_deref(), run_after, now))
            .await
    }

    async fn reserved_slots(&self, device_id: &str) -> Result<Vec<u32>> {
        let device_id = device_id.to_owned();
        self.db.read(move |c| reserved_in(c, &device_id)).await
    }

    async fn wake_device(&self, device_id: &str, now: Timestamp) -> Result<()> {
        let device_id = device_id.to_owned();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE device_jobs SET run_after = ?1 WHERE device_id = ?2 AND run_after > ?1",
                    params![now.millis(), device_id],
                )?;
                let codes: Vec<String> = column(
                    c,
                    "SELECT access_code_id FROM access_codes WHERE device_id = ? AND is_managed = 1",
                    params![device_id],
                )?;
                for code in codes {
                    insert_job(c, &device_id, Some(&code), now, now)?;
                }
                insert_job(c, &device_id, None, now, now)
            })
            .await
    }

    async fn engine_device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.device_by_id(device_id).await
    }

    async fn engine_codes(&self, access_code_ids: &[String]) -> Result<Vec<EngineCode>> {
        let ids = json(&access_code_ids)?;
        self.db.read(move |c| engine_codes_in(c, &ids)).await
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
        let device = device.clone();
        self.db
            .write(move |c| record_in(c, &device, &records, now))
            .await
    }

    async fn observe_lock(
        &self,
        device: &DeviceRecord,
        slots: &[LockObservation],
        now: Timestamp,
    ) -> Result<()> {
        self.observe_and_record(device, slots, Vec::new(), now)
            .await
    }

    async fn claim_devices(
        &self,
        device_ids: &[String],
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<String>> {
        let (device_ids, owner) = (device_ids.to_vec(), owner.to_owned());
        self.db
            .write(move |c| {
                let mut held = Vec::with_capacity(device_ids.len());
                for device_id in &device_ids {
                    if claim_in(c, device_id, &owner, now, until)? {
                        held.push(device_id.clone());
                    }
                }
                Ok(held)
            })
            .await
    }

    async fn round_start(
        &self,
        device_id: &str,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<RoundStart> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| {
                let jobs = due_jobs_in(c, &device_id, now, due_by, limit)?;
                if jobs.is_empty() {
                    return Ok(RoundStart::default());
                }
                let sql = format!("{DEVICE_SELECT} WHERE d.device_id = ?");
                let device: Option<DeviceRecord> = row(c, &sql, params![device_id])?;
                let confirmed = match device {
                    Some(_) => confirmed_in(c, &device_id)?,
                    None => Vec::new(),
                };
                Ok(RoundStart {
                    jobs,
                    device,
                    confirmed,
                })
            })
            .await
    }

    async fn round_codes(
        &self,
        device_id: &str,
        access_code_ids: &[String],
    ) -> Result<(Vec<EngineCode>, Vec<u32>)> {
        if access_code_ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids = json(&access_code_ids)?;
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| Ok((engine_codes_in(c, &ids)?, reserved_in(c, &device_id)?)))
            .await
    }

    async fn observe_and_record(
        &self,
        device: &DeviceRecord,
        slots: &[LockObservation],
        records: Vec<OutcomeRecord>,
        now: Timestamp,
    ) -> Result<()> {
        // Most reads find nothing new: look first, and write only when there is something to.
        let device_id = device.device_id.clone();
        let known = self.db.read(move |c| known_slots(c, &device_id)).await?;
        if records.is_empty() && unmanaged_changes(&known, slots).is_empty() {
            return Ok(());
        }
        let device = device.clone();
        let slots = slots.to_vec();
        self.db
            .write(move |c| {
                observe_in(c, &device, &slots, now)?;
                record_in(c, &device, &records, now)
            })
            .await
    }

    async fn finish_round(
        &self,
        device: &DeviceRecord,
        records: Vec<OutcomeRecord>,
        job_ids: &[i64],
        next_read: Option<(Timestamp, i64)>,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let ids = json(&job_ids)?;
        let (device, owner) = (device.clone(), owner.to_owned());
        self.db
            .write(move |c| {
                record_in(c, &device, &records, now)?;
                delete_jobs_in(c, &ids)?;
                if let Some((at, attempts)) = next_read {
                    schedule_read_in(c, &device.device_id, at, attempts)?;
                }
                let more: bool = scalar(
                    c,
                    "SELECT EXISTS (SELECT 1 FROM device_jobs WHERE device_id = ? AND run_after <= ?)",
                    params![device.device_id, now.millis()],
                )?
                .unwrap_or(false);
                if more {
                    claim_in(c, &device.device_id, &owner, now, until)
                } else {
                    release_in(c, &device.device_id, &owner)?;
                    Ok(false)
                }
            })
            .await
    }
}

fn claim_in(
    c: &Connection,
    device_id: &str,
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool> {
    // One atomic UPDATE: the lease is taken only if free, expired, or already ours.
    let changed = exec(
        c,
        "UPDATE devices SET lease_owner = ?1, lease_until = ?2 WHERE device_id = ?3
         AND (lease_until IS NULL OR lease_until < ?4 OR lease_owner = ?1)",
        params![owner, until.millis(), device_id, now.millis()],
    )?;
    Ok(changed == 1)
}

fn release_in(c: &Connection, device_id: &str, owner: &str) -> Result<()> {
    exec(
        c,
        "UPDATE devices SET lease_owner = NULL, lease_until = NULL
         WHERE device_id = ? AND lease_owner = ?",
        params![device_id, owner],
    )?;
    Ok(())
}

/// The jobs `due_jobs_in` answers: `?1` the device, `?2` now, `?3` the limit, `?4` due by.
const DUE_JOBS_SQL: &str = concat!(
    "WITH ahead AS (SELECT MIN(",
    opening_at!(),
    ") AS opening, MIN(",
    other_work_at!(),
    ") AS other
            FROM device_jobs j LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
            WHERE j.device_id = ?1 AND j.run_after <= ?4)
         SELECT job_id, access_code_id, attempts, action, action_attempt_id, run_after
         FROM device_jobs WHERE device_id = ?1 AND run_after <= (SELECT CASE
            WHEN opening > ?2 AND (other IS NULL OR other > opening) THEN opening ELSE ?2 END
            FROM ahead)
         ORDER BY run_after, job_id LIMIT ?3"
);

fn due_jobs_in(
    c: &Connection,
    device_id: &str,
    now: Timestamp,
    due_by: Timestamp,
    limit: u32,
) -> Result<Vec<DeviceJob>> {
    // Due at `now`; or else, when the device's first window opening (by `due_by`) comes
    // before any other work but read-backs, those openings and the read-backs before them.
    mapped(
        c,
        DUE_JOBS_SQL,
        params![device_id, now.millis(), i64::from(limit), due_by.millis()],
        |r| {
            Ok(DeviceJob {
                job_id: r.get(0)?,
                access_code_id: r.get(1)?,
                attempts: r.get(2)?,
                action: r.get(3)?,
                action_attempt_id: r.get(4)?,
                run_after: r.get(5)?,
            })
        },
    )
}

/// Deletes the jobs whose ids `ids` lists (a JSON array).
fn delete_jobs_in(c: &Connection, ids: &str) -> Result<()> {
    exec(
        c,
        "DELETE FROM device_jobs WHERE job_id IN (SELECT value FROM json_each(?))",
        params![ids],
    )?;
    Ok(())
}

/// Devices with work due at `?1`, or a window opening by `?3` that comes before any other
/// work but read-backs (see `due_jobs_in`), whose lease is free; `?2` of them at most.
///
/// The dispatcher asks this whenever a worker ends: each device's first job comes from the
/// covering index `device_jobs_device`, one entry per job and no lookup, and the lease and the
/// jobs' codes are looked at per device, not per job; the codes only for a device whose first
/// job is not due yet.
const DUE_DEVICES_SQL: &str = concat!(
    "WITH per_device AS (SELECT device_id, MIN(run_after) AS first FROM device_jobs
        WHERE run_after <= ?3 GROUP BY device_id)
     SELECT p.device_id FROM per_device p JOIN devices d ON d.device_id = p.device_id
     WHERE (d.lease_until IS NULL OR d.lease_until < ?1)
     AND (p.first <= ?1 OR (SELECT MIN(",
    opening_at!(),
    ") < COALESCE(MIN(",
    other_work_at!(),
    "), ?3 + 1)
        FROM device_jobs j LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
        WHERE j.device_id = p.device_id AND j.run_after <= ?3))
     LIMIT ?2"
);

/// When the dispatcher should look next: the earliest job of a device whose lease is free at
/// `?1`, a window's opening counting `?2` (the lead) early. Per device, that is its first job,
/// or an opening less than the lead after it, less the lead. Jobs from `?3` (the horizon plus
/// the lead) on cannot come before the horizon and are not looked at.
const NEXT_JOB_AT_SQL: &str = concat!(
    "WITH per_device AS (SELECT device_id, MIN(run_after) AS first FROM device_jobs
        WHERE run_after < ?3 GROUP BY device_id)
     SELECT MIN(COALESCE((SELECT MIN(",
    opening_at!(),
    ") FROM device_jobs j LEFT JOIN access_codes a ON a.access_code_id = j.access_code_id
        WHERE j.device_id = p.device_id AND j.run_after < p.first + ?2) - ?2, p.first))
     FROM per_device p JOIN devices d ON d.device_id = p.device_id
     WHERE d.lease_until IS NULL OR d.lease_until < ?1"
);

/// A device's confirmed codes. Like every query on a device's slots, it names
/// `slot IS NOT NULL`, so that the partial index `access_codes_device_slot` serves it.
const CONFIRMED_SQL: &str = "SELECT access_code_id, slot, confirmed_code,
        is_external_modification_allowed
    FROM access_codes WHERE device_id = ? AND is_managed = 1 AND status = 'set'
    AND deleted = 0 AND slot IS NOT NULL AND confirmed_code IS NOT NULL";
/// The slots a device's managed codes hold or were given.
const RESERVED_SQL: &str =
    "SELECT slot FROM access_codes WHERE device_id = ? AND is_managed = 1 AND slot IS NOT NULL";
/// Every code Keyway knows in one of a device's slots.
const KNOWN_SLOTS_SQL: &str = "SELECT access_code_id, is_managed, slot, code, confirmed_code
    FROM access_codes WHERE device_id = ? AND slot IS NOT NULL";

// The reads below come once per round and answer a row per code on the lock: by position.
fn confirmed_in(c: &Connection, device_id: &str) -> Result<Vec<ConfirmedCode>> {
    mapped(c, CONFIRMED_SQL, params![device_id], |r| {
        Ok(ConfirmedCode {
            access_code_id: r.get(0)?,
            slot: r.get(1)?,
            confirmed_code: r.get(2)?,
            is_external_modification_allowed: r.get(3)?,
        })
    })
}

fn reserved_in(c: &Connection, device_id: &str) -> Result<Vec<u32>> {
    let slots: Vec<i64> = column(c, RESERVED_SQL, params![device_id])?;
    Ok(slots
        .into_iter()
        .filter_map(|s| u32::try_from(s).ok())
        .collect())
}

/// The codes whose ids `ids` lists (a JSON array) that the engine works on.
fn engine_codes_in(c: &Connection, ids: &str) -> Result<Vec<EngineCode>> {
    let sql = format!(
        "SELECT {CODE_COLUMNS} FROM access_codes
         WHERE access_code_id IN (SELECT value FROM json_each(?))
         AND (is_managed = 1 OR deleted = 1)"
    );
    let rows = code_rows(c, &sql, params![ids])?;
    rows.into_iter().map(EngineCode::from_row).collect()
}

/// The body of `record_outcomes`.
fn record_in(
    c: &Connection,
    device: &DeviceRecord,
    records: &[OutcomeRecord],
    now: Timestamp,
) -> Result<()> {
    for record in records {
        let id = record.access_code_id.as_str();
        let found = match &record.outcome {
            Some(outcome) => apply_outcome(c, device, id, outcome, now)?,
            None => scalar::<bool>(
                c,
                "SELECT 1 FROM access_codes WHERE access_code_id = ?",
                params![id],
            )?
            .is_some(),
        };
        if !found {
            continue;
        }
        if let Some((at, attempts)) = record.follow_up {
            insert_job(c, &device.device_id, Some(id), at, now)?;
            exec(
                c,
                "UPDATE device_jobs SET attempts = ?
                 WHERE access_code_id = ? AND run_after = ?",
                params![attempts, id, at.millis()],
            )?;
        }
    }
    Ok(())
}

fn known_slots(c: &Connection, device_id: &str) -> Result<Vec<KnownSlot>> {
    mapped(c, KNOWN_SLOTS_SQL, params![device_id], |r| {
        Ok(KnownSlot {
            access_code_id: r.get(0)?,
            is_managed: r.get(1)?,
            slot: r.get(2)?,
            code: r.get(3)?,
            confirmed_code: r.get(4)?,
        })
    })
}

/// The body of `observe_lock`: unmanaged codes brought in line with the lock's slots.
fn observe_in(
    c: &Connection,
    device: &DeviceRecord,
    slots: &[LockObservation],
    now: Timestamp,
) -> Result<()> {
    let known = known_slots(c, &device.device_id)?;
    let changes = unmanaged_changes(&known, slots);
    for gone in changes.stale {
        let gone = gone.access_code_id.as_str();
        exec(
            c,
            "DELETE FROM access_codes WHERE access_code_id = ?",
            params![gone],
        )?;
        insert_event(
            c,
            EventType::AccessCodeUnmanagedRemoved,
            device,
            Some(gone),
            None,
            now,
        )?;
    }
    for slot in changes.fresh {
        let id = new_id();
        exec(
            c,
            "INSERT INTO access_codes (access_code_id, workspace_id, device_id,
                is_managed, name, code, type, status, slot, confirmed_code, created_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, 'ongoing', 'set', ?6, ?5, ?7)",
            params![
                id,
                device.workspace_id,
                device.device_id,
                slot.name,
                slot.code,
                i64::from(slot.slot),
                now.millis()
            ],
        )?;
        insert_event(
            c,
            EventType::AccessCodeUnmanagedCreated,
            device,
            Some(&id),
            None,
            now,
        )?;
    }
    Ok(())
}

fn pending_attempts(c: &Connection, access_code_id: &str) -> Result<Vec<(String, String)>> {
    rows(
        c,
        "SELECT action_attempt_id, action_type FROM action_attempts
         WHERE access_code_id = ? AND status = 'pending'",
        params![access_code_id],
    )
}

/// Records one step's outcome for a code; answers whether the code exists. The frequent
/// steps read only the columns they need (or none: their UPDATE tells whether the row is there).
fn apply_outcome(
    c: &Connection,
    device: &DeviceRecord,
    id: &str,
    outcome: &CodeOutcome,
    now: Timestamp,
) -> Result<bool> {
    match outcome {
        CodeOutcome::Programming { slot } => mark_programming(c, id, *slot, now),
        CodeOutcome::Removing => mark_removing(c, id, now),
        CodeOutcome::Set { slot } => mark_set(c, device, id, *slot, now),
        CodeOutcome::Failed {
            error_code,
            message,
            event,
            removal,
        } => mark_failed(c, device, id, error_code, message, *event, *removal, now),
        CodeOutcome::Unset => {
            let Some(row) = try_fetch_code(c, id)? else {
                return Ok(false);
            };
            exec(
                c,
                "UPDATE access_codes SET slot = NULL, confirmed_code = NULL, status = 'unset',
                    errors = '[]', warnings = '[]', pending_since = NULL WHERE access_code_id = ?",
                params![id],
            )?;
            settle_attempts(c, id, row.seq)?;
            Ok(true)
        }
        CodeOutcome::Gone { was_on_lock } => {
            let Some(row) = try_fetch_code(c, id)? else {
                return Ok(false);
            };
            exec(
                c,
                "DELETE FROM access_codes WHERE access_code_id = ?",
                params![id],
            )?;
            exec(
                c,
                "DELETE FROM device_jobs WHERE access_code_id = ?",
                params![id],
            )?;
            for (event, code) in gone_events(&row, *was_on_lock) {
                insert_event(c, event, device, Some(id), code, now)?;
            }
            for (attempt_id, action_type) in pending_attempts(c, id)? {
                resolve_attempt(c, &attempt_id, gone_attempt_outcome(&action_type))?;
            }
            Ok(true)
        }
        CodeOutcome::Delayed {
            warning_code,
            message,
            event,
        } => {
            let Some(row) = try_fetch_code(c, id)? else {
                return Ok(false);
            };
            if let Some(warnings) = with_delay_warning(&row, warning_code, message.clone(), now)? {
                exec(
                    c,
                    "UPDATE access_codes SET warnings = ? WHERE access_code_id = ?",
                    params![json(&warnings)?, id],
                )?;
                insert_event(c, *event, device, Some(id), None, now)?;
            }
            Ok(true)
        }
    }
}

/// The lock refused the code, or the engine gave up on it: the code carries the error (in
/// place of an earlier one of the same kind), its event is sent and its pending attempts
/// fail. Answers whether the code exists.
#[allow(clippy::too_many_arguments)]
fn mark_failed(
    c: &Connection,
    device: &DeviceRecord,
    id: &str,
    error_code: &str,
    message: &str,
    event: EventType,
    removal: bool,
    now: Timestamp,
) -> Result<bool> {
    use rusqlite::OptionalExtension;
    let found: Option<(i64, String)> = c
        .prepare_cached("SELECT seq, errors FROM access_codes WHERE access_code_id = ?")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((seq, errors)) = found else {
        return Ok(false);
    };
    let errors = with_error(&errors, error_code, message, now)?;
    let status = if removal { "removing" } else { "unset" };
    exec(
        c,
        "UPDATE access_codes SET errors = ?, status = ?, pending_since = NULL WHERE seq = ?",
        params![json(&errors)?, status, seq],
    )?;
    insert_event(c, event, device, Some(id), None, now)?;
    // One by one: an UPDATE of them all changes the column its partial index filters on, and
    // SQLite collects the rows first (measured slower).
    for (attempt_id, _) in pending_attempts(c, id)? {
        resolve_attempt(c, &attempt_id, Err((error_code, message)))?;
    }
    Ok(true)
}

/// A slot was chosen for the code and the lock is being programmed; answers whether the code
/// exists.
fn mark_programming(c: &Connection, id: &str, slot: u32, now: Timestamp) -> Result<bool> {
    let changed = exec(
        c,
        "UPDATE access_codes SET slot = ?, status = 'setting',
            pending_since = COALESCE(pending_since, ?) WHERE access_code_id = ?",
        params![i64::from(slot), now.millis(), id],
    )?;
    Ok(changed == 1)
}

/// The lock confirmed the code in `slot`; answers whether the code exists. An event only
/// when it was not already set with this PIN; warnings but an external edit's are settled.
fn mark_set(
    c: &Connection,
    device: &DeviceRecord,
    id: &str,
    slot: u32,
    now: Timestamp,
) -> Result<bool> {
    use rusqlite::OptionalExtension;
    type Found = (
        i64,
        Option<i64>,
        String,
        Option<String>,
        Option<String>,
        String,
    );
    let found: Option<Found> = c
        .prepare_cached(
            "SELECT seq, slot, status, code, confirmed_code, warnings FROM access_codes
             WHERE access_code_id = ?",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some((seq, known_slot, status, code, confirmed_code, warnings)) = found else {
        return Ok(false);
    };
    let warnings = if warnings == "[]" {
        warnings
    } else {
        json(&stored_warnings_once_set(&warnings)?)?
    };
    // By row id, found above; the slot only when it moved (naming it rewrites the row's
    // entries in the indexes on slots, changed or not).
    if known_slot == Some(i64::from(slot)) {
        exec(
            c,
            "UPDATE access_codes SET confirmed_code = code, status = 'set', errors = '[]',
                warnings = ?, pending_since = NULL WHERE seq = ?",
            params![warnings, seq],
        )?;
    } else {
        exec(
            c,
            "UPDATE access_codes SET slot = ?, confirmed_code = code, status = 'set',
                errors = '[]', warnings = ?, pending_since = NULL WHERE seq = ?",
            params![i64::from(slot), warnings, seq],
        )?;
    }
    if status != "set" || confirmed_code != code {
        insert_event(
            c,
            EventType::AccessCodeSetOnDevice,
            device,
            Some(id),
            code.as_deref(),
            now,
        )?;
    }
    settle_attempts(c, id, seq)?;
    Ok(true)
}

/// The code is being removed from its lock; answers whether it exists.
fn mark_removing(c: &Connection, id: &str, now: Timestamp) -> Result<bool> {
    let changed = exec(
        c,
        "UPDATE access_codes SET status = 'removing',
            pending_since = COALESCE(pending_since, ?) WHERE access_code_id = ?",
        params![now.millis(), id],
    )?;
    Ok(changed == 1)
}

/// Settles the pending create/update attempts of a code (row id `seq`) with the code as it
/// now stands. The code and the attempts are read and written by their row ids.
fn settle_attempts(c: &Connection, access_code_id: &str, seq: i64) -> Result<()> {
    static CODE_SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {CODE_COLUMNS} FROM access_codes WHERE seq = ?"));
    // A pending deletion stays pending: the code is still to leave the lock.
    let settled: Vec<i64> = column(
        c,
        "SELECT seq FROM action_attempts
         WHERE access_code_id = ? AND status = 'pending' AND action_type != ?",
        params![access_code_id, ActionType::DeleteAccessCode.as_str()],
    )?;
    if settled.is_empty() {
        return Ok(());
    }
    /// What a create or update attempt answers: the code as it was set.
    #[derive(serde::Serialize)]
    struct Settled<'a> {
        access_code: &'a AccessCode,
    }
    let code = one(code_rows(c, &CODE_SQL, params![seq])?.pop())?;
    let access_code = code.into_managed()?;
    let result = serde_json::to_string(&Settled {
        access_code: &access_code,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for attempt in settled {
        exec(
            c,
            "UPDATE action_attempts SET status = 'success', result = ?, error = NULL
             WHERE seq = ? AND status = 'pending'",
            params![result, attempt],
        )?;
    }
    Ok(())
}

/// Makes sure the lock is read back at `at` at the latest (the body of `schedule_read`).
fn schedule_read_in(c: &Connection, device_id: &str, at: Timestamp, attempts: i64) -> Result<()> {
    let existing: Option<(i64, i64)> = row(
        c,
        "SELECT job_id, run_after FROM device_jobs WHERE device_id = ? AND access_code_id IS NULL
         AND action IS NULL ORDER BY run_after LIMIT 1",
        params![device_id],
    )?;
    match existing {
        Some((job_id, run_after)) if run_after > at.millis() => {
            exec(
                c,
                "UPDATE device_jobs SET run_after = ?, attempts = ? WHERE job_id = ?",
                params![at.millis(), attempts, job_id],
            )?;
        }
        Some(_) => {}
        None => {
            exec(
                c,
                "INSERT INTO device_jobs (device_id, access_code_id, run_after, attempts,
                    created_at)
                 VALUES (?1, NULL, ?2, ?3, ?2)",
                params![device_id, at.millis(), attempts],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{at, ongoing, seeded};
    use super::*;
    use crate::access_codes::AccessCodeFilter;
    use crate::SEED;

    /// The plan SQLite chooses for `sql` in the migrated database at `path`, a step a line.
    fn plan_of(path: &std::path::Path, sql: &str) -> String {
        let conn = Connection::open(path).expect("database opens");
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("statement prepares");
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let steps = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan")
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("plan rows");
        steps.join("\n")
    }

    #[tokio::test]
    async fn a_devices_slots_and_pins_are_found_by_index_not_by_walking_its_codes() {
        let (dir, _store, _device) = seeded().await;
        let path = dir.path().join("keyway.sqlite");
        for sql in [CONFIRMED_SQL, RESERVED_SQL, KNOWN_SLOTS_SQL] {
            let plan = plan_of(&path, sql);
            assert!(plan.contains("access_codes_device_slot"), "{sql}: {plan}");
        }
        let plan = plan_of(&path, super::super::access_codes::CLASH_SQL);
        assert!(plan.contains("access_codes_device_code"), "{plan}");
    }

    #[tokio::test]
    async fn rows_read_by_position_name_their_columns_in_the_readers_order() {
        let (dir, _store, _device) = seeded().await;
        let conn = Connection::open(dir.path().join("keyway.sqlite")).expect("opens");
        let columns = |sql: &str| -> Vec<String> {
            let statement = conn.prepare(sql).expect("prepares");
            statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            columns(CONFIRMED_SQL),
            [
                "access_code_id",
                "slot",
                "confirmed_code",
                "is_external_modification_allowed"
            ]
        );
        assert_eq!(
            columns(KNOWN_SLOTS_SQL),
            [
                "access_code_id",
                "is_managed",
                "slot",
                "code",
                "confirmed_code"
            ]
        );
        assert_eq!(
            columns(DUE_JOBS_SQL),
            [
                "job_id",
                "access_code_id",
                "attempts",
                "action",
                "action_attempt_id",
                "run_after"
            ]
        );
    }

    #[tokio::test]
    async fn the_dispatcher_finds_each_devices_first_job_without_a_lookup_per_job() {
        let (dir, _store, _device) = seeded().await;
        let path = dir.path().join("keyway.sqlite");
        for sql in [DUE_DEVICES_SQL, NEXT_JOB_AT_SQL] {
            let plan = plan_of(&path, sql);
            assert!(
                plan.contains("COVERING INDEX device_jobs_device"),
                "{sql}: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn a_window_opening_is_due_ahead_unless_other_work_comes_first() {
        let (_dir, store, device) = seeded().await;
        let id = device.device_id.clone();
        let mut opening = ongoing(&device, "2468", at(5_000));
        opening.kind = keyway_model::AccessCodeType::TimeBound;
        opening.starts_at = Some(at(5_000));
        opening.ends_at = Some(at(9_000));
        opening.status = keyway_model::AccessCodeStatus::Unset;
        let (code, _) = store
            .create_access_code(opening, at(0))
            .await
            .expect("created");
        let devices = |due_by| store.due_devices(at(1_000), due_by, 10);
        assert!(devices(at(4_000)).await.expect("due").is_empty());
        // The dispatcher looks again three seconds before the opening (its lead).
        let next = store
            .next_job_at(at(1_000), Duration::from_secs(3), at(3_000))
            .await
            .expect("next");
        assert_eq!(next, Some(at(2_000)));
        // Not before a horizon that comes first.
        let later = store
            .next_job_at(at(1_000), Duration::from_secs(3), at(2_000))
            .await
            .expect("next");
        assert_eq!(later, None);
        assert_eq!(devices(at(6_000)).await.expect("due"), vec![id.clone()]);

        // A read-back before the opening comes along with it; the round acts at the opening.
        store.schedule_read(&id, at(2_000), 0).await.expect("read");
        assert_eq!(devices(at(6_000)).await.expect("due"), vec![id.clone()]);
        let jobs = store
            .due_jobs(&id, at(1_000), at(6_000), 500)
            .await
            .expect("jobs");
        let seen: Vec<(Option<&str>, i64)> = jobs
            .iter()
            .map(|j| (j.access_code_id.as_deref(), j.run_after))
            .collect();
        assert_eq!(
            seen,
            vec![
                (None, at(2_000).millis()),
                (Some(code.access_code_id.as_str()), at(5_000).millis())
            ]
        );

        // A retry before the opening is never done early, and holds the opening back.
        store
            .enqueue_job(&id, Some(&code.access_code_id), at(3_000), at(1_000))
            .await
            .expect("retry");
        assert!(devices(at(6_000)).await.expect("due").is_empty());
        let jobs = store
            .due_jobs(&id, at(1_000), at(6_000), 500)
            .await
            .expect("jobs");
        assert!(jobs.is_empty());
        let jobs = store
            .due_jobs(&id, at(3_000), at(6_000), 500)
            .await
            .expect("jobs");
        let times: Vec<i64> = jobs.iter().map(|j| j.run_after).collect();
        assert_eq!(times, vec![at(2_000).millis(), at(3_000).millis()]);
    }

    #[tokio::test]
    async fn a_round_claims_reads_records_and_lets_go() {
        let (_dir, store, device) = seeded().await;
        let device_id = device.device_id.clone();
        let (code, _) = store
            .create_access_code(ongoing(&device, "1234", at(1)), at(1))
            .await
            .expect("created");
        let code_id = code.access_code_id.clone();
        let asked = vec![device_id.clone(), "no_such_device".to_owned()];

        // Of two owners, one holds the device; an unknown device is nobody's.
        let held = store.claim_devices(&asked, "a", at(2), at(100)).await;
        assert_eq!(held.expect("claim"), vec![device_id.clone()]);
        let held = store.claim_devices(&asked, "b", at(3), at(300)).await;
        assert!(held.expect("claim").is_empty());

        let start = store
            .round_start(&device_id, at(3), at(3), 500)
            .await
            .expect("start");
        let job_ids: Vec<i64> = start.jobs.iter().map(|j| j.job_id).collect();
        assert!(start
            .jobs
            .iter()
            .any(|j| j.access_code_id.as_deref() == Some(code_id.as_str())));
        assert_eq!(start.device.map(|d| d.device_id), Some(device_id.clone()));
        assert!(start.confirmed.is_empty());

        // What the lock showed (a PIN typed at its keypad) and the slot chosen for the code,
        // in one transaction.
        let keypad = LockObservation {
            slot: 9,
            code: "4444".into(),
            name: None,
        };
        let programming =
            OutcomeRecord::new(code_id.clone(), CodeOutcome::Programming { slot: 1 }, None);
        store
            .observe_and_record(&device, &[keypad], vec![programming], at(4))
            .await
            .expect("observed and recorded");
        let (codes, reserved) = store
            .round_codes(&device_id, std::slice::from_ref(&code_id))
            .await
            .expect("codes");
        assert_eq!(codes.len(), 1);
        assert_eq!(
            (codes[0].slot, codes[0].status.as_str()),
            (Some(1), "setting")
        );
        assert!(reserved.contains(&1));
        let filter = AccessCodeFilter {
            device_id: Some(&device_id),
            access_code_ids: None,
            after: None,
            limit: 100,
            known_device: None,
        };
        let unmanaged = store
            .list_unmanaged_access_codes(SEED.seed_workspace_1, filter)
            .await
            .expect("unmanaged");
        assert!(unmanaged
            .items
            .iter()
            .any(|u| u.code.as_deref() == Some("4444")));

        // The round ends with a read-back due at once: the lease is renewed, not let go.
        let set = OutcomeRecord::new(code_id.clone(), CodeOutcome::Set { slot: 1 }, None);
        let more = store
            .finish_round(
                &device,
                vec![set],
                &job_ids,
                Some((at(5), 0)),
                "a",
                at(5),
                at(200),
            )
            .await
            .expect("finished");
        assert!(more);
        let held = store.claim_devices(&asked, "b", at(150), at(300)).await;
        assert!(held.expect("claim").is_empty(), "renewed until 200");
        // Its `set_on_device` event is counted once, from wherever the count starts before it.
        let (events, last) = store.set_events_since(0).await.expect("counted");
        assert_eq!(events, 1);
        assert_eq!(
            store.set_events_since(last).await.expect("counted"),
            (0, last)
        );
        assert_eq!(
            store.set_events_since(last - 1).await.expect("counted"),
            (1, last)
        );

        // The read-back round: the code is confirmed; nothing is due after it, so the lease
        // is let go in the same transaction.
        let start = store
            .round_start(&device_id, at(6), at(6), 500)
            .await
            .expect("start");
        assert_eq!(start.confirmed.len(), 1);
        assert_eq!(start.confirmed[0].access_code_id, code_id);
        let job_ids: Vec<i64> = start.jobs.iter().map(|j| j.job_id).collect();
        let more = store
            .finish_round(
                &device,
                vec![],
                &job_ids,
                Some((at(60_000), 0)),
                "a",
                at(7),
                at(200),
            )
            .await
            .expect("finished");
        assert!(!more);
        assert!(store
            .round_start(&device_id, at(8), at(8), 500)
            .await
            .expect("start")
            .jobs
            .is_empty());
        let held = store.claim_devices(&asked, "b", at(8), at(300)).await;
        assert_eq!(held.expect("claim"), vec![device_id.clone()]);
    }
}
