//! Tensors uploaded with `UploadTensor`, held in memory until a `SubmitJob` names them (it takes
//! them) or they expire. The total held is capped, so uploads cannot exhaust memory. An upload
//! belongs to the tenant whose token made it: another tenant cannot use it (the owner can).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status as GrpcStatus;

use super::convert::invalid;
use crate::gpu::tensor::Tensor;

/// How long an upload waits for its submit.
const TTL: Duration = Duration::from_secs(600);

/// One upload: the tensor, when it arrived, and the tenant whose token sent it (`None`: owner).
type Held = (Tensor, Instant, Option<String>);

/// The uploads held.
#[derive(Debug)]
pub struct Uploads {
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
    max_bytes: usize,
    max_total_bytes: usize,
}

impl Uploads {
    /// At most `max_bytes` per tensor and `max_total_bytes` held in all.
    pub fn new(max_bytes: usize, max_total_bytes: usize) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            max_bytes,
            max_total_bytes,
        }
    }

    /// The per-tensor cap, bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Holds `t`, sent by `tenant` (`None`: the owner); returns its name (`tensors/{id}`), or
    /// RESOURCE_EXHAUSTED over the total cap.
    pub fn put(&self, t: Tensor, tenant: Option<String>) -> Result<String, GrpcStatus> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        held.retain(|_, (_, at, _)| now.duration_since(*at) < TTL);
        let total: usize = held.values().map(|(t, _, _)| t.bytes()).sum();
        if total + t.bytes() > self.max_total_bytes {
            return Err(GrpcStatus::resource_exhausted(format!(
                "uploads hold {total} bytes; {} more would pass the {}-byte cap",
                t.bytes(),
                self.max_total_bytes
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        held.insert(id, (t, now, tenant));
        Ok(format!("tensors/{id}"))
    }

    /// Takes the upload `name` (a job input at `field`) for `tenant` (`None`: the owner, who may
    /// take any); another tenant's upload is PERMISSION_DENIED and stays held.
    pub fn take(
        &self,
        field: &str,
        name: &str,
        tenant: Option<&str>,
    ) -> Result<Tensor, GrpcStatus> {
        let id = name
            .strip_prefix("tensors/")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                invalid(
                    field,
                    format!("{name:?} is not a tensor name (tensors/{{id}})"),
                )
            })?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, _, by)) = held.get(&id) else {
            return Err(GrpcStatus::not_found(format!(
                "{field}: {name} not found (expired or used)"
            )));
        };
        if tenant.is_some() && by.as_deref() != tenant {
            return Err(GrpcStatus::permission_denied(format!(
                "{field}: {name} was uploaded by another tenant"
            )));
        }
        Ok(held.remove(&id).map(|(t, _, _)| t).expect("held"))
    }
}
