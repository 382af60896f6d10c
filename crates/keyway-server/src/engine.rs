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
use std::time::{Duration, Instant};

use keyway_core::lifecycle::{next_step, Absence, Intent, Known, SlotView, Step, Target};
use keyway_core::reconcile::{drift, Confirmed, Drift};
use keyway_core::retry::{RetryPolicy, Verdict};
use keyway_core::Clock;
use keyway_drivers::{Deadline, DriverError, LockCode, LockDriver, PutCode, Refusal};
use keyway_model::{EventType, Timestamp};
use keyway_store::{
    CodeOutcome, ConfirmedCode, DeviceJob, DeviceRecord, EngineCode, ExternalChange,
    LockObservation, OutcomeRecord as Record, Store, StoreError,
};
use rand::Rng;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{info, instrument, warn};

/// A lock whose read takes this long is worked code by code (see `work_batch`).
const SLOW_LOCK: Duration = Duration::from_millis(20);

/// The longest a round is prepared ahead, whatever the lease.
const MAX_LEAD: Duration = Duration::from_secs(3600);

/// How long before its time a round prepared ahead looks at its codes a last time.
const LAST_LOOK_MS: i64 = 500;

/// Least time between two looks for due devices, unless a full page was handed out.
const DISPATCH_PAUSE: Duration = Duration::from_millis(5);

/// Pause between two looks, in multiples of the time a look for the next job took.
const LOOK_PAUSE_FACTOR: u32 = 3;

/// The longest pause between two looks that `LOOK_PAUSE_FACTOR` may ask for.
const LONGEST_LOOK_PAUSE: Duration = Duration::from_millis(200);

/// The longest the dispatcher waits before it looks again, woken or not.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// How many due devices one dispatch hands out at most.
const DISPATCH_PAGE: u32 = 512;

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
    /// How long before a code's window opens its lock is read and the code's slot chosen and
    /// recorded, so that the driver is called when the window opens rather than when the
    /// engine gets round to the lock (thousands of windows tend to open in the same second:
    /// check-in time).
    pub lead: Duration,
    /// How long a lock's next round waits for more work when its last round took fewer
    /// jobs than `batch` and more came due meanwhile (a busy lock under a stream of writes).
    pub gather: Duration,
    /// Longest a driver call may take before the engine abandons it as timed out (unknown:
    /// read back and retry), a batch of puts included. Each driver bounds its own calls;
    /// this is the net under one that hangs, so that no lock is held for good.
    pub driver_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            concurrency: 256,
            batch: 500,
            poll_interval: Duration::from_secs(60),
            lead: Duration::from_secs(10),
            gather: Duration::from_millis(20),
            driver_timeout: Duration::from_secs(600),
        }
    }
}

/// A device handed to a worker. When the worker ends, however it ends (a panicking driver
/// included: the lease then runs out by itself), the device leaves `in_flight` and the
/// dispatcher is woken to look again.
struct InFlight {
    engine: Arc<Engine>,
    device_id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.engine.finish(&self.device_id);
        self.engine.wake.notify_one();
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
        mut config: EngineConfig,
    ) -> Arc<Engine> {
        // A round prepared ahead keeps its lease while it waits: the lease must outlast it.
        config.lead = config.lead.min(config.lease / 3).min(MAX_LEAD);
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

    /// Tells the dispatcher that new work may be due on these devices (none: nothing to do),
    /// unless every one of them is in flight here: handed to one of this engine's workers, or
    /// being claimed for one. However a worker ends, it then takes its device out of flight and
    /// wakes the dispatcher, whose next look sees every job committed before this call; a
    /// device whose claim failed is another instance's, whose worker looks for due jobs before
    /// it lets go, or whose expired lease the dispatcher's periodic look finds. Under a stream
    /// of writes to busy locks, the dispatcher then does not look at the whole queue once per
    /// pause only to find every one of them busy.
    pub fn notify_devices<'a>(&self, devices: impl IntoIterator<Item = &'a str>) {
        let all_held = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            devices
                .into_iter()
                .all(|device_id| in_flight.contains(device_id))
        };
        if !all_held {
            self.wake.notify_one();
        }
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
            let dispatched_at = Instant::now();
            match self.dispatch().await {
                // A full page went to workers: more devices may be due at once.
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    warn!(%error, "engine dispatch failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let now = self.clock.now();
            let looked_at = Instant::now();
            let next = self
                .store
                .next_job_at(now, self.config.lead, at_offset(now, LONGEST_WAIT))
                .await;
            let look = looked_at.elapsed();
            let wait = match next {
                Ok(Some(at)) => Duration::from_millis((at.millis() - now.millis()).max(0) as u64)
                    .min(LONGEST_WAIT),
                Ok(None) | Err(_) => LONGEST_WAIT,
            };
            // Due work exists but every such device is busy: wait for a worker to finish.
            let wait = if wait.is_zero() {
                Duration::from_millis(200)
            } else {
                wait
            };
            let woken = tokio::time::timeout(wait, self.wake.notified())
                .await
                .is_ok();
            // API writes to locks not in flight here wake the dispatcher: under a stream of
            // them, one look (two queries) per pause serves the lot instead of one per write.
            // A look costs more as the queue grows (it reads each job's entry in an index):
            // after a wake, waiting a few looks' time keeps the looks' share of the machine
            // small when many workers end at once, each waking the dispatcher. At most
            // `LONGEST_LOOK_PAUSE` (a look that waited for a connection says nothing of the
            // queue); a job that came due (no wake) is looked for at once.
            let pause = if woken {
                DISPATCH_PAUSE.max((look * LOOK_PAUSE_FACTOR).min(LONGEST_LOOK_PAUSE))
            } else {
                DISPATCH_PAUSE
            };
            let since = dispatched_at.elapsed();
            if since < pause {
                tokio::time::sleep(pause - since).await;
            }
        }
    }

    /// Hands due devices to workers, a page at a time; answers whether it was a full page of
    /// which at least one device was taken.
    async fn dispatch(self: &Arc<Self>) -> keyway_store::Result<bool> {
        let now = self.clock.now();
        let due_by = at_offset(now, self.config.lead);
        let due = self.store.due_devices(now, due_by, DISPATCH_PAGE).await?;
        let full_page = due.len() == DISPATCH_PAGE as usize;
        let devices: Vec<String> = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            due.into_iter()
                .filter(|device_id| in_flight.insert(device_id.clone()))
                .collect()
        };
        if devices.is_empty() {
            return Ok(false);
        }
        // One claim for them all. Whatever its outcome, a device leaves `in_flight` unless a
        // worker takes it: an error here (the database just went away) must not mark it busy
        // for good.
        let until = lease_end(now, self.config.lease);
        let held = match self
            .store
            .claim_devices(&devices, &self.owner, now, until)
            .await
        {
            Ok(held) => held,
            Err(error) => {
                devices.iter().for_each(|d| self.finish(d));
                return Err(error);
            }
        };
        for device_id in devices.iter().filter(|d| !held.contains(d)) {
            self.finish(device_id);
        }
        let claimed_at = Instant::now();
        let more = full_page && !held.is_empty();
        let mut held = held.into_iter();
        while let Some(device_id) = held.next() {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                self.finish(&device_id);
                held.for_each(|d| self.finish(&d));
                return Ok(false);
            };
            let engine = Arc::clone(self);
            tokio::spawn(async move {
                // Dropped last, after the permit, however the worker ends.
                let _in_flight = InFlight {
                    engine: Arc::clone(&engine),
                    device_id: device_id.clone(),
                };
                let mut permit = Some(permit);
                let worked = engine
                    .work_device(&device_id, claimed_at, &mut permit)
                    .await;
                let released = match worked {
                    Ok(released) => released,
                    Err(error) => {
                        warn!(%error, device_id, "device worker failed");
                        false
                    }
                };
                if !released {
                    let _ = engine.store.release_device(&device_id, &engine.owner).await;
                }
            });
        }
        Ok(more)
    }

    fn finish(&self, device_id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
    }

    /// Works the device's due jobs, round after round, while its lease is held (`claimed_at`:
    /// when the dispatcher took it). Answers whether the lease is already let go.
    /// `permit`: the worker's place among the engine's concurrent ones, given up while a round
    /// prepared ahead waits for its time.
    #[instrument(skip(self, claimed_at, permit), fields(device_id = %device_id))]
    async fn work_device(
        &self,
        device_id: &str,
        claimed_at: Instant,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> keyway_store::Result<bool> {
        let mut held_since = claimed_at;
        loop {
            let now = self.clock.now();
            // Waiting for a worker permit may have outlasted the dispatcher's claim, and
            // another instance may hold the lock now.
            if !self.keep_lease(device_id, &mut held_since).await? {
                return Ok(true);
            }
            let due_by = at_offset(now, self.config.lead);
            let start = self
                .store
                .round_start(device_id, now, due_by, self.config.batch)
                .await?;
            if start.jobs.is_empty() {
                return Ok(false);
            }
            let round_jobs = start.jobs.len();
            // The round acts when its jobs are due: now, or as a window opens (prepared ahead;
            // read-backs due before that come along).
            let act_at = start
                .jobs
                .iter()
                .map(|j| j.run_after)
                .max()
                .and_then(Timestamp::from_millis)
                .filter(|at| at.millis() > now.millis())
                .unwrap_or(now);
            let mut job_ids: Vec<i64> = start.jobs.iter().map(|j| j.job_id).collect();
            let Some(device) = start.device else {
                self.store.delete_jobs(&job_ids).await?;
                return Ok(false);
            };
            let (records, next_read) = match self.drivers.for_device(&device) {
                Some(driver) => {
                    let driver = Deadline::new(driver, self.config.driver_timeout);
                    let round = Round {
                        jobs: &start.jobs,
                        confirmed: start.confirmed,
                        act_at,
                    };
                    match self.work_batch(&device, &driver, round, permit).await? {
                        Some(Worked {
                            records,
                            next_read,
                            left,
                        }) => {
                            // Jobs of codes left for the next round stay.
                            job_ids = start
                                .jobs
                                .iter()
                                .filter(|j| {
                                    j.access_code_id
                                        .as_ref()
                                        .is_none_or(|id| !left.contains(id))
                                })
                                .map(|j| j.job_id)
                                .collect();
                            (records, Some(next_read))
                        }
                        // Its time did not come (a clock that stands still): the jobs stay
                        // for a later round, which finds the slots recorded.
                        None => {
                            job_ids.clear();
                            (Vec::new(), None)
                        }
                    }
                }
                None => {
                    warn!(provider = %device.provider, "no driver for device");
                    (Vec::new(), None)
                }
            };
            let now = self.clock.now();
            let more = self
                .store
                .finish_round(
                    &device,
                    records,
                    &job_ids,
                    next_read,
                    &self.owner,
                    now,
                    lease_end(now, self.config.lease),
                )
                .await?;
            let _ = self.synced.send(device_id.to_owned());
            if !more {
                return Ok(true);
            }
            // Renewed by `finish_round`; the pause below counts against it.
            held_since = Instant::now();
            // Work arrived while the round ran: under a stream of API writes, give it a moment
            // to gather, so that the next round takes many codes for its one lock read
            // instead of a few.
            if round_jobs < self.config.batch as usize
                && !self.pause_without_permit(self.config.gather, permit).await
            {
                return Ok(false);
            }
        }
    }

    /// Reads the lock once and works every code of the batch; answers what to record at the
    /// end of the round, and when (and after how many failed reads) the lock should be read
    /// next; or nothing if the round was prepared ahead and its time did not come.
    ///
    /// A round due later (`act_at`) reads the lock, chooses and records the slots now, then
    /// waits (without its `permit`) for its time, looks again at its codes, and only then
    /// calls the driver: what an API call changed meanwhile is left to the next round.
    async fn work_batch(
        &self,
        device: &DeviceRecord,
        driver: &dyn LockDriver,
        round: Round<'_>,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> keyway_store::Result<Option<Worked>> {
        let Round {
            jobs,
            confirmed,
            act_at,
        } = round;
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
        let mut read_started = Instant::now();
        let mut read = driver.read_codes(&device.device_id).await;
        let mut act_at = act_at;
        if read.is_err() && act_at.millis() > self.clock.now().millis() {
            // A lock that cannot be read ahead is tried at the time itself, as if nothing
            // had been prepared: its retries, warnings and errors count from then.
            if !self.wait_without_permit(act_at, permit).await {
                return Ok(None);
            }
            act_at = self.clock.now();
            read_started = Instant::now();
            read = driver.read_codes(&device.device_id).await;
        }
        // A lock that takes its time per operation gets its codes one at a time, and each
        // outcome is recorded as it lands, beside the next operation: codes show `set` as the
        // lock confirms them, not when the whole batch is done.
        let slow = read_started.elapsed() >= SLOW_LOCK;
        // A read that outlasted a third of the lease (a slow lock, a driver near its deadline)
        // may have outlasted the lease itself: nothing is recorded unless it is still ours.
        if !self
            .keep_lease(&device.device_id, &mut read_started)
            .await?
        {
            return Ok(None);
        }
        let now = self.clock.now();
        let mut lock = match read {
            Ok(lock) => lock,
            Err(error) => {
                let mut records = Vec::with_capacity(work.len());
                let (codes, _) = self.codes_of(&device.device_id, &work).await?;
                for (code, attempts) in codes {
                    let removal = code_target(&code, now) != Target::OnLock;
                    records.push(self.retry_later(&code, attempts, removal, &error));
                }
                let backoff = self
                    .config
                    .poll_interval
                    .saturating_mul(1 << failed_reads.clamp(0, 4));
                let next_read = (at_offset(now, jittered(backoff)), failed_reads + 1);
                return Ok(Some(Worked {
                    records,
                    next_read,
                    left: Vec::new(),
                }));
            }
        };
        // Codes changed at the lock behind Keyway's back.
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
        let (mut codes, reserved) = self.codes_of(&device.device_id, &work).await?;
        // Removals first, so that a PIN leaving the lock frees its place for the next one.
        codes.sort_by_key(|(code, _)| code_target(code, act_at) == Target::OnLock);
        let (mut plans, before_ops, mut after_ops) = plan(device, &codes, &lock, reserved, act_at);
        // What the lock holds, and what is about to happen on it, are durable before it
        // happens: a slot chosen for a code is known even if Keyway dies during the driver
        // call.
        self.store
            .observe_and_record(device, &observed, before_ops, now)
            .await?;
        let mut left = Vec::new();
        if act_at.millis() > self.clock.now().millis() {
            // A last look at the codes shortly before the time, off the time's own rush: a
            // code changed or deleted meanwhile is left, with its jobs, to the next round.
            let last_look =
                Timestamp::from_millis(act_at.millis() - LAST_LOOK_MS).unwrap_or(act_at);
            if !self.wait_without_permit(last_look, permit).await {
                return Ok(None);
            }
            let (fresh, _) = self.codes_of(&device.device_id, &work).await?;
            plans.retain(|p| {
                let same = fresh.iter().any(|(code, _)| same_intent(code, &p.code));
                if !same {
                    left.push(p.code.access_code_id.clone());
                }
                same
            });
            after_ops.retain(|r| !left.contains(&r.access_code_id));
            if !self.wait_without_permit(act_at, permit).await {
                return Ok(None);
            }
        }
        let mut renewed_at = Instant::now();
        let mut changed = false;
        let put_limit = if slow {
            1
        } else {
            driver.put_batch_limit().max(1)
        };
        let mut landed = Vec::new();
        let mut plans = plans.into_iter().peekable();
        while let Some(first) = plans.next() {
            if !self.keep_lease(&device.device_id, &mut renewed_at).await? {
                // Their slots are recorded; their jobs stay for the new holder's round.
                left.push(first.code.access_code_id.clone());
                left.extend(plans.by_ref().map(|p| p.code.access_code_id.clone()));
                after_ops.retain(|r| !left.contains(&r.access_code_id));
                break;
            }
            let mut outcomes = Vec::new();
            if let Op::Remove { slot } = first.op {
                let result = driver.remove_code(&device.device_id, slot).await;
                let (record, done) = self.removed(first, result);
                changed |= done;
                outcomes.push(record);
            } else {
                // Puts go to the driver in batches as large as it takes.
                let mut chunk = vec![first];
                while chunk.len() < put_limit {
                    match plans.next_if(|p| matches!(p.op, Op::Put { .. })) {
                        Some(next) => chunk.push(next),
                        None => break,
                    }
                }
                let puts: Vec<PutCode> = chunk
                    .iter()
                    .map(|p| PutCode {
                        slot: match p.op {
                            Op::Put { slot } | Op::Remove { slot } => Some(slot),
                        },
                        code: p.code.code.clone(),
                        name: p.code.name.clone(),
                    })
                    .collect();
                let mut results = driver.put_codes(&device.device_id, &puts).await.into_iter();
                for plan in chunk {
                    let result = results.next().unwrap_or_else(|| {
                        Err(DriverError::Internal(
                            "the driver answered fewer results than codes".into(),
                        ))
                    });
                    let (record, done) = self.put(plan, result);
                    changed |= done;
                    outcomes.push(record);
                }
            }
            if slow && plans.peek().is_some() {
                let (store, device) = (self.store.clone(), device.clone());
                let now = self.clock.now();
                landed.push(tokio::spawn(async move {
                    store.record_outcomes(&device, outcomes, now).await
                }));
            } else {
                after_ops.extend(outcomes);
            }
        }
        for recorded in landed {
            recorded
                .await
                .map_err(|e| StoreError::Unavailable(format!("recording outcomes: {e}")))??;
        }
        // The same after the last operation: their slots are recorded, and the jobs stay for
        // the lease's new holder, who reads the lock first.
        if !self.keep_lease(&device.device_id, &mut renewed_at).await? {
            return Ok(None);
        }
        lock.clear();
        // After changing the lock, read it back at once; otherwise at the next poll.
        let next_read = if changed {
            self.clock.now()
        } else {
            at_offset(self.clock.now(), jittered(self.config.poll_interval))
        };
        Ok(Some(Worked {
            records: after_ops,
            next_read: (next_read, 0),
            left,
        }))
    }

    /// Whether this instance still holds the device's lease, last renewed (or known held) at
    /// `renewed_at`: renewed (and `renewed_at` moved) once a third of it has passed, as a wait
    /// or a driver call may have outlasted it while another instance took the lock.
    async fn keep_lease(
        &self,
        device_id: &str,
        renewed_at: &mut Instant,
    ) -> keyway_store::Result<bool> {
        if renewed_at.elapsed() <= self.config.lease / 3 {
            return Ok(true);
        }
        let now = self.clock.now();
        let held = self
            .store
            .claim_device(
                device_id,
                &self.owner,
                now,
                lease_end(now, self.config.lease),
            )
            .await?;
        if held {
            *renewed_at = Instant::now();
        } else {
            warn!(
                device_id,
                "lost the device lease; leaving the lock to its new holder"
            );
        }
        Ok(held)
    }

    /// [`Engine::wait_until`], giving up the worker's `permit` meanwhile (and taking one
    /// again after): a waiting round must not keep other locks' work waiting.
    async fn wait_without_permit(
        &self,
        at: Timestamp,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> bool {
        if at.millis() <= self.clock.now().millis() {
            return true;
        }
        drop(permit.take());
        self.wait_until(at).await && self.take_permit_back(permit).await
    }

    /// Waits `pause` of real time without the worker's permit; answers false if the permit
    /// cannot be had back (its semaphore closed).
    async fn pause_without_permit(
        &self,
        pause: Duration,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> bool {
        if pause.is_zero() {
            return true;
        }
        drop(permit.take());
        tokio::time::sleep(pause).await;
        self.take_permit_back(permit).await
    }

    /// Takes a worker's place among the concurrent ones again, after a wait without it;
    /// answers false if the semaphore closed.
    async fn take_permit_back(&self, permit: &mut Option<OwnedSemaphorePermit>) -> bool {
        match self.permits.clone().acquire_owned().await {
            Ok(back) => {
                *permit = Some(back);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until the engine's clock says `at`; answers false if it did not within the lead
    /// and a second of real time (a clock injected by a test that does not move).
    async fn wait_until(&self, at: Timestamp) -> bool {
        let give_up = Instant::now() + self.config.lead + Duration::from_secs(1);
        loop {
            let left = at.millis() - self.clock.now().millis();
            if left <= 0 {
                return true;
            }
            let now = Instant::now();
            if now >= give_up {
                return false;
            }
            let nap = Duration::from_millis(left.unsigned_abs()).min(give_up - now);
            tokio::time::sleep(nap).await;
        }
    }

    /// The codes of a batch's work (those still there), each with its attempts, in work order;
    /// and the slots the device's managed codes hold.
    async fn codes_of(
        &self,
        device_id: &str,
        work: &[(String, i64)],
    ) -> keyway_store::Result<(Vec<(EngineCode, i64)>, Vec<u32>)> {
        let ids: Vec<String> = work.iter().map(|(id, _)| id.clone()).collect();
        let (codes, reserved) = self.store.round_codes(device_id, &ids).await?;
        let mut found: std::collections::HashMap<String, EngineCode> = codes
            .into_iter()
            .map(|code| (code.access_code_id.clone(), code))
            .collect();
        let codes = work
            .iter()
            .filter_map(|(id, attempts)| found.remove(id).map(|code| (code, *attempts)))
            .collect();
        Ok((codes, reserved))
    }

    /// What to record for a put the driver answered, and whether the lock changed.
    fn put(&self, plan: Plan, result: Result<LockCode, DriverError>) -> (Record, bool) {
        let id = plan.code.access_code_id.clone();
        let _span = tracing::info_span!("put", access_code_id = %id).entered();
        match result {
            Ok(confirmed) => {
                info!(slot = confirmed.slot, "access code set on device");
                let outcome = CodeOutcome::Set {
                    slot: confirmed.slot,
                };
                (Record::new(id, outcome, plan.next_edge), true)
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
                    Refusal::InvalidCode(reason) => ("failed_to_set_on_device", reason.clone()),
                };
                let outcome = CodeOutcome::Failed {
                    error_code,
                    message,
                    event: EventType::AccessCodeFailedToSetOnDevice,
                    removal: false,
                };
                (Record::new(id, outcome, None), false)
            }
            Err(error) => (
                self.retry_later(&plan.code, plan.attempts, false, &error),
                false,
            ),
        }
    }

    /// What to record for a removal the driver answered, and whether the lock changed.
    fn removed(&self, plan: Plan, result: Result<(), DriverError>) -> (Record, bool) {
        let _span =
            tracing::info_span!("remove", access_code_id = %plan.code.access_code_id).entered();
        match result {
            Ok(()) => {
                info!("access code removed from device");
                let record = finish_absence(&plan.code, plan.absence, true, self.clock.now());
                (record, true)
            }
            Err(error) => (
                self.retry_later(&plan.code, plan.attempts, true, &error),
                false,
            ),
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
    reserved: Vec<u32>,
    now: Timestamp,
) -> (Vec<Plan>, Vec<Record>, Vec<Record>) {
    let max = device
        .code_rules()
        .map(|r| r.max_active_codes_supported)
        .unwrap_or(0);
    // The lock as it will be once the plans before the current code are carried out.
    let mut view: Vec<SlotView<'_>> = lock
        .iter()
        .map(|c| SlotView {
            slot: c.slot,
            pin: &c.code,
        })
        .collect();
    // Slots held on the lock, and slots given to codes: a free slot is in neither. Sets, so
    // that looking for one on a full lock costs its size, not its size squared.
    let mut on_lock: HashSet<u32> = view.iter().map(|s| s.slot).collect();
    let mut reserved: HashSet<u32> = reserved.into_iter().collect();
    let (mut plans, mut before, mut settled) = (Vec::new(), Vec::new(), Vec::new());
    for (code, attempts) in codes {
        let intent = intent_of(code);
        let target = intent.target(now);
        let known = code.slot.map(|slot| Known {
            slot,
            confirmed: code.confirmed_code.as_deref(),
        });
        let step = next_step(target, &code.code, known, &view);
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
                let free = |n: &u32| !on_lock.contains(n) && !reserved.contains(n);
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
                reserved.insert(slot);
                view.retain(|s| s.slot != slot);
                view.push(SlotView {
                    slot,
                    pin: &code.code,
                });
                on_lock.insert(slot);
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
                view.retain(|s| s.slot != slot);
                on_lock.remove(&slot);
                reserved.remove(&slot);
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
                    reserved.remove(&slot);
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

/// What a worked round leaves to record.
struct Worked {
    records: Vec<Record>,
    /// When (and after how many failed reads) the lock should be read next.
    next_read: (Timestamp, i64),
    /// Codes that changed while the round waited for its time: their jobs stay.
    left: Vec<String>,
}

/// What a round works on at its time.
struct Round<'a> {
    jobs: &'a [DeviceJob],
    /// The device's codes its lock confirmed, as the round started.
    confirmed: Vec<ConfirmedCode>,
    /// When the round calls the driver: when its jobs are due.
    act_at: Timestamp,
}

/// Whether two looks at a code ask the same of the lock.
fn same_intent(a: &EngineCode, b: &EngineCode) -> bool {
    a.access_code_id == b.access_code_id
        && a.code == b.code
        && a.name == b.name
        && a.deleted == b.deleted
        && a.starts_at == b.starts_at
        && a.ends_at == b.ends_at
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

#[cfg(test)]
mod tests {
    use keyway_core::clock::SystemClock;
    use keyway_store::StoreOptions;

    use super::*;

    /// The same driver, or none, for every device.
    struct OneDriver(Option<Arc<dyn LockDriver>>);

    impl Drivers for OneDriver {
        fn for_device(&self, _: &DeviceRecord) -> Option<Arc<dyn LockDriver>> {
            self.0.clone()
        }
    }

    /// An engine (not running) on a fresh store holding the seed; the store lives in the
    /// directory answered with it.
    async fn seeded_engine(
        drivers: Arc<dyn Drivers>,
        config: EngineConfig,
    ) -> (Arc<Engine>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open_dir(dir.path(), &StoreOptions::default())
            .await
            .expect("store");
        store.seed(0, SystemClock.now()).await.expect("seeded");
        let engine = Engine::new(store, drivers, Arc::new(SystemClock), config);
        (engine, dir)
    }

    /// The sandbox locks of the seed.
    const SEEDED_LOCKS: usize = 3;

    /// How a test driver misbehaves when a lock is read.
    #[derive(Clone, Copy)]
    enum Fault {
        /// Every read panics (a driver bug).
        Panics,
        /// The first read of each seeded lock never answers; the reads after find it empty.
        HangsAtFirst,
    }

    /// A driver that only reads, and misbehaves; counts its reads.
    struct FaultyDriver {
        fault: Fault,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl FaultyDriver {
        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl LockDriver for FaultyDriver {
        async fn read_codes(&self, _: &str) -> Result<Vec<LockCode>, DriverError> {
            let read = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match self.fault {
                Fault::Panics => panic!("a driver bug"),
                Fault::HangsAtFirst if read < SEEDED_LOCKS => std::future::pending().await,
                Fault::HangsAtFirst => Ok(Vec::new()),
            }
        }

        async fn put_code(
            &self,
            _: &str,
            _: Option<u32>,
            _: &str,
            _: Option<&str>,
        ) -> Result<LockCode, DriverError> {
            Err(DriverError::Internal("not reached".into()))
        }

        async fn set_locked(&self, _: &str, _: bool) -> Result<(), DriverError> {
            Err(DriverError::Internal("not reached".into()))
        }

        async fn remove_code(&self, _: &str, _: u32) -> Result<(), DriverError> {
            Err(DriverError::Internal("not reached".into()))
        }
    }

    /// Runs an engine on the seed whose driver has `fault`, until each seeded lock has been
    /// read twice (at most 10 s); answers the reads.
    async fn reads_of_faulty_locks(fault: Fault, config: EngineConfig) -> usize {
        let driver = Arc::new(FaultyDriver {
            fault,
            reads: Default::default(),
        });
        let (engine, _dir) = seeded_engine(Arc::new(OneDriver(Some(driver.clone()))), config).await;
        let dispatcher = tokio::spawn(engine.clone().run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while driver.reads() < 2 * SEEDED_LOCKS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        dispatcher.abort();
        driver.reads()
    }

    /// A worker whose driver panics does not keep its lock out of the dispatcher's reach: once
    /// the lease it held runs out, the lock is worked again.
    #[tokio::test]
    async fn a_lock_whose_worker_panicked_is_worked_again() {
        // Each seeded lock is read at start; its worker panics; its lease runs out; it is read
        // again (the dispatcher looks at least once a second).
        let config = EngineConfig {
            lease: Duration::from_millis(300),
            ..EngineConfig::default()
        };
        let reads = reads_of_faulty_locks(Fault::Panics, config).await;
        assert!(
            reads >= 2 * SEEDED_LOCKS,
            "{reads} reads of {SEEDED_LOCKS} locks"
        );
    }

    /// A driver call that never answers is abandoned after `driver_timeout` as a timeout (a
    /// failed read, tried again later): the lock is not held for good.
    #[tokio::test]
    async fn a_lock_whose_driver_hangs_is_read_again() {
        let config = EngineConfig {
            driver_timeout: Duration::from_millis(200),
            // A lock that could not be read is read again after about this long.
            poll_interval: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let reads = reads_of_faulty_locks(Fault::HangsAtFirst, config).await;
        assert!(
            reads >= 2 * SEEDED_LOCKS,
            "{reads} reads of {SEEDED_LOCKS} locks"
        );
    }

    /// Whether the dispatcher has a wake-up waiting for it.
    async fn woken(engine: &Engine) -> bool {
        tokio::time::timeout(Duration::from_millis(20), engine.wake.notified())
            .await
            .is_ok()
    }

    /// The wake-up decision alone; that a job written meanwhile is still worked is shown by
    /// the integration tests that stream codes onto busy locks (`tests/it/engine.rs`).
    #[tokio::test]
    async fn writes_to_locks_this_engine_works_on_do_not_wake_the_dispatcher() {
        let (engine, _dir) =
            seeded_engine(Arc::new(OneDriver(None)), EngineConfig::default()).await;
        engine
            .in_flight
            .lock()
            .expect("in_flight")
            .insert("held".to_owned());

        engine.notify_devices(["held"]);
        assert!(!woken(&engine).await, "every lock is in flight here");
        engine.notify_devices(["held", "idle"]);
        assert!(
            woken(&engine).await,
            "one lock nobody here works on is enough"
        );
        engine.notify_devices(["idle"]);
        assert!(woken(&engine).await);
        engine.finish("held");
        engine.notify_devices(["held"]);
        assert!(
            woken(&engine).await,
            "a lock let go wakes the dispatcher again"
        );
        engine.notify();
        assert!(woken(&engine).await);
    }
}
