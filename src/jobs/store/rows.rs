//! The store's records and how they map to and from SQLite rows and columns.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{corrupt, StoreError};
use crate::gpu::job::KernelSpec;
use crate::jobs::queue::QueueEntry;
use crate::jobs::spec::{JobId, JobState, Lease};

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

/// A job as stored, without its input data (see
/// [`JobStore::load_spec`](super::JobStore::load_spec)).
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

/// Which jobs [`JobStore::list`](super::JobStore::list) returns; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
}

/// The columns [`record_from_row`] reads, in its order.
pub(super) const JOB_COLUMNS: &str =
    "id, state, tenant, price_per_gpu_second, deadline_unix_s, priority, \
    kernel_json, input_bytes, submitted_unix_s, started_unix_s, finished_unix_s, updated_unix_s, \
    progress_units, last_error, result_digest, gpu_seconds, joules, earned";

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidArgument {
        field: what.to_string(),
        msg: format!("{v} is too large"),
    })
}

pub(super) fn f32_blob(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(super) fn blob_f32(bytes: &[u8], what: &str) -> Result<Vec<f32>, StoreError> {
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

pub(super) fn shape_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

pub(super) fn parse_state(s: &str) -> Result<JobState, StoreError> {
    s.parse().map_err(|e| corrupt(format!("{e}")))
}

/// The raw columns of a `jobs` row, in `JOB_COLUMNS` order.
pub(super) fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
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

/// A `jobs` row before its columns are parsed.
pub(super) struct RawRecord {
    pub(super) id: i64,
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
    /// The record, with the job's input shapes read separately.
    pub(super) fn finish(self, input_shapes: Vec<Vec<usize>>) -> Result<JobRecord, StoreError> {
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

/// The job's state, or [`StoreError::NotFound`].
pub(super) fn current_state(conn: &Connection, id: JobId) -> Result<JobState, StoreError> {
    let s: String = conn
        .query_row("SELECT state FROM jobs WHERE id = ?1", [id.0 as i64], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or(StoreError::NotFound(id))?;
    parse_state(&s)
}
