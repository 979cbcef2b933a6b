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
