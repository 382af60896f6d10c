//! Read-only figures about the store, for operators and the benchmark harness.

use async_trait::async_trait;

use crate::Result;

#[async_trait]
pub trait StatsStore: Send + Sync {
    /// How many managed codes there are, or how many have `status`.
    async fn count_access_codes(&self, status: Option<&str>) -> Result<i64>;

    /// `access_code.set_on_device` events after the one numbered `after` (0 for all): how many,
    /// and the number of the last (`after` if none). Reads only the new events, where counting
    /// codes by status reads every code. Events are numbered in insertion order: on PostgreSQL
    /// one that commits after a later-numbered one was counted is missed, so a count from here
    /// is a lower bound, to confirm with [`StatsStore::count_access_codes`].
    async fn set_events_since(&self, after: i64) -> Result<(i64, i64)>;

    /// For each time-bound code set on its lock: milliseconds from `starts_at` to the
    /// `access_code.set_on_device` event.
    async fn window_open_lags_ms(&self) -> Result<Vec<i64>>;
}
