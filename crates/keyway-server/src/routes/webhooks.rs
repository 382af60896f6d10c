//! `/webhooks/*`: a workspace's webhooks (Seam's routes), and `/webhooks/deliveries/list`,
//! Keyway's view of what was sent to one of them.
//!
//! Handlers check the URL and the event-type filter, make the secret on create and call the
//! store; they never send anything (the sender in `crate::webhooks` does).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use keyway_store::{NewWebhook, WebhookChanges};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::{delete, read, update};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::params::{lenient, Params};
use crate::webhooks::{EventTypeFilter, WebhookSecret, WebhookUrl};

/// Most deliveries `/webhooks/deliveries/list` answers.
const MAX_DELIVERIES: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/create", post(create))
        .route("/webhooks/get", read(get))
        .route("/webhooks/list", read(list))
        .route("/webhooks/update", update(update_webhook))
        .route("/webhooks/delete", delete(delete_webhook))
        .route("/webhooks/deliveries/list", read(list_deliveries))
}

fn webhook_not_found() -> ApiError {
    ApiError::NotFound {
        kind: "webhook_not_found",
        message: "Webhook not found".into(),
    }
}

fn url(raw: &str) -> Result<WebhookUrl, ApiError> {
    WebhookUrl::parse(raw).map_err(|message| ApiError::invalid("url", message))
}

fn event_types(raw: Option<Vec<String>>) -> Result<Option<EventTypeFilter>, ApiError> {
    raw.map(EventTypeFilter::parse)
        .transpose()
        .map_err(|message| ApiError::invalid("event_types", message))
}

#[derive(Deserialize)]
struct CreateParams {
    url: String,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    event_types: Option<Vec<String>>,
}

async fn create(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<CreateParams>,
) -> Result<Json<Value>, ApiError> {
    let url = url(&params.url)?;
    let event_types = event_types(params.event_types)?;
    let secret = WebhookSecret::generate()
        .map_err(|_| ApiError::Internal("cannot make a webhook secret".into()))?;
    let webhook = state
        .store
        .create_webhook(
            NewWebhook {
                workspace_id: &workspace.workspace_id,
                url: url.as_str(),
                event_types: event_types.as_ref().map(EventTypeFilter::as_slice),
                secret: &secret.expose(),
            },
            state.clock.now(),
        )
        .await?;
    info!(
        workspace_id = %workspace.workspace_id,
        webhook_id = %webhook.webhook_id,
        "webhook created"
    );
    Ok(Json(json!({ "webhook": webhook, "ok": true })))
}

#[derive(Deserialize)]
struct WebhookIdParams {
    webhook_id: String,
}

async fn get(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<WebhookIdParams>,
) -> Result<Json<Value>, ApiError> {
    let webhook = state
        .store
        .get_webhook(&workspace.workspace_id, &params.webhook_id)
        .await?
        .ok_or_else(webhook_not_found)?;
    Ok(Json(json!({ "webhook": webhook, "ok": true })))
}

async fn list(
    State(state): State<AppState>,
    Auth(workspace): Auth,
) -> Result<Json<Value>, ApiError> {
    let webhooks = state.store.list_webhooks(&workspace.workspace_id).await?;
    Ok(Json(json!({ "webhooks": webhooks, "ok": true })))
}

#[derive(Deserialize)]
struct UpdateParams {
    webhook_id: String,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    event_types: Option<Vec<String>>,
    /// Keyway extension: Seam's update changes `event_types` only.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    url: Option<String>,
}

async fn update_webhook(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<UpdateParams>,
) -> Result<Json<Value>, ApiError> {
    if params.event_types.is_none() && params.url.is_none() {
        return Err(ApiError::invalid("event_types", "event_types is required"));
    }
    let url = params.url.as_deref().map(url).transpose()?;
    let event_types = event_types(params.event_types)?;
    let found = state
        .store
        .update_webhook(
            &workspace.workspace_id,
            &params.webhook_id,
            WebhookChanges {
                url: url.as_ref().map(WebhookUrl::as_str),
                event_types: event_types.as_ref().map(EventTypeFilter::as_slice),
            },
        )
        .await?;
    if !found {
        return Err(webhook_not_found());
    }
    info!(
        workspace_id = %workspace.workspace_id,
        webhook_id = %params.webhook_id,
        "webhook updated"
    );
    Ok(Json(json!({ "ok": true })))
}

async fn delete_webhook(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<WebhookIdParams>,
) -> Result<Json<Value>, ApiError> {
    let found = state
        .store
        .delete_webhook(&workspace.workspace_id, &params.webhook_id)
        .await?;
    if !found {
        return Err(webhook_not_found());
    }
    info!(
        workspace_id = %workspace.workspace_id,
        webhook_id = %params.webhook_id,
        "webhook deleted"
    );
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct DeliveriesParams {
    webhook_id: String,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    limit: Option<u32>,
}

async fn list_deliveries(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<DeliveriesParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = match params.limit {
        Some(0) => return Err(ApiError::invalid("limit", "limit must be at least 1")),
        Some(limit) => limit.min(MAX_DELIVERIES),
        None => 100,
    };
    state
        .store
        .get_webhook(&workspace.workspace_id, &params.webhook_id)
        .await?
        .ok_or_else(webhook_not_found)?;
    let deliveries = state
        .store
        .list_webhook_deliveries(&workspace.workspace_id, &params.webhook_id, limit)
        .await?;
    Ok(Json(
        json!({ "webhook_deliveries": deliveries, "ok": true }),
    ))
}
