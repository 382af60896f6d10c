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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
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
    pub codes_json: Bytes,
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
    pub fn put(&self, key: ListKey, version: u64, codes_json: Bytes, next: Option<i64>) {
        let entry = ListEntry {
            version,
            codes_json,
            next,
        };
        self.pages.insert(key, Arc::new(entry));
    }
}

/// A response body sent as the pieces it is made of, its length known in advance: a kept
/// page goes out as it was kept, shared, instead of being copied into every response.
pub struct PageBody {
    /// What is left to send; none empty.
    pieces: VecDeque<Bytes>,
}

impl PageBody {
    pub fn new(pieces: impl IntoIterator<Item = Bytes>) -> PageBody {
        PageBody {
            pieces: pieces.into_iter().filter(|p| !p.is_empty()).collect(),
        }
    }
}

impl http_body::Body for PageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.pieces.pop_front().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.pieces.iter().map(|p| p.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_page_body_gives_its_pieces_in_order_and_its_exact_length() {
        let body = PageBody::new([
            Bytes::from_static(b"{\"a\":"),
            Bytes::new(),
            Bytes::from_static(b"[1,2]"),
            Bytes::from_static(b"}"),
        ]);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(11));
        let whole = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(&whole[..], b"{\"a\":[1,2]}");
    }
}
