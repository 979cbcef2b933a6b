//! Submission: validated specs inserted as QUEUED jobs, several per transaction (group commit).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::error::{corrupt, StoreError};
use super::rows::{f32_blob, to_i64, JobRecord, Usage};
use super::{now_unix_s, JobStore};
use crate::jobs::spec::{JobId, JobSpec, JobState};

impl JobStore {
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
}
