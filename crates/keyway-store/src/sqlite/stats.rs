use async_trait::async_trait;
use rusqlite::params;

use super::db::{column, row, scalar};
use super::SqliteStore;
use crate::stats::StatsStore;
use crate::Result;

#[async_trait]
impl StatsStore for SqliteStore {
    async fn count_access_codes(&self, status: Option<&str>) -> Result<i64> {
        let status = status.map(str::to_owned);
        self.db
            .read(move |c| {
                Ok(scalar(
                    c,
                    "SELECT COUNT(*) FROM access_codes
                     WHERE is_managed = 1 AND (?1 IS NULL OR status = ?1)",
                    params![status],
                )?
                .unwrap_or(0))
            })
            .await
    }

    async fn set_events_since(&self, after: i64) -> Result<(i64, i64)> {
        self.db
            .read(move |c| {
                let found: Option<(i64, i64)> = row(
                    c,
                    "SELECT COUNT(*), COALESCE(MAX(seq), ?1) FROM events
                     WHERE seq > ?1 AND event_type = 'access_code.set_on_device'",
                    params![after],
                )?;
                Ok(found.unwrap_or((0, after)))
            })
            .await
    }

    async fn window_open_lags_ms(&self) -> Result<Vec<i64>> {
        self.db
            .read(|c| {
                column(
                    c,
                    "SELECT e.occurred_at - a.starts_at FROM events e
                     JOIN access_codes a ON a.access_code_id = e.access_code_id
                     WHERE e.event_type = 'access_code.set_on_device' AND a.starts_at IS NOT NULL",
                    [],
                )
            })
            .await
    }
}
