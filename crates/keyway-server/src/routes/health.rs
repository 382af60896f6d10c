//! `/health`, and in seeded sandbox mode `/_fake/default_seed` (the drop-in launcher contract
//! of Seam's fake server).

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use keyway_store::SEED;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/_fake/default_seed", get(default_seed))
}

/// Healthy while the database answers; 503 `service_unavailable` while it does not.
async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "ok": true, "note": "keyway is healthy" }))),
        Ok(Err(error)) => Err(ApiError::Unavailable(format!(
            "keyway is unhealthy: {error}"
        ))),
        Err(_) => Err(ApiError::Unavailable(
            "keyway is unhealthy: the database did not answer".into(),
        )),
    }
}

async fn default_seed(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.seeded {
        return Err(ApiError::NotFound {
            kind: "not_found",
            message: "Route not found".into(),
        });
    }
    Ok(Json(SEED.as_json()))
}
