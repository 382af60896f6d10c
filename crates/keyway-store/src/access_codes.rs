//! Access codes as the API sees them: create, read, update, delete. Each backend implements
//! [`AccessCodeStore`] so that every write commits with its device job, action attempt and event
//! in one transaction. No SQL here.

use async_trait::async_trait;
use keyway_model::{
    AccessCode, AccessCodeError, AccessCodeStatus, AccessCodeType, ActionAttempt, Timestamp,
    UnmanagedAccessCode,
};

use crate::accounts::DeviceRecord;
use crate::engine::EngineStore;
use crate::{Page, Result, StoreError};

/// A managed code to record. The caller has validated it against the lock's rules.
pub struct NewAccessCode<'a> {
    pub device: &'a DeviceRecord,
    pub name: Option<String>,
    pub code: String,
    pub kind: AccessCodeType,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub status: AccessCodeStatus,
    pub is_external_modification_allowed: bool,
    pub is_one_time_use: bool,
    pub is_offline_access_code: bool,
    pub common_code_key: Option<String>,
    pub use_backup_access_code_pool: bool,
    /// When the engine should first look at the code.
    pub job_at: Timestamp,
}

/// The new state of a managed code after an update.
pub struct AccessCodeChanges {
    pub name: Option<String>,
    pub code: String,
    pub kind: AccessCodeType,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub is_external_modification_allowed: bool,
    /// Whether the lock must be programmed again (PIN or window changed), and the status and
    /// first job time that go with it.
    pub reprogram: Option<(AccessCodeStatus, Timestamp)>,
}

pub struct UpdateOutcome {
    pub action_attempt: ActionAttempt,
}

/// How a single code is looked up: by id, or by its lock and PIN.
#[derive(Debug, Clone, Copy)]
pub enum CodeLookup<'a> {
    Id(&'a str),
    Pin { device_id: &'a str, code: &'a str },
}

impl<'a> CodeLookup<'a> {
    pub(crate) fn parts(self) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        match self {
            CodeLookup::Id(id) => (Some(id), None, None),
            CodeLookup::Pin { device_id, code } => (None, Some(device_id), Some(code)),
        }
    }
}

#[derive(Default)]
pub struct AccessCodeFilter<'a> {
    pub device_id: Option<&'a str>,
    pub access_code_ids: Option<&'a [String]>,
    pub after: Option<i64>,
    pub limit: u32,
    /// The device as the caller read it: its faults become its codes' device errors, without
    /// reading it again.
    pub known_device: Option<&'a DeviceRecord>,
}

/// Access codes (managed and unmanaged), backup pools and action attempts, as the API sees them.
#[async_trait]
pub trait AccessCodeStore: Send + Sync {
    async fn create_access_code(
        &self,
        new: NewAccessCode<'_>,
        now: Timestamp,
    ) -> Result<(AccessCode, ActionAttempt)> {
        let mut created = self.create_access_codes(vec![new], now).await?;
        created
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no access code created".into()))
    }

    /// Creates several codes in one transaction: all of them, or none.
    async fn create_access_codes(
        &self,
        codes: Vec<NewAccessCode<'_>>,
        now: Timestamp,
    ) -> Result<Vec<(AccessCode, ActionAttempt)>>;

    async fn update_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        changes: AccessCodeChanges,
        now: Timestamp,
    ) -> Result<UpdateOutcome>;

    /// Marks the code for removal; the engine takes it off the lock and then deletes it.
    async fn delete_access_code(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt>;

    /// Takes over an unmanaged code: it stays on the lock and is managed from now on.
    /// Answers `false` when the workspace has no such unmanaged code.
    async fn convert_unmanaged(
        &self,
        workspace_id: &str,
        access_code_id: &str,
        is_external_modification_allowed: bool,
        now: Timestamp,
    ) -> Result<bool>;

    /// Asks the engine to take an unmanaged code off its lock.
    async fn delete_unmanaged(
        &self,
        device: &DeviceRecord,
        access_code_id: &str,
        now: Timestamp,
    ) -> Result<ActionAttempt>;

    /// A managed code of the workspace, by id or by (device, PIN).
    async fn get_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<AccessCode>>;

    async fn get_unmanaged_access_code(
        &self,
        workspace_id: &str,
        lookup: CodeLookup<'_>,
    ) -> Result<Option<UnmanagedAccessCode>>;

    async fn list_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<AccessCode>>;

    async fn list_unmanaged_access_codes(
        &self,
        workspace_id: &str,
        filter: AccessCodeFilter<'_>,
    ) -> Result<Page<UnmanagedAccessCode>>;

    /// A number that moves whenever one of the device's access codes (managed, unmanaged or
    /// backup) may have changed, before the change is acknowledged to whoever made it. `None`
    /// when this store cannot tell (other processes write to it too): then no list of the
    /// device's codes may be kept for later.
    fn device_codes_version(&self, _device_id: &str) -> Option<u64> {
        None
    }

    /// Turns on the device's backup pool (a one-way step) with `size` codes.
    async fn enable_backup_pool(&self, device: &DeviceRecord, size: u32) -> Result<()>;

    /// How many backup codes the device's pool lacks.
    async fn backup_pool_shortfall(&self, device_id: &str) -> Result<u32>;

    /// Adds backup codes with these PINs to the device's pool; the engine programs them.
    async fn add_backup_codes(
        &self,
        device: &DeviceRecord,
        pins: &[String],
        now: Timestamp,
    ) -> Result<()>;

    /// Hands out a backup code for a time-bound code: the same one on every call, never one
    /// handed out before. The backup leaves the lock when the original's window ends.
    /// Answers `None` when the pool has nothing to give.
    async fn pull_backup_code(
        &self,
        device: &DeviceRecord,
        original: &AccessCode,
        now: Timestamp,
    ) -> Result<Option<AccessCode>>;

    /// The managed codes of a `create_multiple` group.
    async fn codes_with_common_key(
        &self,
        workspace_id: &str,
        common_code_key: &str,
    ) -> Result<Vec<AccessCode>>;

    /// PINs currently on, or meant for, the device (managed and unmanaged).
    async fn codes_on_device(&self, device_id: &str) -> Result<Vec<String>>;

    async fn get_action_attempt(
        &self,
        workspace_id: &str,
        action_attempt_id: &str,
    ) -> Result<Option<ActionAttempt>>;

    async fn list_action_attempts(
        &self,
        workspace_id: &str,
        ids: Option<&[String]>,
        device_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<ActionAttempt>>;
}

/// Device and account errors belong on the codes of that device too.
pub(crate) async fn add_device_errors<C, S>(
    store: &S,
    known: Option<&DeviceRecord>,
    codes: &mut [C],
    parts: impl Fn(&mut C) -> (&String, &mut Vec<AccessCodeError>) + Send,
) -> Result<()>
where
    C: Send,
    S: EngineStore + ?Sized,
{
    let mut faults: Vec<(String, Vec<(&'static str, &'static str)>)> = Vec::new();
    for code in codes.iter_mut() {
        let (device_id, errors) = parts(code);
        if !faults.iter().any(|(d, _)| d == device_id) {
            let known = known.filter(|device| &device.device_id == device_id);
            let found = match known {
                Some(device) => device.fault_codes(),
                None => match store.engine_device(device_id).await? {
                    Some(device) => device.fault_codes(),
                    None => vec![],
                },
            };
            faults.push((device_id.clone(), found));
        }
        let Some((_, found)) = faults.iter().find(|(d, _)| d == device_id) else {
            continue;
        };
        for (error_code, message) in found {
            errors.push(AccessCodeError {
                error_code: (*error_code).to_owned(),
                message: (*message).to_owned(),
                created_at: None,
                is_access_code_error: None,
                is_device_error: Some(true),
                is_connected_account_error: (*error_code == "account_disconnected").then_some(true),
            });
        }
    }
    Ok(())
}
