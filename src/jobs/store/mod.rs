//! The durable job store: SQLite (WAL) for jobs, inputs, transitions, checkpoints and usage;
//! content-addressed result files beside it.
//!
//! Layout of the data dir:
//! - `jobs.sqlite` (+ `-wal`, `-shm`): everything but results.
//! - `results/<sha256hex>.bin`: a finished job's outputs, the little-endian f32 data of each
//!   output in order, so the file's SHA-256 is the job's digest. Shapes are in the database.
//!
//! Every write method returns only after its data is on disk (see [`JobStore::open`]). All methods
//! are synchronous and may block on I/O: call them from `spawn_blocking`. A `JobStore` is `Send +
//! Sync`; calls are serialized on one connection.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

mod checkpoints;
mod error;
mod queries;
mod results;
mod rows;
mod schema;
mod settings;
mod submit;
mod write;

pub use error::StoreError;
pub use rows::{JobRecord, ListFilter, LiveJob, Transition, Usage};
pub use schema::SCHEMA_VERSION;

use error::{corrupt, io_err};
use results::sync_dir;

/// How long opening the store waits for another process holding the database lock.
const OPEN_BUSY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "jobs.sqlite";
/// The results folder's name inside the data dir.
pub const RESULTS_DIR: &str = "results";
/// Largest page [`JobStore::list`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Caps on what waiting and running jobs may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreLimits {
    /// Non-terminal (QUEUED, RUNNING, PAUSED) jobs one tenant may have.
    pub max_jobs_per_tenant: u64,
    /// Input tensor bytes over all non-terminal jobs of all tenants.
    pub max_total_input_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_jobs_per_tenant: 1000,
            max_total_input_bytes: 8 << 30,
        }
    }
}

/// How hard a commit pushes data to disk before it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The WAL is written (not fsynced) at each commit: a committed job survives the daemon
    /// being killed (`kill -9`, a panic, the OOM killer), not an OS crash or power loss.
    #[default]
    Normal,
    /// The WAL is fsynced at each commit: a committed job also survives power loss. Group
    /// commit makes that one fsync per batch of concurrent submits.
    Full,
}

impl SyncMode {
    /// The name in config files and on the command line (`normal`, `full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Normal => "normal",
            SyncMode::Full => "full",
        }
    }

    /// The `PRAGMA synchronous` value.
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [SyncMode::Normal, SyncMode::Full]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("{s:?}: normal or full"))
    }
}

/// The durable job store.
#[derive(Debug)]
pub struct JobStore {
    conn: Mutex<Connection>,
    /// A second connection for reads that need not see this process's uncommitted writes: in
    /// WAL mode it reads the last commit without waiting for the writer (the group commit).
    reader: Mutex<Connection>,
    results: PathBuf,
    limits: StoreLimits,
}

pub(crate) fn now_unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl JobStore {
    /// Opens (creating if needed) the store in `dir`: `dir/jobs.sqlite` and `dir/results/`.
    ///
    /// The database runs in WAL mode with [`SyncMode::Normal`]: a committed transaction is in
    /// the WAL file (the OS holds it) before the call returns, so it survives the daemon being
    /// killed. [`JobStore::open_with`] and [`SyncMode::Full`] also survive power loss.
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<JobStore, StoreError> {
        Self::open_with(dir, limits, SyncMode::default())
    }

    /// [`JobStore::open`] with an explicit [`SyncMode`].
    pub fn open_with(
        dir: &Path,
        limits: StoreLimits,
        sync: SyncMode,
    ) -> Result<JobStore, StoreError> {
        let results = dir.join(RESULTS_DIR);
        fs::create_dir_all(&results).map_err(io_err(&results))?;
        sync_dir(dir)?;
        // Two processes opening a fresh store at once (the daemon starting while the CLI
        // submits) both take a shared lock and then want the exclusive one to switch the
        // journal mode or migrate. SQLite resolves that deadlock by failing one side at once
        // with SQLITE_BUSY, without consulting the busy handler, so the whole open is retried.
        let deadline = std::time::Instant::now() + OPEN_BUSY_LIMIT;
        let conn = loop {
            match Self::open_conn(&dir.join(DB_FILE), sync) {
                Err(StoreError::Db(e))
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let reader = Connection::open(dir.join(DB_FILE))?;
        reader.busy_timeout(OPEN_BUSY_LIMIT)?;
        Ok(JobStore {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            results,
            limits,
        })
    }

    /// One attempt at opening the database: WAL, full sync, foreign keys, current schema.
    fn open_conn(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(OPEN_BUSY_LIMIT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(corrupt(format!(
                "{DB_FILE}: could not enable WAL (journal_mode is {mode})"
            )));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous={}; PRAGMA foreign_keys=ON;",
            sync.pragma()
        ))?;
        schema::migrate(&mut conn)?;
        Ok(conn)
    }

    /// The connection; a poisoned lock is taken over (SQLite rolls back any half-done
    /// transaction when its `Transaction` is dropped during the unwind).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The read connection (each statement sees the last commit).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }
}
