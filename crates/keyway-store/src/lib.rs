//! Keyway's persistence: SQLite (embedded, WAL) through sqlx.
//!
//! The store remembers; it does not decide. Every write that changes an access code's intent
//! commits the code, its device job, its action attempt and its event in one transaction, so a
//! crash never leaves one without the others. All reads and writes coming from the API take the
//! caller's workspace and never see another workspace's rows.

mod access_codes;
mod accounts;
mod engine;
mod events;
mod rows;
mod sandbox;
mod seed;
mod stats;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use access_codes::{
    AccessCodeChanges, AccessCodeFilter, CodeLookup, NewAccessCode, UpdateOutcome,
};
pub use accounts::{DeviceCodeRules, DeviceRecord, NewWorkspace};
pub use engine::{
    CodeOutcome, ConfirmedCode, DeviceJob, EngineCode, ExternalChange, LockObservation,
    OutcomeRecord,
};
pub use events::EventFilter;
pub use seed::{SeedIds, SEED};
pub use webhooks::{
    AttemptOutcome, ClaimLimits, ClaimedDelivery, FinishedAttempt, NewWebhook, WebhookChanges,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a committed write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// A crash or `kill -9` of Keyway (WAL, `synchronous=NORMAL`): the default.
    #[default]
    ProcessCrash,
    /// Also a power loss or OS crash (WAL, `synchronous=FULL`: an fsync per commit).
    PowerLoss,
}

/// One page of a list, and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

/// The SQLite store. Writes go through a single connection (SQLite has one writer anyway),
/// reads through a pool.
#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Raised when the writer queues a webhook delivery (see `webhooks`).
    outbox: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Opens (creating if needed) `keyway.sqlite` in `data_dir` and migrates it.
    pub async fn open_dir(data_dir: &Path) -> Result<Store> {
        Store::open_dir_with(data_dir, Durability::default()).await
    }

    /// Opens (creating if needed) `keyway.sqlite` in `data_dir` and migrates it.
    pub async fn open_dir_with(data_dir: &Path, durability: Durability) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let url = format!("sqlite://{}", data_dir.join("keyway.sqlite").display());
        Store::open_with(&url, durability).await
    }

    /// Opens a `sqlite://` URL and migrates it, with the default durability.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, Durability::default()).await
    }

    /// Opens a `sqlite://` URL and migrates it.
    pub async fn open_with(url: &str, durability: Durability) -> Result<Store> {
        let synchronous = match durability {
            Durability::ProcessCrash => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let outbox = Arc::new(tokio::sync::Notify::new());
        let signal = outbox.clone();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let signal = signal.clone();
                Box::pin(async move { webhooks::signal_queued_deliveries(conn, signal).await })
            })
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store {
            writer,
            reader,
            outbox,
        })
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// API keys are kept as SHA-256 hex digests; the token itself is never stored.
pub fn hash_api_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
