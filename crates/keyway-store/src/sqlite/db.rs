//! SQLite connections without per-statement thread hand-offs.
//!
//! A store method hands the database one closure that runs all of its statements on a
//! connection, instead of sending each statement (and each row) to a connection thread and
//! waiting for the answer:
//!
//! - [`Db::write`] runs the closure on the writer thread, which owns the only writing connection.
//!   Every closure queued while the previous transaction committed shares the next transaction
//!   (group commit): a closure that fails is undone alone, and no caller hears of success before
//!   the transaction holding its writes has committed. Closures run without savepoints (whose
//!   page copies cost more than the writes themselves); one that fails after changing rows has
//!   the group rolled back and run again, each closure then inside its own savepoint.
//! - [`Db::read`] runs the closure on a pooled read-only connection, on the calling thread: a
//!   read is a few page lookups, cheaper than a trip to another thread and back.
//!
//! Statements are prepared once per connection (`prepare_cached`).

use std::collections::HashMap;
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

/// A write queued for the writer thread.
trait Job: Send {
    /// Runs the closure in the open transaction and keeps its result; answers whether it
    /// succeeded. Runs again when its group is rolled back and run over.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Keeps `error` as the result instead of running: no transaction could hold the closure.
    fn refuse(&mut self, error: String);
    /// Tells the caller how its transaction ended: the closure's result once committed, the
    /// commit's error otherwise (a failed closure's own error stands either way).
    fn answer(self: Box<Self>, committed: std::result::Result<(), String>);
}

/// A [`Db::write`] closure, its last result and its caller.
struct Write<T, F> {
    f: F,
    result: Option<Result<T>>,
    answer: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn refuse(&mut self, error: String) {
        self.result = Some(Err(StoreError::Unavailable(error)));
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), String>) {
        let result = match (self.result, committed) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(error)) => Err(StoreError::Unavailable(error)),
            (None, Ok(())) => Err(StoreError::Unavailable("the write did not run".into())),
        };
        let _ = self.answer.send(result);
    }
}

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
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
    code_versions: Arc<CodeVersions>,
}

/// Which devices' access codes changed: what lets the API keep a device's code list.
///
/// The writer's connection names the device of every `access_codes` row a transaction inserts,
/// updates or deletes (see `watch_code_changes`). Once the transaction is over (committed or not),
/// and before any of its callers hears back, the writer gives each device it named a new
/// version. A version read before a read transaction began therefore never claims data older
/// than that read saw. Versions live in memory: the file belongs to this process alone, and a
/// restart starts every cache empty.
#[derive(Default)]
pub(crate) struct CodeVersions {
    /// Devices the open transaction touched, and whether among their backup codes (writes
    /// rolled back included: a version that moves for nothing costs a cache miss, never a
    /// stale answer).
    touched: Mutex<HashMap<String, bool>>,
    /// Per device, the last publication that named it, and the last that named one of its
    /// backup codes.
    published: RwLock<HashMap<String, (u64, u64)>>,
    publications: AtomicU64,
    /// Row ids of the access codes the open transaction inserted or updated (see
    /// `watch_code_changes`), their devices found once it is over.
    rows: Mutex<Vec<i64>>,
    /// The devices of those rows could not be found: every device counts as touched.
    all_touched: AtomicBool,
    /// The last publication that covered every device.
    all: AtomicU64,
    /// The open transaction changed what a device record shows (see `watch_device_changes`).
    devices_touched: AtomicBool,
    /// Moves after every transaction that changed what any device record shows.
    devices: AtomicU64,
}

impl CodeVersions {
    /// The device's versions: the first changes after every transaction that changed one of
    /// its codes, the second after every one that changed one of its backup codes.
    fn of(&self, device_id: &str) -> (u64, u64) {
        let (codes, backups) = self
            .published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .copied()
            .unwrap_or((0, 0));
        let all = self.all.load(Ordering::SeqCst);
        (codes.max(all), backups.max(all))
    }

    fn touch(&self, device_id: &str, backup: bool) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        match touched.get_mut(device_id) {
            Some(backups) => *backups |= backup,
            None => {
                touched.insert(device_id.to_owned(), backup);
            }
        }
    }

    /// The version of every device record: changes after every transaction that changed what
    /// one of them shows (its codes aside: those have [`CodeVersions::of`]).
    pub(crate) fn devices(&self) -> u64 {
        self.devices.load(Ordering::SeqCst)
    }

    /// Names the devices of the access code rows noted since the last call. A row that is not
    /// there any more was inserted by a write rolled back: nothing of it is left to name.
    fn find_rows(&self, conn: &Connection) {
        let rows = std::mem::take(&mut *self.rows.lock().unwrap_or_else(|e| e.into_inner()));
        if rows.is_empty() {
            return;
        }
        let ids = serde_json::Value::from(rows).to_string();
        let found = conn
            .prepare_cached(
                "SELECT DISTINCT device_id, is_backup FROM access_codes
                 WHERE seq IN (SELECT value FROM json_each(?))",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([ids], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<(String, bool)>>>()
            });
        match found {
            Ok(devices) => {
                for (device_id, backup) in devices {
                    self.touch(&device_id, backup);
                }
            }
            Err(error) => {
                warn!(%error, "could not tell which locks' codes changed: all count as changed");
                self.all_touched.store(true, Ordering::SeqCst);
            }
        }
    }

    fn publish(&self) {
        if self.devices_touched.swap(false, Ordering::SeqCst) {
            self.devices.fetch_add(1, Ordering::SeqCst);
        }
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()));
        let all = self.all_touched.swap(false, Ordering::SeqCst);
        if touched.is_empty() && !all {
            return;
        }
        let version = self.publications.fetch_add(1, Ordering::Relaxed) + 1;
        if all {
            self.all.store(version, Ordering::SeqCst);
        }
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        for (device_id, backup) in touched {
            let versions = published.entry(device_id).or_insert((0, 0));
            versions.0 = version;
            if backup {
                versions.1 = version;
            }
        }
    }
}

/// Has the writer's connection report the device of every access code row it changes (and
/// whether the row is a backup code, which stays one for life), rows
/// rolled back included. Inserts and updates are noted by row id (the writer's update hook,
/// see `Db::open`) and their devices looked up once the transaction is over
/// ([`CodeVersions::find_rows`]); a deleted row, or one moved to another device, names its
/// devices from a trigger. Triggers on every change would make SQLite journal each statement
/// on the table, which costs more than the write itself.
fn watch_code_changes(conn: &Connection, versions: Arc<CodeVersions>) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "keyway_codes_changed",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| {
            if let Some(device_id) = ctx.get_raw(0).as_str_or_null()? {
                versions.touch(device_id, ctx.get::<bool>(1)?);
            }
            Ok(true)
        },
    )?;
    // Temporary: they belong to this connection, not to the file's schema.
    conn.execute_batch(
        "CREATE TEMP TRIGGER keyway_code_moved AFTER UPDATE OF device_id ON main.access_codes
         BEGIN SELECT keyway_codes_changed(OLD.device_id, OLD.is_backup),
             keyway_codes_changed(NEW.device_id, NEW.is_backup); END;
         CREATE TEMP TRIGGER keyway_code_deleted AFTER DELETE ON main.access_codes
         BEGIN SELECT keyway_codes_changed(OLD.device_id, OLD.is_backup); END;",
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
        let code_versions = Arc::new(CodeVersions::default());
        {
            let touched = touched.clone();
            let versions = code_versions.clone();
            writer.update_hook(Some(move |action: Action, db: &str, table: &str, row| {
                if action == Action::SQLITE_INSERT && watched.contains(&table) {
                    touched.store(true, Ordering::Relaxed);
                }
                // Deletions are named by a trigger (see `watch_code_changes`).
                if table == "access_codes" && db == "main" && action != Action::SQLITE_DELETE {
                    versions
                        .rows
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(row);
                }
            }));
        }
        watch_code_changes(&writer, code_versions.clone())?;
        watch_device_changes(&writer, code_versions.clone())?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>(MAX_GROUP * 4);
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
        self.code_versions.of(device_id).0
    }

    /// The version of a device's backup codes: what its record's count of ready backups
    /// follows (see [`CodeVersions`]).
    pub(crate) fn backup_version(&self, device_id: &str) -> u64 {
        self.code_versions.of(device_id).1
    }

    /// The version of every device record (see [`CodeVersions::devices`]).
    pub(crate) fn devices_version(&self) -> u64 {
        self.code_versions.devices()
    }

    /// Runs `f` in the writer's current transaction; answers once that transaction committed.
    /// `f` may run more than once: again, from the start, when another closure of its group
    /// failed after changing rows and the group is run over.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T>>();
        let job = Box::new(Write {
            f,
            result: None,
            answer,
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
    mut queue: mpsc::Receiver<Box<dyn Job>>,
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
        let committed = commit_group(&conn, &mut group);
        if let Err(message) = &committed {
            warn!(%message, "a write transaction failed");
            touched.store(false, Ordering::Relaxed);
        } else {
            if touched.swap(false, Ordering::Relaxed) {
                inserted.notify_one();
            }
            // Already nudged if full: one checkpoint covers every commit before it.
            let _ = checkpoint.try_send(());
        }
        code_versions.find_rows(&conn);
        code_versions.publish();
        for job in group {
            job.answer(committed.clone());
        }
        restart_log(&conn, &log_frames);
    }
}

/// Runs the group's closures in one transaction and commits it. They run one after the other
/// without savepoints; a closure that failed without changing a row leaves nothing to undo.
/// One that failed after changing rows, panicked, or left no transaction open (SQLite rolls
/// one back on some errors, which a closure may not pass on) has the whole transaction rolled
/// back and the group run over, each closure inside its own savepoint. A closure that panicked
/// is dropped from the group: its caller hears that the store closed.
fn commit_group(
    conn: &Connection,
    group: &mut Vec<Box<dyn Job>>,
) -> std::result::Result<(), String> {
    begin(conn, group)?;
    let mut clean = true;
    let mut index = 0;
    while index < group.len() {
        let before = conn.total_changes();
        match std::panic::catch_unwind(AssertUnwindSafe(|| group[index].run(conn))) {
            Ok(ok) => {
                if conn.is_autocommit() || (!ok && conn.total_changes() != before) {
                    clean = false;
                    break;
                }
            }
            Err(_) => {
                warn!("a store write panicked; its transaction was rolled back");
                group.remove(index);
                clean = false;
                break;
            }
        }
        index += 1;
    }
    if !clean {
        let _ = run(conn, "ROLLBACK");
        begin(conn, group)?;
        group.retain_mut(|job| run_in_savepoint(conn, job.as_mut()));
    }
    run(conn, "COMMIT").map_err(|error| {
        let _ = run(conn, "ROLLBACK");
        error.to_string()
    })
}

/// Opens the group's write transaction; if it cannot, every closure of the group gets the
/// error as its result, unrun.
fn begin(conn: &Connection, group: &mut [Box<dyn Job>]) -> std::result::Result<(), String> {
    run(conn, "BEGIN IMMEDIATE").map_err(|error| {
        let message = error.to_string();
        for job in group.iter_mut() {
            job.refuse(message.clone());
        }
        message
    })
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

/// Runs a closure inside its own savepoint, rolled back if it fails; answers whether the
/// closure stays in the group (false when it panicked).
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> bool {
    if let Err(error) = run(conn, "SAVEPOINT job") {
        job.refuse(error.to_string());
        return true;
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| job.run(conn))) {
        Ok(true) => {
            let _ = run(conn, "RELEASE job");
            true
        }
        Ok(false) => {
            let _ = run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"));
            true
        }
        Err(_) => {
            warn!("a store write panicked; its changes were rolled back");
            let _ = run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"));
            false
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::super::testing::seeded;
    use super::*;

    /// A writer on a migrated database, a scratch table `t` in it, and a write that holds the
    /// writer until `release` is dropped or sent to: writes queued meanwhile share one group.
    async fn writer_held() -> (tempfile::TempDir, Db, std::sync::mpsc::Sender<()>) {
        let (dir, store, _device) = seeded().await;
        drop(store);
        let db = Db::open(
            ConnectOptions {
                path: dir.path().join("keyway.sqlite"),
                synchronous: "NORMAL",
                busy_timeout: Duration::from_secs(5),
                readers: 2,
                acquire_timeout: Duration::from_secs(5),
            },
            &[],
            Arc::new(Notify::new()),
        )
        .expect("writer opens");
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (v TEXT NOT NULL)")?;
            Ok(())
        })
        .await
        .expect("table");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, start) = tokio::sync::oneshot::channel::<()>();
        let released = Mutex::new(Some(released));
        let mut started = Some(started);
        let (answer, _answered) = oneshot::channel::<Result<()>>();
        let hold = Write {
            f: move |_: &Connection| {
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
                if let Some(released) = released.lock().expect("lock").take() {
                    let _ = released.recv();
                }
                Ok(())
            },
            result: None,
            answer,
        };
        db.jobs.send(Box::new(hold)).await.expect("queued");
        start.await.expect("the writer holds");
        (dir, db, release)
    }

    fn insert(c: &Connection, v: &str) -> Result<usize> {
        exec(c, "INSERT INTO t (v) VALUES (?)", [v])
    }

    async fn values(db: &Db) -> Vec<String> {
        db.read(|c| column(c, "SELECT v FROM t ORDER BY v", []))
            .await
            .expect("read")
    }

    /// Runs `middle` between two writes of the same group (each inserting a row and counting
    /// its runs), then lets the writer go. Both neighbours must commit their row, and nothing
    /// else may be left in `t`; answers the neighbours' runs and `middle`'s result.
    async fn between<T>(
        db: &Db,
        release: std::sync::mpsc::Sender<()>,
        middle: impl std::future::Future<Output = Result<T>>,
    ) -> (usize, Result<T>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = |v: &'static str| {
            let runs = runs.clone();
            db.write(move |c| {
                runs.fetch_add(1, Ordering::SeqCst);
                insert(c, v)
            })
        };
        let (first, last) = (counted("a"), counted("c"));
        let releasing = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = release.send(());
        };
        let (first, middle, last, ()) = tokio::join!(first, middle, last, releasing);
        assert_eq!(first.expect("first commits"), 1);
        assert_eq!(last.expect("last commits"), 1);
        assert_eq!(values(db).await, ["a", "c"]);
        (runs.load(Ordering::SeqCst), middle)
    }

    #[tokio::test]
    async fn a_write_that_fails_after_changing_rows_is_undone_alone() {
        let (_dir, db, release) = writer_held().await;
        let failing = db.write(|c| {
            insert(c, "b")?;
            Err::<(), _>(StoreError::Conflict("refused after a write".into()))
        });
        let (runs, failing) = between(&db, release, failing).await;
        assert!(
            matches!(failing, Err(StoreError::Conflict(_))),
            "{failing:?}"
        );
        // The group was rolled back and run over: the write before the failed one ran twice
        // and left one row.
        assert_eq!(runs, 3);
    }

    #[tokio::test]
    async fn a_write_that_fails_before_changing_rows_costs_its_group_no_second_run() {
        let (_dir, db, release) = writer_held().await;
        let failing = db.write(|c| {
            let taken: Option<String> = scalar(c, "SELECT v FROM t WHERE v = 'a'", [])?;
            Err::<(), _>(StoreError::Conflict(format!(
                "refused, having read {taken:?}"
            )))
        });
        let (runs, failing) = between(&db, release, failing).await;
        // It saw the write before it, in the same transaction.
        assert!(
            matches!(&failing, Err(StoreError::Conflict(m)) if m.contains("Some(\"a\")")),
            "{failing:?}"
        );
        assert_eq!(runs, 2);
    }

    #[tokio::test]
    async fn a_write_that_panics_is_undone_and_its_caller_told() {
        let (_dir, db, release) = writer_held().await;
        let panicking = db.write(|c| -> Result<()> {
            insert(c, "b")?;
            panic!("a bug in a write");
        });
        let (_, panicking) = between(&db, release, panicking).await;
        assert!(
            matches!(panicking, Err(StoreError::Unavailable(_))),
            "{panicking:?}"
        );
    }
}
