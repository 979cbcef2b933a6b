//! What travels on the market besides offers: job events, device entries, and the objects in
//! the blob store (inputs, checkpoints, results) with their names and binary format.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::layout::MarketError;
use super::receipt::SignedReceipt;
use crate::gpu::job::Checkpoint;
use crate::gpu::tensor::Tensor;

/// Unix time now, milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One thing that happened to a market job, published on `market.events.<job_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The market job id.
    pub job_id: String,
    /// When, Unix milliseconds.
    pub at_unix_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of job events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A client offered the job.
    Offered {
        /// The kernel's catalog name.
        kernel: String,
        /// Devices that must run it.
        redundancy: u8,
        /// Price per GPU-second.
        price_per_gpu_second: f64,
        /// Unix seconds.
        deadline_unix_s: u64,
    },
    /// A device took a copy and started it.
    Accepted {
        /// The device.
        device: String,
        /// Which copy.
        replica: u8,
        /// Units already done (resumed from a checkpoint).
        resumed_at: u64,
    },
    /// A device stored a checkpoint.
    Progress {
        /// The device.
        device: String,
        /// Which copy.
        replica: u8,
        /// Units done.
        done: u64,
        /// Units in all.
        units: u64,
    },
    /// A device gave its copy back (checkpoint stored); another device resumes it.
    Preempted {
        /// The device.
        device: String,
        /// Which copy.
        replica: u8,
        /// Units done at the checkpoint.
        done: u64,
        /// Why.
        reason: String,
    },
    /// A device finished its copy: the result is in the object store.
    Completed {
        /// The device's signed receipt.
        receipt: SignedReceipt,
    },
    /// The copy cannot be run by anyone (bad offer, kernel failure, deadline passed).
    Failed {
        /// The device that found out (empty if none).
        device: String,
        /// Which copy.
        replica: u8,
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// The event's name, as in its JSON `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Offered { .. } => "offered",
            Self::Accepted { .. } => "accepted",
            Self::Progress { .. } => "progress",
            Self::Preempted { .. } => "preempted",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
        }
    }
}

/// A device's entry in the devices bucket, refreshed by every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device id (derived from its public key).
    pub device_id: String,
    /// Its ed25519 public key, hex.
    pub public_key: String,
    /// Its GPU adapter.
    pub adapter: String,
    /// Kernels it takes.
    pub kernels: Vec<String>,
    /// Least price per GPU-second it takes.
    pub price_floor: f64,
    /// GPU watts its room wants that no local job uses.
    pub spare_watts: f64,
    /// The market job it runs, if any.
    pub job: Option<String>,
    /// When this entry was written, Unix milliseconds.
    pub updated_unix_ms: u64,
}

/// Object name of a job's stored inputs.
pub fn input_object(job: &str) -> String {
    format!("input/{job}")
}

/// Object name of a copy's latest checkpoint.
pub fn checkpoint_object(job: &str, replica: u8) -> String {
    format!("checkpoint/{job}/{replica}")
}

/// Object name of a device's result for a job.
pub fn result_object(job: &str, device: &str) -> String {
    format!("result/{job}/{device}")
}

const PACK_MAGIC: &[u8; 8] = b"HRTHPK01";

/// Tensors as one blob: magic, count (u32 LE), then each as length (u64 LE) and `.npy` bytes.
pub fn pack(tensors: &[Tensor]) -> Vec<u8> {
    let mut out = PACK_MAGIC.to_vec();
    out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for t in tensors {
        let npy = t.to_npy();
        out.extend_from_slice(&(npy.len() as u64).to_le_bytes());
        out.extend_from_slice(&npy);
    }
    out
}

/// The tensors of a [`pack`]; an error names what is wrong.
pub fn unpack(bytes: &[u8]) -> Result<Vec<Tensor>, String> {
    let rest = bytes
        .strip_prefix(PACK_MAGIC.as_slice())
        .ok_or("not a tensor pack (bad magic)")?;
    let (n, mut rest) = take_u64(rest, 4)?;
    let mut out = Vec::new();
    for i in 0..n {
        let (len, r) = take_u64(rest, 8)?;
        let len = usize::try_from(len).map_err(|_| format!("tensor {i}: length overflows"))?;
        if r.len() < len {
            return Err(format!(
                "tensor {i}: {len} bytes announced, {} left",
                r.len()
            ));
        }
        out.push(Tensor::from_npy(&r[..len]).map_err(|e| format!("tensor {i}: {e}"))?);
        rest = &r[len..];
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(out)
}

fn take_u64(b: &[u8], width: usize) -> Result<(u64, &[u8]), String> {
    if b.len() < width {
        return Err("truncated".into());
    }
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(&b[..width]);
    Ok((u64::from_le_bytes(v), &b[width..]))
}

/// A checkpoint as a blob: units done (u64 LE), then its state buffers as a [`pack`].
pub fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let state: Vec<Tensor> = cp
        .state
        .iter()
        .map(|s| Tensor {
            shape: vec![s.len()],
            data: s.clone(),
        })
        .collect();
    let mut out = cp.done.to_le_bytes().to_vec();
    out.extend(pack(&state));
    out
}

/// The checkpoint of an [`encode_checkpoint`] blob.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    let (done, rest) = take_u64(bytes, 8)?;
    let state = unpack(rest)?.into_iter().map(|t| t.data).collect();
    Ok(Checkpoint { done, state })
}

fn blob_err(what: String) -> impl FnOnce(async_nats::Error) -> MarketError {
    move |source| MarketError::JetStream { what, source }
}

/// Stores `bytes` as object `name`, replacing what was there.
pub async fn put_blob(store: &ObjectStore, name: &str, bytes: &[u8]) -> Result<(), MarketError> {
    let mut data = bytes;
    store
        .put(name, &mut data)
        .await
        .map(drop)
        .map_err(|e| blob_err(format!("storing object {name}"))(Box::new(e)))
}

/// Object `name`'s bytes, `None` if there is no such object.
pub async fn get_blob(store: &ObjectStore, name: &str) -> Result<Option<Vec<u8>>, MarketError> {
    use async_nats::jetstream::object_store::GetErrorKind;
    let mut obj = match store.get(name).await {
        Ok(o) => o,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(blob_err(format!("reading object {name}"))(Box::new(e))),
    };
    let mut out = Vec::new();
    obj.read_to_end(&mut out)
        .await
        .map_err(|e| blob_err(format!("reading object {name}"))(Box::new(e)))?;
    Ok(Some(out))
}

/// Whether object `name` exists and is not deleted.
pub async fn has_blob(store: &ObjectStore, name: &str) -> Result<bool, MarketError> {
    use async_nats::jetstream::object_store::InfoErrorKind;
    match store.info(name).await {
        Ok(info) => Ok(!info.deleted),
        Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
        Err(e) => Err(blob_err(format!("looking up object {name}"))(Box::new(e))),
    }
}

/// Deletes object `name`; a missing object is not an error.
pub async fn delete_blob(store: &ObjectStore, name: &str) {
    if let Err(e) = store.delete(name).await {
        tracing::debug!(object = name, error = %e, "cannot delete object");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_checkpoints_round_trip_and_garbage_is_an_error() {
        let ts = vec![
            Tensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
            Tensor::new(vec![1], vec![-0.5]).unwrap(),
        ];
        assert_eq!(unpack(&pack(&ts)).unwrap(), ts);
        assert_eq!(unpack(&pack(&[])).unwrap(), vec![]);
        let cp = Checkpoint {
            done: 7,
            state: vec![vec![1.0, 2.0], vec![]],
        };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&cp)).unwrap(), cp);
        let p = pack(&ts);
        assert!(unpack(&p[..p.len() - 1]).is_err());
        assert!(unpack(b"garbage").is_err());
        let mut long = p.clone();
        long.push(0);
        assert!(unpack(&long).unwrap_err().contains("trailing"));
    }

    #[test]
    fn events_are_tagged_json() {
        let e = Event {
            job_id: "j".into(),
            at_unix_ms: 5,
            kind: EventKind::Preempted {
                device: "dev-1".into(),
                replica: 0,
                done: 3,
                reason: "room warm".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "preempted");
        assert_eq!(v["job_id"], "j");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }
}
