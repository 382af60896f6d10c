//! `Poll`: the bounded pacing shared by the wait helpers (a pause between polls, a deadline).
//!
//! It only measures time; what is awaited and when it is reached is the caller's business.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;

pub(crate) struct Poll {
    started: Instant,
    deadline: Instant,
    interval: Duration,
}

impl Poll {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        let started = Instant::now();
        Poll {
            started,
            deadline: started + timeout,
            interval,
        }
    }

    /// Sleeps until the next poll, or fails with [`Error::Timeout`] (described by `what`) when
    /// the deadline has passed. The last pause is shortened to end at the deadline, so one final
    /// poll happens right at it.
    pub(crate) async fn tick(&mut self, what: impl FnOnce() -> String) -> Result<(), Error> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::Timeout {
                what: what(),
                waited: now - self.started,
            });
        }
        let next = (now + self.interval).min(self.deadline);
        tokio::time::sleep_until(next).await;
        Ok(())
    }
}
