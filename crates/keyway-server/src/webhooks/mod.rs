//! Webhooks going out: what a webhook URL and filter may be, how messages are signed, and the
//! sender that delivers the store's outbox.
//!
//! Events reach the outbox in the store, in the transaction that commits them; this module only
//! reads it. The sender runs beside the engine and never blocks it: each delivery is its own
//! task, bounded in all and per webhook, with a request timeout. Secrets are never logged.

mod sender;
mod signature;

use std::time::Duration;

use keyway_core::delivery::DeliveryPolicy;
use keyway_model::ALL_EVENT_TYPES;

pub use sender::WebhookSender;
pub use signature::{InvalidSecret, WebhookSecret};

/// Tunables of the webhook sender.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Longest wait for a receiver's answer (connect, send, answer), per attempt.
    pub timeout: Duration,
    /// Retry delays and the number of attempts before a delivery fails for good.
    pub policy: DeliveryPolicy,
    /// Deliveries in flight at once, all webhooks together.
    pub concurrency: usize,
    /// Deliveries in flight at once to one webhook.
    pub per_webhook_concurrency: u32,
    /// How often the outbox is looked at when nothing signals it (other instances' work, leases
    /// left by a crashed instance).
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            policy: DeliveryPolicy::default(),
            concurrency: 64,
            per_webhook_concurrency: 8,
            poll: Duration::from_secs(1),
        }
    }
}

/// Longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Most event types one webhook may list.
const MAX_EVENT_TYPES: usize = 100;

/// An absolute `http://` or `https://` URL with a host: somewhere a webhook can be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_URL_LEN {
            return Err(format!("url is longer than {MAX_URL_LEN} characters"));
        }
        let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(
                    "url uses https, but this Keyway was built without the `tls` \
                            feature and cannot deliver to it"
                        .into(),
                )
            }
            other => return Err(format!("url must be http or https, not {other}")),
        }
        match url.host_str() {
            Some(host) if !host.is_empty() => {}
            _ => return Err("url has no host".into()),
        }
        Ok(WebhookUrl(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types a webhook receives: `["*"]` or a list of names such as
/// `access_code.set_on_device`. Names Keyway never emits are allowed (Seam has many more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeFilter(Vec<String>);

impl EventTypeFilter {
    pub fn parse(raw: Vec<String>) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("event_types must not be empty (omit it, or use [\"*\"], for all)".into());
        }
        if raw.len() > MAX_EVENT_TYPES {
            return Err(format!(
                "event_types lists more than {MAX_EVENT_TYPES} types"
            ));
        }
        let mut types: Vec<String> = Vec::with_capacity(raw.len());
        for name in raw {
            let valid = name == ALL_EVENT_TYPES
                || (!name.is_empty()
                    && name.len() <= 100
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b)
                    }));
            if !valid {
                return Err(format!("{name:?} is not an event type"));
            }
            if !types.contains(&name) {
                types.push(name);
            }
        }
        if types.iter().any(|t| t == ALL_EVENT_TYPES) {
            types = vec![ALL_EVENT_TYPES.to_owned()];
        }
        Ok(EventTypeFilter(types))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(WebhookUrl::parse("http://127.0.0.1:9/hook?x=1").is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://example.com/",
            "http://",
            "/relative",
            "mailto:a@b",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(WebhookUrl::parse(&long).is_err());
        assert_eq!(
            WebhookUrl::parse("https://example.com/").is_ok(),
            cfg!(feature = "tls")
        );
    }

    #[test]
    fn event_type_filters_are_names_or_star() {
        let filter = EventTypeFilter::parse(vec![
            "access_code.created".into(),
            "access_code.created".into(),
            "lock.unlocked".into(),
        ])
        .expect("valid");
        assert_eq!(filter.as_slice(), ["access_code.created", "lock.unlocked"]);
        let all =
            EventTypeFilter::parse(vec!["access_code.created".into(), "*".into()]).expect("valid");
        assert_eq!(all.as_slice(), ["*"]);
        assert!(EventTypeFilter::parse(vec![]).is_err());
        assert!(EventTypeFilter::parse(vec!["Access Code".into()]).is_err());
        assert!(EventTypeFilter::parse(vec!["access_code.*".into()]).is_err());
    }
}
