use async_trait::async_trait;

use super::PgStore;
use crate::stats::StatsStore;
use crate::Result;

#[async_trait]
impl StatsStore for PgStore {
    async fn count_access_codes(&self, status: Option<&str>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_codes WHERE is_managed AND ($1::text IS NULL OR status = $1)",
        )
        .bind(status)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn set_events_since(&self, after: i64) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MAX(id), $1) FROM events
             WHERE id > $1 AND event_type = 'access_code.set_on_device'",
        )
        .bind(after)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn window_open_lags_ms(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT e.occurred_at - a.starts_at FROM events e
             JOIN access_codes a ON a.access_code_id = e.access_code_id
             WHERE e.event_type = 'access_code.set_on_device' AND a.starts_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
