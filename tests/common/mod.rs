//! The integration tests' shared helpers, one copy of each: builders here, and submodules for
//! the `hearth` binary, the daemon (in process and as `hearth serve`), the gRPC API, NATS and
//! Prometheus scrapes.
//!
//! Every test binary that declares `mod common;` compiles all of it and uses only a part.
#![allow(dead_code)]

pub mod api;
pub mod bin;
pub mod daemon;
pub mod mqtt;
pub mod nats;
pub mod prom;
pub mod serve;

use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobSpec, Lease};

/// Values whose bits a lossy path would change: signed zero, subnormals, NaN payloads, infinities.
pub fn tricky_floats() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        f32::from_bits(1),           // smallest subnormal
        f32::from_bits(0x8000_0001), // negative subnormal
        f32::from_bits(0x7fc0_1234), // quiet NaN with payload
        f32::from_bits(0xffa0_0001), // signalling-pattern NaN, negative
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        0.1,
        -1.0e-30,
    ]
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

pub fn spec(tenant: &str, n: usize) -> JobSpec {
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
    let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
    JobSpec {
        job: GpuJob {
            kernel: KernelSpec::Elementwise {
                op: ElementwiseOp::Add,
            },
            inputs: vec![
                Tensor::new(vec![n], a).unwrap(),
                Tensor::new(vec![n], b).unwrap(),
            ],
        },
        lease: Lease {
            tenant: tenant.into(),
            price_per_gpu_second: 0.001,
            deadline_unix_s: None,
            priority: 0,
        },
    }
}

/// The digest of an uninterrupted `hearth gpu run` of a job (`hearth gpu run` arguments) on the
/// software GPU.
pub fn reference_digest(args: &[&str]) -> String {
    let out = bin::hearth()
        .args(["gpu", "run"])
        .args(args)
        .args(["--adapter", "software"])
        .output()
        .unwrap();
    bin::sha256_line(&bin::ok(&out))
}
