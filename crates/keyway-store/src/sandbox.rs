//! Sandbox locks: the simulation controls of the `devices/simulate/*` routes ([`SandboxStore`]),
//! and the lock memory the sandbox driver keeps in the store (`SandboxMemory`), both implemented
//! by each backend. `Store` hands the driver its backend's memory.

use async_trait::async_trait;
use keyway_drivers::sandbox::{SandboxLock, SandboxMemory};
use keyway_drivers::LockCode;

use crate::{Result, Store};

#[async_trait]
pub trait SandboxStore: Send + Sync {
    /// Simulates the lock losing (`false`) or regaining (`true`) its connection.
    async fn set_sandbox_online(&self, device_id: &str, online: bool) -> Result<bool>;

    /// Simulates the lock being removed from its account.
    async fn set_sandbox_removed(&self, device_id: &str) -> Result<bool>;

    /// Changes a sandbox lock's behaviour: its delay per operation, and how many coming
    /// operations time out.
    async fn configure_sandbox(
        &self,
        device_id: &str,
        delay_ms: Option<u64>,
        fail_next: Option<u32>,
    ) -> Result<()>;

    /// Simulates losing the connected account (its locks can no longer be reached).
    async fn disconnect_connected_account(
        &self,
        workspace_id: &str,
        connected_account_id: &str,
    ) -> Result<bool>;

    /// How many write operations the sandbox lock has carried out.
    async fn sandbox_operations(&self, device_id: &str) -> Result<i64>;

    /// What the sandbox lock holds, slot by slot.
    async fn sandbox_slots(&self, device_id: &str) -> Result<Vec<LockCode>>;
}

#[async_trait]
impl SandboxMemory for Store {
    async fn load(&self, device_id: &str) -> Result<Option<SandboxLock>, String> {
        (**self).load(device_id).await
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), String> {
        (**self).set_locked(device_id, locked).await
    }

    async fn consume_failure(&self, device_id: &str) -> Result<(), String> {
        (**self).consume_failure(device_id).await
    }

    async fn write_slot(
        &self,
        device_id: &str,
        slot: u32,
        code: Option<(&str, Option<&str>)>,
    ) -> Result<(), String> {
        (**self).write_slot(device_id, slot, code).await
    }

    async fn write_slots(&self, device_id: &str, slots: &[LockCode]) -> Result<(), String> {
        (**self).write_slots(device_id, slots).await
    }
}
