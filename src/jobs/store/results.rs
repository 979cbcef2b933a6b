//! Results: a finished job's outputs in a file named by their SHA-256, written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::error::{corrupt, io_err, StoreError};
use super::rows::{blob_f32, current_state, f32_blob, shape_len};
use super::write::{check_move, check_usage, move_state};
use super::{now_unix_s, JobStore};
use crate::gpu::tensor::{digest, Tensor};
use crate::jobs::spec::{JobId, JobState};

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
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Whether `s` is 64 lowercase hex digits (a SHA-256 digest as `digest()` writes it).
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl JobStore {
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
}
