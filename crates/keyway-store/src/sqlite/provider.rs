//! SQLite: accounts and devices of real providers.

use async_trait::async_trait;
use keyway_model::Timestamp;

use rusqlite::params;

use super::db::{exec, rows};
use super::SqliteStore;
use crate::accounts::account_type_display_name;
use crate::provider::{ProviderAccount, ProviderDevice, ProviderStore};
use crate::{Result, StoreError};

#[async_trait]
impl ProviderStore for SqliteStore {
    async fn add_provider_account(
        &self,
        account: &ProviderAccount,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()> {
        let account = account.clone();
        let type_display = account_type_display_name(account_type).to_owned();
        let (account_type, display_name) = (account_type.to_owned(), display_name.to_owned());
        self.db
            .write(move |c| {
                let changed = exec(
                    c,
                    "INSERT INTO connected_accounts (connected_account_id, workspace_id,
                        account_type, account_type_display_name, display_name, created_at, endpoint)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (connected_account_id) DO UPDATE SET endpoint = excluded.endpoint
                     WHERE connected_accounts.workspace_id = excluded.workspace_id
                       AND connected_accounts.account_type = excluded.account_type",
                    params![
                        account.connected_account_id,
                        account.workspace_id,
                        account_type,
                        type_display,
                        display_name,
                        now.millis(),
                        account.endpoint
                    ],
                )?;
                if changed == 0 {
                    return Err(StoreError::Conflict(format!(
                        "connected account {} belongs to another workspace or provider",
                        account.connected_account_id
                    )));
                }
                Ok(())
            })
            .await
    }

    async fn provider_accounts(&self, account_type: &str) -> Result<Vec<ProviderAccount>> {
        let account_type = account_type.to_owned();
        self.db
            .read(move |c| {
                rows(
                    c,
                    "SELECT workspace_id, connected_account_id, endpoint FROM connected_accounts
                     WHERE account_type = ? AND endpoint IS NOT NULL ORDER BY seq",
                    params![account_type],
                )
            })
            .await
    }

    async fn set_account_connected(
        &self,
        connected_account_id: &str,
        connected: bool,
    ) -> Result<()> {
        let id = connected_account_id.to_owned();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE connected_accounts SET disconnected = ? WHERE connected_account_id = ?",
                    params![!connected, id],
                )?;
                Ok(())
            })
            .await
    }

    async fn upsert_provider_device(
        &self,
        device: &ProviderDevice<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        let rules =
            serde_json::to_string(device.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let details = serde_json::to_string(device.details)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let [device_id, workspace_id, account_id, provider, device_type, name, manufacturer] = [
            device.device_id,
            device.workspace_id,
            device.connected_account_id,
            device.provider,
            device.device_type,
            device.name,
            device.manufacturer,
        ]
        .map(str::to_owned);
        let (online, locked) = (device.online, device.locked);
        self.db
            .write(move |c| {
                let updated = exec(
                    c,
                    "UPDATE devices SET name = ?, manufacturer = ?, device_type = ?,
                        code_rules = ?, online = ?, locked = COALESCE(?, locked), details = ?
                     WHERE device_id = ? AND connected_account_id = ?",
                    params![
                        name,
                        manufacturer,
                        device_type,
                        rules,
                        online,
                        locked,
                        details,
                        device_id,
                        account_id
                    ],
                )?;
                if updated == 1 {
                    return Ok(false);
                }
                exec(
                    c,
                    "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                        device_type, name, manufacturer, code_rules, created_at, online, locked,
                        details)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        device_id,
                        workspace_id,
                        account_id,
                        provider,
                        device_type,
                        name,
                        manufacturer,
                        rules,
                        now.millis(),
                        online,
                        locked.unwrap_or(true),
                        details
                    ],
                )?;
                Ok(true)
            })
            .await
    }

    async fn set_device_state(
        &self,
        device_id: &str,
        online: Option<bool>,
        locked: Option<bool>,
    ) -> Result<()> {
        let device_id = device_id.to_owned();
        self.db
            .write(move |c| {
                exec(
                    c,
                    "UPDATE devices SET online = COALESCE(?, online), locked = COALESCE(?, locked)
                     WHERE device_id = ?",
                    params![online, locked, device_id],
                )?;
                Ok(())
            })
            .await
    }
}
