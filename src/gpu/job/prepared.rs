//! A job on a device: its buffers per kernel, checkpoints restored and read back, outputs read.

use super::{invalid, Checkpoint, GpuJob, JobError, JobLimits, KernelSpec, Kind, Prepared};
use crate::gpu::device::{Gpu, GpuError};
use crate::gpu::kernels::{Kernel, TrainShape};
use crate::gpu::tensor::Tensor;

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
            Kind::Custom { .. } => crate::gpu::kernels::MAX_GROUPS_PER_DIM as u64,
            Kind::MlpTrain { .. } => 4096,
            _ => 1 << 28,
        }
    }
}
