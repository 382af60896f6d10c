//! `/workspaces/*`.

use axum::{Json, Router};
use serde_json::{json, Value};

use super::read;
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/get", read(get_workspace))
        .route("/workspaces/list", read(list_workspaces))
}

async fn get_workspace(Auth(workspace): Auth) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "workspace": workspace, "ok": true })))
}

/// An API key sees its own workspace only.
async fn list_workspaces(Auth(workspace): Auth) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "workspaces": [workspace], "ok": true })))
}
