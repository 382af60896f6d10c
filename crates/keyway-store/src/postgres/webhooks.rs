//! The PostgreSQL side of webhooks and their transactional outbox (see [`crate::webhooks`]).
//!
//! Queuing a delivery also sends `NOTIFY keyway_outbox` in the same transaction: every instance
//! listens (see `PgStore::open`) and raises its outbox signal when such a transaction commits.
//! Claims lock their rows (`FOR UPDATE SKIP LOCKED`), so two instances never lease one delivery.

use std::sync::Arc;

use async_trait::async_trait;
use keyway_model::{
    EventType, Timestamp, Webhook, WebhookDelivery, WebhookDeliveryStatus, ALL_EVENT_TYPES,
};
use sqlx::{Postgres, Transaction};
use tokio::sync::Notify;

use super::PgStore;
use crate::rows::ts;
use crate::webhooks::{event_types_json, ClaimedRow, DeliveryRow, WebhookRow, WEBHOOK_COLUMNS};
use crate::webhooks::{
    AttemptOutcome, ClaimLimits, ClaimedDelivery, FinishedAttempt, NewWebhook, WebhookChanges,
    WebhookStore,
};
use crate::{new_id, Result, StoreError};

/// The channel on which queuing transactions notify the instances' senders.
pub(crate) const OUTBOX_CHANNEL: &str = "keyway_outbox";

impl PgStore {
    async fn find_webhook(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        pool: &sqlx::PgPool,
    ) -> Result<Option<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = $1 AND webhook_id = $2"
        );
        let row: Option<WebhookRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(webhook_id)
            .fetch_optional(pool)
            .await?;
        row.map(WebhookRow::into_model).transpose()
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(&self, new: NewWebhook<'_>, now: Timestamp) -> Result<Webhook> {
        let webhook_id = new_id();
        sqlx::query(
            "INSERT INTO webhooks (webhook_id, workspace_id, url, event_types, secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook_id)
        .bind(new.workspace_id)
        .bind(new.url)
        .bind(event_types_json(new.event_types)?)
        .bind(new.secret)
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        self.find_webhook(new.workspace_id, &webhook_id, &self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt("webhook vanished after insert".into()))
    }

    /// A webhook of the workspace, secret included.
    async fn get_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<Option<Webhook>> {
        self.find_webhook(workspace_id, webhook_id, &self.pool)
            .await
    }

    /// The workspace's webhooks, oldest first.
    async fn list_webhooks(&self, workspace_id: &str) -> Result<Vec<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = $1 ORDER BY seq");
        let rows: Vec<WebhookRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(WebhookRow::into_model).collect()
    }

    /// Changes a webhook of the workspace; `false` when there is no such webhook. Deliveries
    /// already queued keep going to the webhook; the new filter applies to later events.
    async fn update_webhook(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        changes: WebhookChanges<'_>,
    ) -> Result<bool> {
        let event_types = changes
            .event_types
            .map(|types| event_types_json(Some(types)))
            .transpose()?;
        let done = sqlx::query(
            "UPDATE webhooks SET url = COALESCE($1, url), event_types = COALESCE($2, event_types)
             WHERE workspace_id = $3 AND webhook_id = $4",
        )
        .bind(changes.url)
        .bind(event_types)
        .bind(workspace_id)
        .bind(webhook_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a webhook of the workspace and its deliveries (sent or not); `false` when there
    /// is no such webhook.
    async fn delete_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE workspace_id = $1 AND webhook_id = $2")
            .bind(workspace_id)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        // ON DELETE CASCADE does the same when foreign keys are on; say it anyway.
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The newest deliveries of a webhook of the workspace, newest first.
    async fn list_webhook_deliveries(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT d.message_id, d.webhook_id, d.event_id, e.event_type, d.status, d.attempts,
                d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at,
                d.created_at
             FROM webhook_deliveries d
             JOIN webhooks w ON w.webhook_id = d.webhook_id
             LEFT JOIN events e ON e.event_id = d.event_id
             WHERE w.workspace_id = $1 AND d.webhook_id = $2
             ORDER BY d.delivery_id DESC LIMIT $3",
        )
        .bind(workspace_id)
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(DeliveryRow::into_model).collect()
    }

    /// Records the `finished` attempts of `owner` (as `record_webhook_attempts`), then leases
    /// due deliveries to it until `lease_until`: for each webhook and order key only the oldest
    /// pending delivery, and never more per webhook than `limits` allow. One transaction.
    ///
    /// The outbox signal is raised after the queuing transaction committed (`NOTIFY`), so a
    /// claim that follows it sees the delivery. The heads are locked `FOR UPDATE SKIP LOCKED`:
    /// instances claiming at once split them instead of waiting. It looks at the 256 earliest claimable heads (of
    /// webhooks with a free slot) only: a webhook filled by this claim is left out of the next
    /// one, so the others come in turn, and the query stays cheap with a large backlog.
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        finished: &[FinishedAttempt],
        now: Timestamp,
        lease_until: Timestamp,
        limits: ClaimLimits<'_>,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut tx = self.pool.begin().await?;
        record_attempts(&mut tx, owner, finished).await?;
        if limits.total == 0 {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let free_slots: serde_json::Map<String, serde_json::Value> = limits
            .free_slots
            .iter()
            .map(|(id, free)| (id.clone(), serde_json::Value::from(*free)))
            .collect();
        let free_slots = serde_json::Value::Object(free_slots).to_string();
        let ids: Vec<i64> = sqlx::query_scalar(
            "WITH heads AS (
                SELECT d.delivery_id, d.webhook_id, d.next_attempt_at
                FROM webhook_deliveries d
                WHERE d.status = 'pending' AND d.next_attempt_at <= $1
                  AND (d.lease_until IS NULL OR d.lease_until <= $1)
                  AND d.webhook_id NOT IN (SELECT key FROM jsonb_each_text($2::jsonb)
                      WHERE value::bigint <= 0)
                  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                      WHERE p.status = 'pending' AND p.webhook_id = d.webhook_id
                        AND p.order_key = d.order_key AND p.delivery_id < d.delivery_id)
                ORDER BY d.next_attempt_at, d.delivery_id
                LIMIT 256
                FOR UPDATE OF d SKIP LOCKED
             ), ranked AS (
                SELECT delivery_id, next_attempt_at,
                    ROW_NUMBER() OVER (PARTITION BY webhook_id
                        ORDER BY next_attempt_at, delivery_id) AS position,
                    COALESCE((SELECT value::bigint FROM jsonb_each_text($2::jsonb)
                        WHERE key = heads.webhook_id), $3) AS free
                FROM heads
             )
             UPDATE webhook_deliveries SET lease_owner = $4, lease_until = $5
             WHERE delivery_id IN (SELECT delivery_id FROM ranked WHERE position <= free
                 ORDER BY next_attempt_at, delivery_id LIMIT $6)
               AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $1)
             RETURNING delivery_id",
        )
        .bind(now.millis())
        .bind(&free_slots)
        .bind(i64::from(limits.per_webhook))
        .bind(owner)
        .bind(lease_until.millis())
        .bind(i64::from(limits.total))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<ClaimedRow> = sqlx::query_as(
            "SELECT d.delivery_id, d.message_id, d.webhook_id, w.url, w.secret, d.attempts,
                COALESCE(e.seq, 0) AS seq, e.event_id, e.workspace_id, e.event_type, e.device_id,
                e.connected_account_id, e.access_code_id, e.code, e.created_at, e.occurred_at, e.payload
             FROM webhook_deliveries d
             JOIN webhooks w ON w.webhook_id = d.webhook_id
             JOIN events e ON e.event_id = d.event_id
             WHERE d.delivery_id = ANY($1)
             ORDER BY d.next_attempt_at, d.delivery_id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        if rows.len() < ids.len() {
            // The event is gone: nothing can ever be sent for these.
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = 'event not found',
                    lease_owner = NULL, lease_until = NULL
                 WHERE delivery_id = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM events e
                       WHERE e.event_id = webhook_deliveries.event_id)",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    delivery_id: row.delivery_id,
                    message_id: row.message_id,
                    webhook_id: row.webhook_id,
                    url: row.url,
                    secret: row.secret,
                    attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                    event: row.event.into_model()?,
                })
            })
            .collect()
    }

    /// Records finished attempts of deliveries this `owner` holds, in one transaction, and
    /// releases their leases. A delivery whose lease was lost to another sender (or whose
    /// webhook was deleted) is left alone.
    async fn record_webhook_attempts(
        &self,
        owner: &str,
        attempts: &[FinishedAttempt],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        record_attempts(&mut tx, owner, attempts).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether some pending delivery is due at `now` (it may miss a transaction that is
    /// committing right now).
    async fn webhook_delivery_due(&self, now: Timestamp) -> Result<bool> {
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= $1)",
        )
        .bind(now.millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    /// The earliest retry still to come (a pending delivery due after `now`). Deliveries that
    /// are due now but wait behind an earlier one of their order key become claimable when
    /// that one is recorded, not at a time of their own.
    async fn next_webhook_retry_after(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at > $1",
        )
        .bind(now.millis())
        .fetch_one(&self.pool)
        .await?;
        at.map(ts).transpose()
    }

    /// Raised whenever a delivery is queued in this process (inside the queuing transaction):
    /// the sender waits on it. A claim that follows runs after that transaction.
    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }
}

/// The attempts part of `record_webhook_attempts`, inside `tx`.
async fn record_attempts(
    tx: &mut Transaction<'_, Postgres>,
    owner: &str,
    attempts: &[FinishedAttempt],
) -> Result<()> {
    for (delivery_id, outcome, at) in attempts {
        let (status, status_code, error, retry_at) = match outcome {
            AttemptOutcome::Delivered { status_code } => (
                WebhookDeliveryStatus::Succeeded,
                Some(*status_code),
                None,
                None,
            ),
            AttemptOutcome::Failed {
                status_code,
                error,
                retry_at: Some(retry_at),
            } => (
                WebhookDeliveryStatus::Pending,
                *status_code,
                Some(error.as_str()),
                Some(retry_at.millis()),
            ),
            AttemptOutcome::Failed {
                status_code,
                error,
                retry_at: None,
            } => (
                WebhookDeliveryStatus::Failed,
                *status_code,
                Some(error.as_str()),
                None,
            ),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1,
                    last_status_code = $2, last_error = $3, last_attempt_at = $4,
                    next_attempt_at = COALESCE($5, next_attempt_at),
                    lease_owner = NULL, lease_until = NULL
                 WHERE delivery_id = $6 AND lease_owner = $7 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(status_code.map(i64::from))
        .bind(error)
        .bind(at.millis())
        .bind(retry_at)
        .bind(delivery_id)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Queues the event for every webhook of its workspace whose filter lets it through. Runs in
/// the event's transaction.
pub(crate) async fn enqueue_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    event_id: &str,
    workspace_id: &str,
    event_type: EventType,
    order_key: &str,
    now: Timestamp,
) -> Result<()> {
    let queued = sqlx::query(
        "INSERT INTO webhook_deliveries (message_id, webhook_id, event_id, order_key,
            next_attempt_at, created_at)
         SELECT 'msg_' || md5(random()::text || clock_timestamp()::text || webhook_id),
            webhook_id, $1, $2, $3, $3
         FROM webhooks
         WHERE workspace_id = $4 AND EXISTS (
             SELECT 1 FROM jsonb_array_elements_text(webhooks.event_types::jsonb) AS t (value)
             WHERE t.value = $5 OR t.value = $6)
         ORDER BY seq",
    )
    .bind(event_id)
    .bind(order_key)
    .bind(now.millis())
    .bind(workspace_id)
    .bind(ALL_EVENT_TYPES)
    .bind(event_type.as_str())
    .execute(&mut **tx)
    .await?;
    if queued.rows_affected() > 0 {
        // Delivered to every listening instance when this transaction commits.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
