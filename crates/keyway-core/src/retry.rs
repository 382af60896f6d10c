//! When to try a lock again, when to warn that it is slow and when to give up.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First back-off; doubled on every failed attempt.
    pub base: Duration,
    /// Longest back-off.
    pub cap: Duration,
    /// After this long without success, the code carries a `delay_in_*` warning.
    pub warn_after: Duration,
    /// After this long without success, the code carries a `failed_to_*` error and retries stop.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            warn_after: Duration::from_secs(60),
            give_up_after: Duration::from_secs(15 * 60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retry after this delay; `warn` says the code has been pending longer than `warn_after`.
    RetryIn {
        delay: Duration,
        warn: bool,
    },
    GiveUp,
}

impl RetryPolicy {
    /// `attempts` failed attempts so far (at least 1), `pending_for` since the work started.
    pub fn after_failure(&self, attempts: u32, pending_for: Duration) -> Verdict {
        if pending_for >= self.give_up_after {
            return Verdict::GiveUp;
        }
        let exponent = attempts.saturating_sub(1).min(20);
        let delay = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.cap)
            .min(self.give_up_after - pending_for);
        Verdict::RetryIn {
            delay,
            warn: pending_for >= self.warn_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_warns_then_gives_up() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
            warn_after: Duration::from_secs(1),
            give_up_after: Duration::from_secs(3),
        };
        assert_eq!(
            policy.after_failure(1, Duration::ZERO),
            Verdict::RetryIn {
                delay: Duration::from_millis(100),
                warn: false
            }
        );
        assert_eq!(
            policy.after_failure(3, Duration::from_millis(500)),
            Verdict::RetryIn {
                delay: Duration::from_millis(400),
                warn: false
            }
        );
        assert_eq!(
            policy.after_failure(9, Duration::from_secs(2)),
            Verdict::RetryIn {
                delay: Duration::from_millis(500),
                warn: true
            }
        );
        assert_eq!(
            policy.after_failure(9, Duration::from_millis(2900)),
            Verdict::RetryIn {
                delay: Duration::from_millis(100),
                warn: true
            }
        );
        assert_eq!(
            policy.after_failure(10, Duration::from_secs(3)),
            Verdict::GiveUp
        );
    }
}
