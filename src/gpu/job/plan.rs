//! Admission: a job's shapes, parameters and caps checked per kernel, before any device work.

use super::custom::check_custom;
use super::{invalid, GpuJob, JobError, JobLimits, KernelSpec, Plan};
use crate::gpu::kernels::TrainShape;
use crate::gpu::tensor::Tensor;
use crate::gpu::validate;

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
    pub(super) fn plan_with_shader(
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
                if workgroups[1] > crate::gpu::kernels::MAX_GROUPS_PER_DIM
                    || workgroups[2] > crate::gpu::kernels::MAX_GROUPS_PER_DIM
                {
                    return Err(invalid(
                        "kernel.workgroups",
                        format!(
                            "y and z must be at most {}",
                            crate::gpu::kernels::MAX_GROUPS_PER_DIM
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
