//! Pages of a device's access codes, kept as the JSON they were sent as.
//!
//! Clients poll `access_codes/list` for a lock far more often than its codes change. A page is
//! kept with two things that decide whether it may be given again:
//!
//! - the version of the device's codes ([`keyway_store::AccessCodeStore::device_codes_version`]),
//!   read *before* the codes were. The store moves it before any change to those codes is
//!   acknowledged, so a kept page is never older than what its reader could have seen;
//! - the device's faults, which the codes carry as device errors. They come from the device
//!   record the request reads anyway, and the store builds the page from that same record.
//!
//! Stores that cannot tell when a device's codes change (PostgreSQL, written by several
//! instances) answer no version, and nothing is kept. The cache is bounded by its bytes.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use keyway_store::DeviceRecord;

/// Bytes of kept pages at most, keys included.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;
/// A guess at how many pages fit, for the first allocation.
const ESTIMATED_PAGES: usize = 1024;
/// What an entry costs beside its bytes (the key's fixed part, the entry, the map's slot).
const ENTRY_OVERHEAD: u64 = 128;

/// Which page of whose codes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    workspace_id: String,
    device_id: String,
    managed: bool,
    after: Option<i64>,
    limit: u32,
    /// The device's faults as error codes, which its codes carry.
    faults: Vec<&'static str>,
}

impl ListKey {
    pub fn new(
        workspace_id: &str,
        device: &DeviceRecord,
        managed: bool,
        after: Option<i64>,
        limit: u32,
    ) -> ListKey {
        ListKey {
            workspace_id: workspace_id.to_owned(),
            device_id: device.device_id.clone(),
            managed,
            after,
            limit,
            faults: device
                .fault_codes()
                .into_iter()
                .map(|(code, _)| code)
                .collect(),
        }
    }
}

/// A page as it was sent: the JSON array of its codes, and where the next page starts.
pub struct ListEntry {
    version: u64,
    pub codes_json: Vec<u8>,
    pub next: Option<i64>,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<ListKey, Arc<ListEntry>> for ByBytes {
    fn weight(&self, key: &ListKey, entry: &Arc<ListEntry>) -> u64 {
        (key.workspace_id.len() + key.device_id.len() + entry.codes_json.len()) as u64
            + ENTRY_OVERHEAD
    }
}

pub struct ListCache {
    pages: Cache<ListKey, Arc<ListEntry>, ByBytes>,
}

impl Default for ListCache {
    fn default() -> Self {
        ListCache {
            pages: Cache::with_weighter(ESTIMATED_PAGES, CAPACITY_BYTES, ByBytes),
        }
    }
}

impl ListCache {
    /// The page kept for `key`, if the device's codes are still at `version`.
    pub fn get(&self, key: &ListKey, version: u64) -> Option<Arc<ListEntry>> {
        self.pages.get(key).filter(|entry| entry.version == version)
    }

    /// Keeps a page read after the device's codes were at `version`.
    pub fn put(&self, key: ListKey, version: u64, codes_json: Vec<u8>, next: Option<i64>) {
        let entry = ListEntry {
            version,
            codes_json,
            next,
        };
        self.pages.insert(key, Arc::new(entry));
    }
}
