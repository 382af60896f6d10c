//! `/action_attempts/*`.

use axum::extract::State;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{read, PageRequest, RequestUrl};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::params::{lenient, Params};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/action_attempts/get", read(get))
        .route("/action_attempts/list", read(list))
}

#[derive(Deserialize)]
struct GetParams {
    action_attempt_id: String,
}

async fn get(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let attempt = state
        .store
        .get_action_attempt(&workspace.workspace_id, &params.action_attempt_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "action_attempt_not_found",
            message: "Action attempt not found".into(),
        })?;
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    action_attempt_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    page_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    url: RequestUrl,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 500)?;
    let attempts = state
        .store
        .list_action_attempts(
            &workspace.workspace_id,
            params.action_attempt_ids.as_deref(),
            params.device_id.as_deref(),
            page.after,
            page.limit,
        )
        .await?;
    Ok(Json(json!({
        "action_attempts": attempts.items,
        "pagination": url.pagination(attempts.next_cursor),
        "ok": true,
    })))
}
