//! API-key authentication: `Authorization: Bearer <key>` (or `seam-api-key: <key>`) resolves
//! to the key's workspace; every handler works inside that workspace only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keyway_model::Workspace;

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
        let workspace = state
            .store
            .workspace_for_api_key(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Auth(workspace))
    }
}
