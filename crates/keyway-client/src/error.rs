//! `Error`: every way a client call can fail, read from the API's error envelope
//! (`{"error": {"type", "message", "validation_errors"?}, "ok": false}`) or from the transport.
//!
//! This module only classifies; it never retries or decides what a caller should do next.

use std::time::Duration;

use keyway_model::ErrorEnvelope;

/// What went wrong with a call.
///
/// API errors display as `type: message` (`device_not_found: Device not found`), the way the
/// `keyway` command line prints them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400 `invalid_input`: a parameter was missing or malformed.
    #[error("invalid_input: {message}")]
    InvalidInput {
        message: String,
        /// Per-field messages, in zod's `format()` shape: `{"_errors": [], "code": {"_errors": [...]}}`.
        validation_errors: Option<serde_json::Value>,
    },
    /// 401: the API key is missing or unknown.
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    /// 404: `device_not_found`, `access_code_not_found`, `not_found` (also an unknown route), …
    #[error("{kind}: {message}")]
    NotFound { kind: String, message: String },
    /// 409: `duplicate_access_code`.
    #[error("{kind}: {message}")]
    Conflict { kind: String, message: String },
    /// Any other error answer (400 with another type, 405, 413, 429, 5xx, …).
    #[error("{kind}: {message} (HTTP {status})")]
    Http {
        status: u16,
        kind: String,
        message: String,
    },
    /// The request never got an answer: connection refused, reset, timed out.
    #[error("request to {route} failed: {source}")]
    Transport {
        route: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered 2xx with a body the client's types do not understand.
    #[error("unexpected answer from {route}: {message}")]
    Decode { route: String, message: String },
    /// The client could not be built: no API key, or an endpoint that is not a URL.
    #[error("{0}")]
    Config(String),
    /// A wait helper gave up before the server reached the awaited state.
    #[error("{what} after {}s", waited.as_secs_f32())]
    Timeout { what: String, waited: Duration },
    /// An awaited action attempt ended in `error`.
    #[error("{kind}: {message} (action attempt {action_attempt_id})")]
    ActionAttemptFailed {
        action_attempt_id: String,
        kind: String,
        message: String,
    },
    /// An awaited access code carries an error of its own (e.g. `failed_to_set_on_device`).
    #[error("{error_code}: {message} (access code {access_code_id})")]
    AccessCodeFailed {
        access_code_id: String,
        error_code: String,
        message: String,
    },
}

impl Error {
    /// The API's error `type` (`device_not_found`, `invalid_input`, …), when the server sent one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::InvalidInput { .. } => Some("invalid_input"),
            Error::Unauthorized { .. } => Some("unauthorized"),
            Error::NotFound { kind, .. }
            | Error::Conflict { kind, .. }
            | Error::Http { kind, .. } => Some(kind),
            Error::ActionAttemptFailed { kind, .. } => Some(kind),
            Error::AccessCodeFailed { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::InvalidInput { .. } => Some(400),
            Error::Unauthorized { .. } => Some(401),
            Error::NotFound { .. } => Some(404),
            Error::Conflict { .. } => Some(409),
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether repeating the same idempotent request may succeed: 429, 5xx, or no answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { status, .. } => *status == 429 || *status >= 500,
            Error::Transport { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request()
            }
            _ => false,
        }
    }

    /// Classifies an error answer: the envelope when the body is one, else the bare status.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        let (kind, message, validation_errors) = match serde_json::from_slice::<ErrorEnvelope>(body)
        {
            Ok(envelope) => (
                Some(envelope.error.kind),
                envelope.error.message,
                envelope.error.validation_errors,
            ),
            // Some servers (Seam's fake on an unknown route) answer plain text.
            Err(_) => (None, plain_message(status, body), None),
        };
        match status {
            400 if kind.as_deref().is_none_or(|k| k == "invalid_input") => Error::InvalidInput {
                message,
                validation_errors,
            },
            401 => Error::Unauthorized { message },
            404 => Error::NotFound {
                kind: kind.unwrap_or_else(|| "not_found".into()),
                message,
            },
            409 => Error::Conflict {
                kind: kind.unwrap_or_else(|| "conflict".into()),
                message,
            },
            _ => Error::Http {
                status,
                kind: kind.unwrap_or_else(|| format!("http_{status}")),
                message,
            },
        }
    }
}

/// A short, printable message from a non-envelope error body.
fn plain_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') || text == status.to_string() {
        return format!("the server answered HTTP {status} without details");
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_types_map_to_variants() {
        let body =
            br#"{"error":{"type":"device_not_found","message":"Device not found"},"ok":false}"#;
        let error = Error::from_answer(404, body);
        assert_eq!(error.to_string(), "device_not_found: Device not found");
        assert_eq!(error.kind(), Some("device_not_found"));

        let body = br#"{"error":{"type":"invalid_input","message":"device_id is required",
            "validation_errors":{"_errors":[],"device_id":{"_errors":["Required"]}}},"ok":false}"#;
        match Error::from_answer(400, body) {
            Error::InvalidInput {
                validation_errors: Some(errors),
                ..
            } => assert_eq!(errors["device_id"]["_errors"][0], "Required"),
            other => panic!("{other:?}"),
        }

        let body = br#"{"error":{"type":"device_type_not_supported","message":"no"},"ok":false}"#;
        assert!(matches!(
            Error::from_answer(400, body),
            Error::Http { status: 400, .. }
        ));
        assert!(matches!(
            Error::from_answer(409, b"{}"),
            Error::Conflict { .. }
        ));
        assert!(Error::from_answer(503, b"").is_transient());
        assert!(!Error::from_answer(404, b"").is_transient());
    }

    #[test]
    fn plain_text_errors_still_read() {
        let error = Error::from_answer(404, b"404");
        assert_eq!(
            error.to_string(),
            "not_found: the server answered HTTP 404 without details"
        );
        assert!(matches!(
            Error::from_answer(401, b"nope"),
            Error::Unauthorized { .. }
        ));
    }
}
