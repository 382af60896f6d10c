//! PostgreSQL: the memory of sandbox locks, kept in the store so it survives restarts and is
//! the same lock for every instance.

use std::time::Duration;

use async_trait::async_trait;
use keyway_drivers::sandbox::{SandboxLock, SandboxMemory};
use keyway_drivers::LockCode;

use super::PgStore;
use crate::sandbox::SandboxStore;
use crate::Result;

#[async_trait]
impl SandboxStore for PgStore {
    async fn set_sandbox_online(&self, device_id: &str, online: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE sandbox_locks SET online = $1 WHERE device_id = $2")
            .bind(online)
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_sandbox_removed(&self, device_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE sandbox_locks SET removed = TRUE WHERE device_id = $1")
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn configure_sandbox(
        &self,
        device_id: &str,
        delay_ms: Option<u64>,
        fail_next: Option<u32>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sandbox_locks SET delay_ms = COALESCE($1, delay_ms),
                fail_next = COALESCE($2, fail_next) WHERE device_id = $3",
        )
        .bind(delay_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)))
        .bind(fail_next.map(i64::from))
        .bind(device_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn disconnect_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connected_accounts SET disconnected = TRUE
             WHERE workspace_id = $1 AND connected_account_id = $2",
        )
        .bind(workspace_id)
        .bind(connected_account_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn sandbox_operations(&self, device_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT operations FROM sandbox_locks WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn sandbox_slots(&self, device_id: &str) -> Result<Vec<LockCode>> {
        load_slots(self, device_id).await
    }
}

async fn load_slots(store: &PgStore, device_id: &str) -> Result<Vec<LockCode>> {
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT slot, code, name FROM sandbox_slots WHERE device_id = $1 ORDER BY slot",
    )
    .bind(device_id)
    .fetch_all(&store.pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(slot, code, name)| {
            u32::try_from(slot)
                .ok()
                .map(|slot| LockCode { slot, code, name })
        })
        .collect())
}

#[async_trait]
impl SandboxMemory for PgStore {
    async fn load(&self, device_id: &str) -> Result<Option<SandboxLock>, String> {
        // One query for the lock and its rules, one for its slots.
        let lock: Option<(bool, bool, i64, i64, bool, String)> = sqlx::query_as(
            "SELECT s.online AND NOT a.disconnected, s.removed, s.fail_next, s.delay_ms, s.locked,
                d.code_rules
             FROM sandbox_locks s JOIN devices d ON d.device_id = s.device_id
             JOIN connected_accounts a ON a.connected_account_id = d.connected_account_id
             WHERE s.device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        let Some((online, removed, fail_next, delay_ms, locked, rules)) = lock else {
            return Ok(None);
        };
        let rules = serde_json::from_str::<crate::DeviceCodeRules>(&rules)
            .map_err(|e| e.to_string())?
            .lock_rules();
        let slots = load_slots(self, device_id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(SandboxLock {
            online,
            removed,
            locked,
            fail_next: u32::try_from(fail_next).unwrap_or(0),
            delay: Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)),
            rules,
            slots,
        }))
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), String> {
        sqlx::query("UPDATE sandbox_locks SET locked = $1 WHERE device_id = $2")
            .bind(locked)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn consume_failure(&self, device_id: &str) -> Result<(), String> {
        sqlx::query(
            "UPDATE sandbox_locks SET fail_next = GREATEST(fail_next - 1, 0) WHERE device_id = $1",
        )
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    async fn write_slot(
        &self,
        device_id: &str,
        slot: u32,
        code: Option<(&str, Option<&str>)>,
    ) -> Result<(), String> {
        let write = async {
            let mut tx = self.pool.begin().await?;
            match code {
                Some((code, name)) => {
                    sqlx::query(
                        "INSERT INTO sandbox_slots (device_id, slot, code, name)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (device_id, slot) DO UPDATE SET code = excluded.code,
                            name = excluded.name",
                    )
                    .bind(device_id)
                    .bind(i64::from(slot))
                    .bind(code)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM sandbox_slots WHERE device_id = $1 AND slot = $2")
                        .bind(device_id)
                        .bind(i64::from(slot))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(
                "UPDATE sandbox_locks SET operations = operations + 1 WHERE device_id = $1",
            )
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        write.await.map_err(|e: sqlx::Error| e.to_string())
    }
}
