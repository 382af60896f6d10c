//! Time windows of time-bound codes: instants in UTC, evaluated by Keyway.

use keyway_model::Timestamp;

/// A validated window: `starts_at < ends_at`, and `ends_at` still ahead when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("Both starts_at and ends_at must be provided if one is")]
    Incomplete,
    #[error("ends_at must be after starts_at")]
    EndsBeforeStart,
    #[error("ends_at must be in the future")]
    EndsInPast,
}

impl Window {
    /// `None` for an ongoing code (neither bound given).
    pub fn new(
        starts_at: Option<Timestamp>,
        ends_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<Window>, WindowError> {
        match (starts_at, ends_at) {
            (None, None) => Ok(None),
            (Some(starts_at), Some(ends_at)) => {
                if ends_at <= starts_at {
                    Err(WindowError::EndsBeforeStart)
                } else if ends_at <= now {
                    Err(WindowError::EndsInPast)
                } else {
                    Ok(Some(Window { starts_at, ends_at }))
                }
            }
            _ => Err(WindowError::Incomplete),
        }
    }

    pub fn is_open(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000).expect("in range")
    }

    #[test]
    fn windows_are_checked() {
        let now = at(100);
        assert_eq!(Window::new(None, None, now), Ok(None));
        assert_eq!(
            Window::new(Some(at(1)), None, now),
            Err(WindowError::Incomplete)
        );
        assert_eq!(
            Window::new(Some(at(200)), Some(at(150)), now),
            Err(WindowError::EndsBeforeStart)
        );
        assert_eq!(
            Window::new(Some(at(10)), Some(at(50)), now),
            Err(WindowError::EndsInPast)
        );
        let w = Window::new(Some(at(50)), Some(at(150)), now)
            .unwrap()
            .unwrap();
        assert!(w.is_open(now));
        assert!(!w.is_open(at(150)));
    }
}
