//! Reads: single jobs, their inputs and history, pages of jobs, live jobs and usage sums.

use rusqlite::{Connection, OptionalExtension};

use super::error::{corrupt, StoreError};
use super::rows::{
    blob_f32, current_state, parse_state, record_from_row, JobRecord, ListFilter, LiveJob,
    Transition, Usage, JOB_COLUMNS,
};
use super::schema::LIVE_STATES;
use super::{now_unix_s, JobStore, MAX_PAGE_SIZE};
use crate::gpu::job::GpuJob;
use crate::gpu::tensor::Tensor;
use crate::jobs::queue::{self, QueueEntry};
use crate::jobs::spec::{JobId, JobSpec, JobState};

impl JobStore {
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
