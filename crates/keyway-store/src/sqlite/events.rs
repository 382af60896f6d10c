//! SQLite: reading events, scoped to a workspace. One writer numbers them in commit order.

use async_trait::async_trait;
use keyway_model::Event;

use super::SqliteStore;
use crate::accounts::paginate;
use crate::events::{EventFilter, EventStore};
use crate::rows::EventRow;
use crate::{Page, Result};

const EVENT_COLUMNS: &str = "seq, event_id, workspace_id, event_type, device_id, \
    connected_account_id, access_code_id, code, created_at, occurred_at, payload";

#[async_trait]
impl EventStore for SqliteStore {
    async fn list_events(
        &self,
        workspace_id: &str,
        filter: EventFilter<'_>,
    ) -> Result<Page<Event>> {
        let as_json = |values: Option<&[String]>| {
            values.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "[]".into()))
        };
        let codes = as_json(filter.access_code_ids);
        let types = as_json(filter.event_types);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ?
             AND (? IS NULL OR device_id = ?)
             AND (? IS NULL OR access_code_id IN (SELECT value FROM json_each(?)))
             AND (? IS NULL OR event_type IN (SELECT value FROM json_each(?)))
             AND (? IS NULL OR occurred_at >= ?) AND (? IS NULL OR occurred_at <= ?)
             AND seq > ? ORDER BY seq LIMIT ?"
        );
        let since = filter.since.map(|t| t.millis());
        let until = filter.until.map(|t| t.millis());
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(filter.device_id)
            .bind(filter.device_id)
            .bind(&codes)
            .bind(&codes)
            .bind(&types)
            .bind(&types)
            .bind(since)
            .bind(since)
            .bind(until)
            .bind(until)
            .bind(filter.after.unwrap_or(0))
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        paginate(rows, filter.limit, |r| r.seq, EventRow::into_model)
    }

    async fn get_event(&self, workspace_id: &str, event_id: &str) -> Result<Option<Event>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND event_id = ?");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(event_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(EventRow::into_model).transpose()
    }
}
