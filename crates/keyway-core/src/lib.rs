//! Keyway's domain decisions, free of I/O.
//!
//! `policy` decides which PINs a lock accepts and generates new ones, `lifecycle` decides what
//! a code's next step on its lock is (from intent, time and what the lock holds), `retry` decides
//! when to try again and when to warn or give up. Nothing here knows HTTP, SQL or where time
//! comes from: callers pass `now`.
//!
//! `delivery` decides when a webhook delivery is tried again and when it has failed for good.

pub mod clock;
pub mod delivery;
pub mod lifecycle;
pub mod policy;
pub mod reconcile;
pub mod retry;
pub mod window;

pub use clock::{Clock, SystemClock};
