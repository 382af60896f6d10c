//! Device records kept in memory between requests.
//!
//! Nearly every API call reads the record of the device it names (to check it is in the
//! workspace, and for its rules and faults), and device records change rarely. A record is
//! kept with two versions read *before* it was: the devices' version (moved after any change
//! to what a device record shows, see `db::watch_device_changes`) and its device's backup
//! codes' version (which its count of ready backup codes follows). The writer moves both after
//! a commit and before its callers hear back, so a kept record is never older than what its
//! reader could have seen. As with the codes' versions, the file belongs to this process alone.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::DeviceRecord;

/// Records kept at most; the cache starts over once full (device counts are modest, and a
/// miss costs one read).
const CAPACITY: usize = 16_384;

/// What a record was read after: the devices' version and its backup codes' version.
pub(crate) type Versions = (u64, u64);

#[derive(Default)]
pub(crate) struct DeviceCache {
    /// By device id (unique across workspaces).
    records: RwLock<HashMap<String, (Versions, DeviceRecord)>>,
}

impl DeviceCache {
    /// The record of `device_id`, if it was kept at `versions`.
    pub(crate) fn get(&self, device_id: &str, versions: Versions) -> Option<DeviceRecord> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        records
            .get(device_id)
            .filter(|(kept_at, _)| *kept_at == versions)
            .map(|(_, record)| record.clone())
    }

    /// Keeps a record read after the versions were `versions`.
    pub(crate) fn put(&self, versions: Versions, record: &DeviceRecord) {
        let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
        if records.len() >= CAPACITY && !records.contains_key(&record.device_id) {
            records.clear();
        }
        records.insert(record.device_id.clone(), (versions, record.clone()));
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::testing::{at, seeded};
    use crate::{DeviceRecord, Store, SEED};

    /// The seeded device's record, read both ways (by workspace and id, by id alone): they
    /// must agree.
    async fn device(store: &Store) -> DeviceRecord {
        let by_workspace = store
            .get_device(SEED.seed_workspace_1, Some(SEED.august_device_1), None)
            .await
            .expect("query")
            .expect("seeded device");
        let by_id = store
            .engine_device(SEED.august_device_1)
            .await
            .expect("query")
            .expect("seeded device");
        assert_eq!(format!("{by_workspace:?}"), format!("{by_id:?}"));
        by_workspace
    }

    /// Every change to what the record shows is seen by the next read, however often the
    /// record was read before; a lease taken does not count as one.
    #[tokio::test]
    async fn a_kept_record_shows_every_change_made_to_it() {
        let (_dir, store, before) = seeded().await;
        let id = SEED.august_device_1;
        assert_eq!(format!("{:?}", device(&store).await), format!("{before:?}"));
        // Other workspaces, and names that do not match, find nothing, kept or not.
        assert!(store
            .get_device("another_workspace", Some(id), None)
            .await
            .expect("query")
            .is_none());
        assert!(store
            .get_device(SEED.seed_workspace_1, Some(id), Some("not its name"))
            .await
            .expect("query")
            .is_none());
        assert!(store
            .get_device(SEED.seed_workspace_1, Some(id), Some(&before.name))
            .await
            .expect("query")
            .is_some());

        assert!(store
            .claim_device(id, "an-instance", at(0), at(30_000))
            .await
            .expect("claimed"));
        store
            .configure_sandbox(id, Some(10), Some(1))
            .await
            .expect("configured");
        assert_eq!(format!("{:?}", device(&store).await), format!("{before:?}"));

        store.set_sandbox_online(id, false).await.expect("offline");
        assert!(!device(&store).await.online);
        store.set_sandbox_online(id, true).await.expect("online");
        assert!(device(&store).await.online);

        store
            .set_supported_code_lengths(&before, &[6])
            .await
            .expect("lengths");
        assert_ne!(device(&store).await.code_rules, before.code_rules);

        store.enable_backup_pool(&before, 3).await.expect("pool");
        assert_eq!(device(&store).await.backup_pool_size, 3);

        store
            .disconnect_connected_account(SEED.seed_workspace_1, &before.connected_account_id)
            .await
            .expect("disconnected");
        assert!(device(&store).await.account_disconnected);

        store.set_sandbox_removed(id).await.expect("removed");
        assert!(device(&store).await.removed);
    }

    /// The record's count of ready backup codes follows them; other codes leave it.
    #[tokio::test]
    async fn a_kept_record_counts_the_backup_codes_set_since() {
        use crate::{CodeOutcome, OutcomeRecord};
        let (_dir, store, before) = seeded().await;
        store.enable_backup_pool(&before, 2).await.expect("pool");
        store
            .add_backup_codes(&before, &["1111".into(), "2222".into()], at(1))
            .await
            .expect("added");
        let kept = device(&store).await;
        assert_eq!(kept.backup_codes_ready, 0);
        let jobs = store
            .due_jobs(&before.device_id, at(2), at(2), 10)
            .await
            .expect("jobs");
        let records: Vec<OutcomeRecord> = jobs
            .iter()
            .filter_map(|job| job.access_code_id.clone())
            .zip(1..)
            .map(|(id, slot)| OutcomeRecord::new(id, CodeOutcome::Set { slot }, None))
            .collect();
        assert_eq!(records.len(), 2);
        // A code that is not a backup changes nothing the record shows.
        store
            .create_access_code(crate::sqlite::testing::ongoing(&kept, "3333", at(3)), at(3))
            .await
            .expect("created");
        assert_eq!(format!("{:?}", device(&store).await), format!("{kept:?}"));
        store
            .record_outcomes(&kept, records, at(4))
            .await
            .expect("recorded");
        assert_eq!(device(&store).await.backup_codes_ready, 2);
    }
}
