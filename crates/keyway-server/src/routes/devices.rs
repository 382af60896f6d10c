//! `/devices/*` and `/locks/*`: the locks of the workspace, and the sandbox's simulate routes.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use keyway_store::DeviceRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{read, PageRequest, RequestUrl};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::params::{lenient, Params};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/devices/list", read(list_devices))
        .route("/devices/get", read(get_device))
        .route("/locks/list", read(list_locks))
        .route("/locks/get", read(get_lock))
        .route("/locks/lock_door", post(lock_door))
        .route("/locks/unlock_door", post(unlock_door))
        .route("/locks/simulate/keypad_code_entry", post(keypad_code_entry))
        .route("/devices/simulate/connect", post(simulate_connect))
        .route("/devices/simulate/disconnect", post(simulate_disconnect))
        .route("/devices/simulate/remove", post(simulate_remove))
        .route(
            "/devices/simulate/configure_sandbox_lock",
            post(configure_sandbox_lock),
        )
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    connected_account_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    device_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    page_cursor: Option<String>,
}

async fn devices_page(
    state: &AppState,
    workspace_id: &str,
    url: &RequestUrl,
    params: ListParams,
) -> Result<(Vec<Value>, Value), ApiError> {
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 1000)?;
    let devices = state
        .store
        .list_devices(
            workspace_id,
            params.connected_account_id.as_deref(),
            page.after,
            page.limit,
        )
        .await?;
    let items = devices
        .items
        .iter()
        .filter(|d| {
            params
                .device_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&d.device_id))
        })
        .map(to_json)
        .collect::<Result<Vec<_>, _>>()?;
    let pagination = serde_json::to_value(url.pagination(devices.next_cursor))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((items, pagination))
}

fn to_json(device: &DeviceRecord) -> Result<Value, ApiError> {
    let device = device.to_device()?;
    serde_json::to_value(device).map_err(|e| ApiError::Internal(e.to_string()))
}

async fn list_devices(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    url: RequestUrl,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let (devices, pagination) = devices_page(&state, &workspace.workspace_id, &url, params).await?;
    Ok(Json(
        json!({ "devices": devices, "pagination": pagination, "ok": true }),
    ))
}

async fn list_locks(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    url: RequestUrl,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let (devices, pagination) = devices_page(&state, &workspace.workspace_id, &url, params).await?;
    Ok(Json(json!({
        "locks": devices,
        "devices": devices,
        "pagination": pagination,
        "ok": true,
    })))
}

#[derive(Deserialize)]
struct GetParams {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
}

async fn find_device(
    state: &AppState,
    workspace_id: &str,
    params: &GetParams,
) -> Result<Value, ApiError> {
    if params.device_id.is_none() && params.name.is_none() {
        return Err(ApiError::invalid_input(
            "Either device_id or name must be provided",
        ));
    }
    let device = state
        .store
        .get_device(
            workspace_id,
            params.device_id.as_deref(),
            params.name.as_deref(),
        )
        .await?
        .ok_or_else(ApiError::device_not_found)?;
    to_json(&device)
}

async fn get_device(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let device = find_device(&state, &workspace.workspace_id, &params).await?;
    Ok(Json(json!({ "device": device, "ok": true })))
}

async fn get_lock(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Json<Value>, ApiError> {
    let device = find_device(&state, &workspace.workspace_id, &params).await?;
    Ok(Json(
        json!({ "lock": device, "device": device, "ok": true }),
    ))
}

#[derive(Deserialize)]
struct SimulateParams {
    device_id: String,
}

/// A sandbox device of the caller's workspace.
pub(super) async fn sandbox_device(
    state: &AppState,
    workspace_id: &str,
    device_id: &str,
) -> Result<DeviceRecord, ApiError> {
    let device = state
        .store
        .get_device(workspace_id, Some(device_id), None)
        .await?
        .ok_or_else(ApiError::device_not_found)?;
    if device.provider != "sandbox" {
        return Err(ApiError::BadRequest {
            kind: "device_type_not_supported",
            message: format!("Device type \"{}\" cannot be simulated", device.device_type),
        });
    }
    Ok(device)
}

async fn simulate_connect(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<SimulateParams>,
) -> Result<Json<Value>, ApiError> {
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    state
        .store
        .set_sandbox_online(&device.device_id, true)
        .await?;
    state
        .store
        .wake_device(&device.device_id, state.clock.now())
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    Ok(Json(json!({ "ok": true })))
}

async fn simulate_disconnect(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<SimulateParams>,
) -> Result<Json<Value>, ApiError> {
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    state
        .store
        .set_sandbox_online(&device.device_id, false)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

async fn simulate_remove(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<SimulateParams>,
) -> Result<Json<Value>, ApiError> {
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    state.store.set_sandbox_removed(&device.device_id).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct ConfigureParams {
    device_id: String,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    operation_delay_ms: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    fail_next_operations: Option<u32>,
}

/// Keyway-specific: makes a sandbox lock slow (`operation_delay_ms`) or makes its next
/// operations time out (`fail_next_operations`).
async fn configure_sandbox_lock(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<ConfigureParams>,
) -> Result<Json<Value>, ApiError> {
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    if params.operation_delay_ms.is_some_and(|d| d > 60_000) {
        return Err(ApiError::invalid(
            "operation_delay_ms",
            "operation_delay_ms must be at most 60000",
        ));
    }
    state
        .store
        .configure_sandbox(
            &device.device_id,
            params.operation_delay_ms.map(u64::from),
            params.fail_next_operations,
        )
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct DoorParams {
    device_id: String,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    sync: Option<bool>,
}

async fn door_command(
    state: &AppState,
    workspace_id: &str,
    params: DoorParams,
    lock: bool,
) -> Result<Json<Value>, ApiError> {
    let device = state
        .store
        .get_device(workspace_id, Some(&params.device_id), None)
        .await?
        .ok_or_else(ApiError::device_not_found)?;
    let attempt = state
        .store
        .enqueue_lock_action(&device, lock, state.clock.now())
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    let attempt = if params.sync == Some(true) {
        super::access_codes::wait_for_attempt(state, workspace_id, attempt).await?
    } else {
        attempt
    };
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}

async fn lock_door(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<DoorParams>,
) -> Result<Json<Value>, ApiError> {
    door_command(&state, &workspace.workspace_id, params, true).await
}

async fn unlock_door(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<DoorParams>,
) -> Result<Json<Value>, ApiError> {
    door_command(&state, &workspace.workspace_id, params, false).await
}

#[derive(Deserialize)]
struct KeypadParams {
    device_id: String,
    code: String,
}

/// Someone types a PIN at a sandbox lock's keypad: it opens if a slot holds the PIN.
async fn keypad_code_entry(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<KeypadParams>,
) -> Result<Json<Value>, ApiError> {
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    let slot = state
        .store
        .sandbox_slots(&device.device_id)
        .await?
        .into_iter()
        .find(|s| s.code == params.code)
        .map(|s| s.slot);
    let attempt = state
        .store
        .record_keypad_entry(&device, &params.code, slot, state.clock.now())
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}
