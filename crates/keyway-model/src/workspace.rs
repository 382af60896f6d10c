//! Workspaces and the pagination block of list answers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub workspace_id: String,
    pub name: String,
    pub company_name: String,
    pub is_sandbox: bool,
    pub is_suspended: bool,
    pub connect_partner_name: Option<String>,
    pub is_publishable_key_auth_enabled: bool,
    pub connect_webview_customization: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    pub has_next_page: bool,
    pub next_page_cursor: Option<String>,
    pub next_page_url: Option<String>,
}
