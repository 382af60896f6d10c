//! Keyway's persistence: one `Store` interface, two backends.
//!
//! The store remembers; it does not decide. Every write that changes an access code's intent
//! commits the code, its device job, its action attempt and its event in one transaction, so a
//! crash never leaves one without the others. All reads and writes coming from the API take the
//! caller's workspace and never see another workspace's rows.
//!
//! The interface is a set of traits by area ([`AccountStore`], [`AccessCodeStore`],
//! [`EngineStore`], [`EventStore`], [`ProviderStore`], [`SandboxStore`], and the driver's `SandboxMemory`), gathered
//! in [`Backend`]. Each backend implements all of them with its own SQL and its own migrations
//! (`migrations/sqlite`, `migrations/postgres`):
//!
//! - [`sqlite`]: embedded, WAL, rusqlite; one writer thread commits queued writes together, reads
//!   run on pooled read-only connections; one process owns the file.
//! - [`postgres`]: any number of Keyway processes share one database; device leases are claimed
//!   atomically, job de-duplication rests on unique indexes, events are numbered in commit order.
//!
//! [`Store`] is a cheap, cloneable handle on whichever backend the URL chose; it dereferences to
//! `dyn Backend`, so `store.create_access_code(..)` reaches the backend's implementation.

mod access_codes;
mod accounts;
mod engine;
mod events;
mod jobs_sql;
pub mod postgres;
mod provider;
mod rows;
mod sandbox;
mod seed;
pub mod sqlite;
mod stats;
mod webhooks;

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyway_drivers::sandbox::SandboxMemory;
use sha2::{Digest, Sha256};

pub use access_codes::{
    AccessCodeChanges, AccessCodeFilter, AccessCodeStore, CodeLookup, NewAccessCode, UpdateOutcome,
};
pub use accounts::{AccountStore, DeviceCodeRules, DeviceRecord, NewWorkspace};
pub use engine::{
    CodeOutcome, ConfirmedCode, DeviceJob, EngineCode, EngineStore, ExternalChange,
    LockObservation, OutcomeRecord, RoundStart,
};
pub use events::{EventFilter, EventStore};
pub use provider::{DeviceDetails, ProviderAccount, ProviderDevice, ProviderStore};
pub use sandbox::SandboxStore;
pub use seed::{SeedIds, SEED};
pub use stats::StatsStore;
pub use webhooks::{
    AttemptOutcome, ClaimLimits, ClaimedDelivery, FinishedAttempt, NewWebhook, WebhookChanges,
    WebhookStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (connection lost or refused, pool exhausted, statement
    /// timed out): worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match error.sqlite_error_code() {
            // Another process holds the write lock past the busy timeout, or the file is gone.
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull,
            ) => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Sqlite(error),
        }
    }
}

impl From<serde_rusqlite::Error> for StoreError {
    fn from(error: serde_rusqlite::Error) -> Self {
        match error {
            serde_rusqlite::Error::Rusqlite(error) => error.into(),
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Database(error)
        }
    }
}

/// Errors that say "the database is not there right now" rather than "this query is wrong".
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Postgres: connection exceptions (08…), query_canceled (statement timeout),
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections.
            code.starts_with("08")
                || matches!(&*code, "57014" | "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of a list, and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

/// What a committed write survives (SQLite; PostgreSQL commits are always durable and ignore it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// A crash or `kill -9` of Keyway (WAL, `synchronous=NORMAL`): the default.
    #[default]
    ProcessCrash,
    /// Also a power loss or OS crash (WAL, `synchronous=FULL`: an fsync per commit).
    PowerLoss,
}

/// How the store uses its database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (SQLite: reader connections; it always has one writer).
    pub max_connections: u32,
    /// Longest a statement may run (Postgres `statement_timeout`; SQLite: longest wait for the
    /// write lock). Also bounds the wait for a free pooled connection.
    pub statement_timeout: Duration,
    /// What an acknowledged write survives (SQLite only).
    pub durability: Durability,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            statement_timeout: Duration::from_secs(10),
            durability: Durability::default(),
        }
    }
}

impl StoreOptions {
    /// Longest wait for a pooled connection: a request fails (and `/health` says so) instead of
    /// hanging while the database is away.
    pub(crate) fn acquire_timeout(&self) -> Duration {
        self.statement_timeout
            .clamp(Duration::from_secs(1), Duration::from_secs(5))
    }
}

/// Everything a backend provides: the whole store interface, plus its life cycle.
#[async_trait]
pub trait Backend:
    AccountStore
    + AccessCodeStore
    + EngineStore
    + EventStore
    + ProviderStore
    + SandboxStore
    + SandboxMemory
    + StatsStore
    + WebhookStore
{
    /// Whether this process is the database's only user (SQLite). Then leases found in it at
    /// start are stale and may be freed; with a shared database they belong to live instances.
    fn is_exclusive(&self) -> bool;
    /// Answers once the database answered a trivial query.
    async fn ping(&self) -> Result<()>;
    async fn close(&self);
}

/// A handle on the store, whichever backend holds it. Clones share the backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Store {
    /// Opens (creating if needed) `keyway.sqlite` in `data_dir` and migrates it.
    pub async fn open_dir(data_dir: &Path, options: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let url = format!("sqlite://{}", data_dir.join("keyway.sqlite").display());
        Store::open(&url, options).await
    }

    /// Opens (creating if needed) `keyway.sqlite` in `data_dir` with the default options and
    /// `durability`, and migrates it.
    pub async fn open_dir_with(data_dir: &Path, durability: Durability) -> Result<Store> {
        let options = StoreOptions {
            durability,
            ..StoreOptions::default()
        };
        Store::open_dir(data_dir, &options).await
    }

    /// Opens a URL with the default options and `durability` (which only SQLite uses).
    pub async fn open_with(url: &str, durability: Durability) -> Result<Store> {
        let options = StoreOptions {
            durability,
            ..StoreOptions::default()
        };
        Store::open(url, &options).await
    }

    /// Opens a `sqlite://…` or `postgres://…` URL and migrates the database.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store> {
        let backend: Arc<dyn Backend> = if url.starts_with("sqlite:") {
            Arc::new(sqlite::SqliteStore::open(url, options).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Arc::new(postgres::PgStore::open(url, options).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Store { backend })
    }
}

/// API keys are kept as SHA-256 hex digests; the token itself is never stored.
pub fn hash_api_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh id: a UUID whose leading bits are the time (version 7), so that rows inserted
/// together sit together in the primary-key index (a random id touches a random page of a big
/// table's index per insert); 74 random bits keep ids unguessable.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
