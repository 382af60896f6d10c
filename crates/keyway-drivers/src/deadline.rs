//! A deadline on every call to a driver, whatever the driver.
//!
//! Each driver bounds its own operations (the Z-Wave JS driver its requests, the sandbox its
//! delays). [`Deadline`] is the engine's safety net against one that does not: a call still
//! unanswered after the limit is abandoned and answered [`DriverError::Timeout`], which the
//! engine treats as "unknown: read back and retry". A lock whose driver hangs is therefore
//! tried again, its codes warned about and in the end failed, instead of being held for good.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::{DriverError, LockCode, LockDriver, PutCode};

/// A driver whose every call ends within `limit` (a batch of puts included: drivers whose
/// operations take long take one code at a time).
pub struct Deadline {
    driver: Arc<dyn LockDriver>,
    limit: Duration,
}

impl Deadline {
    pub fn new(driver: Arc<dyn LockDriver>, limit: Duration) -> Self {
        Deadline { driver, limit }
    }
}

/// `call`, or `Timeout` once `limit` has passed (the call is dropped: whatever it did on the
/// lock is found by the next read).
async fn within<T>(
    limit: Duration,
    operation: &'static str,
    device_id: &str,
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            warn!(
                device_id,
                operation,
                limit_ms = limit.as_millis() as u64,
                "the driver did not answer in time; the call was abandoned"
            );
            Err(DriverError::Timeout)
        }
    }
}

#[async_trait]
impl LockDriver for Deadline {
    async fn read_codes(&self, device_id: &str) -> Result<Vec<LockCode>, DriverError> {
        within(
            self.limit,
            "read_codes",
            device_id,
            self.driver.read_codes(device_id),
        )
        .await
    }

    async fn put_code(
        &self,
        device_id: &str,
        slot: Option<u32>,
        code: &str,
        name: Option<&str>,
    ) -> Result<LockCode, DriverError> {
        within(
            self.limit,
            "put_code",
            device_id,
            self.driver.put_code(device_id, slot, code, name),
        )
        .await
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), DriverError> {
        within(
            self.limit,
            "set_locked",
            device_id,
            self.driver.set_locked(device_id, locked),
        )
        .await
    }

    async fn remove_code(&self, device_id: &str, slot: u32) -> Result<(), DriverError> {
        within(
            self.limit,
            "remove_code",
            device_id,
            self.driver.remove_code(device_id, slot),
        )
        .await
    }

    fn put_batch_limit(&self) -> usize {
        self.driver.put_batch_limit()
    }

    async fn put_codes(
        &self,
        device_id: &str,
        puts: &[PutCode],
    ) -> Vec<Result<LockCode, DriverError>> {
        let all = async { Ok(self.driver.put_codes(device_id, puts).await) };
        match within(self.limit, "put_codes", device_id, all).await {
            Ok(results) => results,
            // None of them is known: every one is read back.
            Err(error) => vec![Err(error); puts.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock that never answers reads and puts, and answers door commands at once.
    struct Hanging;

    #[async_trait]
    impl LockDriver for Hanging {
        async fn read_codes(&self, _: &str) -> Result<Vec<LockCode>, DriverError> {
            std::future::pending().await
        }

        async fn put_code(
            &self,
            _: &str,
            _: Option<u32>,
            _: &str,
            _: Option<&str>,
        ) -> Result<LockCode, DriverError> {
            std::future::pending().await
        }

        async fn set_locked(&self, _: &str, _: bool) -> Result<(), DriverError> {
            Ok(())
        }

        async fn remove_code(&self, _: &str, _: u32) -> Result<(), DriverError> {
            Err(DriverError::Offline)
        }

        fn put_batch_limit(&self) -> usize {
            8
        }
    }

    fn put(code: &str) -> PutCode {
        PutCode {
            slot: None,
            code: code.to_owned(),
            name: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_left_unanswered_times_out_and_answers_pass_through() {
        let limit = Duration::from_secs(5);
        let driver = Deadline::new(Arc::new(Hanging), limit);
        let started = tokio::time::Instant::now();
        assert_eq!(driver.read_codes("d").await, Err(DriverError::Timeout));
        assert_eq!(started.elapsed(), limit);
        assert_eq!(
            driver.put_code("d", Some(1), "1234", None).await,
            Err(DriverError::Timeout)
        );
        // Answers, errors included, are the driver's own.
        assert_eq!(driver.set_locked("d", true).await, Ok(()));
        assert_eq!(driver.remove_code("d", 1).await, Err(DriverError::Offline));
        assert_eq!(driver.put_batch_limit(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_gets_the_limit_once_and_every_code_times_out() {
        let limit = Duration::from_secs(5);
        let driver = Deadline::new(Arc::new(Hanging), limit);
        let started = tokio::time::Instant::now();
        let results = driver
            .put_codes("d", &[put("1111"), put("2222"), put("3333")])
            .await;
        assert_eq!(started.elapsed(), limit);
        assert_eq!(results, vec![Err(DriverError::Timeout); 3]);
    }
}
