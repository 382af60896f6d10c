//! The PostgreSQL backend: any number of Keyway processes on one database.
//!
//! What makes sharing safe, beyond each write being one transaction:
//!
//! - **Device leases** (`devices.lease_owner/lease_until`) are claimed with one conditional
//!   `UPDATE` over a `FOR UPDATE SKIP LOCKED` sub-select: of several instances claiming a device
//!   at once exactly one gets it, and nobody waits on another's claim. The lease holder alone
//!   works the device's jobs (scheduler edges and read-backs included), so no lock ever sees two
//!   workers. A dead instance's leases simply expire; they are never released at start.
//! - **Jobs** are de-duplicated by unique indexes (one waiting job per code and due time, one
//!   waiting read-back per lock) with `ON CONFLICT`, not by check-then-insert. A job the lease
//!   holder took is marked `taken`, so work queued meanwhile is a new job and is not lost when
//!   the taken ones are deleted.
//! - **Events** get their list order (`seq`) in commit order, when first listed (see
//!   `events.rs`), so `events/list` pages never skip an event that committed late.
//! - **Seeding** and migrations are idempotent and safe to run from several instances at once
//!   (`ON CONFLICT DO NOTHING`; sqlx holds an advisory lock while migrating).

mod access_codes;
mod accounts;
mod engine;
mod events;
mod provider;
mod sandbox;
mod stats;
mod webhooks;

use std::str::FromStr;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{Backend, Result, StoreOptions};

pub struct PgStore {
    pool: PgPool,
    /// Raised when a transaction that queued a webhook delivery commits, in any instance
    /// (`NOTIFY keyway_outbox`, see `webhooks`).
    outbox: Arc<tokio::sync::Notify>,
}

impl PgStore {
    /// Connects to a `postgres://` URL and migrates the database.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PgStore> {
        let timeout_ms = options.statement_timeout.as_millis();
        let connect = PgConnectOptions::from_str(url)?
            .application_name("keyway")
            .options([("statement_timeout", format!("{timeout_ms}ms"))]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout())
            // No ping before each use (a round trip per query): a connection the database
            // dropped fails its next query, is discarded, and the pool opens a new one.
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let outbox = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(listen_outbox(pool.clone(), Arc::downgrade(&outbox)));
        Ok(PgStore { pool, outbox })
    }
}

#[async_trait]
impl Backend for PgStore {
    fn is_exclusive(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Raises `signal` on every `NOTIFY keyway_outbox` until the pool is closed or the store is
/// dropped; reconnects (and raises it once, in case a notification was missed) when the
/// listening connection is lost.
async fn listen_outbox(pool: PgPool, signal: Weak<tokio::sync::Notify>) {
    while !pool.is_closed() {
        let error = match relay_notifications(&pool, &signal).await {
            Ok(never) => match never {},
            Err(error) => error,
        };
        if pool.is_closed() || signal.strong_count() == 0 {
            break;
        }
        tracing::debug!(%error, "webhook outbox listener lost; reconnecting");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn relay_notifications(
    pool: &PgPool,
    signal: &Weak<tokio::sync::Notify>,
) -> std::result::Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(webhooks::OUTBOX_CHANNEL).await?;
    loop {
        match signal.upgrade() {
            Some(signal) => signal.notify_one(),
            None => return Err(sqlx::Error::PoolClosed),
        }
        listener.recv().await?;
    }
}
