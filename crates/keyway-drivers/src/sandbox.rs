//! Sandbox locks: simulated locks with a keypad, slots, limits, a delay per operation and faults.
//!
//! A sandbox lock's memory (which code sits in which slot, whether it is online, its delay) lives
//! in the store behind `SandboxMemory`, so it survives restarts like a real lock would. The lock
//! enforces its own rules: code lengths and constraints, no duplicate PIN, a slot limit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyway_core::policy::{LockRules, PinCode};
use tokio::time::Instant;

use crate::{DriverError, LockCode, LockDriver, PutCode, Refusal};

/// Everything a sandbox lock is at one moment.
#[derive(Debug, Clone)]
pub struct SandboxLock {
    pub online: bool,
    /// The lock was removed from its account: nobody can reach it any more.
    pub removed: bool,
    /// The lock times out on this many coming operations.
    pub fail_next: u32,
    pub locked: bool,
    pub delay: Duration,
    pub rules: LockRules,
    pub slots: Vec<LockCode>,
}

/// Where sandbox locks keep their memory.
#[async_trait]
pub trait SandboxMemory: Send + Sync {
    async fn load(&self, device_id: &str) -> Result<Option<SandboxLock>, String>;
    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), String>;
    /// Uses up one of the lock's pending simulated failures.
    async fn consume_failure(&self, device_id: &str) -> Result<(), String>;
    /// Writes (`Some`) or clears (`None`) one slot and counts the operation.
    async fn write_slot(
        &self,
        device_id: &str,
        slot: u32,
        code: Option<(&str, Option<&str>)>,
    ) -> Result<(), String>;
    /// Writes several slots of one lock, in order, counting one operation each.
    async fn write_slots(&self, device_id: &str, slots: &[LockCode]) -> Result<(), String> {
        for slot in slots {
            self.write_slot(
                device_id,
                slot.slot,
                Some((&slot.code, slot.name.as_deref())),
            )
            .await?;
        }
        Ok(())
    }
}

pub struct SandboxDriver {
    memory: Arc<dyn SandboxMemory>,
}

impl SandboxDriver {
    pub fn new(memory: Arc<dyn SandboxMemory>) -> Self {
        SandboxDriver { memory }
    }

    /// Loads the lock for an operation begun at `started`, and fails if it is offline or due
    /// to time out (after the lock's delay, as the operation would have taken).
    async fn reach(&self, device_id: &str, started: Instant) -> Result<SandboxLock, DriverError> {
        let lock = self
            .memory
            .load(device_id)
            .await
            .map_err(DriverError::Internal)?
            .ok_or(DriverError::NotFound)?;
        if lock.removed {
            return Err(DriverError::NotFound);
        }
        if !lock.online {
            pace(started, lock.delay).await;
            return Err(DriverError::Offline);
        }
        if lock.fail_next > 0 {
            self.memory
                .consume_failure(device_id)
                .await
                .map_err(DriverError::Internal)?;
            pace(started, lock.delay).await;
            return Err(DriverError::Timeout);
        }
        Ok(lock)
    }

    /// A code typed at the keypad: the lock stores it in its highest free slot (the API
    /// fills slots from the bottom).
    pub async fn keypad_program(
        &self,
        device_id: &str,
        code: &str,
        name: Option<&str>,
    ) -> Result<LockCode, DriverError> {
        let started = Instant::now();
        let lock = self.reach(device_id, started).await?;
        let stored = self
            .store_code(device_id, &lock, None, true, code, name)
            .await;
        pace(started, lock.delay).await;
        stored
    }

    async fn store_code(
        &self,
        device_id: &str,
        lock: &SandboxLock,
        slot: Option<u32>,
        from_top: bool,
        code: &str,
        name: Option<&str>,
    ) -> Result<LockCode, DriverError> {
        let (stored, write) = place(lock, slot, from_top, code, name)?;
        if write {
            self.memory
                .write_slot(device_id, stored.slot, Some((code, name)))
                .await
                .map_err(DriverError::Internal)?;
        }
        Ok(stored)
    }
}

/// Where the lock puts `code`, by its own rules, and whether that changes a slot (putting
/// the PIN a slot already holds into that slot changes nothing).
fn place(
    lock: &SandboxLock,
    slot: Option<u32>,
    from_top: bool,
    code: &str,
    name: Option<&str>,
) -> Result<(LockCode, bool), Refusal> {
    if let Some(slot) = slot {
        if let Some(existing) = lock.slots.iter().find(|s| s.slot == slot) {
            if existing.code == code {
                return Ok((existing.clone(), false));
            }
        }
    }
    validate(lock, code)?;
    if let Some(other) = lock
        .slots
        .iter()
        .find(|s| s.code == code && Some(s.slot) != slot)
    {
        return Err(Refusal::Duplicate { slot: other.slot });
    }
    let max = lock.rules.max_active_codes.max(1);
    let free = |n: &u32| lock.slots.iter().all(|s| s.slot != *n);
    let target = match slot {
        Some(slot) if (1..=max).contains(&slot) => slot,
        _ if from_top => (1..=max).rev().find(free).ok_or(Refusal::NoSpace)?,
        _ => (1..=max).find(free).ok_or(Refusal::NoSpace)?,
    };
    let stored = LockCode {
        slot: target,
        code: code.to_owned(),
        name: name.map(str::to_owned),
    };
    Ok((stored, true))
}

/// An operation begun at `started` on a lock that takes `delay` per operation ends no sooner
/// than that: the store's own work happens within the delay, not on top of it.
async fn pace(started: Instant, delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep_until(started + delay).await;
    }
}

fn validate(lock: &SandboxLock, code: &str) -> Result<(), Refusal> {
    let mut rules = lock.rules.clone();
    // The keypad and the API may both pick PINs; only shape rules apply at the lock.
    rules.constraints.retain(|c| c != "cannot_specify_pin_code");
    PinCode::parse(code, &rules)
        .map(|_| ())
        .map_err(|e| Refusal::InvalidCode(e.to_string()))
}

#[async_trait]
impl LockDriver for SandboxDriver {
    async fn read_codes(&self, device_id: &str) -> Result<Vec<LockCode>, DriverError> {
        let started = Instant::now();
        let lock = self.reach(device_id, started).await?;
        pace(started, lock.delay).await;
        Ok(lock.slots)
    }

    async fn put_code(
        &self,
        device_id: &str,
        slot: Option<u32>,
        code: &str,
        name: Option<&str>,
    ) -> Result<LockCode, DriverError> {
        let started = Instant::now();
        let lock = self.reach(device_id, started).await?;
        let stored = self
            .store_code(device_id, &lock, slot, false, code, name)
            .await;
        pace(started, lock.delay).await;
        stored
    }

    /// A simulated lock takes any number of codes in one session.
    fn put_batch_limit(&self) -> usize {
        64
    }

    /// One load of the lock and one write of its changed slots for the whole batch; the
    /// lock's delay (once per code) and faults still apply to every code, as they would one
    /// by one.
    async fn put_codes(
        &self,
        device_id: &str,
        puts: &[PutCode],
    ) -> Vec<Result<LockCode, DriverError>> {
        let started = Instant::now();
        let mut lock = match self.memory.load(device_id).await {
            Ok(Some(lock)) if !lock.removed => lock,
            Ok(_) => return puts.iter().map(|_| Err(DriverError::NotFound)).collect(),
            Err(error) => {
                return puts
                    .iter()
                    .map(|_| Err(DriverError::Internal(error.clone())))
                    .collect()
            }
        };
        let mut results = Vec::with_capacity(puts.len());
        let mut writes = Vec::new();
        for put in puts {
            if !lock.online {
                results.push(Err(DriverError::Offline));
                continue;
            }
            if lock.fail_next > 0 {
                lock.fail_next -= 1;
                let consumed = self.memory.consume_failure(device_id).await;
                results.push(Err(match consumed {
                    Ok(()) => DriverError::Timeout,
                    Err(error) => DriverError::Internal(error),
                }));
                continue;
            }
            match place(&lock, put.slot, false, &put.code, put.name.as_deref()) {
                Ok((stored, write)) => {
                    if write {
                        lock.slots.retain(|s| s.slot != stored.slot);
                        lock.slots.push(stored.clone());
                        writes.push(stored.clone());
                    }
                    results.push(Ok(stored));
                }
                Err(refusal) => results.push(Err(refusal.into())),
            }
        }
        if let Err(error) = self.memory.write_slots(device_id, &writes).await {
            // Nothing of the batch is known to be on the lock.
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(DriverError::Internal(error.clone()));
            }
        }
        let count = u32::try_from(puts.len()).unwrap_or(u32::MAX);
        pace(started, lock.delay.saturating_mul(count)).await;
        results
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), DriverError> {
        let started = Instant::now();
        let lock = self.reach(device_id, started).await?;
        let done = self
            .memory
            .set_locked(device_id, locked)
            .await
            .map_err(DriverError::Internal);
        pace(started, lock.delay).await;
        done
    }

    async fn remove_code(&self, device_id: &str, slot: u32) -> Result<(), DriverError> {
        let started = Instant::now();
        let lock = self.reach(device_id, started).await?;
        let mut done = Ok(());
        if lock.slots.iter().any(|s| s.slot == slot) {
            done = self
                .memory
                .write_slot(device_id, slot, None)
                .await
                .map_err(DriverError::Internal);
        }
        pace(started, lock.delay).await;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, SandboxLock>>);

    #[async_trait]
    impl SandboxMemory for Memory {
        async fn load(&self, device_id: &str) -> Result<Option<SandboxLock>, String> {
            Ok(self
                .0
                .lock()
                .map_err(|e| e.to_string())?
                .get(device_id)
                .cloned())
        }
        async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), String> {
            let mut locks = self.0.lock().map_err(|e| e.to_string())?;
            locks.get_mut(device_id).ok_or("no lock")?.locked = locked;
            Ok(())
        }
        async fn consume_failure(&self, device_id: &str) -> Result<(), String> {
            let mut locks = self.0.lock().map_err(|e| e.to_string())?;
            let lock = locks.get_mut(device_id).ok_or("no lock")?;
            lock.fail_next = lock.fail_next.saturating_sub(1);
            Ok(())
        }
        async fn write_slot(
            &self,
            device_id: &str,
            slot: u32,
            code: Option<(&str, Option<&str>)>,
        ) -> Result<(), String> {
            let mut locks = self.0.lock().map_err(|e| e.to_string())?;
            let lock = locks.get_mut(device_id).ok_or("no lock")?;
            lock.slots.retain(|s| s.slot != slot);
            if let Some((code, name)) = code {
                lock.slots.push(LockCode {
                    slot,
                    code: code.to_owned(),
                    name: name.map(str::to_owned),
                });
            }
            Ok(())
        }
    }

    struct Test {
        driver: SandboxDriver,
        memory: Arc<Memory>,
    }

    impl std::ops::Deref for Test {
        type Target = SandboxDriver;
        fn deref(&self) -> &SandboxDriver {
            &self.driver
        }
    }

    impl Test {
        fn memory_mut(&self, change: impl FnOnce(&mut SandboxLock)) {
            change(self.memory.0.lock().unwrap().get_mut("lock").unwrap());
        }
    }

    fn driver(max: u32) -> Test {
        let memory = Memory::default();
        memory.0.lock().unwrap().insert(
            "lock".into(),
            SandboxLock {
                online: true,
                removed: false,
                fail_next: 0,
                locked: true,
                delay: Duration::ZERO,
                rules: LockRules {
                    supported_code_lengths: vec![4, 5, 6],
                    max_active_codes: max,
                    constraints: vec![],
                },
                slots: vec![],
            },
        );
        let memory = Arc::new(memory);
        Test {
            driver: SandboxDriver::new(memory.clone()),
            memory,
        }
    }

    #[tokio::test]
    async fn refuses_duplicates_bad_codes_and_overflow_but_reput_is_a_no_op() {
        let lock = driver(2);
        let first = lock.put_code("lock", None, "1234", None).await.unwrap();
        assert_eq!(first.slot, 1);
        assert_eq!(
            lock.put_code("lock", Some(1), "1234", None).await.unwrap(),
            first
        );
        assert_eq!(
            lock.put_code("lock", None, "1234", None).await,
            Err(DriverError::Refused(Refusal::Duplicate { slot: 1 }))
        );
        assert!(matches!(
            lock.put_code("lock", None, "12", None).await,
            Err(DriverError::Refused(Refusal::InvalidCode(_)))
        ));
        lock.put_code("lock", None, "5678", None).await.unwrap();
        assert_eq!(
            lock.put_code("lock", None, "9999", None).await,
            Err(DriverError::Refused(Refusal::NoSpace))
        );
        lock.remove_code("lock", 1).await.unwrap();
        lock.remove_code("lock", 1).await.unwrap();
        let codes = lock.read_codes("lock").await.unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].code, "5678");
        assert_eq!(lock.read_codes("other").await, Err(DriverError::NotFound));
    }

    #[tokio::test]
    async fn a_failing_lock_times_out_then_recovers() {
        let lock = driver(5);
        lock.memory_mut(|l| l.fail_next = 2);
        assert_eq!(lock.read_codes("lock").await, Err(DriverError::Timeout));
        assert_eq!(lock.read_codes("lock").await, Err(DriverError::Timeout));
        assert_eq!(lock.read_codes("lock").await, Ok(vec![]));
        lock.memory_mut(|l| l.online = false);
        assert_eq!(lock.read_codes("lock").await, Err(DriverError::Offline));
        lock.memory_mut(|l| l.removed = true);
        assert_eq!(lock.read_codes("lock").await, Err(DriverError::NotFound));
    }

    #[tokio::test]
    async fn keypad_fills_from_the_top_and_the_api_from_the_bottom() {
        let lock = driver(5);
        assert_eq!(
            lock.keypad_program("lock", "4444", None)
                .await
                .unwrap()
                .slot,
            5
        );
        assert_eq!(
            lock.put_code("lock", None, "5555", None)
                .await
                .unwrap()
                .slot,
            1
        );
    }

    fn puts(codes: &[(Option<u32>, &str)]) -> Vec<PutCode> {
        codes
            .iter()
            .map(|(slot, code)| PutCode {
                slot: *slot,
                code: (*code).to_owned(),
                name: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_of_puts_answers_what_the_same_puts_one_by_one_would() {
        let batch = puts(&[
            (None, "1111"),
            (Some(1), "1111"),
            (None, "1111"),
            (None, "12"),
            (Some(3), "3333"),
            (None, "2222"),
            (None, "4444"),
        ]);
        let one_by_one = driver(3);
        let mut expected = Vec::new();
        for put in &batch {
            expected.push(one_by_one.put_code("lock", put.slot, &put.code, None).await);
        }
        let batched = driver(3);
        let results = batched.put_codes("lock", &batch).await;
        assert_eq!(results, expected);
        assert!(matches!(
            results[2],
            Err(DriverError::Refused(Refusal::Duplicate { slot: 1 }))
        ));
        assert_eq!(results[5].as_ref().map(|c| c.slot), Ok(2));
        assert_eq!(results[6], Err(DriverError::Refused(Refusal::NoSpace)));
        let mut held = batched.read_codes("lock").await.unwrap();
        held.sort_by_key(|c| c.slot);
        let mut want = one_by_one.read_codes("lock").await.unwrap();
        want.sort_by_key(|c| c.slot);
        assert_eq!(held, want);
    }

    #[tokio::test]
    async fn a_batch_meets_the_locks_faults_code_by_code() {
        let lock = driver(5);
        lock.memory_mut(|l| l.fail_next = 1);
        let results = lock
            .put_codes("lock", &puts(&[(None, "1111"), (None, "2222")]))
            .await;
        assert_eq!(results[0], Err(DriverError::Timeout));
        assert_eq!(results[1].as_ref().map(|c| c.slot), Ok(1));
        assert_eq!(lock.memory.0.lock().unwrap()["lock"].fail_next, 0);
        lock.memory_mut(|l| l.online = false);
        let results = lock.put_codes("lock", &puts(&[(None, "3333")])).await;
        assert_eq!(results, vec![Err(DriverError::Offline)]);
        lock.memory_mut(|l| l.removed = true);
        let results = lock.put_codes("lock", &puts(&[(None, "3333")])).await;
        assert_eq!(results, vec![Err(DriverError::NotFound)]);
        assert_eq!(lock.read_codes("lock").await, Err(DriverError::NotFound));
        lock.memory_mut(|l| l.removed = false);
        lock.memory_mut(|l| l.online = true);
        assert_eq!(lock.read_codes("lock").await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn every_operation_takes_the_locks_delay_once_per_code() {
        let lock = driver(5);
        lock.memory_mut(|l| l.delay = Duration::from_millis(200));
        let started = Instant::now();
        lock.read_codes("lock").await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let started = Instant::now();
        lock.put_code("lock", None, "1111", None).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let started = Instant::now();
        let results = lock
            .put_codes(
                "lock",
                &puts(&[(None, "2222"), (None, "3333"), (None, "1")]),
            )
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(600));
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        // A failure takes as long as the operation would have.
        lock.memory_mut(|l| l.online = false);
        let started = Instant::now();
        assert_eq!(lock.remove_code("lock", 1).await, Err(DriverError::Offline));
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
}
