//! Workspaces, API keys, connected accounts and devices.

use keyway_core::policy::LockRules;
use keyway_model::{
    CodeConstraint, ConnectedAccount, Device, DeviceError, DeviceProperties, DeviceWarning,
    Timestamp, Workspace,
};
use serde::{Deserialize, Serialize};

use crate::rows::ts;
use crate::{hash_api_key, new_id, Page, Result, Store, StoreError};

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

#[derive(Debug, Clone, sqlx::FromRow)]
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
    /// Whether the lock answers (sandbox locks: their simulated connectivity).
    pub online: bool,
    /// The lock was removed from its account.
    pub removed: bool,
    /// Its connected account lost its connection.
    pub account_disconnected: bool,
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
        Ok(LockRules::from_properties(&self.properties()?))
    }

    pub fn properties(&self) -> Result<DeviceProperties> {
        let rules = self.code_rules()?;
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

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    workspace_id: String,
    name: String,
    company_name: String,
    is_sandbox: bool,
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

#[derive(sqlx::FromRow)]
struct ConnectedAccountRow {
    seq: i64,
    disconnected: bool,
    connected_account_id: String,
    account_type: String,
    account_type_display_name: String,
    display_name: String,
    created_at: i64,
}

impl ConnectedAccountRow {
    fn into_model(self) -> Result<ConnectedAccount> {
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

pub(crate) const DEVICE_SELECT: &str = "SELECT d.seq, d.device_id, d.workspace_id, \
    d.connected_account_id, d.provider, d.device_type, d.name, d.manufacturer, d.code_rules, \
    d.created_at, COALESCE(s.online, 1) AS online, COALESCE(s.removed, 0) AS removed, COALESCE(s.locked, 1) AS locked, \
    a.disconnected AS account_disconnected, d.backup_pool_size, \
    (SELECT COUNT(*) FROM access_codes b WHERE b.device_id = d.device_id AND b.is_backup = 1 \
        AND b.pulled_for_access_code_id IS NULL AND b.deleted = 0 AND b.status = 'set') \
        AS backup_codes_ready \
    FROM devices d LEFT JOIN sandbox_locks s ON s.device_id = d.device_id \
    JOIN connected_accounts a ON a.connected_account_id = d.connected_account_id";

impl Store {
    /// Creates a workspace with one API key (stored hashed). Idempotent for a given id.
    pub async fn create_workspace(
        &self,
        new: NewWorkspace<'_>,
        now: Timestamp,
    ) -> Result<Workspace> {
        let workspace_id = new.workspace_id.map(str::to_owned).unwrap_or_else(new_id);
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (workspace_id, name, company_name, is_sandbox, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind(&workspace_id)
        .bind(new.name)
        .bind(new.name)
        .bind(new.is_sandbox)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_keys (token_hash, workspace_id, created_at) VALUES (?, ?, ?)
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(hash_api_key(new.api_key))
        .bind(&workspace_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_workspace(&workspace_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("workspace vanished".into()))
    }

    pub async fn workspace_for_api_key(&self, token: &str) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = sqlx::query_as(
            "SELECT w.workspace_id, w.name, w.company_name, w.is_sandbox FROM api_keys k
             JOIN workspaces w ON w.workspace_id = k.workspace_id WHERE k.token_hash = ?",
        )
        .bind(hash_api_key(token))
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Workspace::from))
    }

    pub async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = sqlx::query_as(
            "SELECT workspace_id, name, company_name, is_sandbox FROM workspaces WHERE workspace_id = ?",
        )
        .bind(workspace_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Workspace::from))
    }

    pub async fn insert_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()> {
        let type_display = match account_type {
            "august" => "August",
            "schlage" => "Schlage",
            other => other,
        };
        sqlx::query(
            "INSERT INTO connected_accounts (connected_account_id, workspace_id, account_type,
                account_type_display_name, display_name, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connected_account_id) DO NOTHING",
        )
        .bind(connected_account_id)
        .bind(workspace_id)
        .bind(account_type)
        .bind(type_display)
        .bind(display_name)
        .bind(now.millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn list_connected_accounts(
        &self,
        workspace_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ConnectedAccount>> {
        let rows: Vec<ConnectedAccountRow> = sqlx::query_as(
            "SELECT seq, disconnected, connected_account_id, account_type, account_type_display_name,
                display_name, created_at FROM connected_accounts
             WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(workspace_id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        paginate(rows, limit, |r| r.seq, ConnectedAccountRow::into_model)
    }

    pub async fn get_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<Option<ConnectedAccount>> {
        let row: Option<ConnectedAccountRow> = sqlx::query_as(
            "SELECT seq, disconnected, connected_account_id, account_type, account_type_display_name,
                display_name, created_at FROM connected_accounts
             WHERE workspace_id = ? AND connected_account_id = ?",
        )
        .bind(workspace_id)
        .bind(connected_account_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(ConnectedAccountRow::into_model).transpose()
    }

    /// Adds a sandbox lock (and its empty memory). Idempotent for a given id.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_sandbox_device(
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
    ) -> Result<()> {
        let rules = serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                device_type, name, manufacturer, code_rules, created_at)
             VALUES (?, ?, ?, 'sandbox', ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(device_id)
        .bind(workspace_id)
        .bind(connected_account_id)
        .bind(device_type)
        .bind(name)
        .bind(manufacturer)
        .bind(rules)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO sandbox_locks (device_id, delay_ms) VALUES (?, ?)
             ON CONFLICT (device_id) DO UPDATE SET delay_ms = excluded.delay_ms",
        )
        .bind(device_id)
        .bind(delay_ms as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_devices(
        &self,
        workspace_id: &str,
        connected_account_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<DeviceRecord>> {
        let sql = format!(
            "{DEVICE_SELECT} WHERE d.workspace_id = ? AND (? IS NULL OR d.connected_account_id = ?)
             AND d.seq > ? ORDER BY d.seq LIMIT ?"
        );
        let rows: Vec<DeviceRecord> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(connected_account_id)
            .bind(connected_account_id)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        paginate(rows, limit, |r| r.seq, Ok)
    }

    /// A device of the workspace, by id or by name.
    pub async fn get_device(
        &self,
        workspace_id: &str,
        device_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Option<DeviceRecord>> {
        // By id through its unique index; by name otherwise.
        let (column, value) = match (device_id, name) {
            (Some(id), _) => ("d.device_id", id),
            (None, Some(name)) => ("d.name", name),
            (None, None) => return Ok(None),
        };
        let sql = format!(
            "{DEVICE_SELECT} WHERE {column} = ? AND d.workspace_id = ?
             AND (? IS NULL OR d.name = ?) ORDER BY d.seq LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(value)
            .bind(workspace_id)
            .bind(name)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Records the code lengths a device reported it supports.
    pub async fn set_supported_code_lengths(
        &self,
        device: &DeviceRecord,
        lengths: &[u32],
    ) -> Result<()> {
        let mut rules = device.code_rules()?;
        rules.supported_code_lengths = lengths.to_vec();
        let rules =
            serde_json::to_string(&rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE devices SET code_rules = ? WHERE device_id = ?")
            .bind(rules)
            .bind(&device.device_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn device_by_id(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!("{DEVICE_SELECT} WHERE d.device_id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(device_id)
            .fetch_optional(&self.reader)
            .await?)
    }
}

pub(crate) async fn device_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    device_id: &str,
) -> Result<DeviceRecord> {
    let sql = format!("{DEVICE_SELECT} WHERE d.device_id = ?");
    Ok(sqlx::query_as(&sql)
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?)
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
