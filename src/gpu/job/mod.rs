//! A GPU job: what it computes (a catalog kernel or tenant WGSL), its input tensors, the checks
//! that run before it is accepted, and its life on a device as a sequence of ranges ("units").
//!
//! | kernel | inputs | outputs | unit |
//! |---|---|---|---|
//! | matmul | A (m×k), B (k×n) | C (m×n) | an output row |
//! | elementwise | a, b (same shape; b only for add, mul) | out | an element |
//! | softmax | x (rows×cols, or a vector) | out | a row |
//! | mlp_infer | x (b×d), w1 (d×h), b1 (h), w2 (h×c), b2 (c) | probabilities (b×c) | a row |
//! | mlp_train | x (n×d), labels (n), w1, b1, w2, b2 | w1, b1, w2, b2, loss per epoch | an SGD step |
//! | custom | any | declared lengths | a workgroup along x |

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::device::GpuError;
use super::kernels::{ElementwiseOp, Kernel, KernelError, TrainShape};
use super::tensor::Tensor;

mod custom;
mod encode;
mod plan;
mod prepared;

pub use encode::encode_matmul;

/// What a job computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case", deny_unknown_fields)]
pub enum KernelSpec {
    /// C = A·B.
    Matmul,
    /// An elementwise op.
    Elementwise {
        /// add, mul, relu or gelu.
        op: ElementwiseOp,
    },
    /// Row-wise softmax.
    Softmax,
    /// Batch inference of a 2-layer MLP.
    MlpInfer,
    /// SGD training of a 2-layer MLP with softmax cross-entropy.
    MlpTrain {
        /// Learning rate.
        lr: f32,
        /// Minibatch size.
        batch: u32,
        /// Passes over the data.
        epochs: u32,
    },
    /// Tenant WGSL: binding 0 is `struct { start: u32, end: u32, pad: vec2<u32> }` (the x range
    /// of workgroups in this dispatch), bindings 1..=inputs read-only storage, then one read-write
    /// storage binding per output.
    Custom {
        /// The WGSL source.
        wgsl: String,
        /// The compute entry point.
        entry_point: String,
        /// Workgroups of the whole job (x is split into chunks).
        workgroups: [u32; 3],
        /// f32 length of each output buffer.
        outputs: Vec<usize>,
    },
}

impl KernelSpec {
    /// The catalog name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Matmul => "matmul",
            Self::Elementwise { .. } => "elementwise",
            Self::Softmax => "softmax",
            Self::MlpInfer => "mlp_infer",
            Self::MlpTrain { .. } => "mlp_train",
            Self::Custom { .. } => "custom",
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuJob {
    /// The kernel and its parameters.
    pub kernel: KernelSpec,
    /// Input tensors, in the kernel's order.
    pub inputs: Vec<Tensor>,
}

/// Caps a job must fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobLimits {
    /// All buffers of one job, bytes.
    pub max_job_bytes: u64,
    /// Chunks one job may take.
    pub max_chunks: u64,
    /// GPU-busy seconds one job may take.
    pub max_gpu_seconds: f64,
    /// Workgroups of one custom job (x·y·z).
    pub max_workgroups: u64,
    /// Loop iterations per invocation of a custom shader; more and the loop breaks.
    pub max_loop_iterations: u32,
    /// Invocations in one x-slice of a custom job (y·z workgroups × workgroup size): with
    /// `max_loop_iterations` this bounds the smallest chunk.
    pub max_invocations_per_slice: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_job_bytes: 256 << 20,
            max_chunks: 1_000_000,
            max_gpu_seconds: 3600.0,
            max_workgroups: 1 << 24,
            max_loop_iterations: 1 << 16,
            max_invocations_per_slice: 1 << 16,
        }
    }
}

/// Why a job was refused or failed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum JobError {
    /// A malformed argument; `field` names it (`inputs[1]`, `kernel.lr`, `kernel.wgsl`).
    #[error("{field}: {msg}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// Over a cap.
    #[error("limit {limit}: {msg}")]
    Limit {
        /// The cap's name.
        limit: &'static str,
        /// By how much.
        msg: String,
    },
    /// The GPU failed; `Lost` is retryable.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A pipeline could not be used.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Cancelled by its owner.
    #[error("cancelled")]
    Cancelled,
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> JobError {
    JobError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// A job's state in host memory: the units done and the contents of its state buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Units completed.
    pub done: u64,
    /// Each state buffer's f32 contents.
    pub state: Vec<Vec<f32>>,
}

/// The device-independent facts of an accepted job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Units of work.
    pub units: u64,
    /// Units a chunk boundary must be a multiple of (except at the end).
    pub align: u64,
    /// Bytes of all buffers.
    pub bytes: u64,
    /// Output shapes.
    pub outputs: Vec<Vec<usize>>,
}

/// How a prepared job encodes a range.
enum Kind {
    Matmul {
        m: u32,
        n: u32,
        k: u32,
    },
    Elementwise {
        op: ElementwiseOp,
    },
    Softmax {
        rows: u32,
        cols: u32,
    },
    MlpInfer {
        b: u32,
        d: u32,
        hd: u32,
        c: u32,
    },
    MlpTrain {
        shape: TrainShape,
        lr: f32,
    },
    Custom {
        kernel: Box<Kernel>,
        entry: String,
        yz: [u32; 2],
    },
}

/// A job on a device: its buffers and how to run any range of its units.
pub struct Prepared {
    kind: Kind,
    /// Bound at bindings 1.. in order.
    buffers: Vec<wgpu::Buffer>,
    /// (buffer index, f32 length) of the buffers a checkpoint carries.
    state: Vec<(usize, usize)>,
    /// (buffer index, shape) of the outputs.
    outputs: Vec<(usize, Vec<usize>)>,
    /// The plan it was made from.
    pub plan: Plan,
}
