//! Checkpoints: the latest saved state of an unfinished job, bit-exact.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::error::{corrupt, StoreError};
use super::rows::{blob_f32, current_state, f32_blob, to_i64};
use super::{now_unix_s, JobStore};
use crate::gpu::job::Checkpoint;
use crate::jobs::spec::JobId;

impl JobStore {
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
}
