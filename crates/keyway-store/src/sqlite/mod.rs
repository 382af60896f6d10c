//! The SQLite backend: embedded, WAL, for a single Keyway process.
//!
//! Statements run on rusqlite connections, a store method's statements in one closure (`db`):
//! writes on one writer thread (SQLite has one writer anyway), which commits whatever is queued
//! in one transaction, each method in its own savepoint; reads on pooled read-only connections.
//! sqlx only applies the migrations, keeping its ledger of them.
//! Because the file belongs to one process, leases found in it at start are stale
//! ([`crate::Backend::is_exclusive`]).

mod access_codes;
mod accounts;
mod db;
mod device_cache;
mod engine;
mod events;
mod provider;
mod sandbox;
mod stats;
#[cfg(test)]
mod testing;
mod tx;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::Connection;

use crate::{Backend, Durability, Result, StoreOptions};

pub struct SqliteStore {
    /// Statements run in closures on rusqlite connections (see `db`).
    db: db::Db,
    /// Device records between requests (see `device_cache`).
    devices: device_cache::DeviceCache,
    /// Raised after a commit that queued a webhook delivery (see `webhooks`).
    outbox: Arc<tokio::sync::Notify>,
}

impl SqliteStore {
    /// Opens a `sqlite://` URL (creating the file if needed) and migrates it.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(options.statement_timeout)
            .foreign_keys(true);
        // sqlx runs the migrations (and keeps its ledger of them); rusqlite does the rest.
        let mut migrator = SqliteConnection::connect_with(&connect).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrator)
            .await?;
        migrator.close().await?;
        let outbox = Arc::new(tokio::sync::Notify::new());
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
            devices: Default::default(),
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
        self.db.read(|c| Ok(c.execute_batch("SELECT 1")?)).await
    }

    async fn close(&self) {
        self.db.close();
    }
}
