//! Webhooks and their transactional outbox.
//!
//! `enqueue_deliveries` runs inside the transaction that writes an event and adds one
//! `webhook_deliveries` row per matching webhook of the event's workspace, so an event that
//! committed is never lost to a crash before it was sent. Senders claim due deliveries with a
//! lease (any instance may die mid-send; the lease expires and the delivery is claimed again),
//! and record each attempt. Deliveries of one webhook that share an order key (the access code,
//! else the device) are claimed one at a time, oldest first.
//!
//! Each backend implements it in its `webhooks.rs`.
//!
//! This module stores and hands out; it decides nothing about URLs, signatures or retry delays.

use std::sync::Arc;

use async_trait::async_trait;
use keyway_model::{
    Event, Timestamp, Webhook, WebhookDelivery, WebhookDeliveryStatus, ALL_EVENT_TYPES,
};
use tokio::sync::Notify;

use crate::rows::{opt_ts, ts, EventRow};
use crate::{Result, StoreError};

/// A webhook to record. The caller has validated the URL and the event types.
pub struct NewWebhook<'a> {
    pub workspace_id: &'a str,
    pub url: &'a str,
    /// `None` (or `["*"]`) for every event type.
    pub event_types: Option<&'a [String]>,
    pub secret: &'a str,
}

/// What `/webhooks/update` changes; `None` keeps the current value.
#[derive(Default)]
pub struct WebhookChanges<'a> {
    pub url: Option<&'a str>,
    pub event_types: Option<&'a [String]>,
}

/// A delivery a sender has claimed: everything it needs to send it once.
#[derive(Clone)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    pub message_id: String,
    pub webhook_id: String,
    pub url: String,
    /// The webhook's secret (`whsec_…`). Never printed: `Debug` redacts it.
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub event: Event,
}

impl std::fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("delivery_id", &self.delivery_id)
            .field("message_id", &self.message_id)
            .field("webhook_id", &self.webhook_id)
            .field("attempts", &self.attempts)
            .field("event_id", &self.event.event_id)
            .finish_non_exhaustive()
    }
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered { status_code: u16 },
    /// Non-2xx, timeout or connection error; try again at `retry_at`, or never (`None`).
    Failed {
        status_code: Option<u16>,
        error: String,
        retry_at: Option<Timestamp>,
    },
}

/// A finished attempt: the delivery, its outcome, and when the attempt ended.
pub type FinishedAttempt = (i64, AttemptOutcome, Timestamp);

/// How many deliveries a sender may start now, in all and per webhook.
pub struct ClaimLimits<'a> {
    pub total: u32,
    /// Deliveries one webhook may have in flight from this sender.
    pub per_webhook: u32,
    /// Webhooks that already have deliveries in flight here, and how many more each may take.
    pub free_slots: &'a [(String, u32)],
}

/// Webhooks, their deliveries and the outbox sender's claims.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_webhook(&self, new: NewWebhook<'_>, now: Timestamp) -> Result<Webhook>;

    /// A webhook of the workspace, secret included.
    async fn get_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<Option<Webhook>>;

    /// The workspace's webhooks, oldest first.
    async fn list_webhooks(&self, workspace_id: &str) -> Result<Vec<Webhook>>;

    /// Changes a webhook of the workspace; `false` when there is no such webhook. Deliveries
    /// already queued keep going to the webhook; the new filter applies to later events.
    async fn update_webhook(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        changes: WebhookChanges<'_>,
    ) -> Result<bool>;

    /// Deletes a webhook of the workspace and its deliveries (sent or not); `false` when there
    /// is no such webhook.
    async fn delete_webhook(&self, workspace_id: &str, webhook_id: &str) -> Result<bool>;

    /// The newest deliveries of a webhook of the workspace, newest first.
    async fn list_webhook_deliveries(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>>;

    /// Records the `finished` attempts of `owner` (as `record_webhook_attempts`), then leases
    /// due deliveries to it until `lease_until`: for each webhook and order key only the oldest
    /// pending delivery, and never more per webhook than `limits` allow. One transaction.
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        finished: &[FinishedAttempt],
        now: Timestamp,
        lease_until: Timestamp,
        limits: ClaimLimits<'_>,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Records finished attempts of deliveries this `owner` holds, in one transaction, and
    /// releases their leases.
    async fn record_webhook_attempts(
        &self,
        owner: &str,
        attempts: &[FinishedAttempt],
    ) -> Result<()>;

    /// Whether some pending delivery is due at `now`.
    async fn webhook_delivery_due(&self, now: Timestamp) -> Result<bool>;

    /// The earliest retry still to come (a pending delivery due after `now`).
    async fn next_webhook_retry_after(&self, now: Timestamp) -> Result<Option<Timestamp>>;

    /// Raised whenever a delivery is queued in this process: the sender waits on it.
    fn outbox_signal(&self) -> Arc<Notify>;
}

// Rows as both backends read them.

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct WebhookRow {
    pub(crate) webhook_id: String,
    pub(crate) url: String,
    pub(crate) event_types: String,
    pub(crate) secret: String,
}

impl WebhookRow {
    pub(crate) fn into_model(self) -> Result<Webhook> {
        let event_types: Vec<String> = serde_json::from_str(&self.event_types)
            .map_err(|e| StoreError::Corrupt(format!("webhook event types: {e}")))?;
        Ok(Webhook {
            webhook_id: self.webhook_id,
            url: self.url,
            event_types,
            secret: Some(self.secret),
        })
    }
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct DeliveryRow {
    pub(crate) message_id: String,
    pub(crate) webhook_id: String,
    pub(crate) event_id: String,
    pub(crate) event_type: Option<String>,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) last_status_code: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_attempt_at: Option<i64>,
    pub(crate) next_attempt_at: i64,
    pub(crate) created_at: i64,
}

impl DeliveryRow {
    pub(crate) fn into_model(self) -> Result<WebhookDelivery> {
        let status = WebhookDeliveryStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {}", self.status)))?;
        Ok(WebhookDelivery {
            message_id: self.message_id,
            webhook_id: self.webhook_id,
            event_id: self.event_id,
            event_type: self.event_type.unwrap_or_default(),
            status,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            last_status_code: self.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: self.last_error,
            last_attempt_at: opt_ts(self.last_attempt_at)?,
            next_attempt_at: match status {
                WebhookDeliveryStatus::Pending => Some(ts(self.next_attempt_at)?),
                _ => None,
            },
            created_at: ts(self.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ClaimedRow {
    pub(crate) delivery_id: i64,
    pub(crate) message_id: String,
    pub(crate) webhook_id: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) attempts: i64,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub(crate) event: EventRow,
}

pub(crate) const WEBHOOK_COLUMNS: &str = "webhook_id, url, event_types, secret";

pub(crate) fn event_types_json(event_types: Option<&[String]>) -> Result<String> {
    let all = [ALL_EVENT_TYPES.to_owned()];
    serde_json::to_string(event_types.unwrap_or(&all))
        .map_err(|e| StoreError::Corrupt(format!("event types: {e}")))
}
