//! A job offer on the market: the same [`JobSpec`] as the gRPC API plus the market's terms.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::jobs::{JobSpec, SpecError};

use super::layout::offer_subject;

/// Most devices one offer may ask to run it.
pub const MAX_REDUNDANCY: u8 = 5;

/// A job offered to every heater on the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketOffer {
    /// The market-wide job id the client chose: 1..=64 of `[A-Za-z0-9_-]` (a subject token).
    pub job_id: String,
    /// Which of the `redundancy` copies this message is (0-based); each copy goes to a
    /// different device.
    #[serde(default)]
    pub replica: u8,
    /// The inputs are in the object store (`input/<job_id>/<i>`, `.npy`) instead of inline:
    /// `spec.job.inputs` is then empty and this is their count.
    #[serde(default)]
    pub stored_inputs: Option<usize>,
    /// The computation and the tenant's lease, as the gRPC API takes it.
    pub spec: JobSpec,
    /// What the tenant pays a device per GPU-busy second; finite and ≥ 0.
    pub price_per_gpu_second: f64,
    /// Unix time (seconds) after which no device should start or continue the job.
    pub deadline_unix_s: u64,
    /// How many different devices must run the job (1..=[`MAX_REDUNDANCY`]).
    pub redundancy: u8,
}

fn bad(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Longest job id.
pub const MAX_JOB_ID_LEN: usize = 64;

/// Checks a market job id: 1..=64 of `[A-Za-z0-9_-]`, so that it is one subject token and a
/// safe object name.
pub fn validate_job_id(id: &str) -> Result<(), SpecError> {
    if id.is_empty() || id.len() > MAX_JOB_ID_LEN {
        return Err(bad(
            "job_id",
            format!("{} characters, want 1..={MAX_JOB_ID_LEN}", id.len()),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(bad(
            "job_id",
            format!("character {c:?} not allowed (use A-Z a-z 0-9 _ -)"),
        ));
    }
    Ok(())
}

/// A fresh random job id (128 bits, hex).
pub fn new_job_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl MarketOffer {
    /// Checks the offer against the wall clock now, naming the first bad field.
    pub fn validate(&self) -> Result<(), SpecError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.validate_at(now)
    }

    /// Checks the offer as of `now_unix_s`, naming the first bad field (spec fields as `spec.…`).
    pub fn validate_at(&self, now_unix_s: u64) -> Result<(), SpecError> {
        validate_job_id(&self.job_id)?;
        if self.stored_inputs.is_some() && !self.spec.job.inputs.is_empty() {
            return Err(bad(
                "stored_inputs",
                "inputs are either inline or in the object store, not both",
            ));
        }
        let p = self.price_per_gpu_second;
        if !p.is_finite() || p < 0.0 {
            return Err(bad(
                "price_per_gpu_second",
                format!("{p} must be finite and >= 0"),
            ));
        }
        if !(1..=MAX_REDUNDANCY).contains(&self.redundancy) {
            return Err(bad(
                "redundancy",
                format!("{} must be in 1..={MAX_REDUNDANCY}", self.redundancy),
            ));
        }
        if self.replica >= self.redundancy.max(1) {
            return Err(bad(
                "replica",
                format!(
                    "{} is not below redundancy {}",
                    self.replica, self.redundancy
                ),
            ));
        }
        if self.deadline_unix_s <= now_unix_s {
            return Err(bad(
                "deadline_unix_s",
                format!(
                    "{} is not in the future (now {now_unix_s})",
                    self.deadline_unix_s
                ),
            ));
        }
        self.spec.validate().map_err(|e| SpecError {
            field: format!("spec.{}", e.field),
            msg: e.msg,
        })
    }

    /// The catalog name of the offer's kernel, e.g. `matmul`.
    pub fn kernel(&self) -> &'static str {
        self.spec.job.kernel.name()
    }

    /// The subject the offer is published on: `market.jobs.<kernel>`.
    pub fn subject(&self) -> String {
        offer_subject(self.kernel())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::job::{GpuJob, KernelSpec};
    use crate::gpu::tensor::Tensor;
    use crate::jobs::Lease;

    fn offer() -> MarketOffer {
        MarketOffer {
            job_id: "j1".into(),
            replica: 1,
            stored_inputs: None,
            spec: JobSpec {
                job: GpuJob {
                    kernel: KernelSpec::Matmul,
                    inputs: vec![
                        Tensor {
                            shape: vec![2, 2],
                            data: vec![1.0, 2.0, 3.0, 4.0],
                        },
                        Tensor {
                            shape: vec![2, 1],
                            data: vec![1.0, 1.0],
                        },
                    ],
                },
                lease: Lease {
                    tenant: "acme".into(),
                    price_per_gpu_second: 0.01,
                    deadline_unix_s: None,
                    priority: 0,
                },
            },
            price_per_gpu_second: 0.02,
            deadline_unix_s: 2_000,
            redundancy: 2,
        }
    }

    #[test]
    fn good_offer_passes_and_round_trips() {
        let o = offer();
        o.validate_at(1_000).unwrap();
        assert_eq!(o.subject(), "market.jobs.matmul");
        let json = serde_json::to_string(&o).unwrap();
        let back: MarketOffer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |o: MarketOffer| o.validate_at(1_000).unwrap_err().field;
        let mut o = offer();
        o.price_per_gpu_second = f64::NAN;
        assert_eq!(field(o), "price_per_gpu_second");
        let mut o = offer();
        o.price_per_gpu_second = -1.0;
        assert_eq!(field(o), "price_per_gpu_second");
        for r in [0, 6] {
            let mut o = offer();
            o.redundancy = r;
            assert_eq!(field(o), "redundancy");
        }
        for id in ["", "a.b", "a b", &"x".repeat(65)] {
            let mut o = offer();
            o.job_id = id.to_string();
            assert_eq!(field(o), "job_id");
        }
        let mut o = offer();
        o.replica = 2;
        assert_eq!(field(o), "replica");
        let mut o = offer();
        o.stored_inputs = Some(2);
        assert_eq!(field(o), "stored_inputs");
        let mut o = offer();
        o.deadline_unix_s = 1_000;
        assert_eq!(field(o), "deadline_unix_s");
        let mut o = offer();
        o.spec.job.inputs[1].data.pop();
        assert_eq!(field(o), "spec.job.inputs[1]");
        let mut o = offer();
        o.spec.lease.tenant = String::new();
        assert_eq!(field(o), "spec.lease.tenant");
    }

    #[test]
    fn wall_clock_rejects_a_past_deadline() {
        let mut o = offer();
        assert_eq!(o.validate().unwrap_err().field, "deadline_unix_s");
        o.deadline_unix_s = u64::MAX;
        o.validate().unwrap();
    }
}
