//! The SQLite backend: embedded, WAL, for a single Keyway process.
//!
//! Writes go through a single connection (SQLite has one writer anyway), reads through a pool.
//! Because the file belongs to one process, leases found in it at start are stale
//! ([`crate::Backend::is_exclusive`]).

mod access_codes;
mod accounts;
mod db;
mod engine;
mod events;
mod provider;
mod sandbox;
mod stats;
mod tx;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{Backend, Durability, Result, StoreOptions};

pub struct SqliteStore {
    /// Statements run in closures on rusqlite connections (see `db`).
    db: db::Db,
    writer: SqlitePool,
    reader: SqlitePool,
    /// Raised when the writer queues a webhook delivery (see `webhooks`).
    outbox: Arc<tokio::sync::Notify>,
}

impl SqliteStore {
    /// Opens a `sqlite://` URL (creating the file if needed) and migrates it.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore> {
        let synchronous = match options.durability {
            Durability::ProcessCrash => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        };
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(options.statement_timeout)
            .foreign_keys(true);
        let outbox = Arc::new(tokio::sync::Notify::new());
        let signal = outbox.clone();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let signal = signal.clone();
                Box::pin(async move { webhooks::signal_queued_deliveries(conn, signal).await })
            })
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect.clone().read_only(true))
            .await?;
        let db = db::Db::open(
            db::ConnectOptions {
                path: connect.get_filename().to_owned(),
                synchronous: match options.durability {
                    Durability::ProcessCrash => "NORMAL",
                    Durability::PowerLoss => "FULL",
                },
                busy_timeout: options.statement_timeout,
                readers: options.max_connections.max(1) as usize,
                acquire_timeout: options.acquire_timeout(),
            },
            &["webhook_deliveries"],
            outbox.clone(),
        )?;
        Ok(SqliteStore {
            db,
            writer,
            reader,
            outbox,
        })
    }
}

#[async_trait]
impl Backend for SqliteStore {
    fn is_exclusive(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.db.close();
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Rows fetched as one JSON array (`json_group_array(json_object(…))`): sqlx hands every row
/// over from its connection thread one at a time, so a list of n rows costs n thread hand-offs;
/// aggregated, it costs one.
pub(crate) fn json_rows<T: serde::de::DeserializeOwned>(array: &str) -> Result<Vec<T>> {
    serde_json::from_str(array).map_err(|e| crate::StoreError::Corrupt(e.to_string()))
}
