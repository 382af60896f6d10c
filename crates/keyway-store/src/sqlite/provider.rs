//! SQLite: accounts and devices of real providers.

use async_trait::async_trait;
use keyway_model::Timestamp;

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
        let done = sqlx::query(
            "INSERT INTO connected_accounts (connected_account_id, workspace_id, account_type,
                account_type_display_name, display_name, created_at, endpoint)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (connected_account_id) DO UPDATE SET endpoint = excluded.endpoint
             WHERE connected_accounts.workspace_id = excluded.workspace_id
               AND connected_accounts.account_type = excluded.account_type",
        )
        .bind(&account.connected_account_id)
        .bind(&account.workspace_id)
        .bind(account_type)
        .bind(account_type_display_name(account_type))
        .bind(display_name)
        .bind(now.millis())
        .bind(&account.endpoint)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "connected account {} belongs to another workspace or provider",
                account.connected_account_id
            )));
        }
        Ok(())
    }

    async fn provider_accounts(&self, account_type: &str) -> Result<Vec<ProviderAccount>> {
        Ok(sqlx::query_as(
            "SELECT workspace_id, connected_account_id, endpoint FROM connected_accounts
             WHERE account_type = ? AND endpoint IS NOT NULL ORDER BY seq",
        )
        .bind(account_type)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn set_account_connected(
        &self,
        connected_account_id: &str,
        connected: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE connected_accounts SET disconnected = ? WHERE connected_account_id = ?",
        )
        .bind(!connected)
        .bind(connected_account_id)
        .execute(&self.writer)
        .await?;
        Ok(())
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
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE devices SET name = ?, manufacturer = ?, device_type = ?, code_rules = ?,
                online = ?, locked = COALESCE(?, locked), details = ?
             WHERE device_id = ? AND connected_account_id = ?",
        )
        .bind(device.name)
        .bind(device.manufacturer)
        .bind(device.device_type)
        .bind(&rules)
        .bind(device.online)
        .bind(device.locked)
        .bind(&details)
        .bind(device.device_id)
        .bind(device.connected_account_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                device_type, name, manufacturer, code_rules, created_at, online, locked, details)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(device.device_id)
        .bind(device.workspace_id)
        .bind(device.connected_account_id)
        .bind(device.provider)
        .bind(device.device_type)
        .bind(device.name)
        .bind(device.manufacturer)
        .bind(&rules)
        .bind(now.millis())
        .bind(device.online)
        .bind(device.locked.unwrap_or(true))
        .bind(&details)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_device_state(
        &self,
        device_id: &str,
        online: Option<bool>,
        locked: Option<bool>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET online = COALESCE(?, online), locked = COALESCE(?, locked)
             WHERE device_id = ?",
        )
        .bind(online)
        .bind(locked)
        .bind(device_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
