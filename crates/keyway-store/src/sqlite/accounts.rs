//! SQLite: workspaces, API keys, connected accounts and devices.

use async_trait::async_trait;
use keyway_model::{ConnectedAccount, Timestamp, Workspace};

use rusqlite::params;

use super::db::{exec, row, rows};
use super::SqliteStore;
use crate::accounts::{
    account_type_display_name, paginate, AccountStore, ConnectedAccountRow, DeviceCodeRules,
    DeviceRecord, NewWorkspace, WorkspaceRow,
};
use crate::{hash_api_key, new_id, Page, Result, StoreError};

pub(crate) const DEVICE_SELECT: &str = "SELECT d.seq, d.device_id, d.workspace_id, \
    d.connected_account_id, d.provider, d.device_type, d.name, d.manufacturer, d.code_rules, \
    d.created_at, d.details, COALESCE(s.online, d.online, 1) AS online, COALESCE(s.removed, 0) AS removed, COALESCE(s.locked, d.locked, 1) AS locked, \
    a.disconnected AS account_disconnected, d.backup_pool_size, \
    (SELECT COUNT(*) FROM access_codes b WHERE b.device_id = d.device_id AND b.is_backup = 1 \
        AND b.pulled_for_access_code_id IS NULL AND b.deleted = 0 AND b.status = 'set') \
        AS backup_codes_ready \
    FROM devices d LEFT JOIN sandbox_locks s ON s.device_id = d.device_id \
    JOIN connected_accounts a ON a.connected_account_id = d.connected_account_id";

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_workspace(&self, new: NewWorkspace<'_>, now: Timestamp) -> Result<Workspace> {
        let workspace_id = new.workspace_id.map(str::to_owned).unwrap_or_else(new_id);
        let (name, is_sandbox) = (new.name.to_owned(), new.is_sandbox);
        let token_hash = hash_api_key(new.api_key);
        let id = workspace_id.clone();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "INSERT INTO workspaces (workspace_id, name, company_name, is_sandbox, created_at)
                     VALUES (?1, ?2, ?2, ?3, ?4) ON CONFLICT (workspace_id) DO NOTHING",
                    params![id, name, is_sandbox, now.millis()],
                )?;
                exec(
                    c,
                    "INSERT INTO api_keys (token_hash, workspace_id, created_at) VALUES (?, ?, ?)
                     ON CONFLICT (token_hash) DO NOTHING",
                    params![token_hash, id, now.millis()],
                )?;
                Ok(())
            })
            .await?;
        self.get_workspace(&workspace_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("workspace vanished".into()))
    }

    async fn workspace_for_api_key(&self, token: &str) -> Result<Option<Workspace>> {
        let token_hash = hash_api_key(token);
        let found: Option<WorkspaceRow> = self
            .db
            .read(move |c| {
                row(
                    c,
                    "SELECT w.workspace_id, w.name, w.company_name, w.is_sandbox FROM api_keys k
                     JOIN workspaces w ON w.workspace_id = k.workspace_id WHERE k.token_hash = ?",
                    params![token_hash],
                )
            })
            .await?;
        Ok(found.map(Workspace::from))
    }

    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>> {
        let workspace_id = workspace_id.to_owned();
        let found: Option<WorkspaceRow> = self
            .db
            .read(move |c| {
                row(
                    c,
                    "SELECT workspace_id, name, company_name, is_sandbox FROM workspaces
                     WHERE workspace_id = ?",
                    params![workspace_id],
                )
            })
            .await?;
        Ok(found.map(Workspace::from))
    }

    async fn insert_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()> {
        let type_display = account_type_display_name(account_type);
        let values = (
            connected_account_id.to_owned(),
            workspace_id.to_owned(),
            account_type.to_owned(),
            type_display.to_owned(),
            display_name.to_owned(),
        );
        self.db
            .write(move |c| {
                let (id, workspace_id, account_type, type_display, display_name) = &values;
                exec(
                    c,
                    "INSERT INTO connected_accounts (connected_account_id, workspace_id,
                        account_type, account_type_display_name, display_name, created_at)
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connected_account_id) DO NOTHING",
                    params![
                        id,
                        workspace_id,
                        account_type,
                        type_display,
                        display_name,
                        now.millis()
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_connected_accounts(
        &self,
        workspace_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ConnectedAccount>> {
        let workspace_id = workspace_id.to_owned();
        let found: Vec<ConnectedAccountRow> = self
            .db
            .read(move |c| {
                rows(
                    c,
                    "SELECT seq, disconnected, connected_account_id, account_type,
                        account_type_display_name, display_name, created_at
                     FROM connected_accounts
                     WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    params![workspace_id, after.unwrap_or(0), i64::from(limit) + 1],
                )
            })
            .await?;
        paginate(found, limit, |r| r.seq, ConnectedAccountRow::into_model)
    }

    async fn get_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<Option<ConnectedAccount>> {
        let (workspace_id, id) = (workspace_id.to_owned(), connected_account_id.to_owned());
        let found: Option<ConnectedAccountRow> = self
            .db
            .read(move |c| {
                row(
                    c,
                    "SELECT seq, disconnected, connected_account_id, account_type,
                        account_type_display_name, display_name, created_at
                     FROM connected_accounts
                     WHERE workspace_id = ? AND connected_account_id = ?",
                    params![workspace_id, id],
                )
            })
            .await?;
        found.map(ConnectedAccountRow::into_model).transpose()
    }

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
    ) -> Result<()> {
        let rules = serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let values = [
            device_id,
            workspace_id,
            connected_account_id,
            device_type,
            name,
            manufacturer,
        ]
        .map(str::to_owned);
        let delay_ms = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        self.db
            .write(move |c| {
                let [device_id, workspace_id, account_id, device_type, name, manufacturer] =
                    &values;
                exec(
                    c,
                    "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                        device_type, name, manufacturer, code_rules, created_at)
                     VALUES (?, ?, ?, 'sandbox', ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING",
                    params![
                        device_id,
                        workspace_id,
                        account_id,
                        device_type,
                        name,
                        manufacturer,
                        rules,
                        now.millis()
                    ],
                )?;
                exec(
                    c,
                    "INSERT INTO sandbox_locks (device_id, delay_ms) VALUES (?, ?)
                     ON CONFLICT (device_id) DO UPDATE SET delay_ms = excluded.delay_ms",
                    params![device_id, delay_ms],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_devices(
        &self,
        workspace_id: &str,
        connected_account_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<DeviceRecord>> {
        let sql = format!(
            "{DEVICE_SELECT} WHERE d.workspace_id = ?1
             AND (?2 IS NULL OR d.connected_account_id = ?2)
             AND d.seq > ?3 ORDER BY d.seq LIMIT ?4"
        );
        let workspace_id = workspace_id.to_owned();
        let account_id = connected_account_id.map(str::to_owned);
        let found: Vec<DeviceRecord> = self
            .db
            .read(move |c| {
                rows(
                    c,
                    &sql,
                    params![
                        workspace_id,
                        account_id,
                        after.unwrap_or(0),
                        i64::from(limit) + 1
                    ],
                )
            })
            .await?;
        paginate(found, limit, |r| r.seq, Ok)
    }

    async fn get_device(
        &self,
        workspace_id: &str,
        device_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Option<DeviceRecord>> {
        // By id: its record, kept between requests (see `device_by_id`), if it is in the
        // workspace and has the name asked for.
        if let Some(id) = device_id {
            return Ok(self.device_by_id(id).await?.filter(|record| {
                record.workspace_id == workspace_id && name.is_none_or(|name| record.name == name)
            }));
        }
        let Some(name) = name else {
            return Ok(None);
        };
        let sql = format!(
            "{DEVICE_SELECT} WHERE d.name = ?1 AND d.workspace_id = ?2 ORDER BY d.seq LIMIT 1"
        );
        let (name, workspace_id) = (name.to_owned(), workspace_id.to_owned());
        self.db
            .read(move |c| row(c, &sql, params![name, workspace_id]))
            .await
    }

    async fn set_supported_code_lengths(
        &self,
        device: &DeviceRecord,
        lengths: &[u32],
    ) -> Result<()> {
        let mut rules = device.code_rules()?;
        rules.supported_code_lengths = lengths.to_vec();
        let rules =
            serde_json::to_string(&rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let device_id = device.device_id.clone();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE devices SET code_rules = ? WHERE device_id = ?",
                    params![rules, device_id],
                )?;
                Ok(())
            })
            .await
    }
}

impl SqliteStore {
    /// A device's record, whatever its workspace; kept between calls (see `device_cache`).
    pub(crate) async fn device_by_id(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let versions = (self.db.devices_version(), self.db.backup_version(device_id));
        if let Some(record) = self.devices.get(device_id, versions) {
            return Ok(Some(record));
        }
        let sql = format!("{DEVICE_SELECT} WHERE d.device_id = ?");
        let id = device_id.to_owned();
        let found: Option<DeviceRecord> = self.db.read(move |c| row(c, &sql, params![id])).await?;
        if let Some(record) = &found {
            self.devices.put(versions, record);
        }
        Ok(found)
    }
}
