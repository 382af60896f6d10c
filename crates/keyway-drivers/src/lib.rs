//! Lock drivers.
//!
//! `LockDriver` is all the engine knows of a lock: read the codes it holds, put a code, remove
//! one. A driver answers `Ok` only once the lock confirmed the operation; anything it cannot
//! vouch for is an error (a timeout means "unknown": the engine reads back and retries).
//! Providers: `sandbox` (simulated locks whose memory lives in the store) and `zwave_js`
//! (Z-Wave locks through a Z-Wave JS server).

pub mod deadline;
pub mod sandbox;
pub mod zwave_js;

pub use deadline::Deadline;

use async_trait::async_trait;

/// A PIN held by a lock slot, as the lock reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockCode {
    pub slot: u32,
    pub code: String,
    pub name: Option<String>,
}

/// Why a lock refused an operation. Refusals are answers, not faults: retrying won't help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the lock already holds this code in slot {slot}")]
    Duplicate { slot: u32 },
    #[error("the lock has no free slot for another code")]
    NoSpace,
    #[error("the lock rejected the code: {0}")]
    InvalidCode(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("the lock is offline")]
    Offline,
    #[error("the lock did not answer in time")]
    Timeout,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the lock is unknown to its provider")]
    NotFound,
    #[error("driver failure: {0}")]
    Internal(String),
}

impl DriverError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DriverError::Offline | DriverError::Timeout | DriverError::Internal(_)
        )
    }
}

#[async_trait]
pub trait LockDriver: Send + Sync {
    /// Every code the lock holds now.
    async fn read_codes(&self, device_id: &str) -> Result<Vec<LockCode>, DriverError>;

    /// Programs `code`, into `slot` when given, and answers the slot the lock confirmed.
    /// Putting the same code into the slot that already holds it is a no-op.
    async fn put_code(
        &self,
        device_id: &str,
        slot: Option<u32>,
        code: &str,
        name: Option<&str>,
    ) -> Result<LockCode, DriverError>;

    /// Locks (`true`) or unlocks the door.
    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), DriverError>;

    /// Clears `slot`. Clearing an empty slot is a no-op.
    async fn remove_code(&self, device_id: &str, slot: u32) -> Result<(), DriverError>;

    /// How many codes the engine may hand to [`LockDriver::put_codes`] at once. A driver whose
    /// operations can take long keeps this at 1, so that the engine renews its lease between
    /// them.
    fn put_batch_limit(&self) -> usize {
        1
    }

    /// Programs several codes, in order, as [`LockDriver::put_code`] would one after the
    /// other; answers one result per code, in the same order.
    async fn put_codes(
        &self,
        device_id: &str,
        puts: &[PutCode],
    ) -> Vec<Result<LockCode, DriverError>> {
        let mut results = Vec::with_capacity(puts.len());
        for put in puts {
            results.push(
                self.put_code(device_id, put.slot, &put.code, put.name.as_deref())
                    .await,
            );
        }
        results
    }
}

/// One code to program, for [`LockDriver::put_codes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutCode {
    pub slot: Option<u32>,
    pub code: String,
    pub name: Option<String>,
}
