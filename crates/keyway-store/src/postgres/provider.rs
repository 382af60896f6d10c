//! PostgreSQL: accounts and devices of real providers.

use async_trait::async_trait;
use keyway_model::Timestamp;

use super::PgStore;
use crate::accounts::account_type_display_name;
use crate::provider::{ProviderAccount, ProviderDevice, ProviderStore};
use crate::{Result, StoreError};

#[async_trait]
impl ProviderStore for PgStore {
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)
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
        .execute(&self.pool)
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
             WHERE account_type = $1 AND endpoint IS NOT NULL ORDER BY seq",
        )
        .bind(account_type)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_account_connected(
        &self,
        connected_account_id: &str,
        connected: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE connected_accounts SET disconnected = $1 WHERE connected_account_id = $2",
        )
        .bind(!connected)
        .bind(connected_account_id)
        .execute(&self.pool)
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
        // One statement, so that instances reporting the same lock at once do not collide.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                device_type, name, manufacturer, code_rules, created_at, online, locked, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, TRUE), $12)
             ON CONFLICT (device_id) DO UPDATE SET name = excluded.name,
                manufacturer = excluded.manufacturer, device_type = excluded.device_type,
                code_rules = excluded.code_rules, online = excluded.online,
                locked = COALESCE($11, devices.locked), details = excluded.details
             WHERE devices.connected_account_id = excluded.connected_account_id
             RETURNING (xmax = 0)",
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
        .bind(device.locked)
        .bind(&details)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(false);
        Ok(inserted)
    }

    async fn set_device_state(
        &self,
        device_id: &str,
        online: Option<bool>,
        locked: Option<bool>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET online = COALESCE($1, online), locked = COALESCE($2, locked)
             WHERE device_id = $3",
        )
        .bind(online)
        .bind(locked)
        .bind(device_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
