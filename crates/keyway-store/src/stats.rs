//! Read-only figures about the store, for operators and the benchmark harness.

use async_trait::async_trait;

use crate::Result;

#[async_trait]
pub trait StatsStore: Send + Sync {
    /// How many managed codes there are, or how many have `status`.
    async fn count_access_codes(&self, status: Option<&str>) -> Result<i64>;

    /// For each time-bound code set on its lock: milliseconds from `starts_at` to the
    /// `access_code.set_on_device` event.
    async fn window_open_lags_ms(&self) -> Result<Vec<i64>>;
}
