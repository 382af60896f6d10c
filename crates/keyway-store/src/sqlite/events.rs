//! SQLite: reading events, scoped to a workspace. One writer numbers them in commit order.

use async_trait::async_trait;
use keyway_model::Event;

use rusqlite::params;

use super::db::{row, rows};
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
            "SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ?1
             AND (?2 IS NULL OR device_id = ?2)
             AND (?3 IS NULL OR access_code_id IN (SELECT value FROM json_each(?3)))
             AND (?4 IS NULL OR event_type IN (SELECT value FROM json_each(?4)))
             AND (?5 IS NULL OR occurred_at >= ?5) AND (?6 IS NULL OR occurred_at <= ?6)
             AND seq > ?7 ORDER BY seq LIMIT ?8"
        );
        let since = filter.since.map(|t| t.millis());
        let until = filter.until.map(|t| t.millis());
        let (workspace_id, device_id) =
            (workspace_id.to_owned(), filter.device_id.map(str::to_owned));
        let (after, limit) = (filter.after.unwrap_or(0), i64::from(filter.limit) + 1);
        let rows: Vec<EventRow> = self
            .db
            .read(move |c| {
                rows(
                    c,
                    &sql,
                    params![
                        workspace_id,
                        device_id,
                        codes,
                        types,
                        since,
                        until,
                        after,
                        limit
                    ],
                )
            })
            .await?;
        paginate(rows, filter.limit, |r| r.seq, EventRow::into_model)
    }

    async fn get_event(&self, workspace_id: &str, event_id: &str) -> Result<Option<Event>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND event_id = ?");
        let (workspace_id, event_id) = (workspace_id.to_owned(), event_id.to_owned());
        let row: Option<EventRow> = self
            .db
            .read(move |c| row(c, &sql, params![workspace_id, event_id]))
            .await?;
        row.map(EventRow::into_model).transpose()
    }
}
