//! `ApiError`: every way a request can fail, mapped in one place to Seam's error `type`, its
//! HTTP status and the `{"error": {...}, "ok": false}` envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyway_model::{ErrorBody, ErrorEnvelope};
use keyway_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidInput {
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    BadRequest { kind: &'static str, message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    NotFound { kind: &'static str, message: String },
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    #[error("Request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    Timeout(String),
    /// The database cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidInput {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        ApiError::InvalidInput {
            message: message.into(),
            field: None,
        }
    }

    pub fn device_not_found() -> Self {
        ApiError::NotFound {
            kind: "device_not_found",
            message: "Device not found".into(),
        }
    }

    pub fn access_code_not_found() -> Self {
        ApiError::NotFound {
            kind: "access_code_not_found",
            message: "Access code not found".into(),
        }
    }

    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
            ApiError::BadRequest { kind, .. } => (StatusCode::BAD_REQUEST, kind),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound { kind, .. } => (StatusCode::NOT_FOUND, kind),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { kind, .. } => (StatusCode::CONFLICT, kind),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => ApiError::Conflict {
                kind: "duplicate_access_code",
                message,
            },
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                ApiError::Unavailable("The database is unavailable; try again shortly".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "An internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        let validation_errors = match &self {
            ApiError::InvalidInput { message, field } => Some(match field {
                Some(field) => json!({ "_errors": [], field: { "_errors": [message] } }),
                None => json!({ "_errors": [message] }),
            }),
            _ => None,
        };
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                kind: kind.to_owned(),
                message,
                validation_errors,
                data: None,
            },
            ok: false,
        };
        (status, Json(envelope)).into_response()
    }
}
