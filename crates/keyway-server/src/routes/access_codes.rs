//! `/access_codes/*`: managed codes, unmanaged codes and the sandbox's keypad simulation.
//!
//! Handlers validate against the lock's rules (core `policy`, `window`), record intent in the
//! store (code + job + event + action attempt in one transaction) and wake the engine. They
//! never touch a lock themselves, except the simulate route, which plays the keypad.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use keyway_core::lifecycle::{Intent, Target};
use keyway_core::policy::{self, LockRules, PinCode};
use keyway_core::window::Window;
use keyway_drivers::{DriverError, Refusal};
use keyway_model::{
    AccessCode, AccessCodeStatus, AccessCodeType, ActionAttempt, ActionAttemptStatus,
    GeneratedCode, Timestamp,
};
use keyway_store::{AccessCodeChanges, AccessCodeFilter, CodeLookup, DeviceRecord, NewAccessCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::devices::sandbox_device;
use super::{delete, read, update, PageRequest, RequestUrl};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::list_cache::{ListEntry, ListKey, PageBody};
use crate::params::{lenient, Params};

/// How long `sync: true` and the keypad simulation wait for the lock.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/access_codes/create", post(create))
        .route(
            "/access_codes/create_multiple",
            post(create_multiple).put(create_multiple),
        )
        .route(
            "/access_codes/update_multiple",
            post(update_multiple).patch(update_multiple),
        )
        .route(
            "/access_codes/report_device_constraints",
            post(report_device_constraints),
        )
        .route(
            "/access_codes/pull_backup_access_code",
            post(pull_backup_access_code),
        )
        .route("/access_codes/get", read(get))
        .route("/access_codes/list", read(list))
        .route("/access_codes/update", update(update_code))
        .route("/access_codes/delete", delete(delete_code))
        .route("/access_codes/generate_code", read(generate_code))
        .route(
            "/access_codes/simulate/create_unmanaged_access_code",
            post(simulate_unmanaged),
        )
        .route("/access_codes/unmanaged/list", read(list_unmanaged))
        .route("/access_codes/unmanaged/get", read(get_unmanaged))
        .route(
            "/access_codes/unmanaged/convert_to_managed",
            update(convert_to_managed),
        )
        .route("/access_codes/unmanaged/update", update(update_unmanaged))
        .route("/access_codes/unmanaged/delete", delete(delete_unmanaged))
}

async fn device_of(
    state: &AppState,
    workspace_id: &str,
    device_id: &str,
) -> Result<DeviceRecord, ApiError> {
    state
        .store
        .get_device(workspace_id, Some(device_id), None)
        .await?
        .ok_or_else(ApiError::device_not_found)
}

fn timestamp(field: &str, raw: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    raw.map(|raw| {
        Timestamp::parse(raw).ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("Must be parsable date string for \"{field}\""),
            )
        })
    })
    .transpose()
}

fn pin(raw: &str, rules: &LockRules) -> Result<PinCode, ApiError> {
    PinCode::parse(raw, rules).map_err(|e| ApiError::invalid("code", e.to_string()))
}

/// The status a code starts in when its intent is (re)recorded.
fn pending_status(window: Option<Window>, now: Timestamp) -> AccessCodeStatus {
    match window {
        Some(w) if now < w.starts_at => AccessCodeStatus::Unset,
        _ => AccessCodeStatus::Setting,
    }
}

#[derive(Deserialize)]
struct CreateParams {
    device_id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    starts_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    ends_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    common_code_key: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    allow_external_modification: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_external_modification_allowed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_one_time_use: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_offline_access_code: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    use_offline_access_code: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    use_backup_access_code_pool: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    preferred_code_length: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    sync: Option<bool>,
}

async fn create(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<CreateParams>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let device = device_of(&state, &workspace.workspace_id, &params.device_id).await?;
    let rules = device.lock_rules()?;
    let starts_at = timestamp("starts_at", params.starts_at.as_deref())?;
    let ends_at = timestamp("ends_at", params.ends_at.as_deref())?;
    let window =
        Window::new(starts_at, ends_at, now).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let use_backup_pool = params.use_backup_access_code_pool == Some(true);
    if use_backup_pool && window.is_none() {
        return Err(ApiError::invalid_input(
            "Cannot use the backup pool for ongoing codes",
        ));
    }
    if use_backup_pool && !device.code_rules()?.supports_backup_access_code_pool {
        return Err(ApiError::invalid(
            "use_backup_access_code_pool",
            "This device does not support a backup access code pool",
        ));
    }
    if params
        .is_offline_access_code
        .or(params.use_offline_access_code)
        == Some(true)
    {
        return Err(ApiError::BadRequest {
            kind: "offline_access_codes_not_supported",
            message: "This device cannot program offline access codes".into(),
        });
    }
    let code = match params.code.as_deref() {
        Some(raw) => pin(raw, &rules)?.into_string(),
        None => {
            let taken = state.store.codes_on_device(&device.device_id).await?;
            let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
            policy::generate(
                &rules,
                &taken,
                params.preferred_code_length,
                &mut rand::thread_rng(),
            )
            .ok_or_else(|| {
                ApiError::invalid_input("No free code could be generated for this device")
            })?
        }
    };
    let status = pending_status(window, now);
    let (access_code, action_attempt) = state
        .store
        .create_access_code(
            NewAccessCode {
                device: &device,
                name: params.name,
                code,
                kind: if window.is_some() {
                    AccessCodeType::TimeBound
                } else {
                    AccessCodeType::Ongoing
                },
                starts_at: window.map(|w| w.starts_at),
                ends_at: window.map(|w| w.ends_at),
                status,
                is_external_modification_allowed: params
                    .allow_external_modification
                    .or(params.is_external_modification_allowed)
                    .unwrap_or(false),
                is_one_time_use: params.is_one_time_use.unwrap_or(false),
                is_offline_access_code: false,
                common_code_key: params.common_code_key,
                use_backup_access_code_pool: use_backup_pool,
                job_at: match window {
                    Some(w) if now < w.starts_at => w.starts_at,
                    _ => now,
                },
            },
            now,
        )
        .await
        .map_err(duplicate_error)?;
    if use_backup_pool {
        state
            .store
            .enable_backup_pool(&device, state.backup_pool_size)
            .await?;
        refill_backup_pool(&state, &device).await?;
    }
    state.engine.notify_devices([device.device_id.as_str()]);
    let (access_code, action_attempt) = if params.sync == Some(true) {
        let attempt = wait_for_attempt(&state, &workspace.workspace_id, action_attempt).await?;
        let code = state
            .store
            .get_access_code(
                &workspace.workspace_id,
                CodeLookup::Id(&access_code.access_code_id),
            )
            .await?
            .unwrap_or(access_code);
        (code, attempt)
    } else {
        (access_code, action_attempt)
    };
    Ok(Json(json!({
        "access_code": access_code,
        "action_attempt": action_attempt,
        "ok": true,
    })))
}

/// A page of a device's codes as kept (see `list_cache`), or where to keep the page about to be
/// read.
enum KeptPage {
    Found(Arc<ListEntry>),
    Missing(Option<(ListKey, u64)>),
}

/// Looks for the page a list asks for. Only a device's codes, unfiltered by ids, are kept.
fn kept_page(
    state: &AppState,
    workspace_id: &str,
    device: Option<&DeviceRecord>,
    by_ids: bool,
    managed: bool,
    page: &PageRequest,
) -> KeptPage {
    let Some(device) = device.filter(|_| !by_ids) else {
        return KeptPage::Missing(None);
    };
    // Read before the codes are: a page is never kept as newer than it is.
    let Some(version) = state.store.device_codes_version(&device.device_id) else {
        return KeptPage::Missing(None);
    };
    let key = ListKey::new(workspace_id, device, managed, page.after, page.limit);
    match state.list_cache.get(&key, version) {
        Some(entry) => KeptPage::Found(entry),
        None => KeptPage::Missing(Some((key, version))),
    }
}

/// Answers a page that was just read, and keeps it if it may be.
fn send_page<T: serde::Serialize>(
    state: &AppState,
    keep: Option<(ListKey, u64)>,
    codes: keyway_store::Page<T>,
    url: &RequestUrl,
) -> Result<Response, ApiError> {
    let codes_json = Bytes::from(
        serde_json::to_vec(&codes.items).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    let response = page_response(&codes_json, url, codes.next_cursor)?;
    if let Some((key, version)) = keep {
        state
            .list_cache
            .put(key, version, codes_json, codes.next_cursor);
    }
    Ok(response)
}

/// `{"access_codes": [...], "pagination": {...}, "ok": true}` around codes already in JSON,
/// which are sent as they are (shared with the list cache, not copied).
fn page_response(
    codes_json: &Bytes,
    url: &RequestUrl,
    next: Option<i64>,
) -> Result<Response, ApiError> {
    let mut tail = br#","pagination":"#.to_vec();
    serde_json::to_writer(&mut tail, &url.pagination(next))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tail.extend_from_slice(br#","ok":true}"#);
    let body = PageBody::new([
        Bytes::from_static(br#"{"access_codes":"#),
        codes_json.clone(),
        Bytes::from(tail),
    ]);
    Ok(([(CONTENT_TYPE, "application/json")], Body::new(body)).into_response())
}

/// One code.
#[derive(serde::Serialize)]
struct OneCode<'a, T> {
    access_code: &'a T,
    ok: bool,
}

fn duplicate_error(error: keyway_store::StoreError) -> ApiError {
    match error {
        keyway_store::StoreError::Conflict(_) => ApiError::Conflict {
            kind: "duplicate_access_code",
            message: "Cannot create a duplicate access code: this PIN is already on the device \
                      for an overlapping time"
                .into(),
        },
        other => other.into(),
    }
}

/// Waits (bounded) until the engine settles an action attempt.
pub(super) async fn wait_for_attempt(
    state: &AppState,
    workspace_id: &str,
    attempt: ActionAttempt,
) -> Result<ActionAttempt, ApiError> {
    let mut synced = state.engine.subscribe();
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let current = state
            .store
            .get_action_attempt(workspace_id, &attempt.action_attempt_id)
            .await?
            .unwrap_or_else(|| attempt.clone());
        if current.status != ActionAttemptStatus::Pending {
            return Ok(current);
        }
        let wait = tokio::time::timeout(Duration::from_millis(250), synced.recv());
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Err(ApiError::Timeout("The lock did not answer in time".into()));
        }
    }
}

#[derive(Deserialize)]
struct GetParams {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    access_code_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    code: Option<String>,
}

impl GetParams {
    /// Either an id, or a device and a PIN.
    fn lookup(&self) -> Result<CodeLookup<'_>, ApiError> {
        match (&self.access_code_id, &self.device_id, &self.code) {
            (Some(_), _, Some(_)) => Err(ApiError::invalid_input(
                "Both \"access_code_id\" and \"code\" can not be provided",
            )),
            (Some(id), _, None) => Ok(CodeLookup::Id(id)),
            (None, Some(device_id), Some(code)) => Ok(CodeLookup::Pin { device_id, code }),
            (None, Some(_), None) | (None, None, Some(_)) => Err(ApiError::invalid_input(
                "Both \"device_id\" and \"code\" must be provided if one is",
            )),
            (None, None, None) => Err(ApiError::invalid_input(
                "Either \"access_code_id\" OR \"code\" and \"device_id\" must be provided",
            )),
        }
    }
}

async fn get(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Response, ApiError> {
    let lookup = params.lookup()?;
    let code = state
        .store
        .get_access_code(&workspace.workspace_id, lookup)
        .await?
        .filter(|c| params.device_id.as_ref().is_none_or(|d| *d == c.device_id))
        .ok_or_else(ApiError::access_code_not_found)?;
    Ok(Json(OneCode {
        access_code: &code,
        ok: true,
    })
    .into_response())
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_strings")]
    access_code_ids: Option<Vec<String>>,
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
) -> Result<Response, ApiError> {
    if params.device_id.is_none() && params.access_code_ids.is_none() {
        return Err(ApiError::invalid_input(
            "Either 'device_id' or 'access_code_ids' is required",
        ));
    }
    let device = match &params.device_id {
        Some(device_id) => Some(device_of(&state, &workspace.workspace_id, device_id).await?),
        None => None,
    };
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 55_000)?;
    let by_ids = params.access_code_ids.is_some();
    let keep = match kept_page(
        &state,
        &workspace.workspace_id,
        device.as_ref(),
        by_ids,
        true,
        &page,
    ) {
        KeptPage::Found(entry) => return page_response(&entry.codes_json, &url, entry.next),
        KeptPage::Missing(keep) => keep,
    };
    let codes = state
        .store
        .list_access_codes(
            &workspace.workspace_id,
            AccessCodeFilter {
                device_id: params.device_id.as_deref(),
                access_code_ids: params.access_code_ids.as_deref(),
                after: page.after,
                limit: page.limit,
                known_device: device.as_ref(),
            },
        )
        .await?;
    send_page(&state, keep, codes, &url)
}

#[derive(Deserialize)]
struct UpdateParams {
    access_code_id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    starts_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    ends_at: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    allow_external_modification: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_external_modification_allowed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_managed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    sync: Option<bool>,
}

/// The window an update asks for, from the new bounds and the code's current ones.
fn updated_window(
    params: &UpdateParams,
    current: &AccessCode,
    now: Timestamp,
) -> Result<Option<Window>, ApiError> {
    let kind = params
        .kind
        .as_deref()
        .map(|k| {
            AccessCodeType::parse(k)
                .ok_or_else(|| ApiError::invalid("type", "type must be ongoing or time_bound"))
        })
        .transpose()?;
    let starts_at = timestamp("starts_at", params.starts_at.as_deref())?;
    let ends_at = timestamp("ends_at", params.ends_at.as_deref())?;
    let unchanged = starts_at.is_none() && ends_at.is_none();
    match kind {
        Some(AccessCodeType::Ongoing) if unchanged => Ok(None),
        Some(AccessCodeType::Ongoing) => Err(ApiError::invalid_input(
            "An ongoing access code cannot have starts_at or ends_at",
        )),
        _ if unchanged && current.kind == AccessCodeType::TimeBound => {
            let (Some(starts_at), Some(ends_at)) = (current.starts_at, current.ends_at) else {
                return Err(ApiError::Internal(
                    "time-bound code without a window".into(),
                ));
            };
            Ok(Some(Window { starts_at, ends_at }))
        }
        Some(AccessCodeType::TimeBound) if unchanged => Err(ApiError::invalid_input(
            "'time_bound' Access codes must include both starts_at and ends_at",
        )),
        None if unchanged => Ok(None),
        _ => {
            let starts_at = starts_at.or(current.starts_at);
            let ends_at = ends_at.or(current.ends_at);
            Window::new(starts_at, ends_at, now).map_err(|e| ApiError::invalid_input(e.to_string()))
        }
    }
}

async fn update_code(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<UpdateParams>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    if params.is_managed == Some(false) {
        return Err(ApiError::invalid(
            "is_managed",
            "A managed access code cannot be made unmanaged",
        ));
    }
    let current = state
        .store
        .get_access_code(
            &workspace.workspace_id,
            CodeLookup::Id(&params.access_code_id),
        )
        .await?
        .filter(|c| params.device_id.as_ref().is_none_or(|d| *d == c.device_id))
        .ok_or_else(ApiError::access_code_not_found)?;
    let device_id = current.device_id.clone();
    let attempt = apply_update(&state, &workspace.workspace_id, current, &params, now).await?;
    state.engine.notify_devices([device_id.as_str()]);
    let attempt = if params.sync == Some(true) {
        wait_for_attempt(&state, &workspace.workspace_id, attempt).await?
    } else {
        attempt
    };
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}

/// Records an update of one managed code; answers its action attempt.
async fn apply_update(
    state: &AppState,
    workspace_id: &str,
    current: AccessCode,
    params: &UpdateParams,
    now: Timestamp,
) -> Result<ActionAttempt, ApiError> {
    if current.status == AccessCodeStatus::Removing && current.kind == AccessCodeType::Ongoing {
        return Err(ApiError::BadRequest {
            kind: "access_code_being_removed",
            message: "The access code is being removed".into(),
        });
    }
    let device = device_of(state, workspace_id, &current.device_id).await?;
    let rules = device.lock_rules()?;
    let code = match params.code.as_deref() {
        Some(raw) => pin(raw, &rules)?.into_string(),
        None => current.code.clone().unwrap_or_default(),
    };
    let window = updated_window(params, &current, now)?;
    let window_changed =
        window.map(|w| (w.starts_at, w.ends_at)) != current.starts_at.zip(current.ends_at);
    let reprogram = (current.code.as_deref() != Some(code.as_str()) || window_changed).then(|| {
        let intent = Intent {
            deleted: false,
            starts_at: window.map(|w| w.starts_at),
            ends_at: window.map(|w| w.ends_at),
        };
        let status = match (intent.target(now), current.status) {
            (Target::OnLock, _) => AccessCodeStatus::Setting,
            (_, AccessCodeStatus::Set | AccessCodeStatus::Setting) => AccessCodeStatus::Removing,
            _ => pending_status(window, now),
        };
        (status, now)
    });
    let outcome = state
        .store
        .update_access_code(
            &device,
            &current.access_code_id,
            AccessCodeChanges {
                name: params.name.clone().or(current.name.clone()),
                code,
                kind: if window.is_some() {
                    AccessCodeType::TimeBound
                } else {
                    AccessCodeType::Ongoing
                },
                starts_at: window.map(|w| w.starts_at),
                ends_at: window.map(|w| w.ends_at),
                is_external_modification_allowed: params
                    .allow_external_modification
                    .or(params.is_external_modification_allowed)
                    .unwrap_or(current.is_external_modification_allowed),
                reprogram,
            },
            now,
        )
        .await?;
    Ok(outcome.action_attempt)
}

#[derive(Deserialize)]
struct DeleteParams {
    access_code_id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    sync: Option<bool>,
}

async fn delete_code(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<DeleteParams>,
) -> Result<Json<Value>, ApiError> {
    let current = state
        .store
        .get_access_code(
            &workspace.workspace_id,
            CodeLookup::Id(&params.access_code_id),
        )
        .await?
        .filter(|c| params.device_id.as_ref().is_none_or(|d| *d == c.device_id))
        .ok_or_else(ApiError::access_code_not_found)?;
    let device = device_of(&state, &workspace.workspace_id, &current.device_id).await?;
    let attempt = state
        .store
        .delete_access_code(&device, &current.access_code_id, state.clock.now())
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    let attempt = if params.sync == Some(true) {
        wait_for_attempt(&state, &workspace.workspace_id, attempt).await?
    } else {
        attempt
    };
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}

#[derive(Deserialize)]
struct GenerateParams {
    device_id: String,
}

async fn generate_code(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GenerateParams>,
) -> Result<Json<Value>, ApiError> {
    let device = device_of(&state, &workspace.workspace_id, &params.device_id).await?;
    let rules = device.lock_rules()?;
    let taken = state.store.codes_on_device(&device.device_id).await?;
    let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
    let code =
        policy::generate(&rules, &taken, None, &mut rand::thread_rng()).ok_or_else(|| {
            ApiError::invalid_input("No free code could be generated for this device")
        })?;
    let generated = GeneratedCode {
        device_id: device.device_id,
        code,
    };
    Ok(Json(json!({ "generated_code": generated, "ok": true })))
}

#[derive(Deserialize)]
struct SimulateParams {
    device_id: String,
    name: String,
    code: String,
}

/// Types a code at a sandbox lock's keypad, then lets the engine read the lock back and
/// answers the unmanaged code it found.
async fn simulate_unmanaged(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<SimulateParams>,
) -> Result<Json<Value>, ApiError> {
    if !(4..=8).contains(&params.code.len()) || !params.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("code", "code must be 4 to 8 digits"));
    }
    let device = sandbox_device(&state, &workspace.workspace_id, &params.device_id).await?;
    let mut synced = state.engine.subscribe();
    state
        .sandbox
        .keypad_program(&device.device_id, &params.code, Some(&params.name))
        .await
        .map_err(|error| match error {
            DriverError::Refused(Refusal::Duplicate { .. }) => ApiError::Conflict {
                kind: "duplicate_access_code",
                message: format!("The lock already holds the code {}", params.code),
            },
            DriverError::Refused(refusal) => ApiError::invalid("code", refusal.to_string()),
            DriverError::Offline => ApiError::BadRequest {
                kind: "device_offline",
                message: "The device is offline".into(),
            },
            other => ApiError::Internal(other.to_string()),
        })?;
    let now = state.clock.now();
    state
        .store
        .enqueue_job(&device.device_id, None, now, now)
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let found = state
            .store
            .get_unmanaged_access_code(
                &workspace.workspace_id,
                CodeLookup::Pin {
                    device_id: &device.device_id,
                    code: &params.code,
                },
            )
            .await?;
        if let Some(code) = found {
            return Ok(Json(json!({ "access_code": code, "ok": true })));
        }
        let wait = tokio::time::timeout(Duration::from_millis(250), synced.recv());
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Err(ApiError::Timeout(
                "The lock was not read back in time".into(),
            ));
        }
    }
}

#[derive(Deserialize)]
struct ListUnmanagedParams {
    device_id: String,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    page_cursor: Option<String>,
}

async fn list_unmanaged(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    url: RequestUrl,
    Params(params): Params<ListUnmanagedParams>,
) -> Result<Response, ApiError> {
    let device = device_of(&state, &workspace.workspace_id, &params.device_id).await?;
    let page = PageRequest::new(params.page_cursor.as_deref(), params.limit, 300_000)?;
    let keep = match kept_page(
        &state,
        &workspace.workspace_id,
        Some(&device),
        false,
        false,
        &page,
    ) {
        KeptPage::Found(entry) => return page_response(&entry.codes_json, &url, entry.next),
        KeptPage::Missing(keep) => keep,
    };
    let codes = state
        .store
        .list_unmanaged_access_codes(
            &workspace.workspace_id,
            AccessCodeFilter {
                device_id: Some(&device.device_id),
                access_code_ids: None,
                after: page.after,
                limit: page.limit,
                known_device: Some(&device),
            },
        )
        .await?;
    send_page(&state, keep, codes, &url)
}

async fn get_unmanaged(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<GetParams>,
) -> Result<Response, ApiError> {
    let lookup = params.lookup()?;
    let code = state
        .store
        .get_unmanaged_access_code(&workspace.workspace_id, lookup)
        .await?
        .filter(|c| params.device_id.as_ref().is_none_or(|d| *d == c.device_id))
        .ok_or_else(ApiError::access_code_not_found)?;
    Ok(Json(OneCode {
        access_code: &code,
        ok: true,
    })
    .into_response())
}

#[derive(Deserialize)]
struct ConvertParams {
    access_code_id: String,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    allow_external_modification: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_external_modification_allowed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_managed: Option<bool>,
}

async fn convert(
    state: &AppState,
    workspace_id: &str,
    params: &ConvertParams,
) -> Result<(), ApiError> {
    let allowed = params
        .allow_external_modification
        .or(params.is_external_modification_allowed)
        .unwrap_or(false);
    let converted = state
        .store
        .convert_unmanaged(
            workspace_id,
            &params.access_code_id,
            allowed,
            state.clock.now(),
        )
        .await?;
    if !converted {
        return Err(ApiError::access_code_not_found());
    }
    Ok(())
}

/// The code stays on the lock; Keyway manages it from now on.
async fn convert_to_managed(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<ConvertParams>,
) -> Result<Json<Value>, ApiError> {
    convert(&state, &workspace.workspace_id, &params).await?;
    Ok(Json(json!({ "ok": true })))
}

/// `is_managed: true` converts, like `convert_to_managed`.
async fn update_unmanaged(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<ConvertParams>,
) -> Result<Json<Value>, ApiError> {
    match params.is_managed {
        Some(true) => {}
        Some(false) => {
            return Err(ApiError::invalid(
                "is_managed",
                "An unmanaged access code is already unmanaged",
            ))
        }
        None => return Err(ApiError::invalid("is_managed", "is_managed is required")),
    }
    convert(&state, &workspace.workspace_id, &params).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct DeleteUnmanagedParams {
    access_code_id: String,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    sync: Option<bool>,
}

/// Takes an unmanaged code off its lock (through the engine, with an action attempt).
async fn delete_unmanaged(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<DeleteUnmanagedParams>,
) -> Result<Json<Value>, ApiError> {
    let code = state
        .store
        .get_unmanaged_access_code(
            &workspace.workspace_id,
            CodeLookup::Id(&params.access_code_id),
        )
        .await?
        .ok_or_else(ApiError::access_code_not_found)?;
    let device = device_of(&state, &workspace.workspace_id, &code.device_id).await?;
    let attempt = state
        .store
        .delete_unmanaged(&device, &code.access_code_id, state.clock.now())
        .await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    let attempt = if params.sync == Some(true) {
        wait_for_attempt(&state, &workspace.workspace_id, attempt).await?
    } else {
        attempt
    };
    Ok(Json(json!({ "action_attempt": attempt, "ok": true })))
}

#[derive(Deserialize)]
struct CreateMultipleParams {
    #[serde(deserialize_with = "lenient::strings")]
    device_ids: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    behavior_when_code_cannot_be_shared: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    starts_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    ends_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    allow_external_modification: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_external_modification_allowed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    preferred_code_length: Option<u32>,
}

/// A PIN every one of the locks accepts and none of them holds, if one can be found.
fn shared_code(
    locks: &[(LockRules, Vec<String>)],
    preferred_length: Option<u32>,
) -> Option<String> {
    let (first_rules, _) = locks.first()?;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let candidate = policy::generate(first_rules, &[], preferred_length, &mut rng)?;
        let fits_all = locks.iter().all(|(rules, taken)| {
            PinCode::parse(&candidate, rules).is_ok() && !taken.contains(&candidate)
        });
        if fits_all {
            return Some(candidate);
        }
    }
    None
}

/// One code on each of several locks. Without a chosen `code` they share one PIN, linked by a
/// `common_code_key`; if no PIN fits every lock, `behavior_when_code_cannot_be_shared` decides
/// (`throw`, the default, creates none). All codes are created, or none.
async fn create_multiple(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<CreateMultipleParams>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    if params.device_ids.is_empty() {
        return Err(ApiError::invalid(
            "device_ids",
            "device_ids must not be empty",
        ));
    }
    let random_fallback = match params.behavior_when_code_cannot_be_shared.as_deref() {
        None | Some("throw") => false,
        Some("create_random_code") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "behavior_when_code_cannot_be_shared",
                "behavior_when_code_cannot_be_shared must be throw or create_random_code",
            ))
        }
    };
    let starts_at = timestamp("starts_at", params.starts_at.as_deref())?;
    let ends_at = timestamp("ends_at", params.ends_at.as_deref())?;
    let window =
        Window::new(starts_at, ends_at, now).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let mut devices = Vec::with_capacity(params.device_ids.len());
    let mut locks = Vec::with_capacity(params.device_ids.len());
    for device_id in &params.device_ids {
        let device = device_of(&state, &workspace.workspace_id, device_id).await?;
        locks.push((
            device.lock_rules()?,
            state.store.codes_on_device(&device.device_id).await?,
        ));
        devices.push(device);
    }
    // (PIN for each lock, the group key when they share a generated PIN)
    let (pins, common_code_key): (Vec<String>, Option<String>) = match &params.code {
        Some(raw) => {
            let pins = locks
                .iter()
                .map(|(rules, _)| pin(raw, rules).map(PinCode::into_string))
                .collect::<Result<Vec<_>, _>>()?;
            (pins, None)
        }
        None => match shared_code(&locks, params.preferred_code_length) {
            Some(shared) => (
                vec![shared; locks.len()],
                Some(format!("auto_set_by_create_multiple_{}", uuid::Uuid::new_v4())),
            ),
            None if random_fallback => {
                let mut rng = rand::thread_rng();
                let pins = locks
                    .iter()
                    .map(|(rules, taken)| {
                        let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
                        policy::generate(rules, &taken, params.preferred_code_length, &mut rng)
                            .ok_or_else(|| ApiError::invalid_input("No free code could be generated for a device"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (pins, None)
            }
            None => {
                return Err(ApiError::BadRequest {
                    kind: "cannot_share_code",
                    message: "No code fits every device; pass behavior_when_code_cannot_be_shared=create_random_code"
                        .into(),
                })
            }
        },
    };
    let new_codes = devices
        .iter()
        .zip(pins)
        .map(|(device, code)| NewAccessCode {
            device,
            name: params.name.clone(),
            code,
            kind: if window.is_some() {
                AccessCodeType::TimeBound
            } else {
                AccessCodeType::Ongoing
            },
            starts_at: window.map(|w| w.starts_at),
            ends_at: window.map(|w| w.ends_at),
            status: pending_status(window, now),
            is_external_modification_allowed: params
                .allow_external_modification
                .or(params.is_external_modification_allowed)
                .unwrap_or(false),
            is_one_time_use: false,
            is_offline_access_code: false,
            common_code_key: common_code_key.clone(),
            use_backup_access_code_pool: false,
            job_at: match window {
                Some(w) if now < w.starts_at => w.starts_at,
                _ => now,
            },
        })
        .collect();
    let created = state
        .store
        .create_access_codes(new_codes, now)
        .await
        .map_err(duplicate_error)?;
    state
        .engine
        .notify_devices(created.iter().map(|(code, _)| code.device_id.as_str()));
    let codes: Vec<AccessCode> = created.into_iter().map(|(code, _)| code).collect();
    Ok(Json(json!({ "access_codes": codes, "ok": true })))
}

#[derive(Deserialize)]
struct UpdateMultipleParams {
    common_code_key: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    starts_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    ends_at: Option<String>,
}

/// Updates every code of a `create_multiple` group the same way.
async fn update_multiple(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<UpdateMultipleParams>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let codes = state
        .store
        .codes_with_common_key(&workspace.workspace_id, &params.common_code_key)
        .await?;
    if codes.is_empty() {
        return Err(ApiError::access_code_not_found());
    }
    for code in codes {
        let update = UpdateParams {
            access_code_id: code.access_code_id.clone(),
            device_id: None,
            name: params.name.clone(),
            code: None,
            starts_at: params.starts_at.clone(),
            ends_at: params.ends_at.clone(),
            kind: None,
            allow_external_modification: None,
            is_external_modification_allowed: None,
            is_managed: None,
            sync: None,
        };
        apply_update(&state, &workspace.workspace_id, code, &update, now).await?;
    }
    state.engine.notify();
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct ConstraintsParams {
    device_id: String,
    #[serde(default, deserialize_with = "lenient::opt_u32s")]
    supported_code_lengths: Option<Vec<u32>>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    min_code_length: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    max_code_length: Option<u32>,
}

/// Records the code lengths a device supports (`supported_code_lengths`, or a min/max range).
async fn report_device_constraints(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<ConstraintsParams>,
) -> Result<Json<Value>, ApiError> {
    let device = device_of(&state, &workspace.workspace_id, &params.device_id).await?;
    let in_range = |n: &u32| (4..=20).contains(n);
    let lengths: Vec<u32> = match (
        params.supported_code_lengths,
        params.min_code_length,
        params.max_code_length,
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::invalid_input(
                "Give supported_code_lengths or min_code_length/max_code_length, not both",
            ))
        }
        (Some(lengths), None, None) if !lengths.is_empty() && lengths.iter().all(in_range) => {
            lengths
        }
        (Some(_), None, None) => {
            return Err(ApiError::invalid(
                "supported_code_lengths",
                "supported_code_lengths must be integers between 4 and 20",
            ))
        }
        (None, min, max) if min.is_some() || max.is_some() => {
            let min = min.unwrap_or(4);
            let max = max.unwrap_or(20);
            if !in_range(&min) || !in_range(&max) || min > max {
                return Err(ApiError::invalid_input(
                    "min_code_length and max_code_length must be between 4 and 20, min <= max",
                ));
            }
            (min..=max).collect()
        }
        _ => {
            return Err(ApiError::invalid_input(
                "Either supported_code_lengths or min_code_length/max_code_length is required",
            ))
        }
    };
    state
        .store
        .set_supported_code_lengths(&device, &lengths)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

/// Tops the device's backup pool up with fresh PINs the lock accepts.
async fn refill_backup_pool(state: &AppState, device: &DeviceRecord) -> Result<(), ApiError> {
    let missing = state.store.backup_pool_shortfall(&device.device_id).await?;
    if missing == 0 {
        return Ok(());
    }
    let rules = device.lock_rules()?;
    let mut taken = state.store.codes_on_device(&device.device_id).await?;
    let mut pins = Vec::new();
    for _ in 0..missing {
        let taken_refs: Vec<&str> = taken.iter().map(String::as_str).collect();
        let Some(pin) = policy::generate(&rules, &taken_refs, None, &mut rand::thread_rng()) else {
            break;
        };
        taken.push(pin.clone());
        pins.push(pin);
    }
    state
        .store
        .add_backup_codes(device, &pins, state.clock.now())
        .await?;
    Ok(())
}

#[derive(Deserialize)]
struct PullBackupParams {
    access_code_id: String,
}

/// Hands out a backup code for a time-bound code (the same one on every call) and refills the
/// pool. Answers it as both `access_code` (seam JS, Python) and `backup_access_code` (v8).
async fn pull_backup_access_code(
    State(state): State<AppState>,
    Auth(workspace): Auth,
    Params(params): Params<PullBackupParams>,
) -> Result<Json<Value>, ApiError> {
    let original = state
        .store
        .get_access_code(
            &workspace.workspace_id,
            CodeLookup::Id(&params.access_code_id),
        )
        .await?
        .ok_or_else(ApiError::access_code_not_found)?;
    if original.kind != AccessCodeType::TimeBound {
        return Err(ApiError::BadRequest {
            kind: "access_code_not_time_bound",
            message: "Backups can only be used for time_bound access codes.".into(),
        });
    }
    let device = device_of(&state, &workspace.workspace_id, &original.device_id).await?;
    if device.backup_pool_size == 0 {
        return Err(ApiError::BadRequest {
            kind: "backup_access_code_pool_not_enabled",
            message:
                "Create a code with use_backup_access_code_pool to turn on this device's pool."
                    .into(),
        });
    }
    let backup = state
        .store
        .pull_backup_code(&device, &original, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound {
            kind: "backup_access_code_not_found",
            message: "The backup access code pool is empty".into(),
        })?;
    refill_backup_pool(&state, &device).await?;
    state.engine.notify_devices([device.device_id.as_str()]);
    Ok(Json(json!({
        "access_code": backup,
        "backup_access_code": backup,
        "ok": true,
    })))
}
