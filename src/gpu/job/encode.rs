//! Encoding: a range of a prepared job's units as compute dispatches, per kernel.

use std::ops::Range;

use super::{Kind, Prepared};
use crate::gpu::device::Gpu;
use crate::gpu::kernels::{
    grid, Catalog, ElementwiseParams, Kernel, KernelError, MatmulParams, MlpInferParams,
    MlpTrainParams, SoftmaxParams, TrainShape,
};

impl Prepared {
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
    variant: crate::gpu::kernels::MatmulVariant,
    enc: &mut wgpu::CommandEncoder,
    buffers: &[&wgpu::Buffer],
    p: MatmulParams,
) -> Result<(), KernelError> {
    let bind = kernel.bind_group(gpu, &gpu.uniform(bytemuck::bytes_of(&p)), buffers);
    let (entry, g) = crate::gpu::kernels::matmul_dispatch(variant, p.n, p.row_end - p.row_start);
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
