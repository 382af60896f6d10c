//! Webhooks: where a workspace's events are sent, and the state of each delivery.
//!
//! `Webhook` is Seam's `webhook` object. `WebhookDelivery` is Keyway's own (Seam has no
//! equivalent): one event on its way to one webhook. Neither type ever prints its secret.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The event-type filter that lets every event through.
pub const ALL_EVENT_TYPES: &str = "*";

/// A URL that receives a workspace's events, signed with `secret` (`whsec_…`, the Svix scheme).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: String,
    pub url: String,
    /// The event types sent to this URL; `["*"]` for all.
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryStatus {
    /// Not yet accepted by the receiver; another attempt is due at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt failed; no more will be made.
    Failed,
}

impl WebhookDeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => "pending",
            WebhookDeliveryStatus::Succeeded => "succeeded",
            WebhookDeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            WebhookDeliveryStatus::Pending,
            WebhookDeliveryStatus::Succeeded,
            WebhookDeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One event on its way to one webhook (`/webhooks/deliveries/list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The `webhook-id` header of every attempt: one per message, the same across retries.
    pub message_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: WebhookDeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// HTTP status of the last answer, if the receiver answered at all.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed (non-2xx, timeout, connection error).
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}
