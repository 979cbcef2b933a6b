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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::queue::{self, QueueEntry};
use super::spec::{JobId, JobSpec, JobState, Lease, SpecError};
use crate::gpu::job::{Checkpoint, GpuJob, KernelSpec};
use crate::gpu::tensor::{digest, Tensor};

/// How long opening the store waits for another process holding the database lock.
const OPEN_BUSY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;
/// The database file's name inside the data dir.
pub const DB_FILE: &str = "jobs.sqlite";
/// The results folder's name inside the data dir.
pub const RESULTS_DIR: &str = "results";
/// Largest page [`JobStore::list`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Why a store operation failed. The variants mirror gRPC status codes.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A malformed argument; `field` names it.
    #[error("{field}: {msg}")]
    InvalidArgument {
        /// The argument or spec field, e.g. `lease.tenant`, `page_token`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// No such job.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Over a store limit.
    #[error("{what} exhausted: {msg}")]
    ResourceExhausted {
        /// The limit's name.
        what: &'static str,
        /// By how much.
        msg: String,
    },
    /// Stored data is damaged or inconsistent (e.g. a result whose digest does not match).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The group commit this submission was batched into failed; nothing of it was stored.
    #[error("commit failed, the job was not stored: {0}")]
    CommitFailed(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl From<SpecError> for StoreError {
    fn from(e: SpecError) -> Self {
        StoreError::InvalidArgument {
            field: e.field,
            msg: e.msg,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(msg.into())
}

/// A live job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveJob {
    /// Its lease terms for ordering.
    pub entry: QueueEntry,
    /// QUEUED, RUNNING or PAUSED.
    pub state: JobState,
    /// What it has used and earned so far.
    pub usage: Usage,
}

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

/// Resources a job has used and what it has earned, accumulated over its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// GPU-busy seconds.
    pub gpu_seconds: f64,
    /// Energy, joules.
    pub joules: f64,
    /// Money earned.
    pub earned: f64,
}

/// A job as stored, without its input data (see [`JobStore::load_spec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The id.
    pub id: JobId,
    /// Current state.
    pub state: JobState,
    /// The lease it was submitted with.
    pub lease: Lease,
    /// The kernel it runs.
    pub kernel: KernelSpec,
    /// Shapes of its input tensors, in order.
    pub input_shapes: Vec<Vec<usize>>,
    /// Bytes of input data.
    pub input_bytes: u64,
    /// Unix seconds of submission.
    pub submitted_unix_s: f64,
    /// Unix seconds it first entered RUNNING.
    pub started_unix_s: Option<f64>,
    /// Unix seconds it entered a terminal state.
    pub finished_unix_s: Option<f64>,
    /// Unix seconds of its last change (state, checkpoint or usage).
    pub updated_unix_s: f64,
    /// Units done as of its last checkpoint.
    pub progress_units: u64,
    /// The reason it FAILED, if it did.
    pub last_error: Option<String>,
    /// SHA-256 hex digest of its outputs, once SUCCEEDED.
    pub result_digest: Option<String>,
    /// Accumulated usage.
    pub usage: Usage,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before; `None` for the submission row.
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub at_unix_s: f64,
}

/// Which jobs [`JobStore::list`] returns; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
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

const SCHEMA_V1: &str = "
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    price_per_gpu_second REAL NOT NULL,
    deadline_unix_s REAL,
    kernel_json TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    submitted_unix_s REAL NOT NULL,
    started_unix_s REAL,
    finished_unix_s REAL,
    updated_unix_s REAL NOT NULL,
    progress_units INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result_digest TEXT,
    result_shapes_json TEXT,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    joules REAL NOT NULL DEFAULT 0,
    earned REAL NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_state ON jobs(state, id);
CREATE INDEX jobs_by_tenant ON jobs(tenant, state, id);
CREATE TABLE inputs (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    shape_json TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_unix_s REAL NOT NULL
);
CREATE INDEX transitions_by_job ON transitions(job_id, seq);
CREATE TABLE checkpoints (
    job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    done INTEGER NOT NULL,
    buffers INTEGER NOT NULL,
    saved_unix_s REAL NOT NULL
);
CREATE TABLE checkpoint_buffers (
    job_id INTEGER NOT NULL REFERENCES checkpoints(job_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
";

/// Version 2: running totals (energy and earnings outside jobs) and owner settings.
const SCHEMA_V2: &str = "
CREATE TABLE totals (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 3: per-tenant load of unfinished jobs, kept by triggers whoever writes, so that the
/// submit limits are checked with one indexed lookup instead of a scan of the queue.
const SCHEMA_V3: &str = "
CREATE TABLE live_load (
    tenant TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO live_load (tenant, jobs, input_bytes)
    SELECT tenant, COUNT(*), SUM(input_bytes) FROM jobs
    WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED') GROUP BY tenant;
CREATE TRIGGER live_load_insert AFTER INSERT ON jobs
WHEN NEW.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    INSERT INTO live_load (tenant, jobs, input_bytes) VALUES (NEW.tenant, 1, NEW.input_bytes)
    ON CONFLICT (tenant) DO UPDATE SET jobs = jobs + 1, input_bytes = input_bytes + excluded.input_bytes;
END;
CREATE TRIGGER live_load_enter AFTER UPDATE OF state ON jobs
WHEN OLD.state NOT IN ('QUEUED', 'RUNNING', 'PAUSED') AND NEW.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    INSERT INTO live_load (tenant, jobs, input_bytes) VALUES (NEW.tenant, 1, NEW.input_bytes)
    ON CONFLICT (tenant) DO UPDATE SET jobs = jobs + 1, input_bytes = input_bytes + excluded.input_bytes;
END;
CREATE TRIGGER live_load_leave AFTER UPDATE OF state ON jobs
WHEN OLD.state IN ('QUEUED', 'RUNNING', 'PAUSED') AND NEW.state NOT IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    UPDATE live_load SET jobs = jobs - 1, input_bytes = input_bytes - OLD.input_bytes
    WHERE tenant = OLD.tenant;
END;
CREATE TRIGGER live_load_delete AFTER DELETE ON jobs
WHEN OLD.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    UPDATE live_load SET jobs = jobs - 1, input_bytes = input_bytes - OLD.input_bytes
    WHERE tenant = OLD.tenant;
END;
";

const JOB_COLUMNS: &str = "id, state, tenant, price_per_gpu_second, deadline_unix_s, priority, \
    kernel_json, input_bytes, submitted_unix_s, started_unix_s, finished_unix_s, updated_unix_s, \
    progress_units, last_error, result_digest, gpu_seconds, joules, earned";

const LIVE_STATES: &str = "('QUEUED', 'RUNNING', 'PAUSED')";

pub(crate) fn now_unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidArgument {
        field: what.to_string(),
        msg: format!("{v} is too large"),
    })
}

fn f32_blob(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn blob_f32(bytes: &[u8], what: &str) -> Result<Vec<f32>, StoreError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(corrupt(format!(
            "{what}: {} bytes is not a whole number of f32",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn shape_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn parse_state(s: &str) -> Result<JobState, StoreError> {
    s.parse().map_err(|e| corrupt(format!("{e}")))
}

/// The raw columns of a `jobs` row, in `JOB_COLUMNS` order.
fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        id: row.get(0)?,
        state: row.get(1)?,
        tenant: row.get(2)?,
        price: row.get(3)?,
        deadline: row.get(4)?,
        priority: row.get(5)?,
        kernel_json: row.get(6)?,
        input_bytes: row.get(7)?,
        submitted: row.get(8)?,
        started: row.get(9)?,
        finished: row.get(10)?,
        updated: row.get(11)?,
        progress: row.get(12)?,
        last_error: row.get(13)?,
        result_digest: row.get(14)?,
        usage: Usage {
            gpu_seconds: row.get(15)?,
            joules: row.get(16)?,
            earned: row.get(17)?,
        },
    })
}

struct RawRecord {
    id: i64,
    state: String,
    tenant: String,
    price: f64,
    deadline: Option<f64>,
    priority: i32,
    kernel_json: String,
    input_bytes: i64,
    submitted: f64,
    started: Option<f64>,
    finished: Option<f64>,
    updated: f64,
    progress: i64,
    last_error: Option<String>,
    result_digest: Option<String>,
    usage: Usage,
}

impl RawRecord {
    fn finish(self, input_shapes: Vec<Vec<usize>>) -> Result<JobRecord, StoreError> {
        let id = JobId(self.id as u64);
        Ok(JobRecord {
            id,
            state: parse_state(&self.state)?,
            lease: Lease {
                tenant: self.tenant,
                price_per_gpu_second: self.price,
                deadline_unix_s: self.deadline,
                priority: self.priority,
            },
            kernel: serde_json::from_str(&self.kernel_json)
                .map_err(|e| corrupt(format!("job {id} kernel: {e}")))?,
            input_shapes,
            input_bytes: self.input_bytes as u64,
            submitted_unix_s: self.submitted,
            started_unix_s: self.started,
            finished_unix_s: self.finished,
            updated_unix_s: self.updated,
            progress_units: self.progress as u64,
            last_error: self.last_error,
            result_digest: self.result_digest,
            usage: self.usage,
        })
    }
}

/// A unique suffix for temp files of this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `dir/name` so that a crash leaves either the old file or the whole new one,
/// and returns only when the file and its name are on disk.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let seq = TMP_SEQ.fetch_add(1, AtomicOrdering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let path = dir.join(name);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// fsyncs a folder so that names created or renamed in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Whether `s` is 64 lowercase hex digits (a SHA-256 digest as `digest()` writes it).
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
        Self::migrate(&mut conn)?;
        Ok(conn)
    }

    fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(corrupt(format!(
                "{DB_FILE} has schema version {version}; this build knows 0..={SCHEMA_VERSION}"
            )));
        }
        // Each step upgrades one version, in order.
        for (to, sql) in [(1, SCHEMA_V1), (2, SCHEMA_V2), (3, SCHEMA_V3)] {
            if version < to {
                tx.execute_batch(sql)?;
            }
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        tx.commit()?;
        Ok(())
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

    /// Validates `spec`, checks the limits and stores the job as QUEUED; returns once committed.
    pub fn submit(&self, spec: &JobSpec) -> Result<JobId, StoreError> {
        let mut out = self.submit_many(&[spec]);
        match out.pop() {
            Some(r) => r.map(|rec| rec.id),
            // submit_many answers every spec it is given.
            None => Err(StoreError::CommitFailed("no answer".into())),
        }
    }

    /// Stores several jobs in one transaction (group commit): one answer per spec, in order.
    /// A spec that is invalid or over a limit gets its own error and the others are stored; a
    /// failure of the transaction itself fails them all, and none is stored.
    pub fn submit_many(&self, specs: &[&JobSpec]) -> Vec<Result<JobRecord, StoreError>> {
        // Per-spec checks that need no database.
        let mut out: Vec<Result<JobRecord, StoreError>> = specs
            .iter()
            .map(|spec| {
                spec.validate()?;
                let bytes = spec.input_bytes();
                to_i64(bytes, "job.inputs")?;
                Ok(JobRecord {
                    id: JobId(0),
                    state: JobState::Queued,
                    lease: spec.lease.clone(),
                    kernel: spec.job.kernel.clone(),
                    input_shapes: spec.job.inputs.iter().map(|t| t.shape.clone()).collect(),
                    input_bytes: bytes,
                    submitted_unix_s: 0.0,
                    started_unix_s: None,
                    finished_unix_s: None,
                    updated_unix_s: 0.0,
                    progress_units: 0,
                    last_error: None,
                    result_digest: None,
                    usage: Usage::default(),
                })
            })
            .collect();
        let mut conn = self.conn();
        if let Err(e) = self.insert_batch(&mut conn, specs, &mut out) {
            let msg = e.to_string();
            for r in out.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(StoreError::CommitFailed(msg.clone()));
            }
        }
        out
    }

    /// Inserts the specs whose `out` entry is still `Ok` (filling in id and times), or turns it
    /// into a limit error; commits once. An `Err` return means nothing was committed.
    fn insert_batch(
        &self,
        conn: &mut Connection,
        specs: &[&JobSpec],
        out: &mut [Result<JobRecord, StoreError>],
    ) -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut held: u64 = tx.query_row(
            "SELECT COALESCE(SUM(input_bytes), 0) FROM live_load",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        let mut live: BTreeMap<String, u64> = BTreeMap::new();
        let now = now_unix_s();
        {
            let mut load = tx.prepare_cached("SELECT jobs FROM live_load WHERE tenant = ?1")?;
            let mut job = tx.prepare_cached(
                "INSERT INTO jobs (tenant, state, priority, price_per_gpu_second, \
                 deadline_unix_s, kernel_json, input_bytes, submitted_unix_s, updated_unix_s) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?;
            let mut input = tx.prepare_cached(
                "INSERT INTO inputs (job_id, idx, shape_json, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut transition = tx.prepare_cached(
                "INSERT INTO transitions (job_id, from_state, to_state, reason, at_unix_s) \
                 VALUES (?1, NULL, ?2, 'submitted', ?3)",
            )?;
            for (spec, slot) in specs.iter().zip(out.iter_mut()) {
                let Ok(rec) = slot else { continue };
                let tenant = &spec.lease.tenant;
                let n = match live.get(tenant) {
                    Some(&n) => n,
                    None => load
                        .query_row([tenant], |r| r.get::<_, i64>(0))
                        .optional()?
                        .unwrap_or(0)
                        .max(0) as u64,
                };
                if n >= self.limits.max_jobs_per_tenant {
                    *slot = Err(StoreError::ResourceExhausted {
                        what: "max_jobs_per_tenant",
                        msg: format!(
                            "tenant {tenant} has {n} unfinished jobs, at most {}",
                            self.limits.max_jobs_per_tenant
                        ),
                    });
                    continue;
                }
                let bytes = rec.input_bytes;
                if held.saturating_add(bytes) > self.limits.max_total_input_bytes {
                    *slot = Err(StoreError::ResourceExhausted {
                        what: "max_total_input_bytes",
                        msg: format!(
                            "unfinished jobs hold {held} input bytes; {bytes} more exceeds {}",
                            self.limits.max_total_input_bytes
                        ),
                    });
                    continue;
                }
                let kernel_json = serde_json::to_string(&spec.job.kernel)
                    .map_err(|e| corrupt(format!("job.kernel: {e}")))?;
                let l = &spec.lease;
                job.execute(params![
                    l.tenant,
                    JobState::Queued.as_str(),
                    l.priority,
                    l.price_per_gpu_second,
                    l.deadline_unix_s,
                    kernel_json,
                    to_i64(bytes, "job.inputs")?,
                    now
                ])?;
                let id = tx.last_insert_rowid();
                for (i, t) in spec.job.inputs.iter().enumerate() {
                    let shape =
                        serde_json::to_string(&t.shape).map_err(|e| corrupt(e.to_string()))?;
                    input.execute(params![id, i as i64, shape, f32_blob(&t.data)])?;
                }
                transition.execute(params![id, JobState::Queued.as_str(), now])?;
                live.insert(tenant.clone(), n + 1);
                held += bytes;
                rec.id = JobId(id as u64);
                rec.submitted_unix_s = now;
                rec.updated_unix_s = now;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The job's record (without input data).
    pub fn get(&self, id: JobId) -> Result<JobRecord, StoreError> {
        let conn = self.reader();
        let raw = conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id.0 as i64],
                record_from_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound(id))?;
        let shapes = input_shapes(&conn, raw.id)?;
        raw.finish(shapes)
    }

    /// The job as submitted, with its input tensors bit-exact.
    pub fn load_spec(&self, id: JobId) -> Result<JobSpec, StoreError> {
        let rec = self.get(id)?;
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT idx, shape_json, data FROM inputs WHERE job_id = ?1 ORDER BY idx")?;
        let rows = st.query_map([id.0 as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut inputs = Vec::new();
        for (n, row) in rows.enumerate() {
            let (idx, shape, data) = row?;
            let what = format!("job {id} input {idx}");
            if idx != n as i64 {
                return Err(corrupt(format!("{what}: expected index {n}")));
            }
            let shape: Vec<usize> =
                serde_json::from_str(&shape).map_err(|e| corrupt(format!("{what}: {e}")))?;
            let data = blob_f32(&data, &what)?;
            let t = Tensor::new(shape, data).map_err(|e| corrupt(format!("{what}: {e}")))?;
            inputs.push(t);
        }
        Ok(JobSpec {
            job: GpuJob {
                kernel: rec.kernel,
                inputs,
            },
            lease: rec.lease,
        })
    }

    /// A page of jobs matching `filter`, by ascending id, and the token for the next page if
    /// there may be more. `page_size` is clamped to 1..=1000.
    pub fn list(
        &self,
        filter: ListFilter,
        page_size: u32,
        page_token: Option<String>,
    ) -> Result<(Vec<JobRecord>, Option<String>), StoreError> {
        let after = match page_token.as_deref() {
            None | Some("") => 0i64,
            Some(t) => decode_token(t)?,
        };
        let size = page_size.clamp(1, MAX_PAGE_SIZE) as i64;
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id > ?1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(after)];
        if let Some(t) = filter.tenant {
            args.push(Box::new(t));
            sql += &format!(" AND tenant = ?{}", args.len());
        }
        if let Some(s) = filter.state {
            args.push(Box::new(s.as_str()));
            sql += &format!(" AND state = ?{}", args.len());
        }
        args.push(Box::new(size + 1));
        sql += &format!(" ORDER BY id LIMIT ?{}", args.len());
        let conn = self.reader();
        let mut st = conn.prepare(&sql)?;
        let raws = st
            .query_map(rusqlite::params_from_iter(args.iter()), record_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let more = raws.len() as i64 > size;
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws.into_iter().take(size as usize) {
            let shapes = input_shapes(&conn, raw.id)?;
            out.push(raw.finish(shapes)?);
        }
        let next = match (more, out.last()) {
            (true, Some(last)) => Some(encode_token(last.id)),
            _ => None,
        };
        Ok((out, next))
    }

    /// Moves the job to `to`, recording `reason`, if the state machine allows it.
    ///
    /// SUCCEEDED is reached only through [`JobStore::finish`], which also stores the result.
    /// Entering FAILED records `reason` as the job's last error; entering a terminal state drops
    /// its checkpoint.
    pub fn transition(&self, id: JobId, to: JobState, reason: &str) -> Result<(), StoreError> {
        if to == JobState::Succeeded {
            return Err(StoreError::InvalidArgument {
                field: "to".into(),
                msg: "SUCCEEDED is set by finish(), which stores the result".into(),
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        move_state(&tx, id, to, reason, now_unix_s())?;
        tx.commit()?;
        Ok(())
    }

    /// The job's recorded state changes, oldest first (the first is its submission).
    pub fn transitions(&self, id: JobId) -> Result<Vec<Transition>, StoreError> {
        let conn = self.reader();
        let _ = current_state(&conn, id)?;
        let mut st = conn.prepare(
            "SELECT from_state, to_state, reason, at_unix_s FROM transitions \
             WHERE job_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([id.0 as i64], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (from, to, reason, at) = row?;
            out.push(Transition {
                from: from.as_deref().map(parse_state).transpose()?,
                to: parse_state(&to)?,
                reason,
                at_unix_s: at,
            });
        }
        Ok(out)
    }

    /// Stores `cp` as the job's checkpoint, replacing the previous one; the job must not be in a
    /// terminal state.
    pub fn save_checkpoint(&self, id: JobId, cp: &Checkpoint) -> Result<(), StoreError> {
        let done = to_i64(cp.done, "checkpoint.done")?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let state = current_state(&tx, id)?;
        if state.is_terminal() {
            return Err(StoreError::FailedPrecondition(format!(
                "job {id} is {state}: a finished job takes no checkpoint"
            )));
        }
        let now = now_unix_s();
        let jid = id.0 as i64;
        tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [jid])?;
        tx.execute(
            "INSERT INTO checkpoints (job_id, done, buffers, saved_unix_s) VALUES (?1, ?2, ?3, ?4)",
            params![jid, done, cp.state.len() as i64, now],
        )?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO checkpoint_buffers (job_id, idx, data) VALUES (?1, ?2, ?3)",
            )?;
            for (i, buf) in cp.state.iter().enumerate() {
                ins.execute(params![jid, i as i64, f32_blob(buf)])?;
            }
        }
        tx.execute(
            "UPDATE jobs SET progress_units = ?2, updated_unix_s = ?3 WHERE id = ?1",
            params![jid, done, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The job's last checkpoint, bit-exact, if it has one.
    pub fn checkpoint(&self, id: JobId) -> Result<Option<Checkpoint>, StoreError> {
        let conn = self.conn();
        let _ = current_state(&conn, id)?;
        let jid = id.0 as i64;
        let Some((done, buffers)) = conn
            .query_row(
                "SELECT done, buffers FROM checkpoints WHERE job_id = ?1",
                [jid],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut st = conn
            .prepare("SELECT idx, data FROM checkpoint_buffers WHERE job_id = ?1 ORDER BY idx")?;
        let rows = st.query_map([jid], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut state = Vec::new();
        for (n, row) in rows.enumerate() {
            let (idx, data) = row?;
            let what = format!("job {id} checkpoint buffer {idx}");
            if idx != n as i64 {
                return Err(corrupt(format!("{what}: expected index {n}")));
            }
            state.push(blob_f32(&data, &what)?);
        }
        if state.len() as i64 != buffers {
            return Err(corrupt(format!(
                "job {id} checkpoint: {} buffers stored, {buffers} recorded",
                state.len()
            )));
        }
        Ok(Some(Checkpoint {
            done: done as u64,
            state,
        }))
    }

    /// Stores the job's outputs as `results/<digest>.bin` (durably), then marks it SUCCEEDED
    /// with that digest, adding `gpu_seconds` and `joules` to its usage (earnings are recorded
    /// with [`JobStore::record_usage`]). `digest` must equal `digest(outputs)`.
    pub fn finish(
        &self,
        id: JobId,
        outputs: &[Tensor],
        digest_hex: &str,
        gpu_seconds: f64,
        joules: f64,
        reason: &str,
    ) -> Result<(), StoreError> {
        check_usage(gpu_seconds, joules, 0.0)?;
        for (i, t) in outputs.iter().enumerate() {
            if shape_len(&t.shape) != Some(t.data.len()) {
                return Err(StoreError::InvalidArgument {
                    field: format!("outputs[{i}]"),
                    msg: format!("shape {:?} does not hold {} values", t.shape, t.data.len()),
                });
            }
        }
        let actual = digest(outputs);
        if actual != digest_hex {
            return Err(StoreError::InvalidArgument {
                field: "digest".into(),
                msg: format!("{digest_hex:?} is not the outputs' digest {actual}"),
            });
        }
        // Refuse early (before writing a file) if the job cannot succeed; checked again below.
        {
            let conn = self.conn();
            check_move(id, current_state(&conn, id)?, JobState::Succeeded)?;
        }
        let bytes: Vec<u8> = outputs.iter().flat_map(|t| f32_blob(&t.data)).collect();
        write_atomic(&self.results, &format!("{actual}.bin"), &bytes)?;
        let shapes: Vec<&Vec<usize>> = outputs.iter().map(|t| &t.shape).collect();
        let shapes = serde_json::to_string(&shapes).map_err(|e| corrupt(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_unix_s();
        move_state(&tx, id, JobState::Succeeded, reason, now)?;
        tx.execute(
            "UPDATE jobs SET result_digest = ?2, result_shapes_json = ?3, \
             gpu_seconds = gpu_seconds + ?4, joules = joules + ?5 WHERE id = ?1",
            params![id.0 as i64, actual, shapes, gpu_seconds, joules],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The outputs of a SUCCEEDED job and their digest, re-read from disk and verified.
    pub fn result(&self, id: JobId) -> Result<(Vec<Tensor>, String), StoreError> {
        let (state, dig, shapes) = {
            let conn = self.conn();
            conn.query_row(
                "SELECT state, result_digest, result_shapes_json FROM jobs WHERE id = ?1",
                [id.0 as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound(id))?
        };
        let (Some(dig), Some(shapes)) = (dig, shapes) else {
            return Err(StoreError::FailedPrecondition(format!(
                "job {id} is {state} and has no result"
            )));
        };
        if !is_digest(&dig) {
            return Err(corrupt(format!("job {id}: bad stored digest {dig:?}")));
        }
        let shapes: Vec<Vec<usize>> = serde_json::from_str(&shapes)
            .map_err(|e| corrupt(format!("job {id} result shapes: {e}")))?;
        let path = self.results.join(format!("{dig}.bin"));
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != dig {
            return Err(corrupt(format!(
                "{}: SHA-256 is {found}, job {id} recorded {dig}",
                path.display()
            )));
        }
        let data = blob_f32(&bytes, &path.display().to_string())?;
        let mut rest = &data[..];
        let mut out = Vec::with_capacity(shapes.len());
        for shape in shapes {
            let n = shape_len(&shape)
                .filter(|&n| n <= rest.len())
                .ok_or_else(|| corrupt(format!("{}: shorter than its shapes", path.display())))?;
            let (head, tail) = rest.split_at(n);
            out.push(Tensor {
                shape,
                data: head.to_vec(),
            });
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(corrupt(format!(
                "{}: longer than its shapes",
                path.display()
            )));
        }
        Ok((out, dig))
    }

    /// Adds to the job's usage totals. Values must be finite and ≥ 0.
    pub fn record_usage(
        &self,
        id: JobId,
        gpu_seconds: f64,
        joules: f64,
        earned: f64,
    ) -> Result<(), StoreError> {
        check_usage(gpu_seconds, joules, earned)?;
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE jobs SET gpu_seconds = gpu_seconds + ?2, joules = joules + ?3, \
             earned = earned + ?4, updated_unix_s = ?5 WHERE id = ?1",
            params![id.0 as i64, gpu_seconds, joules, earned, now_unix_s()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id));
        }
        Ok(())
    }

    /// Every live (QUEUED, RUNNING, PAUSED) job with what ordering needs, its state and usage,
    /// in queue order.
    pub fn live(&self) -> Result<Vec<LiveJob>, StoreError> {
        let conn = self.reader();
        let mut st = conn.prepare_cached(&format!(
            "SELECT id, deadline_unix_s, priority, price_per_gpu_second, state, gpu_seconds, \
             joules, earned FROM jobs WHERE state IN {LIVE_STATES} ORDER BY id"
        ))?;
        let rows = st.query_map([], |r| {
            Ok((
                QueueEntry {
                    id: JobId(r.get::<_, i64>(0)? as u64),
                    deadline_unix_s: r.get(1)?,
                    priority: r.get(2)?,
                    price_per_gpu_second: r.get(3)?,
                },
                r.get::<_, String>(4)?,
                Usage {
                    gpu_seconds: r.get(5)?,
                    joules: r.get(6)?,
                    earned: r.get(7)?,
                },
            ))
        })?;
        let mut jobs = Vec::new();
        for row in rows {
            let (entry, state, usage) = row?;
            jobs.push(LiveJob {
                entry,
                state: parse_state(&state)?,
                usage,
            });
        }
        let now = now_unix_s();
        jobs.sort_by(|a, b| queue::compare(&a.entry, &b.entry, now));
        Ok(jobs)
    }

    /// How many jobs are in each state, every state present (0 if none), in lifecycle order.
    pub fn count_by_state(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let conn = self.reader();
        let mut st = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut counts: Vec<(JobState, u64)> = JobState::ALL.iter().map(|&s| (s, 0)).collect();
        for row in rows {
            let (state, n) = row?;
            let state = parse_state(&state)?;
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == state) {
                c.1 = n.max(0) as u64;
            }
        }
        Ok(counts)
    }

    /// Usage summed over every job whose id is not in `except` (e.g. the live jobs, whose
    /// fresher figures the caller holds in memory).
    pub fn usage_total_except(&self, except: &[JobId]) -> Result<Usage, StoreError> {
        let ids = serde_json::to_string(&except.iter().map(|j| j.0).collect::<Vec<u64>>())
            .map_err(|e| corrupt(e.to_string()))?;
        let conn = self.conn();
        let (gpu_seconds, joules, earned) = conn.query_row(
            "SELECT COALESCE(SUM(gpu_seconds), 0.0), COALESCE(SUM(joules), 0.0), \
             COALESCE(SUM(earned), 0.0) FROM jobs \
             WHERE id NOT IN (SELECT value FROM json_each(?1))",
            [ids],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Usage {
            gpu_seconds,
            joules,
            earned,
        })
    }

    /// Records how many units a live job has done (for progress display; checkpoints and
    /// results carry their own count).
    pub fn set_progress(&self, id: JobId, done: u64) -> Result<(), StoreError> {
        let done = to_i64(done, "progress_units")?;
        let n = self.conn().execute(
            &format!(
                "UPDATE jobs SET progress_units = ?2, updated_unix_s = ?3 \
                 WHERE id = ?1 AND state IN {LIVE_STATES}"
            ),
            params![id.0 as i64, done, now_unix_s()],
        )?;
        if n == 0 {
            return Err(StoreError::FailedPrecondition(format!(
                "job {id} is not live"
            )));
        }
        Ok(())
    }

    /// Named running totals (energy and earnings kept outside jobs), all 0 on a new store.
    pub fn totals(&self) -> Result<BTreeMap<String, f64>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT name, value FROM totals")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets running totals, in one transaction. Values must be finite.
    pub fn save_totals(&self, values: &[(&str, f64)]) -> Result<(), StoreError> {
        if let Some((name, v)) = values.iter().find(|(_, v)| !v.is_finite()) {
            return Err(StoreError::InvalidArgument {
                field: (*name).to_string(),
                msg: format!("{v} is not finite"),
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (name, v) in values {
            tx.execute(
                "INSERT INTO totals (name, value) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An owner setting (JSON text), if set.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Stores an owner setting (JSON text) durably.
    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    /// Call once at daemon start: moves every RUNNING job (the process died under it) back to
    /// QUEUED with reason "recovered after restart", and returns all QUEUED and PAUSED jobs in
    /// queue order. Re-queued jobs resume from [`JobStore::checkpoint`].
    pub fn recover(&self) -> Result<Vec<JobId>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_unix_s();
        let running: Vec<i64> = {
            let mut st = tx.prepare("SELECT id FROM jobs WHERE state = 'RUNNING' ORDER BY id")?;
            let ids = st.query_map([], |r| r.get(0))?;
            ids.collect::<Result<_, _>>()?
        };
        for id in running {
            move_state(
                &tx,
                JobId(id as u64),
                JobState::Queued,
                "recovered after restart",
                now,
            )?;
        }
        let entries: Vec<QueueEntry> = {
            let mut st = tx.prepare(
                "SELECT id, deadline_unix_s, priority, price_per_gpu_second FROM jobs \
                 WHERE state IN ('QUEUED', 'PAUSED') ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(QueueEntry {
                    id: JobId(r.get::<_, i64>(0)? as u64),
                    deadline_unix_s: r.get(1)?,
                    priority: r.get(2)?,
                    price_per_gpu_second: r.get(3)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        tx.commit()?;
        Ok(queue::order(&entries, now))
    }
}

fn check_usage(gpu_seconds: f64, joules: f64, earned: f64) -> Result<(), StoreError> {
    for (field, v) in [
        ("gpu_seconds", gpu_seconds),
        ("joules", joules),
        ("earned", earned),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(StoreError::InvalidArgument {
                field: field.into(),
                msg: format!("{v} must be finite and >= 0"),
            });
        }
    }
    Ok(())
}

fn check_move(id: JobId, from: JobState, to: JobState) -> Result<(), StoreError> {
    if from.can_move_to(to) {
        Ok(())
    } else {
        Err(StoreError::FailedPrecondition(format!(
            "job {id} cannot move from {from} to {to}"
        )))
    }
}

fn current_state(conn: &Connection, id: JobId) -> Result<JobState, StoreError> {
    let s: String = conn
        .query_row("SELECT state FROM jobs WHERE id = ?1", [id.0 as i64], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or(StoreError::NotFound(id))?;
    parse_state(&s)
}

/// Checks and applies `→ to` inside `tx`: state, timestamps, last error, checkpoint cleanup and
/// the transitions row.
fn move_state(
    tx: &Transaction<'_>,
    id: JobId,
    to: JobState,
    reason: &str,
    now: f64,
) -> Result<(), StoreError> {
    let from = current_state(tx, id)?;
    check_move(id, from, to)?;
    let jid = id.0 as i64;
    tx.execute(
        "UPDATE jobs SET state = ?2, updated_unix_s = ?3, \
         started_unix_s = CASE WHEN ?2 = 'RUNNING' THEN COALESCE(started_unix_s, ?3) \
                               ELSE started_unix_s END, \
         finished_unix_s = CASE WHEN ?4 THEN ?3 ELSE finished_unix_s END, \
         last_error = CASE WHEN ?2 = 'FAILED' THEN ?5 ELSE last_error END \
         WHERE id = ?1",
        params![jid, to.as_str(), now, to.is_terminal(), reason],
    )?;
    if to.is_terminal() {
        tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [jid])?;
    }
    insert_transition(tx, jid, Some(from), to, reason, now)
}

fn insert_transition(
    tx: &Transaction<'_>,
    job_id: i64,
    from: Option<JobState>,
    to: JobState,
    reason: &str,
    now: f64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO transitions (job_id, from_state, to_state, reason, at_unix_s) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![job_id, from.map(JobState::as_str), to.as_str(), reason, now],
    )?;
    Ok(())
}

fn input_shapes(conn: &Connection, job_id: i64) -> Result<Vec<Vec<usize>>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT shape_json FROM inputs WHERE job_id = ?1 ORDER BY idx")?;
    let rows = st.query_map([job_id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(
            serde_json::from_str(&row?)
                .map_err(|e| corrupt(format!("job {job_id} input shape: {e}")))?,
        );
    }
    Ok(out)
}

const TOKEN_PREFIX: &str = "after-";

fn encode_token(last: JobId) -> String {
    format!("{TOKEN_PREFIX}{}", last.0)
}

fn decode_token(t: &str) -> Result<i64, StoreError> {
    t.strip_prefix(TOKEN_PREFIX)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| StoreError::InvalidArgument {
            field: "page_token".into(),
            msg: format!("{t:?} is not a token this server issued"),
        })
}
