//! The SQLite side of webhooks and their transactional outbox (see [`crate::webhooks`]).

use std::sync::Arc;

use async_trait::async_trait;
use keyway_model::{Timestamp, Webhook, WebhookDelivery, WebhookDeliveryStatus};
use rusqlite::{params, Connection};
use tokio::sync::Notify;

use super::db::{column, exec, row, rows, scalar};
use super::SqliteStore;
use crate::rows::ts;
use crate::webhooks::{event_types_json, ClaimedRow, DeliveryRow, WebhookRow, WEBHOOK_COLUMNS};
use crate::webhooks::{
    AttemptOutcome, ClaimLimits, ClaimedDelivery, FinishedAttempt, NewWebhook, WebhookChanges,
    WebhookStore,
};
use crate::{new_id, Result, StoreError};

/// A webhook of the workspace, if any.
fn find_webhook(
    c: &Connection,
    workspace_id: &str,
    webhook_id: &str,
) -> Result<Option<WebhookRow>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = ? AND webhook_id = ?");
    row(c, &sql, params![workspace_id, webhook_id])
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, new: NewWebhook<'_>, now: Timestamp) -> Result<Webhook> {
        let webhook_id = new_id();
        let event_types = event_types_json(new.event_types)?;
        let (workspace_id, url, secret) = (
            new.workspace_id.to_owned(),
            new.url.to_owned(),
            new.secret.to_owned(),
        );
        let row = self
            .db
            .write(move |c| {
                exec(
                    c,
                    "INSERT INTO webhooks (webhook_id, workspace_id, url, event_types, secret,
                        created_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                    params![
                        webhook_id,
                        workspace_id,
                        url,
                        event_types,
                        secret,
                        now.millis()
                    ],
                )?;
                find_webhook(c, &workspace_id, &webhook_id)
            })
            .await?;
        row.ok_or_else(|| StoreError::Corrupt("webhook vanished after insert".into()))?
            .into_model()
    }

    /// A webhook of the workspace, secret included.
    async fn get_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<Option<Webhook>> {
        let (workspace_id, webhook_id) = (workspace_id.to_owned(), webhook_id.to_owned());
        let row = self
            .db
            .read(move |c| find_webhook(c, &workspace_id, &webhook_id))
            .await?;
        row.map(WebhookRow::into_model).transpose()
    }

    /// The workspace's webhooks, oldest first.
    async fn list_webhooks(&self, workspace_id: &str) -> Result<Vec<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = ? ORDER BY seq");
        let workspace_id = workspace_id.to_owned();
        let rows: Vec<WebhookRow> = self
            .db
            .read(move |c| rows(c, &sql, params![workspace_id]))
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
        let url = changes.url.map(str::to_owned);
        let (workspace_id, webhook_id) = (workspace_id.to_owned(), webhook_id.to_owned());
        let changed = self
            .db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE webhooks SET url = COALESCE(?, url),
                        event_types = COALESCE(?, event_types)
                     WHERE workspace_id = ? AND webhook_id = ?",
                    params![url, event_types, workspace_id, webhook_id],
                )
            })
            .await?;
        Ok(changed > 0)
    }

    /// Deletes a webhook of the workspace and its deliveries (sent or not); `false` when there
    /// is no such webhook.
    async fn delete_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<bool> {
        let (workspace_id, webhook_id) = (workspace_id.to_owned(), webhook_id.to_owned());
        let deleted = self
            .db
            .write(move |c| {
                let deleted = exec(
                    c,
                    "DELETE FROM webhooks WHERE workspace_id = ? AND webhook_id = ?",
                    params![workspace_id, webhook_id],
                )?;
                // ON DELETE CASCADE does the same when foreign keys are on; say it anyway.
                exec(
                    c,
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ?",
                    params![webhook_id],
                )?;
                Ok(deleted)
            })
            .await?;
        Ok(deleted > 0)
    }

    /// The newest deliveries of a webhook of the workspace, newest first.
    async fn list_webhook_deliveries(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let (workspace_id, webhook_id) = (workspace_id.to_owned(), webhook_id.to_owned());
        let rows: Vec<DeliveryRow> = self
            .db
            .read(move |c| {
                rows(
                    c,
                    "SELECT d.message_id, d.webhook_id, d.event_id, e.event_type, d.status,
                        d.attempts, d.last_status_code, d.last_error, d.last_attempt_at,
                        d.next_attempt_at, d.created_at
                     FROM webhook_deliveries d
                     JOIN webhooks w ON w.webhook_id = d.webhook_id
                     LEFT JOIN events e ON e.event_id = d.event_id
                     WHERE w.workspace_id = ? AND d.webhook_id = ?
                     ORDER BY d.delivery_id DESC LIMIT ?",
                    params![workspace_id, webhook_id, i64::from(limit)],
                )
            })
            .await?;
        rows.into_iter().map(DeliveryRow::into_model).collect()
    }

    /// Records the `finished` attempts of `owner` (as `record_webhook_attempts`), then leases
    /// due deliveries to it until `lease_until`: for each webhook and order key only the oldest
    /// pending delivery, and never more per webhook than `limits` allow. One transaction.
    ///
    /// Runs on the writer connection, so it sees every transaction that raised the outbox
    /// signal (`outbox_signal`) before it. It looks at the 256 earliest claimable heads (of
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
        let finished = attempt_updates(finished);
        let owner = owner.to_owned();
        let (total, per_webhook) = (limits.total, limits.per_webhook);
        let free_slots: serde_json::Map<String, serde_json::Value> = limits
            .free_slots
            .iter()
            .map(|(id, free)| (id.clone(), serde_json::Value::from(*free)))
            .collect();
        let free_slots = serde_json::Value::Object(free_slots).to_string();
        let rows: Vec<ClaimedRow> = self
            .db
            .write(move |c| {
                record_attempts(c, &owner, &finished)?;
                if total == 0 {
                    return Ok(Vec::new());
                }
                claim(c, &owner, &free_slots, now, lease_until, per_webhook, total)
            })
            .await?;
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
        let attempts = attempt_updates(attempts);
        let owner = owner.to_owned();
        self.db
            .write(move |c| record_attempts(c, &owner, &attempts))
            .await
    }

    /// Whether some pending delivery is due at `now` (read from the reader pool: it may miss
    /// a transaction that is committing right now).
    async fn webhook_delivery_due(&self, now: Timestamp) -> Result<bool> {
        let due: Option<i64> = self
            .db
            .read(move |c| {
                scalar(
                    c,
                    "SELECT 1 FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
                    params![now.millis()],
                )
            })
            .await?;
        Ok(due.is_some())
    }

    /// The earliest retry still to come (a pending delivery due after `now`). Deliveries that
    /// are due now but wait behind an earlier one of their order key become claimable when
    /// that one is recorded, not at a time of their own.
    async fn next_webhook_retry_after(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        // MIN() always answers one row, NULL when nothing is pending.
        let at: Option<Option<i64>> = self
            .db
            .read(move |c| {
                scalar(
                    c,
                    "SELECT MIN(next_attempt_at) FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_at > ?",
                    params![now.millis()],
                )
            })
            .await?;
        at.flatten().map(ts).transpose()
    }

    /// Raised after a transaction that queued a delivery in this process has committed (the
    /// writer's update hook, see `Db::open`): the sender waits on it. A claim that follows runs
    /// after that transaction.
    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }
}

/// Leases the due heads to `owner` (the claim part of `claim_webhook_deliveries`) and reads
/// what the sender needs of them, in the caller's transaction.
fn claim(
    c: &Connection,
    owner: &str,
    free_slots: &str,
    now: Timestamp,
    lease_until: Timestamp,
    per_webhook: u32,
    total: u32,
) -> Result<Vec<ClaimedRow>> {
    let ids: Vec<i64> = column(
        c,
        "WITH heads AS (
            SELECT d.delivery_id, d.webhook_id, d.next_attempt_at
            FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
              AND (d.lease_until IS NULL OR d.lease_until <= ?1)
              AND d.webhook_id NOT IN (SELECT key FROM json_each(?2) WHERE value <= 0)
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                  WHERE p.status = 'pending' AND p.webhook_id = d.webhook_id
                    AND p.order_key = d.order_key AND p.delivery_id < d.delivery_id)
            ORDER BY d.next_attempt_at, d.delivery_id
            LIMIT 256
         ), ranked AS (
            SELECT delivery_id, next_attempt_at,
                ROW_NUMBER() OVER (PARTITION BY webhook_id
                    ORDER BY next_attempt_at, delivery_id) AS position,
                COALESCE((SELECT value FROM json_each(?2) WHERE key = heads.webhook_id), ?3)
                    AS free
            FROM heads
         )
         UPDATE webhook_deliveries SET lease_owner = ?4, lease_until = ?5
         WHERE delivery_id IN (SELECT delivery_id FROM ranked WHERE position <= free
             ORDER BY next_attempt_at, delivery_id LIMIT ?6)
         RETURNING delivery_id",
        params![
            now.millis(),
            free_slots,
            i64::from(per_webhook),
            owner,
            lease_until.millis(),
            i64::from(total)
        ],
    )?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids_json = serde_json::to_string(&ids)
        .map_err(|e| StoreError::Corrupt(format!("delivery ids: {e}")))?;
    let claimed: Vec<ClaimedRow> = rows(
        c,
        "SELECT d.delivery_id, d.message_id, d.webhook_id, w.url, w.secret, d.attempts,
            e.seq, e.event_id, e.workspace_id, e.event_type, e.device_id,
            e.connected_account_id, e.access_code_id, e.code, e.created_at, e.occurred_at, e.payload
         FROM webhook_deliveries d
         JOIN webhooks w ON w.webhook_id = d.webhook_id
         JOIN events e ON e.event_id = d.event_id
         WHERE d.delivery_id IN (SELECT value FROM json_each(?))
         ORDER BY d.next_attempt_at, d.delivery_id",
        params![ids_json],
    )?;
    if claimed.len() < ids.len() {
        // The event is gone: nothing can ever be sent for these.
        exec(
            c,
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'event not found',
                lease_owner = NULL, lease_until = NULL
             WHERE delivery_id IN (SELECT value FROM json_each(?))
               AND event_id NOT IN (SELECT event_id FROM events)",
            params![ids_json],
        )?;
    }
    Ok(claimed)
}

/// One finished attempt as `record_attempts` writes it: delivery, status, status code, error,
/// when it ended, when to retry.
type AttemptUpdate = (
    i64,
    &'static str,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

/// The finished attempts as owned values the writer's closure can take.
fn attempt_updates(attempts: &[FinishedAttempt]) -> Vec<AttemptUpdate> {
    attempts
        .iter()
        .map(|(delivery_id, outcome, at)| {
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
                    Some(error.clone()),
                    Some(retry_at.millis()),
                ),
                AttemptOutcome::Failed {
                    status_code,
                    error,
                    retry_at: None,
                } => (
                    WebhookDeliveryStatus::Failed,
                    *status_code,
                    Some(error.clone()),
                    None,
                ),
            };
            (
                *delivery_id,
                status.as_str(),
                status_code.map(i64::from),
                error,
                at.millis(),
                retry_at,
            )
        })
        .collect()
}

/// The attempts part of `record_webhook_attempts`, in the caller's transaction.
fn record_attempts(c: &Connection, owner: &str, attempts: &[AttemptUpdate]) -> Result<()> {
    for (delivery_id, status, status_code, error, at, retry_at) in attempts {
        exec(
            c,
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,
                    last_status_code = ?, last_error = ?, last_attempt_at = ?,
                    next_attempt_at = COALESCE(?, next_attempt_at),
                    lease_owner = NULL, lease_until = NULL
                 WHERE delivery_id = ? AND lease_owner = ? AND status = 'pending'",
            params![status, status_code, error, at, retry_at, delivery_id, owner],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keyway_model::EventType;

    use super::super::testing::{self, at};
    use super::*;
    use crate::{Store, SEED};

    async fn seeded() -> (tempfile::TempDir, Store) {
        let (dir, store, _) = testing::seeded().await;
        (dir, store)
    }

    async fn create_code(store: &Store, pin: &str, now: Timestamp) -> String {
        let device = store
            .get_device(SEED.seed_workspace_1, Some(SEED.august_device_1), None)
            .await
            .expect("query")
            .expect("seeded device");
        let (code, _) = store
            .create_access_code(testing::ongoing(&device, pin, now), now)
            .await
            .expect("created");
        code.access_code_id
    }

    fn limits(total: u32, per_webhook: u32) -> ClaimLimits<'static> {
        ClaimLimits {
            total,
            per_webhook,
            free_slots: &[],
        }
    }

    #[tokio::test]
    async fn deliveries_are_queued_with_the_event_and_claimed_in_order_per_code() {
        let (_dir, store) = seeded().await;
        let webhook = store
            .create_webhook(
                NewWebhook {
                    workspace_id: SEED.seed_workspace_1,
                    url: "http://127.0.0.1:9/",
                    event_types: None,
                    secret: "whsec_AAAA",
                },
                at(0),
            )
            .await
            .expect("webhook");
        let filtered = store
            .create_webhook(
                NewWebhook {
                    workspace_id: SEED.seed_workspace_1,
                    url: "http://127.0.0.1:9/",
                    event_types: Some(&["access_code.deleted".to_owned()]),
                    secret: "whsec_AAAA",
                },
                at(0),
            )
            .await
            .expect("webhook");
        let first = create_code(&store, "1111", at(1)).await;
        let second = create_code(&store, "2222", at(2)).await;
        // A change of the first code queues a second delivery behind its creation.
        let device = store
            .get_device(SEED.seed_workspace_1, Some(SEED.august_device_1), None)
            .await
            .expect("query")
            .expect("device");
        store
            .delete_access_code(&device, &first, at(3))
            .await
            .expect("deleted");
        store
            .record_outcomes(
                &device,
                vec![crate::OutcomeRecord::new(
                    first.clone(),
                    crate::CodeOutcome::Gone { was_on_lock: false },
                    None,
                )],
                at(3),
            )
            .await
            .expect("gone");

        // One head per code: the creations of both codes, not the deletion.
        let claimed = store
            .claim_webhook_deliveries("a", &[], at(10), at(10_000), limits(10, 10))
            .await
            .expect("claim");
        let heads = |claimed: &[ClaimedDelivery], webhook_id: &str| -> Vec<(String, EventType)> {
            claimed
                .iter()
                .filter(|d| d.webhook_id == webhook_id)
                .map(|d| {
                    (
                        d.event.access_code_id.clone().unwrap_or_default(),
                        d.event.event_type,
                    )
                })
                .collect()
        };
        assert_eq!(
            heads(&claimed, &webhook.webhook_id),
            vec![
                (first.clone(), EventType::AccessCodeCreated),
                (second.clone(), EventType::AccessCodeCreated),
            ]
        );
        // The filtered webhook has a chain of its own: the deletion only.
        assert_eq!(
            heads(&claimed, &filtered.webhook_id),
            vec![(first.clone(), EventType::AccessCodeDeleted)]
        );
        let claimed: Vec<ClaimedDelivery> = claimed
            .into_iter()
            .filter(|d| d.webhook_id == webhook.webhook_id)
            .collect();
        // Leased: nobody else gets them, and the deletion still waits.
        let again = store
            .claim_webhook_deliveries("b", &[], at(11), at(10_000), limits(10, 10))
            .await
            .expect("claim");
        assert!(again.is_empty());

        // A failure with a retry keeps the chain blocked until the retry succeeds.
        let creation = &claimed[0];
        let failed = AttemptOutcome::Failed {
            status_code: Some(500),
            error: "boom".into(),
            retry_at: Some(at(100)),
        };
        store
            .record_webhook_attempts("a", &[(creation.delivery_id, failed, at(12))])
            .await
            .expect("recorded");
        let none = store
            .claim_webhook_deliveries("a", &[], at(50), at(10_000), limits(10, 10))
            .await
            .expect("claim");
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(
            store.next_webhook_retry_after(at(50)).await.expect("query"),
            Some(at(100))
        );
        let retried = store
            .claim_webhook_deliveries("a", &[], at(100), at(10_000), limits(10, 10))
            .await
            .expect("claim");
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].attempts, 1);
        assert_eq!(retried[0].message_id, creation.message_id);
        let delivered = AttemptOutcome::Delivered { status_code: 204 };
        store
            .record_webhook_attempts("a", &[(retried[0].delivery_id, delivered, at(101))])
            .await
            .expect("recorded");
        let next = store
            .claim_webhook_deliveries("a", &[], at(102), at(10_000), limits(10, 10))
            .await
            .expect("claim");
        let types: Vec<_> = next.iter().map(|d| d.event.event_type).collect();
        assert_eq!(types, vec![EventType::AccessCodeDeleted]);

        // The filtered webhook got the deletion only.
        let filtered_deliveries = store
            .list_webhook_deliveries(SEED.seed_workspace_1, &filtered.webhook_id, 10)
            .await
            .expect("list");
        assert_eq!(filtered_deliveries.len(), 1);
        assert_eq!(filtered_deliveries[0].event_type, "access_code.deleted");
        let history = store
            .list_webhook_deliveries(SEED.seed_workspace_1, &webhook.webhook_id, 10)
            .await
            .expect("list");
        let first_creation = history
            .iter()
            .find(|d| d.message_id == creation.message_id)
            .expect("listed");
        assert_eq!(first_creation.status, WebhookDeliveryStatus::Succeeded);
        assert_eq!(first_creation.attempts, 2);
        assert_eq!(first_creation.last_status_code, Some(204));
        // Another workspace sees none of it.
        assert!(store
            .list_webhook_deliveries(SEED.seed_workspace_2, &webhook.webhook_id, 10)
            .await
            .expect("list")
            .is_empty());
    }

    #[tokio::test]
    async fn a_webhook_never_gets_more_than_its_share_of_slots() {
        let (_dir, store) = seeded().await;
        for _ in 0..2 {
            store
                .create_webhook(
                    NewWebhook {
                        workspace_id: SEED.seed_workspace_1,
                        url: "http://127.0.0.1:9/",
                        event_types: None,
                        secret: "whsec_AAAA",
                    },
                    at(0),
                )
                .await
                .expect("webhook");
        }
        for n in 0..5 {
            create_code(&store, &format!("300{n}"), at(n)).await;
        }
        let claimed = store
            .claim_webhook_deliveries("a", &[], at(10), at(10_000), limits(100, 2))
            .await
            .expect("claim");
        let mut per_webhook: HashMap<String, usize> = HashMap::new();
        for delivery in &claimed {
            *per_webhook.entry(delivery.webhook_id.clone()).or_default() += 1;
        }
        assert_eq!(per_webhook.len(), 2);
        assert!(per_webhook.values().all(|n| *n == 2), "{per_webhook:?}");
        // With those in flight, one webhook full and the other with one slot left:
        let ids: Vec<String> = per_webhook.keys().cloned().collect();
        let free = [(ids[0].clone(), 0), (ids[1].clone(), 1)];
        let more = store
            .claim_webhook_deliveries(
                "a",
                &[],
                at(11),
                at(10_000),
                ClaimLimits {
                    total: 100,
                    per_webhook: 2,
                    free_slots: &free,
                },
            )
            .await
            .expect("claim");
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].webhook_id, ids[1]);
    }

    use std::collections::HashMap;
}
