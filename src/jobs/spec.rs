//! What a tenant submits (a GPU job plus the lease it runs under), job ids, and the job state
//! machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::gpu::job::GpuJob;

/// Longest tenant name, in characters.
pub const MAX_TENANT_LEN: usize = 64;

/// A job's id: assigned by the store in submission order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The commercial terms a job runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// Who pays: 1..=64 characters of `[A-Za-z0-9._-]`.
    pub tenant: String,
    /// Price per GPU-busy second; finite and ≥ 0.
    pub price_per_gpu_second: f64,
    /// Unix time (seconds) the job should be done by; finite if set.
    pub deadline_unix_s: Option<f64>,
    /// Higher runs first among jobs with equal deadlines.
    pub priority: i32,
}

/// A job as submitted: the computation and its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The computation.
    pub job: GpuJob,
    /// The terms.
    pub lease: Lease,
}

/// A spec field that cannot be accepted; displays as `field: msg`.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{field}: {msg}")]
pub struct SpecError {
    /// The field's path, e.g. `lease.tenant` or `job.inputs[1]`.
    pub field: String,
    /// What is wrong with it.
    pub msg: String,
}

fn bad(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        msg: msg.into(),
    }
}

impl Lease {
    /// Checks the lease's fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), SpecError> {
        let n = self.tenant.chars().count();
        if n == 0 {
            return Err(bad("lease.tenant", "must not be empty"));
        }
        if n > MAX_TENANT_LEN {
            return Err(bad(
                "lease.tenant",
                format!("{n} characters, at most {MAX_TENANT_LEN}"),
            ));
        }
        if let Some(c) = self
            .tenant
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(bad(
                "lease.tenant",
                format!("character {c:?} not allowed (use A-Z a-z 0-9 . _ -)"),
            ));
        }
        let p = self.price_per_gpu_second;
        if !p.is_finite() || p < 0.0 {
            return Err(bad(
                "lease.price_per_gpu_second",
                format!("{p} must be finite and >= 0"),
            ));
        }
        if let Some(d) = self.deadline_unix_s {
            if !d.is_finite() {
                return Err(bad("lease.deadline_unix_s", format!("{d} must be finite")));
            }
        }
        Ok(())
    }
}

impl JobSpec {
    /// Checks the lease and that every input tensor's data fills its shape.
    ///
    /// Kernel-specific checks (arity, WGSL) belong to the runner and are not repeated here.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.lease.validate()?;
        for (i, t) in self.job.inputs.iter().enumerate() {
            let want = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(format!("job.inputs[{i}]"), "shape overflows"))?;
            if want != t.data.len() {
                return Err(bad(
                    format!("job.inputs[{i}]"),
                    format!(
                        "shape {:?} holds {want} values, got {}",
                        t.shape,
                        t.data.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Bytes of input tensor data (4 per f32).
    pub fn input_bytes(&self) -> u64 {
        self.job.inputs.iter().map(|t| t.bytes() as u64).sum()
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Waiting for a GPU.
    Queued,
    /// On a GPU.
    Running,
    /// Off the GPU with its state kept, waiting to resume.
    Paused,
    /// Done; its result is stored. Terminal.
    Succeeded,
    /// Given up on. Terminal.
    Failed,
    /// Cancelled by its owner or the operator. Terminal.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The stored and displayed name (`QUEUED`, `RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Whether `self → to` is a legal transition.
    ///
    /// | from | to |
    /// |---|---|
    /// | QUEUED | RUNNING, CANCELLED, FAILED |
    /// | RUNNING | PAUSED, QUEUED (preempted), SUCCEEDED, FAILED, CANCELLED |
    /// | PAUSED | RUNNING, FAILED, CANCELLED |
    /// | SUCCEEDED, FAILED, CANCELLED | nothing |
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Queued, Running | Cancelled | Failed)
                | (Running, Paused | Queued | Succeeded | Failed | Cancelled)
                | (Paused, Running | Failed | Cancelled)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Debug, Error, Clone, PartialEq)]
#[error("unknown job state {0:?} (one of QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED)")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    /// Parses a state name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::job::KernelSpec;
    use crate::gpu::tensor::Tensor;
    use JobState::*;

    fn spec() -> JobSpec {
        JobSpec {
            job: GpuJob {
                kernel: KernelSpec::Softmax,
                inputs: vec![Tensor::new(vec![2, 2], vec![1.0; 4]).unwrap()],
            },
            lease: Lease {
                tenant: "acme-labs.eu_1".into(),
                price_per_gpu_second: 0.002,
                deadline_unix_s: Some(1.7e9),
                priority: 0,
            },
        }
    }

    #[test]
    fn valid_spec_passes() {
        spec().validate().unwrap();
        let mut s = spec();
        s.lease.tenant = "a".repeat(64);
        s.lease.price_per_gpu_second = 0.0;
        s.lease.deadline_unix_s = None;
        s.validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |f: &dyn Fn(&mut JobSpec)| {
            let mut s = spec();
            f(&mut s);
            let e = s.validate().unwrap_err();
            assert!(e.to_string().starts_with(&format!("{}: ", e.field)));
            e.field
        };
        assert_eq!(field(&|s| s.lease.tenant.clear()), "lease.tenant");
        assert_eq!(field(&|s| s.lease.tenant = "a".repeat(65)), "lease.tenant");
        assert_eq!(field(&|s| s.lease.tenant = "a b".into()), "lease.tenant");
        assert_eq!(field(&|s| s.lease.tenant = "é".into()), "lease.tenant");
        assert_eq!(field(&|s| s.lease.tenant = "a/b".into()), "lease.tenant");
        for p in [-0.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field(&|s| s.lease.price_per_gpu_second = p),
                "lease.price_per_gpu_second"
            );
        }
        for d in [f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(
                field(&|s| s.lease.deadline_unix_s = Some(d)),
                "lease.deadline_unix_s"
            );
        }
        assert_eq!(
            field(&|s| {
                s.job.inputs[0].data.pop();
            }),
            "job.inputs[0]"
        );
    }

    #[test]
    fn transitions_are_exactly_the_table() {
        let legal = [
            (Queued, Running),
            (Queued, Cancelled),
            (Queued, Failed),
            (Running, Paused),
            (Running, Queued),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
            (Paused, Running),
            (Paused, Failed),
            (Paused, Cancelled),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            if from.is_terminal() {
                assert!(JobState::ALL.iter().all(|&to| !from.can_move_to(to)));
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
            assert_eq!(s.as_str().to_lowercase().parse::<JobState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("DONE".parse::<JobState>().is_err());
    }
}
