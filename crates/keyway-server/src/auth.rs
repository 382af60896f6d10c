//! API-key authentication: `Authorization: Bearer <key>` (or `seam-api-key: <key>`) resolves
//! to the key's workspace; every handler works inside that workspace only.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keyway_model::Workspace;
use keyway_store::hash_api_key;

use crate::app::AppState;
use crate::error::ApiError;

/// The caller's workspace.
pub struct Auth(pub Workspace);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let token = header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| header("seam-api-key"))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_api_key(token);
        if let Some(workspace) = state.auth_cache.get(&hash) {
            return Ok(Auth(workspace));
        }
        let workspace = state
            .store
            .workspace_for_api_key(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.auth_cache.put(hash, workspace.clone());
        Ok(Auth(workspace))
    }
}

/// Recently seen API keys (by hash) and their workspace, for a few seconds: saves a database
/// round trip on every request.
#[derive(Default)]
pub struct AuthCache {
    entries: RwLock<HashMap<String, (Workspace, Instant)>>,
}

impl AuthCache {
    const TTL: Duration = Duration::from_secs(10);
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, hash: &str) -> Option<Workspace> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(workspace, _)| workspace.clone())
    }

    fn put(&self, hash: String, workspace: Workspace) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (workspace, Instant::now()));
    }
}
