//! What the SQLite store's unit tests share: a seeded store in a scratch directory, fixed
//! times, a plain ongoing code.

use keyway_model::{AccessCodeStatus, AccessCodeType, Timestamp};

use crate::{DeviceRecord, NewAccessCode, Store, SEED};

/// `millis` after a fixed instant.
pub(crate) fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + millis).expect("valid time")
}

/// A seeded store (kept while the directory lives) and its `august_device_1`.
pub(crate) async fn seeded() -> (tempfile::TempDir, Store, DeviceRecord) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_dir(dir.path(), &crate::StoreOptions::default())
        .await
        .expect("store opens");
    store.seed(0, at(0)).await.expect("seeded");
    let device = store
        .get_device(SEED.seed_workspace_1, Some(SEED.august_device_1), None)
        .await
        .expect("query")
        .expect("seeded device");
    (dir, store, device)
}

/// An ongoing managed code with nothing special about it, its job due at `job_at`.
pub(crate) fn ongoing<'a>(
    device: &'a DeviceRecord,
    pin: &str,
    job_at: Timestamp,
) -> NewAccessCode<'a> {
    NewAccessCode {
        device,
        name: None,
        code: pin.into(),
        kind: AccessCodeType::Ongoing,
        starts_at: None,
        ends_at: None,
        status: AccessCodeStatus::Setting,
        is_external_modification_allowed: false,
        is_one_time_use: false,
        is_offline_access_code: false,
        common_code_key: None,
        use_backup_access_code_pool: false,
        job_at,
    }
}
