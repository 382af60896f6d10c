//! SQLite connections without per-statement thread hand-offs.
//!
//! A store method hands the database one closure that runs all of its statements on a
//! connection, instead of sending each statement (and each row) to a connection thread and
//! waiting for the answer:
//!
//! - [`Db::write`] runs the closure on the writer thread, which owns the only writing connection.
//!   Every closure queued while the previous transaction committed shares the next transaction
//!   (group commit), each inside its own savepoint: a closure that fails is rolled back alone,
//!   and no caller hears of success before the transaction holding its writes has committed.
//! - [`Db::read`] runs the closure on a pooled read-only connection, on the calling thread: a
//!   read is a few page lookups, cheaper than a trip to another thread and back.
//!
//! Statements are prepared once per connection (`prepare_cached`).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::Action;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tracing::warn;

use crate::{Result, StoreError};

/// Closures committed together at most.
const MAX_GROUP: usize = 512;
/// Page cache of the writer connection, in KiB.
const WRITER_CACHE_KIB: u32 = 32 * 1024;
/// Least time between two checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);
/// Log frames (about a page each) after which the log is made to start over.
const RESTART_FRAMES: i64 = 8192;
/// Bytes the log file is cut back to when it starts over: about `RESTART_FRAMES` pages.
const LOG_SIZE_LIMIT: i64 = RESTART_FRAMES * 4096;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

/// What the writer thread answers once the group's transaction is over.
type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A write: runs inside its savepoint, says whether it succeeded, and how to answer its caller.
/// Given `Err` when no transaction could be opened for it: it then answers that error unrun.
type Job = Box<dyn FnOnce(std::result::Result<&Connection, String>) -> (bool, Reply) + Send>;

/// How connections are opened.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub path: std::path::PathBuf,
    /// `PRAGMA synchronous`: `NORMAL` or `FULL`.
    pub synchronous: &'static str,
    pub busy_timeout: Duration,
    pub readers: usize,
    /// Longest wait for a free reader.
    pub acquire_timeout: Duration,
}

impl ConnectOptions {
    fn open(&self, read_only: bool) -> rusqlite::Result<Connection> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Savepoint journals and sorts stay in memory: no temporary files.
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; PRAGMA temp_store = MEMORY;",
            self.synchronous
        ))?;
        if !read_only {
            // Already set by the migration connection; a no-op that keeps the writer honest.
            conn.pragma_update(None, "journal_mode", "wal")?;
        }
        Ok(conn)
    }
}

pub(crate) struct Db {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    code_versions: Arc<CodeVersions>,
}

/// Which devices' access codes changed: what lets the API keep a device's code list.
///
/// Triggers on the writer's connection name the device of every `access_codes` row a
/// transaction inserts, updates or deletes. Once the transaction is over (committed or not),
/// and before any of its callers hears back, the writer gives each device it named a new
/// version. A version read before a read transaction began therefore never claims data older
/// than that read saw. Versions live in memory: the file belongs to this process alone, and a
/// restart starts every cache empty.
#[derive(Default)]
pub(crate) struct CodeVersions {
    /// Devices the open transaction touched (savepoints rolled back included: a version that
    /// moves for nothing costs a cache miss, never a stale answer).
    touched: Mutex<HashSet<String>>,
    /// Per device, the last publication that named it.
    published: RwLock<HashMap<String, u64>>,
    publications: AtomicU64,
    /// The open transaction changed what a device record shows (see `watch_device_changes`).
    devices_touched: AtomicBool,
    /// Moves after every transaction that changed what any device record shows.
    devices: AtomicU64,
}

impl CodeVersions {
    /// The device's version: changes after every transaction that changed one of its codes.
    pub(crate) fn of(&self, device_id: &str) -> u64 {
        self.published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .copied()
            .unwrap_or(0)
    }

    fn touch(&self, device_id: &str) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if !touched.contains(device_id) {
            touched.insert(device_id.to_owned());
        }
    }

    /// The version of every device record: changes after every transaction that changed what
    /// one of them shows (its codes aside: those have [`CodeVersions::of`]).
    pub(crate) fn devices(&self) -> u64 {
        self.devices.load(Ordering::SeqCst)
    }

    fn publish(&self) {
        if self.devices_touched.swap(false, Ordering::SeqCst) {
            self.devices.fetch_add(1, Ordering::SeqCst);
        }
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()));
        if touched.is_empty() {
            return;
        }
        let version = self.publications.fetch_add(1, Ordering::Relaxed) + 1;
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        for device_id in touched {
            published.insert(device_id, version);
        }
    }
}

/// Has the writer's connection report the device of every access code row it changes.
fn watch_code_changes(conn: &Connection, versions: Arc<CodeVersions>) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "keyway_codes_changed",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| {
            if let Some(device_id) = ctx.get_raw(0).as_str_or_null()? {
                versions.touch(device_id);
            }
            Ok(true)
        },
    )?;
    // Temporary: they belong to this connection, not to the file's schema.
    conn.execute_batch(
        "CREATE TEMP TRIGGER keyway_code_inserted AFTER INSERT ON main.access_codes
         BEGIN SELECT keyway_codes_changed(NEW.device_id); END;
         CREATE TEMP TRIGGER keyway_code_updated AFTER UPDATE ON main.access_codes
         BEGIN SELECT keyway_codes_changed(OLD.device_id), keyway_codes_changed(NEW.device_id); END;
         CREATE TEMP TRIGGER keyway_code_deleted AFTER DELETE ON main.access_codes
         BEGIN SELECT keyway_codes_changed(OLD.device_id); END;",
    )
}

/// Columns of the tables a device record is read from whose changes do not show in it: a
/// lock's lease (taken and renewed by every engine round), and a sandbox lock's operation
/// count, delay and pending simulated failures. A change to any other column, or any row
/// inserted or deleted, moves the devices' version.
pub(crate) const DEVICE_COLUMNS_NOT_SHOWN: &[(&str, &[&str])] = &[
    ("devices", &["lease_owner", "lease_until"]),
    ("sandbox_locks", &["operations", "delay_ms", "fail_next"]),
    ("connected_accounts", &[]),
];

/// Has the writer's connection report every change to what a device record shows (the
/// record's own count of backup codes is one of its codes' changes: see `watch_code_changes`).
fn watch_device_changes(conn: &Connection, versions: Arc<CodeVersions>) -> Result<()> {
    conn.create_scalar_function(
        "keyway_devices_changed",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |_| {
            versions.devices_touched.store(true, Ordering::SeqCst);
            Ok(true)
        },
    )?;
    for (table, not_shown) in DEVICE_COLUMNS_NOT_SHOWN {
        let shown: Vec<String> = column::<String>(
            conn,
            &format!("SELECT name FROM pragma_table_info('{table}')"),
            [],
        )?
        .into_iter()
        .filter(|name| !not_shown.contains(&name.as_str()))
        .collect();
        conn.execute_batch(&format!(
            "CREATE TEMP TRIGGER keyway_{table}_inserted AFTER INSERT ON main.{table}
             BEGIN SELECT keyway_devices_changed(); END;
             CREATE TEMP TRIGGER keyway_{table}_updated AFTER UPDATE OF {} ON main.{table}
             BEGIN SELECT keyway_devices_changed(); END;
             CREATE TEMP TRIGGER keyway_{table}_deleted AFTER DELETE ON main.{table}
             BEGIN SELECT keyway_devices_changed(); END;",
            shown.join(", ")
        ))?;
    }
    Ok(())
}

struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    options: ConnectOptions,
}

impl Db {
    /// Opens the writer (on its own thread) and the reader pool. `inserted` is raised after a
    /// commit whose transaction inserted into one of `watched` tables.
    pub(crate) fn open(
        options: ConnectOptions,
        watched: &'static [&'static str],
        inserted: Arc<Notify>,
    ) -> Result<Db> {
        let writer = options.open(false)?;
        // The writer keeps more of the file in memory than a reader (it lives as long as the
        // store; a reader's cache is emptied by every commit anyway), and leaves checkpoints,
        // which copy the log back into the file, to a thread of their own. A log that grew in
        // a burst is cut back when it starts over.
        writer.execute_batch(&format!(
            "PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = {LOG_SIZE_LIMIT};"
        ))?;
        let checkpointer = options.open(false)?;
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        let log_frames = Arc::new(AtomicI64::new(0));
        let frames = log_frames.clone();
        std::thread::Builder::new()
            .name("keyway-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, nudged, frames))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        let touched = Arc::new(AtomicBool::new(false));
        {
            let touched = touched.clone();
            writer.update_hook(Some(move |action: Action, _db: &str, table: &str, _row| {
                if action == Action::SQLITE_INSERT && watched.contains(&table) {
                    touched.store(true, Ordering::Relaxed);
                }
            }));
        }
        let code_versions = Arc::new(CodeVersions::default());
        watch_code_changes(&writer, code_versions.clone())?;
        watch_device_changes(&writer, code_versions.clone())?;
        let (jobs, queue) = mpsc::channel::<Job>(MAX_GROUP * 4);
        let versions = code_versions.clone();
        std::thread::Builder::new()
            .name("keyway-sqlite-writer".into())
            .spawn(move || {
                write_loop(
                    writer, queue, touched, inserted, nudge, log_frames, &versions,
                )
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        let permits = Semaphore::new(options.readers.max(1));
        Ok(Db {
            jobs,
            readers: Arc::new(Readers {
                idle: Mutex::new(Vec::new()),
                permits,
                options,
            }),
            code_versions,
        })
    }

    /// The version of a device's access codes (see [`CodeVersions`]).
    pub(crate) fn code_version(&self, device_id: &str) -> u64 {
        self.code_versions.of(device_id)
    }

    /// The version of every device record (see [`CodeVersions::devices`]).
    pub(crate) fn devices_version(&self) -> u64 {
        self.code_versions.devices()
    }

    /// Runs `f` in the writer's current transaction; answers once that transaction committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(error) => Err(StoreError::Unavailable(error)),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = answer.send(match committed {
                    Ok(()) => result,
                    Err(error) if ok => Err(StoreError::Unavailable(error)),
                    Err(_) => result,
                });
            });
            (ok, reply)
        });
        self.jobs.send(job).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }

    /// Runs `f` on a read-only connection, in one read transaction.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let permit =
            tokio::time::timeout(readers.options.acquire_timeout, readers.permits.acquire())
                .await
                .map_err(|_| StoreError::Unavailable("no free database connection".into()))?
                .map_err(|_| closed())?;
        let idle = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => readers.options.open(true)?,
        };
        let result = in_read_transaction(&conn, f);
        readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        drop(permit);
        result
    }

    /// Refuses further reads and closes the idle readers. The writer thread ends (after the
    /// writes already queued) when the store is dropped.
    pub(crate) fn close(&self) {
        self.readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.readers.permits.close();
    }
}

fn in_read_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    run(conn, "BEGIN")?;
    let result = f(conn);
    // A read-only transaction has nothing to keep; ending it releases the WAL snapshot.
    let _ = run(conn, "COMMIT");
    result
}

/// A transaction-control statement, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

fn write_loop(
    conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    touched: Arc<AtomicBool>,
    inserted: Arc<Notify>,
    checkpoint: std::sync::mpsc::SyncSender<()>,
    log_frames: Arc<AtomicI64>,
    code_versions: &CodeVersions,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = run(&conn, "BEGIN IMMEDIATE") {
            let message = error.to_string();
            warn!(%message, "could not start a write transaction");
            for job in group {
                let (_, reply) = job(Err(message.clone()));
                reply(Err(message.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(group.len());
        for job in group {
            replies.push(run_in_savepoint(&conn, job));
        }
        let committed = run(&conn, "COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = run(&conn, "ROLLBACK");
            touched.store(false, Ordering::Relaxed);
        } else {
            if touched.swap(false, Ordering::Relaxed) {
                inserted.notify_one();
            }
            // Already nudged if full: one checkpoint covers every commit before it.
            let _ = checkpoint.try_send(());
        }
        code_versions.publish();
        for reply in replies {
            reply(committed.clone());
        }
        restart_log(&conn, &log_frames);
    }
}

/// Copies committed log frames back into the database file after commits, beside the writer:
/// passive checkpoints neither wait for nor block readers and the writer. Publishes how many
/// frames the log holds (see `restart_log`). Ends with the writer.
fn checkpoint_loop(
    conn: Connection,
    nudged: std::sync::mpsc::Receiver<()>,
    log_frames: Arc<AtomicI64>,
) {
    while nudged.recv().is_ok() {
        // Answers (busy, frames in the log, frames copied).
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(1)
        }) {
            Ok(frames) => log_frames.store(frames, Ordering::Relaxed),
            Err(error) => warn!(%error, "checkpoint failed"),
        }
        // Let frames gather: one checkpoint per pause, however many commits came meanwhile.
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// Under steady load some reader always holds an older snapshot, passive checkpoints never
/// reach the end of the log, and it would grow without bound. Once it is long, the writer
/// (between two transactions) waits for the readers of old frames, copies what is left and
/// has the log start over. Passive checkpoints have done most of the copying by then.
fn restart_log(conn: &Connection, log_frames: &AtomicI64) {
    if log_frames.load(Ordering::Relaxed) < RESTART_FRAMES {
        return;
    }
    // Whatever the outcome, the next try waits for the checkpointer's next count: a reader
    // that held on must not cost every following transaction a busy wait.
    log_frames.store(0, Ordering::Relaxed);
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => {}
        Ok(_) => warn!("the log could not start over: readers held on"),
        Err(error) => warn!(%error, "restarting checkpoint failed"),
    }
}

fn run_in_savepoint(conn: &Connection, job: Job) -> Reply {
    if let Err(error) = run(conn, "SAVEPOINT job") {
        return job(Err(error.to_string())).1;
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(conn)))) {
        Ok((true, reply)) => {
            let _ = run(conn, "RELEASE job");
            reply
        }
        Ok((false, reply)) => {
            let _ = run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"));
            reply
        }
        Err(_) => {
            // The caller's answer was dropped with the closure: it hears "closed".
            warn!("a store write panicked; its changes were rolled back");
            let _ = run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"));
            Box::new(|_| {})
        }
    }
}

/// Every row of `sql`, deserialized by column name.
pub(crate) fn rows<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query(params)?;
    Ok(serde_rusqlite::from_rows::<T>(rows).collect::<std::result::Result<Vec<T>, _>>()?)
}

/// The first row of `sql`, if any, deserialized by column name.
pub(crate) fn row<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(serde_rusqlite::from_row::<T>(row)?)),
        None => Ok(None),
    }
}

/// The first column of the first row of `sql`, if there is a row.
pub(crate) fn scalar<T: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, |row| row.get::<_, T>(0))
        .optional()?)
}

/// Every row of `sql`, read by position with `read` (cheaper than by column name, for rows
/// read on every engine round).
pub(crate) fn mapped<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let values = statement.query_map(params, read)?;
    Ok(values.collect::<std::result::Result<Vec<T>, _>>()?)
}

/// The first column of every row of `sql`.
pub(crate) fn column<T: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    mapped(conn, sql, params, |row| row.get::<_, T>(0))
}

/// Runs a statement; answers how many rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}
