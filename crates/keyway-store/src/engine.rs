//! What the engine needs from the store: due device work, per-device leases, and recording the
//! outcome of each step on a lock — status, errors, warnings, events and action attempts of a
//! code change together in one transaction with the job that caused them.
//!
//! This module holds the types and the [`EngineStore`] interface, and the decisions about rows
//! that both backends share (which warnings a step leaves, which lock slots are unmanaged codes).
//! No SQL here.

use std::time::Duration;

use async_trait::async_trait;
use keyway_model::{
    AccessCodeError, AccessCodeWarning, ActionAttempt, ActionType, EventType, Timestamp,
};

use crate::accounts::DeviceRecord;
use crate::rows::{opt_ts, AccessCodeRow};
use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct DeviceJob {
    pub job_id: i64,
    pub access_code_id: Option<String>,
    pub attempts: i64,
    /// `lock` or `unlock` for a door command, with the attempt that reports it.
    pub action: Option<String>,
    pub action_attempt_id: Option<String>,
    /// When it is due, in milliseconds since the epoch.
    pub run_after: i64,
}

/// A managed code as the engine sees it: intent plus what the lock last confirmed.
#[derive(Debug, Clone)]
pub struct EngineCode {
    pub access_code_id: String,
    pub code: String,
    pub name: Option<String>,
    pub deleted: bool,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub status: String,
    pub slot: Option<u32>,
    pub confirmed_code: Option<String>,
    pub pending_since: Option<Timestamp>,
    pub has_warning: Vec<String>,
}

/// One slot as read from a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockObservation {
    pub slot: u32,
    pub code: String,
    pub name: Option<String>,
}

/// What the engine records for one code after a step: its outcome, if anything changed, and
/// when to look at it next (with the failed attempts so far).
#[derive(Debug, Clone)]
pub struct OutcomeRecord {
    pub access_code_id: String,
    pub outcome: Option<CodeOutcome>,
    pub follow_up: Option<(Timestamp, i64)>,
}

impl OutcomeRecord {
    pub fn new(
        access_code_id: String,
        outcome: CodeOutcome,
        follow_up: Option<(Timestamp, i64)>,
    ) -> Self {
        OutcomeRecord {
            access_code_id,
            outcome: Some(outcome),
            follow_up,
        }
    }
}

/// The result of one engine step for one code.
#[derive(Debug, Clone)]
pub enum CodeOutcome {
    /// A slot was chosen and the lock is being programmed.
    Programming { slot: u32 },
    /// The code's window closed: it is being removed.
    Removing,
    /// The lock confirmed the code's PIN in `slot`.
    Set { slot: u32 },
    /// Off the lock, as wanted before its window opens.
    Unset,
    /// Off the lock for good: the code is deleted.
    Gone { was_on_lock: bool },
    /// Still trying; the code carries a warning (and its event, once).
    Delayed {
        warning_code: &'static str,
        message: String,
        event: EventType,
    },
    /// Gave up, or the lock refused: the code carries the error.
    Failed {
        error_code: &'static str,
        message: String,
        event: EventType,
        removal: bool,
    },
}

/// A code confirmed on its lock, as the reconciliation compares it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct ConfirmedCode {
    pub access_code_id: String,
    pub slot: i64,
    pub confirmed_code: String,
    #[serde(deserialize_with = "crate::rows::flag")]
    pub is_external_modification_allowed: bool,
}

/// A confirmed code found changed at the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalChange {
    Modified { pin: String },
    Deleted,
}

/// Device work for the engine: jobs, leases, lock read-backs and the outcome of each step.
#[async_trait]
pub trait EngineStore: Send + Sync {
    /// Managed codes the lock confirmed and that should still be on it.
    async fn confirmed_codes(&self, device_id: &str) -> Result<Vec<ConfirmedCode>>;

    /// Records a change made at the lock to a confirmed code. Unless the code allows external
    /// modification, it gets a warning and a job to put it back; otherwise Keyway takes the
    /// lock's word for it.
    async fn record_external_change(
        &self,
        device: &DeviceRecord,
        code: &ConfirmedCode,
        change: ExternalChange,
        now: Timestamp,
    ) -> Result<()>;

    /// Makes sure the lock is read back at `at` at the latest (with `attempts` failed reads
    /// so far, for back-off).
    async fn schedule_read(&self, device_id: &str, at: Timestamp, attempts: i64) -> Result<()>;

    /// Gives every device without a scheduled read-back one, due now.
    async fn ensure_reads(&self, now: Timestamp) -> Result<()>;

    /// Queues a lock or unlock command for the lock; answers its pending action attempt.
    async fn enqueue_lock_action(
        &self,
        device: &DeviceRecord,
        lock: bool,
        now: Timestamp,
    ) -> Result<ActionAttempt>;

    /// Reports a door command: its attempt settles, and on success `lock.locked` /
    /// `lock.unlocked` (method `seamapi`) is recorded.
    async fn finish_lock_action(
        &self,
        device: &DeviceRecord,
        action_attempt_id: &str,
        lock: bool,
        outcome: std::result::Result<(), (&str, &str)>,
        now: Timestamp,
    ) -> Result<()>;

    /// Someone typed `pin` at the lock's keypad; `slot` is where the lock found it, if anywhere.
    /// Records `lock.unlocked` (method `keycode`, with the access code) or `lock.access_denied`,
    /// and a one-time code is deleted after its first use. Answers the settled attempt.
    async fn record_keypad_entry(
        &self,
        device: &DeviceRecord,
        pin: &str,
        slot: Option<u32>,
        now: Timestamp,
    ) -> Result<ActionAttempt>;

    /// Frees every device lease. Only for a store that this one process owns
    /// ([`crate::Backend::is_exclusive`]): after a crash, the dead process's leases would
    /// otherwise hold its locks until they expire.
    async fn release_all_leases(&self) -> Result<()>;

    /// Devices whose lease is free at `now` with work due: a job due at `now`, or jobs that
    /// open a code's window by `due_by` with none of another kind before them (see
    /// [`EngineStore::due_jobs`]).
    async fn due_devices(
        &self,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>>;

    /// When the dispatcher should look next: when the earliest job of a device that nobody
    /// holds is due, or `lead` before a window opening (see [`EngineStore::due_jobs`]); `None`
    /// when that is not before `horizon` (the dispatcher looks again by then anyway).
    async fn next_job_at(
        &self,
        now: Timestamp,
        lead: Duration,
        horizon: Timestamp,
    ) -> Result<Option<Timestamp>>;

    /// Takes (or renews) the device's lease for `owner` until `until`: atomically, so that of
    /// several instances claiming one device at once exactly one gets it.
    async fn claim_device(
        &self,
        device_id: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;

    async fn release_device(&self, device_id: &str, owner: &str) -> Result<()>;

    /// The device's jobs due at `now`, oldest first; or, when none is and its first window
    /// opening by `due_by` comes before any other work but read-backs, the jobs of that
    /// opening with the read-backs before it: work prepared ahead (see the engine's `lead`).
    /// Retries and door commands are never done early. The caller holds the device's lease.
    async fn due_jobs(
        &self,
        device_id: &str,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeviceJob>>;

    async fn delete_jobs(&self, job_ids: &[i64]) -> Result<()>;

    /// Ends a batch in one transaction: deletes its jobs and, when given, makes sure the lock
    /// is read back at `at` at the latest (after `attempts` failed reads).
    async fn finish_jobs(
        &self,
        device_id: &str,
        job_ids: &[i64],
        next_read: Option<(Timestamp, i64)>,
    ) -> Result<()>;

    /// Queues work for a device (a read-back when `access_code_id` is `None`).
    async fn enqueue_job(
        &self,
        device_id: &str,
        access_code_id: Option<&str>,
        run_after: Timestamp,
        now: Timestamp,
    ) -> Result<()>;

    /// Slots chosen by managed codes of the device (programmed or being programmed).
    async fn reserved_slots(&self, device_id: &str) -> Result<Vec<u32>>;

    /// Queues a look at every managed code of the device and pulls its pending work forward
    /// (after the lock came back, say).
    async fn wake_device(&self, device_id: &str, now: Timestamp) -> Result<()>;

    /// Any device, for the engine (not scoped: the engine works for all workspaces).
    async fn engine_device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;

    /// Several codes at once (those that exist), for one batch.
    async fn engine_codes(&self, access_code_ids: &[String]) -> Result<Vec<EngineCode>>;

    /// Records the outcomes of an engine batch for one device, in one transaction: each
    /// code's new state and events, and when to look at it next.
    async fn record_outcomes(
        &self,
        device: &DeviceRecord,
        records: Vec<OutcomeRecord>,
        now: Timestamp,
    ) -> Result<()>;

    /// Brings the unmanaged codes of a device in line with what its lock holds: a slot that no
    /// managed code claims (same slot *and* PIN) is an unmanaged code.
    async fn observe_lock(
        &self,
        device: &DeviceRecord,
        slots: &[LockObservation],
        now: Timestamp,
    ) -> Result<()>;

    // A worker's round on a lock, in as few store calls as the backend can: these compose the
    // calls above, and a backend may answer each in one transaction instead.

    /// Claims (or renews) several devices' leases; answers those now held by `owner`.
    async fn claim_devices(
        &self,
        device_ids: &[String],
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<String>> {
        let mut held = Vec::with_capacity(device_ids.len());
        for device_id in device_ids {
            if self.claim_device(device_id, owner, now, until).await? {
                held.push(device_id.clone());
            }
        }
        Ok(held)
    }

    /// What a round on a held device starts from: its due jobs (oldest first, at most
    /// `limit`; as [`EngineStore::due_jobs`] picks them), and, when there are any, the device
    /// and the codes its lock confirmed.
    async fn round_start(
        &self,
        device_id: &str,
        now: Timestamp,
        due_by: Timestamp,
        limit: u32,
    ) -> Result<RoundStart> {
        let jobs = self.due_jobs(device_id, now, due_by, limit).await?;
        if jobs.is_empty() {
            return Ok(RoundStart::default());
        }
        let device = self.engine_device(device_id).await?;
        let confirmed = match device {
            Some(_) => self.confirmed_codes(device_id).await?,
            None => Vec::new(),
        };
        Ok(RoundStart {
            jobs,
            device,
            confirmed,
        })
    }

    /// The codes a round works on (those that exist) and the slots the device's managed codes
    /// hold or are being programmed into.
    async fn round_codes(
        &self,
        device_id: &str,
        access_code_ids: &[String],
    ) -> Result<(Vec<EngineCode>, Vec<u32>)> {
        if access_code_ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let codes = self.engine_codes(access_code_ids).await?;
        let reserved = self.reserved_slots(device_id).await?;
        Ok((codes, reserved))
    }

    /// What a lock read showed ([`EngineStore::observe_lock`]) and what is about to be done
    /// to the lock ([`EngineStore::record_outcomes`]).
    async fn observe_and_record(
        &self,
        device: &DeviceRecord,
        slots: &[LockObservation],
        records: Vec<OutcomeRecord>,
        now: Timestamp,
    ) -> Result<()> {
        self.observe_lock(device, slots, now).await?;
        self.record_outcomes(device, records, now).await
    }

    /// Ends a round: records its outcomes, deletes its jobs and schedules the next read-back
    /// ([`EngineStore::finish_jobs`]). Then, if the device has more due work, renews `owner`'s
    /// lease until `until` and answers `true`; otherwise releases the lease and answers
    /// `false`. Also `false` when the lease was lost.
    #[allow(clippy::too_many_arguments)]
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
        self.record_outcomes(device, records, now).await?;
        self.finish_jobs(&device.device_id, job_ids, next_read)
            .await?;
        if self
            .due_jobs(&device.device_id, now, now, 1)
            .await?
            .is_empty()
        {
            self.release_device(&device.device_id, owner).await?;
            return Ok(false);
        }
        self.claim_device(&device.device_id, owner, now, until)
            .await
    }
}

/// See [`EngineStore::round_start`].
#[derive(Debug, Clone, Default)]
pub struct RoundStart {
    pub jobs: Vec<DeviceJob>,
    pub device: Option<DeviceRecord>,
    pub confirmed: Vec<ConfirmedCode>,
}

impl EngineCode {
    pub(crate) fn from_row(row: AccessCodeRow) -> Result<EngineCode> {
        let warnings = row.warnings()?;
        Ok(EngineCode {
            starts_at: opt_ts(row.starts_at)?,
            ends_at: opt_ts(row.ends_at)?,
            pending_since: opt_ts(row.pending_since)?,
            slot: row.slot.and_then(|s| u32::try_from(s).ok()),
            code: row.code.unwrap_or_default(),
            access_code_id: row.access_code_id,
            name: row.name,
            deleted: row.deleted,
            status: row.status,
            confirmed_code: row.confirmed_code,
            has_warning: warnings.into_iter().map(|w| w.warning_code).collect(),
        })
    }
}

/// The warnings of a confirmed code found changed at its lock, which Keyway is putting back.
pub(crate) fn external_change_warnings(
    row: &AccessCodeRow,
    now: Timestamp,
) -> Result<Vec<AccessCodeWarning>> {
    let mut warnings = row.warnings()?;
    warnings.retain(|w| w.warning_code != "code_modified_external_to_seam");
    warnings.push(AccessCodeWarning {
        warning_code: "code_modified_external_to_seam".into(),
        message: "Code was modified or removed externally after Keyway set it on the \
                  device; Keyway is putting it back."
            .into(),
        created_at: Some(now),
    });
    Ok(warnings)
}

/// The warnings a code keeps once the lock confirmed it: delays are over, the record of an
/// external modification stays.
pub(crate) fn warnings_once_set(row: &AccessCodeRow) -> Result<Vec<AccessCodeWarning>> {
    Ok(kept_once_set(row.warnings()?))
}

/// [`warnings_once_set`] of a code's stored warnings (a JSON array).
pub(crate) fn stored_warnings_once_set(stored: &str) -> Result<Vec<AccessCodeWarning>> {
    let warnings =
        serde_json::from_str(stored).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    Ok(kept_once_set(warnings))
}

fn kept_once_set(mut warnings: Vec<AccessCodeWarning>) -> Vec<AccessCodeWarning> {
    warnings.retain(|w| w.warning_code == "code_modified_external_to_seam");
    warnings
}

/// The code's warnings with a delay warning added, or `None` when it already carries one.
pub(crate) fn with_delay_warning(
    row: &AccessCodeRow,
    warning_code: &str,
    message: String,
    now: Timestamp,
) -> Result<Option<Vec<AccessCodeWarning>>> {
    let mut warnings = row.warnings()?;
    if warnings.iter().any(|w| w.warning_code == warning_code) {
        return Ok(None);
    }
    warnings.push(AccessCodeWarning {
        warning_code: warning_code.to_owned(),
        message,
        created_at: Some(now),
    });
    Ok(Some(warnings))
}

/// The code's errors with `error_code` (re)placed.
pub(crate) fn with_error(
    errors: &str,
    error_code: &str,
    message: &str,
    now: Timestamp,
) -> Result<Vec<AccessCodeError>> {
    let mut errors: Vec<AccessCodeError> =
        serde_json::from_str(errors).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    errors.retain(|e| e.error_code != error_code);
    errors.push(AccessCodeError::access_code(
        error_code,
        message.to_owned(),
        now,
    ));
    Ok(errors)
}

/// The events of a code leaving for good, with the PIN each carries.
pub(crate) fn gone_events(
    row: &AccessCodeRow,
    was_on_lock: bool,
) -> Vec<(EventType, Option<&str>)> {
    if !row.is_managed {
        vec![(EventType::AccessCodeUnmanagedRemoved, None)]
    } else if was_on_lock {
        vec![
            (EventType::AccessCodeRemovedFromDevice, None),
            (EventType::AccessCodeDeleted, row.code.as_deref()),
        ]
    } else {
        vec![(EventType::AccessCodeDeleted, row.code.as_deref())]
    }
}

/// How a pending attempt of a code that is gone settles: a delete succeeded, anything else
/// failed.
pub(crate) fn gone_attempt_outcome(
    action_type: &str,
) -> std::result::Result<serde_json::Value, (&'static str, &'static str)> {
    if action_type == ActionType::DeleteAccessCode.as_str() {
        Ok(serde_json::json!({}))
    } else {
        Err((
            "access_code_removed",
            "The access code was removed before the operation completed.",
        ))
    }
}

/// A code of a device that sits in a known slot, as `observe_lock` compares it with the lock.
#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct KnownSlot {
    pub access_code_id: String,
    #[serde(deserialize_with = "crate::rows::flag")]
    pub is_managed: bool,
    pub slot: Option<i64>,
    pub code: Option<String>,
    pub confirmed_code: Option<String>,
}

/// What the lock's slots mean for unmanaged codes: the recorded ones no longer on the lock
/// (`stale`), and slots to record as new unmanaged codes (`fresh`).
pub(crate) struct UnmanagedChanges<'a> {
    pub stale: Vec<&'a KnownSlot>,
    pub fresh: Vec<&'a LockObservation>,
}

impl UnmanagedChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.fresh.is_empty()
    }
}

pub(crate) fn unmanaged_changes<'a>(
    known: &'a [KnownSlot],
    slots: &'a [LockObservation],
) -> UnmanagedChanges<'a> {
    use std::collections::{HashMap, HashSet};
    // By slot: a full lock has hundreds, and every one is looked up.
    let mut by_slot: HashMap<i64, Vec<&KnownSlot>> = HashMap::with_capacity(known.len());
    for k in known {
        if let Some(slot) = k.slot {
            by_slot.entry(slot).or_default().push(k);
        }
    }
    let in_slot = |slot: u32| by_slot.get(&i64::from(slot)).into_iter().flatten();
    let claimed_by_managed = |s: &LockObservation| {
        in_slot(s.slot).any(|k| {
            k.is_managed
                && (k.code.as_deref() == Some(&s.code)
                    || k.confirmed_code.as_deref() == Some(&s.code))
        })
    };
    let unmanaged_now: Vec<&LockObservation> =
        slots.iter().filter(|s| !claimed_by_managed(s)).collect();
    let now_held: HashSet<(i64, &str)> = unmanaged_now
        .iter()
        .map(|s| (i64::from(s.slot), s.code.as_str()))
        .collect();
    let stale = known
        .iter()
        .filter(|k| !k.is_managed)
        .filter(|k| match (k.slot, k.code.as_deref()) {
            (Some(slot), Some(code)) => !now_held.contains(&(slot, code)),
            _ => true,
        })
        .collect();
    let fresh = unmanaged_now
        .into_iter()
        .filter(|s| !in_slot(s.slot).any(|k| !k.is_managed && k.code.as_deref() == Some(&s.code)))
        .collect();
    UnmanagedChanges { stale, fresh }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: &str, managed: bool, slot: i64, code: &str, confirmed: Option<&str>) -> KnownSlot {
        KnownSlot {
            access_code_id: id.into(),
            is_managed: managed,
            slot: Some(slot),
            code: Some(code.into()),
            confirmed_code: confirmed.map(Into::into),
        }
    }

    fn held(slot: u32, code: &str) -> LockObservation {
        LockObservation {
            slot,
            code: code.into(),
            name: None,
        }
    }

    #[test]
    fn unmanaged_codes_follow_the_slots_that_managed_codes_do_not_claim() {
        let known = vec![
            // Managed, on the lock with its new PIN or its confirmed one.
            known("m1", true, 1, "1111", Some("1111")),
            known("m2", true, 2, "2222", Some("2020")),
            // Unmanaged and still there; unmanaged and gone; unmanaged whose PIN changed.
            known("u3", false, 3, "3333", Some("3333")),
            known("u4", false, 4, "4444", Some("4444")),
            known("u5", false, 5, "5555", Some("5555")),
        ];
        let lock = vec![
            held(1, "1111"),
            held(2, "2020"),
            held(3, "3333"),
            held(5, "5050"),
            held(6, "6666"),
        ];
        let changes = unmanaged_changes(&known, &lock);
        let stale: Vec<&str> = changes
            .stale
            .iter()
            .map(|k| k.access_code_id.as_str())
            .collect();
        let fresh: Vec<(u32, &str)> = changes
            .fresh
            .iter()
            .map(|s| (s.slot, s.code.as_str()))
            .collect();
        assert_eq!(stale, vec!["u4", "u5"]);
        assert_eq!(fresh, vec![(5, "5050"), (6, "6666")]);
        assert!(unmanaged_changes(&known[..3], &lock[..3]).is_empty());
    }
}
