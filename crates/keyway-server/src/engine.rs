//! The engine: makes locks hold what the store says they should.
//!
//! A dispatcher finds devices with due jobs, takes each device's lease (one worker per lock,
//! across instances) and runs a worker. The worker reads the lock once, records unmanaged codes,
//! then takes every due code one step further through its driver: program, confirm, remove.
//! Outcomes are recorded in the store with the job's follow-up (retry with back-off, or the next
//! edge of the code's window), so nothing lives only in memory: a worker that dies leaves its
//! jobs and an expiring lease, and the work resumes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyway_core::lifecycle::{next_step, Absence, Intent, Known, SlotView, Step, Target};
use keyway_core::reconcile::{drift, Confirmed, Drift};
use keyway_core::retry::{RetryPolicy, Verdict};
use keyway_core::Clock;
use keyway_drivers::{DriverError, LockCode, LockDriver, Refusal};
use keyway_model::{EventType, Timestamp};
use keyway_store::{
    CodeOutcome, DeviceJob, DeviceRecord, EngineCode, ExternalChange, LockObservation,
    OutcomeRecord as Record, Store,
};
use rand::Rng;
use tokio::sync::{broadcast, Notify, Semaphore};
use tracing::{debug, info, instrument, warn};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub retry: RetryPolicy,
    /// How long a device lease lasts without renewal.
    pub lease: Duration,
    /// How many locks are worked on at once.
    pub concurrency: usize,
    /// How many due jobs of one device are taken per lock read.
    pub batch: u32,
    /// How often each lock is read back (jittered by ±10%; backs off while it is unreachable).
    pub poll_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            concurrency: 256,
            batch: 500,
            poll_interval: Duration::from_secs(60),
        }
    }
}

/// Chooses the driver of a device.
pub trait Drivers: Send + Sync {
    fn for_device(&self, device: &DeviceRecord) -> Option<Arc<dyn LockDriver>>;
}

pub struct Engine {
    store: Store,
    drivers: Arc<dyn Drivers>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    owner: String,
    wake: Notify,
    synced: broadcast::Sender<String>,
    in_flight: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
}

impl Engine {
    pub fn new(
        store: Store,
        drivers: Arc<dyn Drivers>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Arc<Engine> {
        let (synced, _) = broadcast::channel(1024);
        Arc::new(Engine {
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            store,
            drivers,
            clock,
            config,
            owner: format!("keyway-{}", uuid::Uuid::new_v4()),
            wake: Notify::new(),
            synced,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Tells the dispatcher that new work may be due.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Subscribes to "this device was read and worked on" notices.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.synced.subscribe()
    }

    /// Runs the dispatcher until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        info!(owner = %self.owner, "engine started");
        if let Err(error) = self.store.ensure_reads(self.clock.now()).await {
            warn!(%error, "could not schedule lock read-backs");
        }
        loop {
            if let Err(error) = self.dispatch().await {
                warn!(%error, "engine dispatch failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let now = self.clock.now();
            let wait = match self.store.next_job_at(now).await {
                Ok(Some(at)) => {
                    Duration::from_millis((at.millis() - now.millis()).clamp(0, 1000) as u64)
                }
                Ok(None) => Duration::from_secs(1),
                Err(_) => Duration::from_secs(1),
            };
            if wait.is_zero() {
                // Due work exists but every such device is busy: wait for a worker to finish.
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), self.wake.notified()).await;
            } else {
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            }
        }
    }

    async fn dispatch(self: &Arc<Self>) -> keyway_store::Result<()> {
        let now = self.clock.now();
        let devices = self.store.due_devices(now, 512).await?;
        for device_id in devices {
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if !in_flight.insert(device_id.clone()) {
                    debug!(device_id, "device still being worked on");
                    continue;
                }
            }
            let until = lease_end(now, self.config.lease);
            // Whatever the claim's outcome, the device leaves `in_flight` unless a worker takes
            // it: an error here (the database just went away) must not mark it busy for good.
            match self
                .store
                .claim_device(&device_id, &self.owner, now, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    self.finish(&device_id);
                    continue;
                }
                Err(error) => {
                    self.finish(&device_id);
                    return Err(error);
                }
            }
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                self.finish(&device_id);
                return Ok(());
            };
            let engine = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(error) = engine.work_device(&device_id).await {
                    warn!(%error, device_id, "device worker failed");
                }
                let _ = engine.store.release_device(&device_id, &engine.owner).await;
                engine.finish(&device_id);
                drop(permit);
                engine.wake.notify_one();
            });
        }
        Ok(())
    }

    fn finish(&self, device_id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
    }

    #[instrument(skip(self), fields(device_id = %device_id))]
    async fn work_device(&self, device_id: &str) -> keyway_store::Result<()> {
        loop {
            let now = self.clock.now();
            let until = lease_end(now, self.config.lease);
            // Renewed before every round, the first too: waiting for a worker permit may have
            // outlasted the dispatcher's claim, and another instance may hold the lock now.
            if !self
                .store
                .claim_device(device_id, &self.owner, now, until)
                .await?
            {
                return Ok(());
            }
            let jobs = self
                .store
                .due_jobs(device_id, now, self.config.batch)
                .await?;
            if jobs.is_empty() {
                return Ok(());
            }
            let job_ids: Vec<i64> = jobs.iter().map(|j| j.job_id).collect();
            let Some(device) = self.store.engine_device(device_id).await? else {
                self.store.delete_jobs(&job_ids).await?;
                return Ok(());
            };
            let next_read = match self.drivers.for_device(&device) {
                Some(driver) => Some(self.work_batch(&device, driver.as_ref(), &jobs).await?),
                None => {
                    warn!(provider = %device.provider, "no driver for device");
                    None
                }
            };
            self.store
                .finish_jobs(device_id, &job_ids, next_read)
                .await?;
            let _ = self.synced.send(device_id.to_owned());
        }
    }

    /// Reads the lock once and works every code of the batch; answers when (and after how many
    /// failed reads) the lock should be read next.
    async fn work_batch(
        &self,
        device: &DeviceRecord,
        driver: &dyn LockDriver,
        jobs: &[DeviceJob],
    ) -> keyway_store::Result<(Timestamp, i64)> {
        // One look at a code per batch, with the attempts of its most-tried job.
        let mut work: Vec<(String, i64)> = Vec::new();
        let mut failed_reads = 0;
        let mut door_commands = Vec::new();
        for job in jobs {
            match (&job.access_code_id, &job.action, &job.action_attempt_id) {
                (Some(id), _, _) => match work.iter_mut().find(|(code, _)| code == id) {
                    Some(entry) => entry.1 = entry.1.max(job.attempts),
                    None => work.push((id.clone(), job.attempts)),
                },
                (None, Some(action), Some(attempt)) => {
                    door_commands.push((action.as_str() == "lock", attempt))
                }
                _ => failed_reads = failed_reads.max(job.attempts),
            }
        }
        for (lock, attempt) in door_commands {
            let result = driver.set_locked(&device.device_id, lock).await;
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(DriverError::Offline) => Err(("device_offline", "The device is offline")),
                Err(_) => Err((
                    "lock_command_failed",
                    "The lock did not carry out the command",
                )),
            };
            self.store
                .finish_lock_action(device, attempt, lock, outcome, self.clock.now())
                .await?;
        }
        let read = driver.read_codes(&device.device_id).await;
        let now = self.clock.now();
        let mut lock = match read {
            Ok(lock) => lock,
            Err(error) => {
                let mut records = Vec::with_capacity(work.len());
                for (code, attempts) in self.codes_of(&work).await? {
                    let removal = code_target(&code, now) != Target::OnLock;
                    records.push(self.retry_later(&code, attempts, removal, &error));
                }
                self.store.record_outcomes(device, records, now).await?;
                let backoff = self
                    .config
                    .poll_interval
                    .saturating_mul(1 << failed_reads.clamp(0, 4));
                return Ok((at_offset(now, jittered(backoff)), failed_reads + 1));
            }
        };
        // Codes changed at the lock behind Keyway's back.
        let confirmed = self.store.confirmed_codes(&device.device_id).await?;
        let view: Vec<SlotView<'_>> = lock
            .iter()
            .map(|c| SlotView {
                slot: c.slot,
                pin: &c.code,
            })
            .collect();
        let expected: Vec<Confirmed<'_>> = confirmed
            .iter()
            .filter_map(|c| {
                u32::try_from(c.slot).ok().map(|slot| Confirmed {
                    access_code_id: &c.access_code_id,
                    slot,
                    confirmed: &c.confirmed_code,
                })
            })
            .collect();
        for change in drift(&expected, &view) {
            let (id, change) = match change {
                Drift::Modified {
                    access_code_id,
                    pin,
                } => (access_code_id, ExternalChange::Modified { pin }),
                Drift::Deleted { access_code_id } => (access_code_id, ExternalChange::Deleted),
            };
            let Some(code) = confirmed.iter().find(|c| c.access_code_id == id) else {
                continue;
            };
            warn!(access_code_id = %id, ?change, "access code changed at the lock");
            self.store
                .record_external_change(device, code, change, now)
                .await?;
            if !code.is_external_modification_allowed && !work.iter().any(|(w, _)| *w == id) {
                work.push((id, 0));
            }
        }
        let observed: Vec<LockObservation> = lock
            .iter()
            .map(|c| LockObservation {
                slot: c.slot,
                code: c.code.clone(),
                name: c.name.clone(),
            })
            .collect();
        self.store.observe_lock(device, &observed, now).await?;
        let mut codes = self.codes_of(&work).await?;
        // Removals first, so that a PIN leaving the lock frees its place for the next one.
        codes.sort_by_key(|(code, _)| code_target(code, now) == Target::OnLock);
        let reserved = self.store.reserved_slots(&device.device_id).await?;
        let (plans, before_ops, mut after_ops) = plan(device, &codes, &lock, reserved, now);
        // What is about to happen on the lock is durable before it happens: a slot chosen
        // for a code is known even if Keyway dies during the driver call.
        self.store.record_outcomes(device, before_ops, now).await?;
        let mut renewed_at = std::time::Instant::now();
        let mut changed = false;
        for plan in plans {
            if renewed_at.elapsed() > self.config.lease / 3 {
                let now = self.clock.now();
                let until = lease_end(now, self.config.lease);
                if !self
                    .store
                    .claim_device(&device.device_id, &self.owner, now, until)
                    .await?
                {
                    warn!("lost the device lease; leaving the rest to its new holder");
                    break;
                }
                renewed_at = std::time::Instant::now();
            }
            let (record, done) = self.execute(device, driver, plan).await;
            changed |= done;
            after_ops.push(record);
        }
        self.store
            .record_outcomes(device, after_ops, self.clock.now())
            .await?;
        lock.clear();
        // After changing the lock, read it back at once; otherwise at the next poll.
        let next_read = if changed {
            self.clock.now()
        } else {
            at_offset(self.clock.now(), jittered(self.config.poll_interval))
        };
        Ok((next_read, 0))
    }

    /// The codes of a batch's work (those still there), each with its attempts, in work order.
    async fn codes_of(
        &self,
        work: &[(String, i64)],
    ) -> keyway_store::Result<Vec<(EngineCode, i64)>> {
        let ids: Vec<String> = work.iter().map(|(id, _)| id.clone()).collect();
        let mut found: std::collections::HashMap<String, EngineCode> = self
            .store
            .engine_codes(&ids)
            .await?
            .into_iter()
            .map(|code| (code.access_code_id.clone(), code))
            .collect();
        Ok(work
            .iter()
            .filter_map(|(id, attempts)| found.remove(id).map(|code| (code, *attempts)))
            .collect())
    }

    /// Carries out one driver operation; answers what to record and whether the lock changed.
    #[instrument(skip_all, fields(access_code_id = %plan.code.access_code_id))]
    async fn execute(
        &self,
        device: &DeviceRecord,
        driver: &dyn LockDriver,
        plan: Plan,
    ) -> (Record, bool) {
        let Plan {
            code,
            attempts,
            op,
            next_edge,
            absence,
        } = plan;
        let id = code.access_code_id.clone();
        match op {
            Op::Put { slot } => {
                let result = driver
                    .put_code(
                        &device.device_id,
                        Some(slot),
                        &code.code,
                        code.name.as_deref(),
                    )
                    .await;
                match result {
                    Ok(confirmed) => {
                        info!(slot = confirmed.slot, "access code set on device");
                        (
                            Record::new(
                                id,
                                CodeOutcome::Set {
                                    slot: confirmed.slot,
                                },
                                next_edge,
                            ),
                            true,
                        )
                    }
                    Err(DriverError::Refused(refusal)) => {
                        warn!(%refusal, "lock refused access code");
                        let (error_code, message) = match &refusal {
                            Refusal::Duplicate { .. } => (
                                "duplicate_code_on_device",
                                "The lock already holds this PIN in another slot.".to_owned(),
                            ),
                            Refusal::NoSpace => (
                                "no_space_for_access_code_on_device",
                                "The lock has no free slot for another code.".to_owned(),
                            ),
                            Refusal::InvalidCode(reason) => {
                                ("failed_to_set_on_device", reason.clone())
                            }
                        };
                        let outcome = CodeOutcome::Failed {
                            error_code,
                            message,
                            event: EventType::AccessCodeFailedToSetOnDevice,
                            removal: false,
                        };
                        (Record::new(id, outcome, None), false)
                    }
                    Err(error) => (self.retry_later(&code, attempts, false, &error), false),
                }
            }
            Op::Remove { slot } => match driver.remove_code(&device.device_id, slot).await {
                Ok(()) => {
                    info!(slot, "access code removed from device");
                    (finish_absence(&code, absence, true, self.clock.now()), true)
                }
                Err(error) => (self.retry_later(&code, attempts, true, &error), false),
            },
        }
    }

    /// A lock that could not be reached: try again later, warn when it drags on, give up at
    /// the deadline.
    fn retry_later(
        &self,
        code: &EngineCode,
        attempts: i64,
        removal: bool,
        error: &DriverError,
    ) -> Record {
        let now = self.clock.now();
        let since = code.pending_since.unwrap_or(now);
        let pending_for = Duration::from_millis((now.millis() - since.millis()).max(0) as u64);
        let attempts = attempts.saturating_add(1);
        let id = code.access_code_id.clone();
        let (warning_code, delay_event, failed_code, failed_event) = if removal {
            (
                "delay_in_removing_from_device",
                EventType::AccessCodeDelayInRemovingFromDevice,
                "failed_to_remove_from_device",
                EventType::AccessCodeFailedToRemoveFromDevice,
            )
        } else {
            (
                "delay_in_setting_on_device",
                EventType::AccessCodeDelayInSettingOnDevice,
                "failed_to_set_on_device",
                EventType::AccessCodeFailedToSetOnDevice,
            )
        };
        match self
            .config
            .retry
            .after_failure(u32::try_from(attempts).unwrap_or(u32::MAX), pending_for)
        {
            Verdict::RetryIn { delay, warn } => {
                let outcome =
                    (warn && !code.has_warning.iter().any(|w| w == warning_code)).then(|| {
                        CodeOutcome::Delayed {
                            warning_code,
                            message: format!("Still trying to reach the lock: {error}."),
                            event: delay_event,
                        }
                    });
                Record {
                    access_code_id: id,
                    outcome,
                    follow_up: Some((at_offset(now, delay), attempts)),
                }
            }
            Verdict::GiveUp => {
                warn!(%error, attempts, "giving up on the lock");
                let outcome = CodeOutcome::Failed {
                    error_code: failed_code,
                    message: format!("Gave up after {attempts} attempts: {error}."),
                    event: failed_event,
                    removal,
                };
                Record::new(id, outcome, None)
            }
        }
    }
}

/// A driver operation to carry out for one code.
#[derive(Debug, Clone, Copy)]
enum Op {
    Put { slot: u32 },
    Remove { slot: u32 },
}

struct Plan {
    code: EngineCode,
    attempts: i64,
    op: Op,
    /// When the code's window changes next (the follow-up once it is set).
    next_edge: Option<(Timestamp, i64)>,
    /// Why it leaves the lock (for removals).
    absence: Absence,
}

/// Decides, against the lock as read, the next step of every code of a batch: driver
/// operations to carry out (with what to record before them), and outcomes known at once.
fn plan(
    device: &DeviceRecord,
    codes: &[(EngineCode, i64)],
    lock: &[LockCode],
    mut reserved: Vec<u32>,
    now: Timestamp,
) -> (Vec<Plan>, Vec<Record>, Vec<Record>) {
    let max = device
        .code_rules()
        .map(|r| r.max_active_codes_supported)
        .unwrap_or(0);
    let mut view: Vec<(u32, String)> = lock.iter().map(|c| (c.slot, c.code.clone())).collect();
    let (mut plans, mut before, mut settled) = (Vec::new(), Vec::new(), Vec::new());
    for (code, attempts) in codes {
        let intent = intent_of(code);
        let target = intent.target(now);
        let slots: Vec<SlotView<'_>> = view
            .iter()
            .map(|(slot, pin)| SlotView { slot: *slot, pin })
            .collect();
        let known = code.slot.map(|slot| Known {
            slot,
            confirmed: code.confirmed_code.as_deref(),
        });
        let step = next_step(target, &code.code, known, &slots);
        let next_edge = intent.next_change(now).map(|at| (at, 0));
        let absence = match target {
            Target::OffLock(absence) => absence,
            Target::OnLock => Absence::Deleted,
        };
        let id = code.access_code_id.clone();
        match step {
            Step::Confirmed { slot } => {
                let changed =
                    code.status != "set" || code.confirmed_code.as_deref() != Some(&code.code);
                settled.push(Record {
                    access_code_id: id,
                    outcome: changed.then_some(CodeOutcome::Set { slot }),
                    follow_up: next_edge,
                });
            }
            Step::Put { slot } => {
                let free = |n: &u32| view.iter().all(|(s, _)| s != n) && !reserved.contains(n);
                let Some(slot) = slot.or_else(|| (1..=max).find(free)) else {
                    let outcome = CodeOutcome::Failed {
                        error_code: "no_space_for_access_code_on_device",
                        message: "The lock has no free slot for another code.".into(),
                        event: EventType::AccessCodeFailedToSetOnDevice,
                        removal: false,
                    };
                    settled.push(Record::new(id, outcome, None));
                    continue;
                };
                reserved.push(slot);
                view.retain(|(s, _)| *s != slot);
                view.push((slot, code.code.clone()));
                before.push(Record::new(id, CodeOutcome::Programming { slot }, None));
                plans.push(Plan {
                    code: code.clone(),
                    attempts: *attempts,
                    op: Op::Put { slot },
                    next_edge,
                    absence,
                });
            }
            Step::Remove { slot } => {
                if code.status != "removing" {
                    before.push(Record::new(id, CodeOutcome::Removing, None));
                }
                view.retain(|(s, _)| *s != slot);
                reserved.retain(|s| *s != slot);
                plans.push(Plan {
                    code: code.clone(),
                    attempts: *attempts,
                    op: Op::Remove { slot },
                    next_edge,
                    absence,
                });
            }
            Step::Absent => {
                if let Some(slot) = code.slot {
                    reserved.retain(|s| *s != slot);
                }
                settled.push(finish_absence(code, absence, false, now));
            }
        }
    }
    (plans, before, settled)
}

/// The record of a code that is off its lock, as wanted.
fn finish_absence(
    code: &EngineCode,
    absence: Absence,
    was_on_lock: bool,
    now: Timestamp,
) -> Record {
    let id = code.access_code_id.clone();
    match absence {
        Absence::Deleted | Absence::Ended => {
            Record::new(id, CodeOutcome::Gone { was_on_lock }, None)
        }
        Absence::NotStarted => {
            let next = intent_of(code).next_change(now).map(|at| (at, 0));
            let changed = code.status != "unset" || code.slot.is_some();
            Record {
                access_code_id: id,
                outcome: changed.then_some(CodeOutcome::Unset),
                follow_up: next,
            }
        }
    }
}

fn intent_of(code: &EngineCode) -> Intent {
    Intent {
        deleted: code.deleted,
        starts_at: code.starts_at,
        ends_at: code.ends_at,
    }
}

fn code_target(code: &EngineCode, now: Timestamp) -> Target {
    intent_of(code).target(now)
}

fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    at_offset(now, lease)
}

fn at_offset(now: Timestamp, offset: Duration) -> Timestamp {
    let millis = i64::try_from(offset.as_millis()).unwrap_or(i64::MAX / 2);
    Timestamp::from_millis(now.millis().saturating_add(millis)).unwrap_or(now)
}

/// `interval` ± 10%, so that locks read on the same schedule spread out.
fn jittered(interval: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..1.1);
    interval.mul_f64(factor)
}
