//! PostgreSQL: workspaces, API keys, connected accounts and devices.

use async_trait::async_trait;
use keyway_model::{ConnectedAccount, Timestamp, Workspace};

use super::PgStore;
use crate::accounts::{
    account_type_display_name, paginate, AccountStore, ConnectedAccountRow, DeviceCodeRules,
    DeviceRecord, NewWorkspace, WorkspaceRow,
};
use crate::{hash_api_key, json, new_id, Page, Result, StoreError};

pub(crate) const DEVICE_SELECT: &str = "SELECT d.seq, d.device_id, d.workspace_id, \
    d.connected_account_id, d.provider, d.device_type, d.name, d.manufacturer, d.code_rules, \
    d.created_at, d.details, COALESCE(s.online, d.online, TRUE) AS online, COALESCE(s.removed, FALSE) AS removed, \
    COALESCE(s.locked, d.locked, TRUE) AS locked, a.disconnected AS account_disconnected, \
    d.backup_pool_size, \
    (SELECT COUNT(*) FROM access_codes b WHERE b.device_id = d.device_id AND b.is_backup \
        AND b.pulled_for_access_code_id IS NULL AND NOT b.deleted AND b.status = 'set') \
        AS backup_codes_ready \
    FROM devices d LEFT JOIN sandbox_locks s ON s.device_id = d.device_id \
    JOIN connected_accounts a ON a.connected_account_id = d.connected_account_id";

const CONNECTED_ACCOUNT_SELECT: &str = "SELECT seq, disconnected, connected_account_id, \
    account_type, account_type_display_name, display_name, created_at FROM connected_accounts";

#[async_trait]
impl AccountStore for PgStore {
    async fn create_workspace(&self, new: NewWorkspace<'_>, now: Timestamp) -> Result<Workspace> {
        let workspace_id = new.workspace_id.map(str::to_owned).unwrap_or_else(new_id);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (workspace_id, name, company_name, is_sandbox, created_at)
             VALUES ($1, $2, $2, $3, $4) ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind(&workspace_id)
        .bind(new.name)
        .bind(new.is_sandbox)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_keys (token_hash, workspace_id, created_at) VALUES ($1, $2, $3)
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

    async fn workspace_for_api_key(&self, token: &str) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = sqlx::query_as(
            "SELECT w.workspace_id, w.name, w.company_name, w.is_sandbox FROM api_keys k
             JOIN workspaces w ON w.workspace_id = k.workspace_id WHERE k.token_hash = $1",
        )
        .bind(hash_api_key(token))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Workspace::from))
    }

    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = sqlx::query_as(
            "SELECT workspace_id, name, company_name, is_sandbox FROM workspaces
             WHERE workspace_id = $1",
        )
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Workspace::from))
    }

    async fn insert_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO connected_accounts (connected_account_id, workspace_id, account_type,
                account_type_display_name, display_name, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (connected_account_id) DO NOTHING",
        )
        .bind(connected_account_id)
        .bind(workspace_id)
        .bind(account_type)
        .bind(account_type_display_name(account_type))
        .bind(display_name)
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_connected_accounts(
        &self,
        workspace_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ConnectedAccount>> {
        let sql = format!(
            "{CONNECTED_ACCOUNT_SELECT} WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let rows: Vec<ConnectedAccountRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        paginate(rows, limit, |r| r.seq, ConnectedAccountRow::into_model)
    }

    async fn get_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<Option<ConnectedAccount>> {
        let sql = format!(
            "{CONNECTED_ACCOUNT_SELECT} WHERE workspace_id = $1 AND connected_account_id = $2"
        );
        let row: Option<ConnectedAccountRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(connected_account_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(ConnectedAccountRow::into_model).transpose()
    }

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
        let rules = json(rules)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (device_id, workspace_id, connected_account_id, provider,
                device_type, name, manufacturer, code_rules, created_at)
             VALUES ($1, $2, $3, 'sandbox', $4, $5, $6, $7, $8) ON CONFLICT (device_id) DO NOTHING",
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
            "INSERT INTO sandbox_locks (device_id, delay_ms) VALUES ($1, $2)
             ON CONFLICT (device_id) DO UPDATE SET delay_ms = excluded.delay_ms",
        )
        .bind(device_id)
        .bind(i64::try_from(delay_ms).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_devices(
        &self,
        workspace_id: &str,
        connected_account_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<DeviceRecord>> {
        let sql = format!(
            "{DEVICE_SELECT} WHERE d.workspace_id = $1
             AND ($2::text IS NULL OR d.connected_account_id = $2)
             AND d.seq > $3 ORDER BY d.seq LIMIT $4"
        );
        let rows: Vec<DeviceRecord> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(connected_account_id)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        paginate(rows, limit, |r| r.seq, Ok)
    }

    async fn get_device(
        &self,
        workspace_id: &str,
        device_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Option<DeviceRecord>> {
        let sql = format!(
            "{DEVICE_SELECT} WHERE d.workspace_id = $1 AND ($2::text IS NULL OR d.device_id = $2)
             AND ($3::text IS NULL OR d.name = $3) ORDER BY d.seq LIMIT 1"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(device_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_supported_code_lengths(
        &self,
        device: &DeviceRecord,
        lengths: &[u32],
    ) -> Result<()> {
        let mut rules = device.code_rules()?;
        rules.supported_code_lengths = lengths.to_vec();
        sqlx::query("UPDATE devices SET code_rules = $1 WHERE device_id = $2")
            .bind(json(&rules)?)
            .bind(&device.device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl PgStore {
    pub(crate) async fn device_by_id(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!("{DEVICE_SELECT} WHERE d.device_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

pub(crate) async fn device_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    device_id: &str,
) -> Result<DeviceRecord> {
    let sql = format!("{DEVICE_SELECT} WHERE d.device_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?)
}
