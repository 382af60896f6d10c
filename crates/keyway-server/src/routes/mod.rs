//! HTTP routes, one module per API area; the URL tells where a handler lives.
//! Handlers parse input, call the core and the store, and shape the answer — no SQL here.

mod access_codes;
mod action_attempts;
mod connected_accounts;
mod devices;
mod events;
mod health;
mod webhooks;
mod workspaces;

use axum::extract::FromRequestParts;
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keyway_model::Pagination;

use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(access_codes::router())
        .merge(action_attempts::router())
        .merge(connected_accounts::router())
        .merge(devices::router())
        .merge(events::router())
        .merge(health::router())
        .merge(workspaces::router())
        .merge(webhooks::router())
}

/// Read routes: GET with a query string or POST with a body.
fn read<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    get(handler.clone()).post(handler)
}

/// Update routes: POST, PUT or PATCH.
fn update<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    post(handler.clone()).put(handler.clone()).patch(handler)
}

/// Delete routes: POST with a body or DELETE with a query string (or body).
fn delete<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    post(handler.clone()).delete(handler)
}

/// Page size and position of a list request.
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: u32,
}

impl PageRequest {
    pub fn new(
        page_cursor: Option<&str>,
        limit: Option<u32>,
        default: u32,
    ) -> Result<Self, ApiError> {
        let after = page_cursor
            .filter(|c| !c.is_empty())
            .map(|cursor| {
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| {
                        text.strip_prefix("seq:")
                            .and_then(|n| n.parse::<i64>().ok())
                    })
                    .ok_or_else(|| ApiError::invalid("page_cursor", "Invalid page_cursor"))
            })
            .transpose()?;
        let limit = match limit {
            Some(0) => return Err(ApiError::invalid("limit", "limit must be at least 1")),
            Some(limit) => limit.min(default),
            None => default,
        };
        Ok(PageRequest { after, limit })
    }
}

/// The URL of the current request, to build `next_page_url`.
pub struct RequestUrl(String);

impl<S: Send + Sync> FromRequestParts<S> for RequestUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        Ok(RequestUrl(format!("http://{host}{}", parts.uri.path())))
    }
}

impl RequestUrl {
    pub fn pagination(&self, next: Option<i64>) -> Pagination {
        let cursor = next.map(|seq| URL_SAFE_NO_PAD.encode(format!("seq:{seq}")));
        Pagination {
            has_next_page: cursor.is_some(),
            next_page_url: cursor
                .as_ref()
                .map(|c| format!("{}?page_cursor={c}", self.0)),
            next_page_cursor: cursor,
        }
    }
}
