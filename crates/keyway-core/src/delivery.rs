//! When to try a webhook delivery again, and when to give up on it.
//!
//! Pure: the sender passes the number of failed attempts and gets back the delay before the
//! next one, or `None` when the delivery has failed for good.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Delay after the first failed attempt; doubled after each further failure.
    pub base: Duration,
    /// Longest delay between two attempts.
    pub cap: Duration,
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
}

impl Default for DeliveryPolicy {
    /// 1 s, 2 s, 4 s … capped at an hour; 12 attempts span about 34 minutes.
    fn default() -> Self {
        DeliveryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            max_attempts: 12,
        }
    }
}

impl DeliveryPolicy {
    /// After `attempts` failed attempts (at least 1): the delay before the next, or `None`.
    pub fn retry_in(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts.max(1) {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        Some(self.base.saturating_mul(1u32 << exponent).min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_then_gives_up() {
        let policy = DeliveryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
            max_attempts: 5,
        };
        let delays: Vec<_> = (1..=5).map(|n| policy.retry_in(n)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(500)),
                None,
            ]
        );
    }

    #[test]
    fn one_attempt_means_no_retry_and_huge_counts_do_not_overflow() {
        let once = DeliveryPolicy {
            max_attempts: 1,
            ..DeliveryPolicy::default()
        };
        assert_eq!(once.retry_in(1), None);
        let many = DeliveryPolicy {
            max_attempts: u32::MAX,
            ..DeliveryPolicy::default()
        };
        assert_eq!(many.retry_in(1_000), Some(Duration::from_secs(3600)));
    }
}
