//! Workspaces, API keys, connected accounts and devices: their types, and the part of the store
//! interface that keeps them. No SQL here; each backend implements [`AccountStore`].

use async_trait::async_trait;
use keyway_core::policy::LockRules;
use keyway_model::{
    CodeConstraint, ConnectedAccount, Device, DeviceError, DeviceModel, DeviceProperties,
    DeviceWarning, Timestamp, Workspace,
};
use serde::{Deserialize, Serialize};

use crate::rows::ts;
use crate::{Page, Result, StoreError};

/// The code rules of a device, as stored (`devices.code_rules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCodeRules {
    pub supported_code_lengths: Vec<u32>,
    pub max_active_codes_supported: u32,
    #[serde(default)]
    pub code_constraints: Vec<CodeConstraint>,
    #[serde(default)]
    pub supports_backup_access_code_pool: bool,
}

impl DeviceCodeRules {
    /// The rules a lock enforces on PINs, from its stored code rules.
    pub fn lock_rules(&self) -> LockRules {
        LockRules {
            supported_code_lengths: self.supported_code_lengths.clone(),
            max_active_codes: self.max_active_codes_supported,
            constraints: self
                .code_constraints
                .iter()
                .map(|c| c.constraint_type.clone())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct DeviceRecord {
    pub seq: i64,
    pub device_id: String,
    pub workspace_id: String,
    pub connected_account_id: String,
    pub provider: String,
    pub device_type: String,
    pub name: String,
    pub manufacturer: String,
    pub code_rules: String,
    pub created_at: i64,
    /// What the provider tells beyond name and rules (JSON [`crate::DeviceDetails`]).
    pub details: Option<String>,
    /// Whether the lock answers (sandbox locks: their simulated connectivity).
    #[serde(deserialize_with = "crate::rows::flag")]
    pub online: bool,
    /// The lock was removed from its account.
    #[serde(deserialize_with = "crate::rows::flag")]
    pub removed: bool,
    /// Its connected account lost its connection.
    #[serde(deserialize_with = "crate::rows::flag")]
    pub account_disconnected: bool,
    #[serde(deserialize_with = "crate::rows::flag")]
    pub locked: bool,
    /// Target size of the backup pool (0: no pool), and backups ready on the lock.
    pub backup_pool_size: i64,
    pub backup_codes_ready: i64,
}

impl DeviceRecord {
    pub fn code_rules(&self) -> Result<DeviceCodeRules> {
        serde_json::from_str(&self.code_rules).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub fn lock_rules(&self) -> Result<LockRules> {
        Ok(self.code_rules()?.lock_rules())
    }

    pub fn details(&self) -> Result<crate::DeviceDetails> {
        match &self.details {
            Some(details) => {
                serde_json::from_str(details).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            None => Ok(Default::default()),
        }
    }

    pub fn properties(&self) -> Result<DeviceProperties> {
        let rules = self.code_rules()?;
        let details = self.details()?;
        Ok(DeviceProperties {
            name: self.name.clone(),
            online: self.online && !self.account_disconnected && !self.removed,
            locked: self.locked,
            door_open: false,
            manufacturer: self.manufacturer.clone(),
            supported_code_lengths: rules.supported_code_lengths,
            max_active_codes_supported: rules.max_active_codes_supported,
            code_constraints: rules.code_constraints,
            supports_backup_access_code_pool: rules.supports_backup_access_code_pool,
            has_native_entry_events: true,
            online_access_codes_enabled: true,
            offline_access_codes_enabled: false,
            supports_offline_access_codes: false,
            model: details.model.map(|display_name| DeviceModel {
                display_name,
                manufacturer_display_name: self.manufacturer.clone(),
            }),
            battery_level: details.battery_level,
        })
    }

    /// What keeps Keyway from reaching the lock, as `(error_code, message)`.
    pub fn fault_codes(&self) -> Vec<(&'static str, &'static str)> {
        let mut faults = Vec::new();
        if self.removed {
            faults.push(("device_removed", "Device has been removed"));
        }
        if self.account_disconnected {
            faults.push(("account_disconnected", "Account is disconnected"));
        }
        if !self.online {
            faults.push(("device_offline", "Device is offline"));
        }
        if self.backup_pool_size > 0 && self.backup_codes_ready == 0 {
            faults.push((
                "empty_backup_access_code_pool",
                "The backup access code pool is empty",
            ));
        }
        faults
    }

    pub fn to_device(&self) -> Result<Device> {
        let created_at = ts(self.created_at)?;
        let errors = self
            .fault_codes()
            .into_iter()
            .map(|(error_code, message)| DeviceError {
                error_code: error_code.into(),
                message: message.into(),
                created_at,
                is_device_error: true,
            })
            .collect();
        let sandbox = self.provider == "sandbox";
        Ok(Device {
            device_id: self.device_id.clone(),
            device_type: self.device_type.clone(),
            display_name: self.name.clone(),
            nickname: None,
            workspace_id: self.workspace_id.clone(),
            connected_account_id: self.connected_account_id.clone(),
            capabilities_supported: vec!["access_code".into(), "lock".into()],
            properties: self.properties()?,
            location: None,
            space_ids: vec![],
            errors,
            warnings: if self.backup_pool_size > 0
                && (1..self.backup_pool_size).contains(&self.backup_codes_ready)
            {
                vec![DeviceWarning {
                    warning_code: "partial_backup_access_code_pool".into(),
                    message: "The backup access code pool is not full".into(),
                    created_at,
                }]
            } else {
                vec![]
            },
            created_at,
            is_managed: true,
            custom_metadata: Default::default(),
            can_program_online_access_codes: true,
            can_program_offline_access_codes: false,
            can_remotely_lock: true,
            can_remotely_unlock: true,
            can_simulate_connection: sandbox,
            can_simulate_disconnection: sandbox,
            can_simulate_removal: false,
        })
    }
}

pub struct NewWorkspace<'a> {
    pub workspace_id: Option<&'a str>,
    pub name: &'a str,
    pub is_sandbox: bool,
    pub api_key: &'a str,
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct WorkspaceRow {
    pub workspace_id: String,
    pub name: String,
    pub company_name: String,
    #[serde(deserialize_with = "crate::rows::flag")]
    pub is_sandbox: bool,
}

impl From<WorkspaceRow> for Workspace {
    fn from(row: WorkspaceRow) -> Self {
        Workspace {
            workspace_id: row.workspace_id,
            name: row.name,
            company_name: row.company_name,
            is_sandbox: row.is_sandbox,
            is_suspended: false,
            connect_partner_name: None,
            is_publishable_key_auth_enabled: false,
            connect_webview_customization: serde_json::json!({}),
        }
    }
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ConnectedAccountRow {
    pub seq: i64,
    #[serde(deserialize_with = "crate::rows::flag")]
    pub disconnected: bool,
    pub connected_account_id: String,
    pub account_type: String,
    pub account_type_display_name: String,
    pub display_name: String,
    pub created_at: i64,
}

impl ConnectedAccountRow {
    pub fn into_model(self) -> Result<ConnectedAccount> {
        let created_at = ts(self.created_at)?;
        let errors = if self.disconnected {
            vec![DeviceError {
                error_code: "account_disconnected".into(),
                message: "Account is disconnected".into(),
                created_at,
                is_device_error: false,
            }]
        } else {
            vec![]
        };
        Ok(ConnectedAccount {
            created_at,
            connected_account_id: self.connected_account_id,
            account_type: self.account_type,
            account_type_display_name: self.account_type_display_name,
            display_name: self.display_name,
            errors,
            warnings: vec![],
            custom_metadata: Default::default(),
            automatically_manage_new_devices: true,
            accepted_capabilities: vec!["lock".into()],
            user_identifier: None,
        })
    }
}

/// How a connected account's type is shown.
pub(crate) fn account_type_display_name(account_type: &str) -> &str {
    match account_type {
        "august" => "August",
        "schlage" => "Schlage",
        "zwave_js" => "Z-Wave JS",
        other => other,
    }
}

/// Workspaces, API keys, connected accounts and devices.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a workspace with one API key (stored hashed). Idempotent for a given id.
    async fn create_workspace(&self, new: NewWorkspace<'_>, now: Timestamp) -> Result<Workspace>;

    async fn workspace_for_api_key(&self, token: &str) -> Result<Option<Workspace>>;

    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>>;

    /// Adds a connected account. Idempotent for a given id.
    async fn insert_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()>;

    async fn list_connected_accounts(
        &self,
        workspace_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ConnectedAccount>>;

    async fn get_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<Option<ConnectedAccount>>;

    /// Adds a sandbox lock (and its empty memory). Idempotent for a given id.
    #[allow(clippy::too_many_arguments)]
    async fn insert_sandbox_device(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
        device_id: &str,
        device_type: &str,
        name: &str,
        manufacturer: &str,
        rules: &DeviceCodeRules,
        delay_ms: u64,
        now: Timestamp,
    ) -> Result<()>;

    async fn list_devices(
        &self,
        workspace_id: &str,
        connected_account_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<DeviceRecord>>;

    /// A device of the workspace, by id or by name.
    async fn get_device(
        &self,
        workspace_id: &str,
        device_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Option<DeviceRecord>>;

    /// Records the code lengths a device reported it supports.
    async fn set_supported_code_lengths(
        &self,
        device: &DeviceRecord,
        lengths: &[u32],
    ) -> Result<()>;
}

/// Cuts `limit + 1` rows into a page and the cursor of the next one.
pub(crate) fn paginate<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    seq: impl Fn(&R) -> i64,
    convert: impl Fn(R) -> Result<T>,
) -> Result<Page<T>> {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(&seq)
    } else {
        None
    };
    let items = rows.into_iter().map(convert).collect::<Result<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}
