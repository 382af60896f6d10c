//! `/connected_accounts/*`.

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
        .route("/connected_accounts/list", read(list))
        .route("/connected_accounts/get", read(get))
        .route(
            "/connected_accounts/simulate/disconnect",
            axum::routing::post(simulate_disconnect),
        )
}

#[derive(Deserialize)]
struct ListParams {
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
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 1000)?;
    let accounts = state
        .store
        .list_connected_accounts(&workspace.workspace_id, page.after, page.limit)
        .await?;
    Ok(Json(json!({
        "connected_accounts": accounts.items,
        "pagination": url.pagination(accounts.next_cursor),
        "ok": true,
    })))
}

#[derive(Deserialize)]
struct GetParams {
    connected_account_id: String,
}

async fn get(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let account = state
        .store
        .get_connected_account(&workspace.workspace_id, &params.connected_account_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "connected_account_not_found",
            message: "Connected account not found".into(),
        })?;
    Ok(Json(json!({ "connected_account": account, "ok": true })))
}

/// The account loses its connection: its locks can no longer be reached.
async fn simulate_disconnect(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let found = state
        .store
        .disconnect_connected_account(&workspace.workspace_id, &params.connected_account_id)
        .await?;
    if !found {
        return Err(ApiError::NotFound {
            kind: "connected_account_not_found",
            message: "Connected account not found".into(),
        });
    }
    Ok(Json(json!({ "ok": true })))
}
