//! State changes: transitions, usage and progress updates, and recovery after a restart.

use rusqlite::{params, Transaction, TransactionBehavior};

use super::error::StoreError;
use super::rows::{current_state, to_i64};
use super::schema::LIVE_STATES;
use super::{now_unix_s, JobStore};
use crate::jobs::queue::{self, QueueEntry};
use crate::jobs::spec::{JobId, JobState};

impl JobStore {
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

/// Refuses a usage amount that is not finite or negative.
pub(super) fn check_usage(gpu_seconds: f64, joules: f64, earned: f64) -> Result<(), StoreError> {
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

/// Refuses a move the state machine does not allow.
pub(super) fn check_move(id: JobId, from: JobState, to: JobState) -> Result<(), StoreError> {
    if from.can_move_to(to) {
        Ok(())
    } else {
        Err(StoreError::FailedPrecondition(format!(
            "job {id} cannot move from {from} to {to}"
        )))
    }
}

/// Checks and applies `→ to` inside `tx`: state, timestamps, last error, checkpoint cleanup and
/// the transitions row.
pub(super) fn move_state(
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
