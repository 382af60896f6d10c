//! PostgreSQL: reading events, scoped to a workspace, in commit order.
//!
//! With several writers, numbers handed out at insert time (a sequence) do not follow commit
//! order: a reader could see event 11 committed while event 10 is still in flight, page past it,
//! and never see it. So an event's list position, `seq`, is given later: before listing, every
//! committed event without one is numbered, in insertion (`id`) order, by one lister at a time
//! (the `event_sequence` row lock). Whatever commits after that gets a higher `seq` than
//! anything already numbered, so a page read by `seq > cursor` never skips an event. Events of
//! one access code keep one order for every reader, whichever instance wrote them.

use async_trait::async_trait;
use keyway_model::Event;

use super::PgStore;
use crate::accounts::paginate;
use crate::events::{EventFilter, EventStore};
use crate::rows::EventRow;
use crate::{Page, Result};

const EVENT_COLUMNS: &str = "COALESCE(seq, 0) AS seq, event_id, workspace_id, event_type, \
    device_id, connected_account_id, access_code_id, code, created_at, occurred_at, payload";

#[async_trait]
impl EventStore for PgStore {
    async fn list_events(
        &self,
        workspace_id: &str,
        filter: EventFilter<'_>,
    ) -> Result<Page<Event>> {
        self.sequence_events().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND seq > $2
             AND ($3::text IS NULL OR device_id = $3)
             AND ($4::text[] IS NULL OR access_code_id = ANY($4))
             AND ($5::text[] IS NULL OR event_type = ANY($5))
             AND ($6::bigint IS NULL OR occurred_at >= $6)
             AND ($7::bigint IS NULL OR occurred_at <= $7)
             ORDER BY seq LIMIT $8"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(filter.after.unwrap_or(0))
            .bind(filter.device_id)
            .bind(filter.access_code_ids)
            .bind(filter.event_types)
            .bind(filter.since.map(|t| t.millis()))
            .bind(filter.until.map(|t| t.millis()))
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        paginate(rows, filter.limit, |r| r.seq, EventRow::into_model)
    }

    async fn get_event(&self, workspace_id: &str, event_id: &str) -> Result<Option<Event>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND event_id = $2");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(EventRow::into_model).transpose()
    }
}

impl PgStore {
    /// Numbers the committed events that have no `seq` yet, after all numbered ones.
    async fn sequence_events(&self) -> Result<()> {
        let waiting: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)")
                .fetch_one(&self.pool)
                .await?;
        if !waiting {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // One numberer at a time; the statements below see everything committed before it.
        let last: i64 =
            sqlx::query_scalar("SELECT last_seq FROM event_sequence WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let numbered = sqlx::query(
            "UPDATE events e SET seq = $1 + w.n FROM (
                SELECT id, row_number() OVER (ORDER BY id) AS n FROM events WHERE seq IS NULL
             ) w WHERE e.id = w.id",
        )
        .bind(last)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let numbered = i64::try_from(numbered).unwrap_or(i64::MAX);
        sqlx::query("UPDATE event_sequence SET last_seq = last_seq + $1 WHERE id = 1")
            .bind(numbered)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
