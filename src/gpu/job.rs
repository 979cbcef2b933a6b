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

use std::ops::Range;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::device::{Gpu, GpuError};
use super::kernels::{
    grid, Catalog, ElementwiseOp, ElementwiseParams, Kernel, KernelError, MatmulParams,
    MlpInferParams, MlpTrainParams, SoftmaxParams, TrainShape,
};
use super::tensor::Tensor;
use super::validate;

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

fn dims2(t: &Tensor, field: &str) -> Result<(usize, usize), JobError> {
    match t.shape.as_slice() {
        [r, c] => Ok((*r, *c)),
        s => Err(invalid(field, format!("must be 2-D, got shape {s:?}"))),
    }
}

fn vec_len(t: &Tensor, field: &str) -> Result<usize, JobError> {
    match t.shape.as_slice() {
        [n] => Ok(*n),
        s => Err(invalid(field, format!("must be 1-D, got shape {s:?}"))),
    }
}

fn want_inputs(job: &GpuJob, n: &[usize]) -> Result<(), JobError> {
    if !n.contains(&job.inputs.len()) {
        let want: Vec<String> = n.iter().map(|n| n.to_string()).collect();
        return Err(invalid(
            "inputs",
            format!(
                "{} takes {} input tensors, got {}",
                job.kernel.name(),
                want.join(" or "),
                job.inputs.len()
            ),
        ));
    }
    Ok(())
}

fn u32_dim(v: usize, field: &str) -> Result<u32, JobError> {
    u32::try_from(v).map_err(|_| invalid(field, format!("{v} exceeds 2^32 − 1")))
}

/// The MLP dimensions (d, hd, c) from w1, b1, w2, b2 at `inputs[at..at + 4]`.
fn mlp_dims(job: &GpuJob, at: usize, d: usize) -> Result<(usize, usize), JobError> {
    let f = |i: usize| format!("inputs[{}]", at + i);
    let (d1, hd) = dims2(&job.inputs[at], &f(0))?;
    if d1 != d {
        return Err(invalid(
            f(0),
            format!("w1 has {d1} rows, x has {d} columns"),
        ));
    }
    if vec_len(&job.inputs[at + 1], &f(1))? != hd {
        return Err(invalid(
            f(1),
            format!("b1 must have {hd} values (w1's columns)"),
        ));
    }
    let (h2, c) = dims2(&job.inputs[at + 2], &f(2))?;
    if h2 != hd {
        return Err(invalid(
            f(2),
            format!("w2 has {h2} rows, w1 has {hd} columns"),
        ));
    }
    if vec_len(&job.inputs[at + 3], &f(3))? != c {
        return Err(invalid(
            f(3),
            format!("b2 must have {c} values (w2's columns)"),
        ));
    }
    if hd == 0 || c == 0 {
        return Err(invalid(
            f(2),
            "hidden and class dimensions must be at least 1",
        ));
    }
    Ok((hd, c))
}

impl GpuJob {
    /// Checks shapes, parameters and caps; `max_binding` is the adapter's largest storage binding.
    pub fn plan(&self, limits: &JobLimits, max_binding: u64) -> Result<Plan, JobError> {
        self.plan_with_shader(limits, max_binding)
            .map(|(plan, _)| plan)
    }

    /// [`Self::plan`], also returning a custom job's validated, loop-bounded shader.
    fn plan_with_shader(
        &self,
        limits: &JobLimits,
        max_binding: u64,
    ) -> Result<(Plan, Option<validate::WgslInfo>), JobError> {
        let mut shader = None;
        for (i, t) in self.inputs.iter().enumerate() {
            if t.shape.iter().product::<usize>() != t.data.len() {
                return Err(invalid(
                    format!("inputs[{i}]"),
                    "data does not fill its shape",
                ));
            }
            if let Some(bad) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(invalid(
                    format!("inputs[{i}]"),
                    format!("value {bad} is not finite"),
                ));
            }
        }
        let (units, align, outputs, extra): (u64, u64, Vec<Vec<usize>>, u64) = match &self.kernel {
            KernelSpec::Matmul => {
                want_inputs(self, &[2])?;
                let (m, k) = dims2(&self.inputs[0], "inputs[0]")?;
                let (k2, n) = dims2(&self.inputs[1], "inputs[1]")?;
                if k != k2 {
                    return Err(invalid(
                        "inputs[1]",
                        format!("B has {k2} rows, A has {k} columns"),
                    ));
                }
                for (v, f) in [(m, "inputs[0]"), (n, "inputs[1]"), (k, "inputs[0]")] {
                    u32_dim(v, f)?;
                }
                // 96 = lcm of the variants' rows per workgroup (24, 32, 16, 64 → 96 covers 24, 32, 16).
                (m as u64, 96, vec![vec![m, n]], 0)
            }
            KernelSpec::Elementwise { op } => {
                want_inputs(self, if op.binary() { &[2] } else { &[1] })?;
                let a = &self.inputs[0];
                if op.binary() && self.inputs[1].shape != a.shape {
                    return Err(invalid(
                        "inputs[1]",
                        format!(
                            "shape {:?} differs from inputs[0] {:?}",
                            self.inputs[1].shape, a.shape
                        ),
                    ));
                }
                u32_dim(a.data.len(), "inputs[0]")?;
                (a.data.len() as u64, 256, vec![a.shape.clone()], 0)
            }
            KernelSpec::Softmax => {
                want_inputs(self, &[1])?;
                let x = &self.inputs[0];
                let (r, c) = match x.shape.as_slice() {
                    [c] => (1, *c),
                    _ => dims2(x, "inputs[0]")?,
                };
                u32_dim(r, "inputs[0]")?;
                u32_dim(c, "inputs[0]")?;
                (r as u64, 1, vec![x.shape.clone()], 0)
            }
            KernelSpec::MlpInfer => {
                want_inputs(self, &[5])?;
                let (b, d) = dims2(&self.inputs[0], "inputs[0]")?;
                let (hd, c) = mlp_dims(self, 1, d)?;
                u32_dim(b * hd.max(c), "inputs[0]")?;
                (b as u64, 1, vec![vec![b, c]], (4 * b * hd) as u64)
            }
            KernelSpec::MlpTrain { lr, batch, epochs } => {
                want_inputs(self, &[6])?;
                if !(lr.is_finite() && *lr > 0.0) {
                    return Err(invalid(
                        "kernel.lr",
                        format!("must be a positive number, got {lr}"),
                    ));
                }
                if *batch == 0 {
                    return Err(invalid("kernel.batch", "must be at least 1"));
                }
                if *epochs == 0 {
                    return Err(invalid("kernel.epochs", "must be at least 1"));
                }
                let (n, d) = dims2(&self.inputs[0], "inputs[0]")?;
                if n == 0 {
                    return Err(invalid("inputs[0]", "needs at least one sample"));
                }
                if vec_len(&self.inputs[1], "inputs[1]")? != n {
                    return Err(invalid(
                        "inputs[1]",
                        format!("labels must have {n} values (x's rows)"),
                    ));
                }
                let (hd, c) = mlp_dims(self, 2, d)?;
                if let Some(i) = self.inputs[1]
                    .data
                    .iter()
                    .position(|&l| l < 0.0 || l.fract() != 0.0 || l as usize >= c)
                {
                    return Err(invalid(
                        "inputs[1]",
                        format!(
                            "label {i} is {}, must be a class index 0..{c}",
                            self.inputs[1].data[i]
                        ),
                    ));
                }
                let shape = TrainShape {
                    n: u32_dim(n, "inputs[0]")?,
                    d: u32_dim(d, "inputs[0]")?,
                    hd: u32_dim(hd, "inputs[2]")?,
                    c: u32_dim(c, "inputs[4]")?,
                    batch: (*batch).min(n as u32),
                    epochs: *epochs,
                };
                let steps = shape.total_steps();
                if steps > u32::MAX as u64 {
                    return Err(invalid("kernel.epochs", "too many steps"));
                }
                let outs = vec![
                    vec![d, hd],
                    vec![hd],
                    vec![hd, c],
                    vec![c],
                    vec![*epochs as usize],
                ];
                (
                    steps,
                    1,
                    outs,
                    4 * (shape.scratch_len() + *epochs as usize) as u64,
                )
            }
            KernelSpec::Custom {
                wgsl,
                entry_point,
                workgroups,
                outputs,
            } => {
                if wgsl.trim().is_empty() {
                    return Err(invalid("kernel.wgsl", "is empty"));
                }
                if entry_point.is_empty() {
                    return Err(invalid("kernel.entry_point", "is empty"));
                }
                if workgroups.contains(&0) {
                    return Err(invalid(
                        "kernel.workgroups",
                        "every dimension must be at least 1",
                    ));
                }
                let total = workgroups.iter().map(|&w| w as u64).product::<u64>();
                if total > limits.max_workgroups {
                    return Err(JobError::Limit {
                        limit: "max_workgroups",
                        msg: format!("{total} workgroups, at most {}", limits.max_workgroups),
                    });
                }
                if workgroups[1] > super::kernels::MAX_GROUPS_PER_DIM
                    || workgroups[2] > super::kernels::MAX_GROUPS_PER_DIM
                {
                    return Err(invalid(
                        "kernel.workgroups",
                        format!(
                            "y and z must be at most {}",
                            super::kernels::MAX_GROUPS_PER_DIM
                        ),
                    ));
                }
                if outputs.is_empty() {
                    return Err(invalid("kernel.outputs", "declare at least one output"));
                }
                if let Some(i) = outputs.iter().position(|&n| n == 0) {
                    return Err(invalid(
                        format!("kernel.outputs[{i}]"),
                        "length must be at least 1",
                    ));
                }
                shader = Some(check_custom(
                    wgsl,
                    entry_point,
                    self.inputs.len(),
                    outputs.len(),
                    [workgroups[1], workgroups[2]],
                    limits,
                )?);
                let outs = outputs.iter().map(|&n| vec![n]).collect();
                (workgroups[0] as u64, 1, outs, 0)
            }
        };
        let mut bytes = extra;
        let mut check = |field: String, b: u64| -> Result<(), JobError> {
            if b > max_binding {
                return Err(JobError::Limit {
                    limit: "max_storage_buffer_binding_size",
                    msg: format!("{field} is {b} bytes; this adapter binds at most {max_binding}"),
                });
            }
            bytes += b;
            Ok(())
        };
        for (i, t) in self.inputs.iter().enumerate() {
            check(format!("inputs[{i}]"), t.bytes() as u64)?;
        }
        for (i, s) in outputs.iter().enumerate() {
            check(
                format!("outputs[{i}]"),
                4 * s.iter().product::<usize>() as u64,
            )?;
        }
        if bytes > limits.max_job_bytes {
            return Err(JobError::Limit {
                limit: "max_job_bytes",
                msg: format!(
                    "the job needs {bytes} bytes of buffers, at most {}",
                    limits.max_job_bytes
                ),
            });
        }
        let plan = Plan {
            units,
            align,
            bytes,
            outputs,
        };
        Ok((plan, shader))
    }
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

impl Prepared {
    /// Uploads the job (restoring `checkpoint`'s state if given) and builds a custom pipeline.
    pub fn new(
        gpu: &Gpu,
        job: &GpuJob,
        limits: &JobLimits,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Self, JobError> {
        let (plan, mut shader) =
            job.plan_with_shader(limits, gpu.summary.max_storage_buffer_binding_size)?;
        let ins: Vec<&Tensor> = job.inputs.iter().collect();
        let mut buffers: Vec<wgpu::Buffer> = Vec::new();
        let up = |t: &Tensor| gpu.storage(&t.data);
        let (kind, state, outputs) = match &job.kernel {
            KernelSpec::Matmul => {
                let (m, k) = (ins[0].shape[0] as u32, ins[0].shape[1] as u32);
                let n = ins[1].shape[1] as u32;
                buffers.extend([up(ins[0]), up(ins[1]), gpu.zeros(m as usize * n as usize)]);
                (
                    Kind::Matmul { m, n, k },
                    vec![(2, (m as usize * n as usize))],
                    vec![2],
                )
            }
            KernelSpec::Elementwise { op } => {
                let a = up(ins[0]);
                let b = if op.binary() { up(ins[1]) } else { a.clone() };
                let n = ins[0].data.len();
                buffers.extend([a, b, gpu.zeros(n)]);
                (Kind::Elementwise { op: *op }, vec![(2, n)], vec![2])
            }
            KernelSpec::Softmax => {
                let x = ins[0];
                let (rows, cols) = match x.shape.as_slice() {
                    [c] => (1, *c as u32),
                    s => (s[0] as u32, s[1] as u32),
                };
                buffers.extend([up(x), gpu.zeros(x.data.len())]);
                (
                    Kind::Softmax { rows, cols },
                    vec![(1, x.data.len())],
                    vec![1],
                )
            }
            KernelSpec::MlpInfer => {
                let (b, d) = (ins[0].shape[0] as u32, ins[0].shape[1] as u32);
                let (hd, c) = (ins[1].shape[1] as u32, ins[3].shape[1] as u32);
                buffers.extend(ins.iter().map(|t| up(t)));
                buffers.push(gpu.zeros(b as usize * hd as usize));
                buffers.push(gpu.zeros(b as usize * c as usize));
                (
                    Kind::MlpInfer { b, d, hd, c },
                    vec![(6, (b as usize * c as usize))],
                    vec![6],
                )
            }
            KernelSpec::MlpTrain { lr, batch, epochs } => {
                let (n, d) = (ins[0].shape[0] as u32, ins[0].shape[1] as u32);
                let (hd, c) = (ins[2].shape[1] as u32, ins[4].shape[1] as u32);
                let shape = TrainShape {
                    n,
                    d,
                    hd,
                    c,
                    batch: (*batch).min(n),
                    epochs: *epochs,
                };
                let labels: Vec<u32> = ins[1].data.iter().map(|&l| l as u32).collect();
                buffers.push(up(ins[0]));
                buffers.push(gpu.storage(&labels));
                buffers.extend(ins[2..6].iter().map(|t| up(t)));
                buffers.push(gpu.zeros(shape.scratch_len()));
                buffers.push(gpu.zeros(*epochs as usize));
                let lens = [
                    ins[2].data.len(),
                    ins[3].data.len(),
                    ins[4].data.len(),
                    ins[5].data.len(),
                    *epochs as usize,
                ];
                let idx = [2, 3, 4, 5, 7];
                let state = idx.iter().copied().zip(lens).collect();
                (Kind::MlpTrain { shape, lr: *lr }, state, idx.to_vec())
            }
            KernelSpec::Custom {
                entry_point,
                workgroups,
                outputs,
                ..
            } => {
                // `plan_with_shader` validated and loop-bounded it for a custom job.
                let info = shader
                    .take()
                    .ok_or_else(|| invalid("kernel.wgsl", "missing"))?;
                let kernel = Kernel::from_module(gpu, info, "custom", false)?;
                buffers.extend(ins.iter().map(|t| up(t)));
                let first = buffers.len();
                buffers.extend(outputs.iter().map(|&n| gpu.zeros(n)));
                let state: Vec<(usize, usize)> = outputs
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (first + i, n))
                    .collect();
                let outs = state.iter().map(|(i, _)| *i).collect();
                let kind = Kind::Custom {
                    kernel: Box::new(kernel),
                    entry: entry_point.clone(),
                    yz: [workgroups[1], workgroups[2]],
                };
                (kind, state, outs)
            }
        };
        let outputs = outputs
            .into_iter()
            .zip(plan.outputs.iter().cloned())
            .collect();
        let p = Self {
            kind,
            buffers,
            state,
            outputs,
            plan,
        };
        if let Some(cp) = checkpoint {
            p.restore(gpu, cp)?;
        }
        Ok(p)
    }

    fn restore(&self, gpu: &Gpu, cp: &Checkpoint) -> Result<(), JobError> {
        if cp.state.len() != self.state.len() || cp.done > self.plan.units {
            return Err(invalid("checkpoint", "does not belong to this job"));
        }
        for ((i, n), data) in self.state.iter().zip(&cp.state) {
            if data.len() != *n {
                return Err(invalid(
                    "checkpoint",
                    "state buffer length differs from the job's",
                ));
            }
            gpu.queue
                .write_buffer(&self.buffers[*i], 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Reads the state buffers back: a checkpoint at `done` units.
    pub fn checkpoint(&self, gpu: &Gpu, done: u64) -> Result<Checkpoint, GpuError> {
        let state = self
            .state
            .iter()
            .map(|(i, n)| gpu.read_f32(&self.buffers[*i], *n))
            .collect::<Result<_, _>>()?;
        Ok(Checkpoint { done, state })
    }

    /// Reads the outputs back.
    pub fn outputs(&self, gpu: &Gpu) -> Result<Vec<Tensor>, GpuError> {
        self.outputs
            .iter()
            .map(|(i, shape)| {
                let n = shape.iter().product();
                let data = gpu.read_f32(&self.buffers[*i], n)?;
                Ok(Tensor {
                    shape: shape.clone(),
                    data,
                })
            })
            .collect()
    }

    /// The most units one chunk may cover (the dispatch grid's limit).
    pub fn max_units_per_chunk(&self) -> u64 {
        match &self.kind {
            Kind::Custom { .. } => super::kernels::MAX_GROUPS_PER_DIM as u64,
            Kind::MlpTrain { .. } => 4096,
            _ => 1 << 28,
        }
    }

    /// Encodes units `r` of the job.
    pub fn encode(
        &self,
        gpu: &Gpu,
        cat: &Catalog,
        enc: &mut wgpu::CommandEncoder,
        r: Range<u64>,
    ) -> Result<(), KernelError> {
        let (start, end) = (r.start as u32, r.end as u32);
        let b: Vec<&wgpu::Buffer> = self.buffers.iter().collect();
        match &self.kind {
            Kind::Matmul { m, n, k } => {
                let p = MatmulParams {
                    m: *m,
                    n: *n,
                    k: *k,
                    row_start: start,
                    row_end: end,
                    pad: [0; 3],
                };
                let v = cat.tuned_matmul(*n, *k);
                let kernel = cat.matmul(v).ok_or(KernelError::NoEntry("matmul".into()))?;
                encode_matmul(gpu, kernel, v, enc, &b, p)
            }
            Kind::Elementwise { op } => {
                let p = ElementwiseParams {
                    start,
                    end,
                    op: *op as u32,
                    pad: 0,
                };
                let bind =
                    cat.elementwise
                        .bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), &b);
                cat.elementwise
                    .encode(enc, &bind, &[("main", grid((end - start) as u64, 256))])
            }
            Kind::Softmax { rows, cols } => {
                let p = SoftmaxParams {
                    start,
                    end,
                    rows: *rows,
                    cols: *cols,
                };
                let bind = cat
                    .softmax
                    .bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), &b);
                cat.softmax
                    .encode(enc, &bind, &[("main", grid((end - start) as u64, 64))])
            }
            Kind::MlpInfer { b: batch, d, hd, c } => {
                let p = MlpInferParams {
                    start,
                    end,
                    batch: *batch,
                    d: *d,
                    hd: *hd,
                    c: *c,
                    pad: [0; 2],
                };
                let bind = cat
                    .mlp_infer
                    .bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), &b);
                let rows = (end - start) as u64;
                cat.mlp_infer.encode(
                    enc,
                    &bind,
                    &[
                        ("hidden", grid(rows * *hd as u64, 256)),
                        ("logits", grid(rows * *c as u64, 256)),
                        ("softmax", grid(rows, 64)),
                    ],
                )
            }
            Kind::MlpTrain { shape, lr } => {
                encode_train(gpu, &cat.mlp_train, enc, &b, shape, *lr, start, end)
            }
            Kind::Custom { kernel, entry, yz } => {
                let p = [start, end, 0u32, 0u32];
                let bind = kernel.bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), &b);
                kernel.encode(enc, &bind, &[(entry.as_str(), [end - start, yz[0], yz[1]])])
            }
        }
    }
}

/// Encodes one matmul dispatch over `p`'s rows with `kernel` (any variant).
pub fn encode_matmul(
    gpu: &Gpu,
    kernel: &Kernel,
    variant: super::kernels::MatmulVariant,
    enc: &mut wgpu::CommandEncoder,
    buffers: &[&wgpu::Buffer],
    p: MatmulParams,
) -> Result<(), KernelError> {
    let bind = kernel.bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), buffers);
    let (entry, g) = super::kernels::matmul_dispatch(variant, p.n, p.row_end - p.row_start);
    kernel.encode(enc, &bind, &[(entry, g)])
}

/// Encodes SGD steps `[start, end)`: one Params slot per step, selected by dynamic offset.
#[allow(clippy::too_many_arguments)]
fn encode_train(
    gpu: &Gpu,
    k: &Kernel,
    enc: &mut wgpu::CommandEncoder,
    buffers: &[&wgpu::Buffer],
    shape: &TrainShape,
    lr: f32,
    start: u32,
    end: u32,
) -> Result<(), KernelError> {
    if start >= end {
        return Ok(());
    }
    let stride = gpu.device.limits().min_uniform_buffer_offset_alignment as usize;
    let steps = (end - start) as usize;
    let mut bytes = vec![0u8; steps * stride];
    for (i, s) in (start..end).enumerate() {
        let p = MlpTrainParams {
            start: s,
            end: s + 1,
            n: shape.n,
            d: shape.d,
            hd: shape.hd,
            c: shape.c,
            batch: shape.batch,
            steps_per_epoch: shape.steps_per_epoch(),
            epochs: shape.epochs,
            lr,
            pad: [0; 2],
        };
        bytes[i * stride..i * stride + std::mem::size_of::<MlpTrainParams>()]
            .copy_from_slice(bytemuck::bytes_of(&p));
    }
    let ub = gpu.uniform(&bytes);
    let bind = k.bind_group(gpu, &ub, buffers);
    let mut pass = enc.begin_compute_pass(&Default::default());
    for (i, s) in (start..end).enumerate() {
        pass.set_bind_group(0, &bind, &[(i * stride) as u32]);
        for (entry, g) in shape.step_dispatches(s) {
            if g.contains(&0) {
                continue;
            }
            pass.set_pipeline(k.pipeline(entry)?);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
    }
    Ok(())
}

/// Validates tenant WGSL against the custom-kernel convention and bounds its loops; needs no
/// device, so a bad shader is refused at submission.
fn check_custom(
    wgsl: &str,
    entry: &str,
    inputs: usize,
    outputs: usize,
    yz: [u32; 2],
    limits: &JobLimits,
) -> Result<validate::WgslInfo, JobError> {
    let info = validate::prepare_untrusted(wgsl, limits.max_loop_iterations)
        .map_err(|e| invalid("kernel.wgsl", e))?;
    let Some(ep) = info.entry_points.iter().find(|e| e.name == entry) else {
        let names: Vec<&str> = info.entry_points.iter().map(|e| e.name.as_str()).collect();
        return Err(invalid(
            "kernel.entry_point",
            format!("{entry:?} is not in the shader (it has {names:?})"),
        ));
    };
    if ep.stage != "Compute" {
        return Err(invalid(
            "kernel.entry_point",
            format!("{entry:?} is not a compute entry point"),
        ));
    }
    let wg: u64 = ep.workgroup_size.iter().map(|&w| w as u64).product();
    let slice = wg * yz.iter().map(|&w| w as u64).product::<u64>();
    if slice > limits.max_invocations_per_slice {
        return Err(JobError::Limit {
            limit: "max_invocations_per_slice",
            msg: format!(
                "workgroups y·z × workgroup size {:?} = {slice} invocations per x-slice, at most {}",
                ep.workgroup_size, limits.max_invocations_per_slice
            ),
        });
    }
    let want = 1 + inputs + outputs;
    if info.bindings.len() != want {
        return Err(invalid(
            "kernel.wgsl",
            format!(
                "declares {} bindings; a job with {inputs} inputs and {outputs} outputs needs {want}: \
                 @binding(0) uniform Params, 1..={inputs} read-only storage, then {outputs} read-write storage",
                info.bindings.len()
            ),
        ));
    }
    for (i, b) in info.bindings.iter().enumerate() {
        let ok = match (i, &b.kind) {
            (0, validate::ResourceKind::Uniform) => {
                b.group == 0 && b.binding == 0 && b.type_size == 16
            }
            (i, validate::ResourceKind::Storage { read_only }) => {
                b.group == 0 && b.binding == i as u32 && *read_only == (i <= inputs)
            }
            _ => false,
        };
        if !ok {
            let want = match i {
                0 => {
                    "a 16-byte uniform struct { start: u32, end: u32, pad: vec2<u32> }".to_string()
                }
                i if i <= inputs => format!("var<storage, read> (input {})", i - 1),
                i => format!("var<storage, read_write> (output {})", i - 1 - inputs),
            };
            return Err(invalid(
                "kernel.wgsl",
                format!(
                    "@group(0) @binding({i}) must be {want}, found {:?} at @group({}) @binding({})",
                    b.kind, b.group, b.binding
                ),
            ));
        }
    }
    Ok(info)
}
