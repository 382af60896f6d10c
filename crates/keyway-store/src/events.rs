//! Events, scoped to a workspace: the filter of `events/list` and the [`EventStore`] interface.
//!
//! Events are listed in `seq` order and paged by `seq`. Each backend guarantees that `seq` follows
//! commit order as seen by readers, so that a page never skips an event committed later:
//! SQLite has one writer; Postgres numbers events when they are first listed (see
//! [`crate::postgres`]).

use async_trait::async_trait;
use keyway_model::{Event, Timestamp};

use crate::{Page, Result};

#[derive(Default)]
pub struct EventFilter<'a> {
    pub device_id: Option<&'a str>,
    pub access_code_ids: Option<&'a [String]>,
    pub event_types: Option<&'a [String]>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub after: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn list_events(&self, workspace_id: &str, filter: EventFilter<'_>)
        -> Result<Page<Event>>;

    async fn get_event(&self, workspace_id: &str, event_id: &str) -> Result<Option<Event>>;
}
