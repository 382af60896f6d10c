//! `/events/*`.

use axum::extract::State;
use axum::{Json, Router};
use keyway_model::{EventType, Timestamp};
use keyway_store::EventFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{read, PageRequest, RequestUrl};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::params::{lenient, Params};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events/list", read(list))
        .route("/events/get", read(get))
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    access_code_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    access_code_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    event_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    since: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    between: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    page_cursor: Option<String>,
}

fn instant(field: &str, raw: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(raw)
        .ok_or_else(|| ApiError::invalid(field, format!("Invalid date for \"{field}\"")))
}

async fn list(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    url: RequestUrl,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 500)?;
    let mut access_code_ids = params.access_code_ids.unwrap_or_default();
    access_code_ids.extend(params.access_code_id);
    let mut event_types = params.event_types.unwrap_or_default();
    event_types.extend(params.event_type);
    if let Some(unknown) = event_types.iter().find(|t| EventType::parse(t).is_none()) {
        return Err(ApiError::invalid(
            "event_types",
            format!("Unknown event type {unknown:?}"),
        ));
    }
    let mut since = params
        .since
        .as_deref()
        .map(|s| instant("since", s))
        .transpose()?;
    let mut until = None;
    if let Some(between) = &params.between {
        let [from, to] = between.as_slice() else {
            return Err(ApiError::invalid("between", "between takes two dates"));
        };
        since = Some(instant("between", from)?);
        until = Some(instant("between", to)?);
    }
    let events = state
        .store
        .list_events(
            &workspace.workspace_id,
            EventFilter {
                device_id: params.device_id.as_deref(),
                access_code_ids: (!access_code_ids.is_empty()).then_some(&access_code_ids[..]),
                event_types: (!event_types.is_empty()).then_some(&event_types[..]),
                since,
                until,
                after: page.after,
                limit: page.limit,
            },
        )
        .await?;
    Ok(Json(json!({
        "events": events.items,
        "pagination": url.pagination(events.next_cursor),
        "ok": true,
    })))
}

#[derive(Deserialize)]
struct GetParams {
    event_id: String,
}

async fn get(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let event = state
        .store
        .get_event(&workspace.workspace_id, &params.event_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "event_not_found",
            message: "Event not found".into(),
        })?;
    Ok(Json(json!({ "event": event, "message": "", "ok": true })))
}
