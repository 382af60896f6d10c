//! SQLite: the memory of sandbox locks, kept in the store so it survives restarts.

use std::time::Duration;

use async_trait::async_trait;
use keyway_drivers::sandbox::{SandboxLock, SandboxMemory};
use keyway_drivers::LockCode;
use rusqlite::{params, Connection};

use super::db::{exec, scalar};
use super::SqliteStore;
use crate::sandbox::SandboxStore;
use crate::Result;

impl SqliteStore {
    /// Runs one single-statement update; answers how many rows it changed.
    async fn update(
        &self,
        sql: &'static str,
        values: Vec<rusqlite::types::Value>,
    ) -> Result<usize> {
        self.db
            .write(move |c| exec(c, sql, rusqlite::params_from_iter(&values)))
            .await
    }
}

fn text(value: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(value.to_owned())
}

fn opt_int(value: Option<i64>) -> rusqlite::types::Value {
    value.map_or(
        rusqlite::types::Value::Null,
        rusqlite::types::Value::Integer,
    )
}

#[async_trait]
impl SandboxStore for SqliteStore {
    async fn set_sandbox_online(&self, device_id: &str, online: bool) -> Result<bool> {
        let changed = self
            .update(
                "UPDATE sandbox_locks SET online = ? WHERE device_id = ?",
                vec![i64::from(online).into(), text(device_id)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn set_sandbox_removed(&self, device_id: &str) -> Result<bool> {
        let changed = self
            .update(
                "UPDATE sandbox_locks SET removed = 1 WHERE device_id = ?",
                vec![text(device_id)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn configure_sandbox(
        &self,
        device_id: &str,
        delay_ms: Option<u64>,
        fail_next: Option<u32>,
    ) -> Result<()> {
        self.update(
            "UPDATE sandbox_locks SET delay_ms = COALESCE(?, delay_ms),
                fail_next = COALESCE(?, fail_next) WHERE device_id = ?",
            vec![
                opt_int(delay_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX))),
                opt_int(fail_next.map(i64::from)),
                text(device_id),
            ],
        )
        .await?;
        Ok(())
    }

    async fn disconnect_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<bool> {
        let changed = self
            .update(
                "UPDATE connected_accounts SET disconnected = 1
                 WHERE workspace_id = ? AND connected_account_id = ?",
                vec![text(workspace_id), text(connected_account_id)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn sandbox_operations(&self, device_id: &str) -> Result<i64> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| {
                Ok(scalar(
                    c,
                    "SELECT operations FROM sandbox_locks WHERE device_id = ?",
                    params![device_id],
                )?
                .unwrap_or(0))
            })
            .await
    }

    async fn sandbox_slots(&self, device_id: &str) -> Result<Vec<LockCode>> {
        let device_id = device_id.to_owned();
        self.db.read(move |c| load_slots(c, &device_id)).await
    }
}

fn upsert_slot(
    c: &Connection,
    device_id: &str,
    slot: u32,
    code: &str,
    name: Option<&str>,
) -> Result<usize> {
    exec(
        c,
        "INSERT INTO sandbox_slots (device_id, slot, code, name) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, slot) DO UPDATE SET code = excluded.code, name = excluded.name",
        params![device_id, slot, code, name],
    )
}

fn load_slots(c: &Connection, device_id: &str) -> Result<Vec<LockCode>> {
    let mut statement = c.prepare_cached(
        "SELECT slot, code, name FROM sandbox_slots WHERE device_id = ? ORDER BY slot",
    )?;
    let rows = statement.query_map(params![device_id], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut slots = Vec::new();
    for found in rows {
        let (slot, code, name) = found?;
        if let Ok(slot) = u32::try_from(slot) {
            slots.push(LockCode { slot, code, name });
        }
    }
    Ok(slots)
}

/// A sandbox lock's state, rules and slots, read in one transaction.
fn load_lock(c: &Connection, device_id: &str) -> Result<Option<SandboxLock>> {
    let mut statement = c.prepare_cached(
        "SELECT s.online AND NOT a.disconnected, s.removed, s.fail_next, s.delay_ms, s.locked,
            d.code_rules
         FROM sandbox_locks s JOIN devices d ON d.device_id = s.device_id
         JOIN connected_accounts a ON a.connected_account_id = d.connected_account_id
         WHERE s.device_id = ?",
    )?;
    let mut found = statement.query(params![device_id])?;
    let Some(lock) = found.next()? else {
        return Ok(None);
    };
    let online: bool = lock.get(0)?;
    let removed: bool = lock.get(1)?;
    let fail_next: i64 = lock.get(2)?;
    let delay_ms: i64 = lock.get(3)?;
    let locked: bool = lock.get(4)?;
    let rules: String = lock.get(5)?;
    let rules = serde_json::from_str::<crate::DeviceCodeRules>(&rules)
        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?
        .lock_rules();
    Ok(Some(SandboxLock {
        online,
        removed,
        locked,
        fail_next: u32::try_from(fail_next).unwrap_or(0),
        delay: Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)),
        rules,
        slots: load_slots(c, device_id)?,
    }))
}

#[async_trait]
impl SandboxMemory for SqliteStore {
    async fn load(&self, device_id: &str) -> Result<Option<SandboxLock>, String> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |c| load_lock(c, &device_id))
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), String> {
        self.update(
            "UPDATE sandbox_locks SET locked = ? WHERE device_id = ?",
            vec![i64::from(locked).into(), text(device_id)],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    async fn consume_failure(&self, device_id: &str) -> Result<(), String> {
        self.update(
            "UPDATE sandbox_locks SET fail_next = MAX(fail_next - 1, 0) WHERE device_id = ?",
            vec![text(device_id)],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Writes (`Some`) or clears (`None`) one slot and counts the operation. Slot writes of many
    /// locks share a commit (the writer groups whatever is queued).
    async fn write_slot(
        &self,
        device_id: &str,
        slot: u32,
        code: Option<(&str, Option<&str>)>,
    ) -> Result<(), String> {
        let device_id = device_id.to_owned();
        let code = code.map(|(c, n)| (c.to_owned(), n.map(str::to_owned)));
        self.db
            .write(move |c| {
                match &code {
                    Some((code, name)) => upsert_slot(c, &device_id, slot, code, name.as_deref())?,
                    None => exec(
                        c,
                        "DELETE FROM sandbox_slots WHERE device_id = ? AND slot = ?",
                        params![device_id, slot],
                    )?,
                };
                exec(
                    c,
                    "UPDATE sandbox_locks SET operations = operations + 1 WHERE device_id = ?",
                    params![device_id],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// All of a batch's slots in one write (one transaction with whatever else is queued).
    async fn write_slots(&self, device_id: &str, slots: &[LockCode]) -> Result<(), String> {
        if slots.is_empty() {
            return Ok(());
        }
        let device_id = device_id.to_owned();
        let slots = slots.to_vec();
        self.db
            .write(move |c| {
                for slot in &slots {
                    upsert_slot(c, &device_id, slot.slot, &slot.code, slot.name.as_deref())?;
                }
                exec(
                    c,
                    "UPDATE sandbox_locks SET operations = operations + ? WHERE device_id = ?",
                    params![slots.len() as i64, device_id],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
    }
}
