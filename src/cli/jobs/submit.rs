//! `hearth jobs submit`: the lease, local checks before the network, inputs sent inline or
//! uploaded first, then the job.

use anyhow::{anyhow, Context, Result};

use hearth::api::convert::MAX_INLINE_TENSOR_BYTES;
use hearth::api::pb;
use hearth::gpu::job::{GpuJob, JobLimits, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobSpec, Lease};

use super::args::JobArgs;
use super::format::job_json;
use super::query::follow;
use crate::cli::client::{grpc, one_line, rt, Conn, JobsClient};

/// Bytes per UploadTensor message.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Inline bytes one SubmitJob may carry in all; inputs past it are uploaded first (the server
/// takes messages up to 33 MiB).
const INLINE_BUDGET: usize = 24 << 20;

fn now_unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The domain kernel as the proto one.
fn kernel_to(k: &KernelSpec) -> pb::Kernel {
    use pb::kernel::Kind;
    let kind = match k {
        KernelSpec::Matmul => Kind::Matmul(pb::MatmulKernel {}),
        KernelSpec::Softmax => Kind::Softmax(pb::SoftmaxKernel {}),
        KernelSpec::MlpInfer => Kind::MlpInfer(pb::MlpInferKernel {}),
        KernelSpec::Elementwise { op } => Kind::Elementwise(pb::ElementwiseKernel {
            op: match op {
                ElementwiseOp::Add => "add",
                ElementwiseOp::Mul => "mul",
                ElementwiseOp::Relu => "relu",
                ElementwiseOp::Gelu => "gelu",
            }
            .into(),
        }),
        KernelSpec::MlpTrain { lr, batch, epochs } => Kind::MlpTrain(pb::MlpTrainKernel {
            learning_rate: *lr,
            batch: *batch,
            epochs: *epochs,
        }),
        KernelSpec::Custom {
            wgsl,
            entry_point,
            workgroups,
            outputs,
        } => Kind::Custom(pb::CustomKernel {
            wgsl: wgsl.clone(),
            entry_point: entry_point.clone(),
            workgroups: workgroups.to_vec(),
            output_lengths: outputs.iter().map(|&n| n as u64).collect(),
        }),
    };
    pb::Kernel { kind: Some(kind) }
}

pub(super) fn shape_of(t: &Tensor) -> Vec<u64> {
    t.shape.iter().map(|&d| d as u64).collect()
}

/// Sends `t` with UploadTensor in ~1 MiB messages; returns its name.
async fn upload(c: &mut JobsClient, t: &Tensor) -> Result<String> {
    let bytes = t.le_bytes();
    let mut msgs: Vec<pb::UploadTensorRequest> = bytes
        .chunks(UPLOAD_CHUNK)
        .map(|c| pb::UploadTensorRequest {
            shape: Vec::new(),
            data: c.to_vec(),
        })
        .collect();
    drop(bytes);
    if msgs.is_empty() {
        msgs.push(pb::UploadTensorRequest::default());
    }
    msgs[0].shape = shape_of(t);
    let r = c
        .upload_tensor(tokio_stream::iter(msgs))
        .await
        .map_err(grpc)?
        .into_inner();
    Ok(r.name)
}

/// The job's inputs: inline while they are small, uploaded first otherwise.
async fn send_inputs(c: &mut JobsClient, inputs: &[Tensor]) -> Result<Vec<pb::TensorInput>> {
    use pb::tensor_input::Source;
    let mut inline = 0usize;
    let mut out = Vec::with_capacity(inputs.len());
    for (i, t) in inputs.iter().enumerate() {
        let n = t.bytes();
        let source = if n <= MAX_INLINE_TENSOR_BYTES && inline + n <= INLINE_BUDGET {
            inline += n;
            Source::Inline(pb::Tensor {
                shape: shape_of(t),
                data: t.le_bytes(),
            })
        } else {
            Source::Uploaded(
                upload(c, t)
                    .await
                    .with_context(|| format!("uploading input {i} ({n} bytes)"))?,
            )
        };
        out.push(pb::TensorInput {
            source: Some(source),
        });
    }
    Ok(out)
}

fn one_line_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}", one_line(&e.to_string()))
}

async fn submit(job: GpuJob, lease: Lease, wait: bool, conn: &Conn) -> Result<()> {
    let mut c = conn.jobs().await?;
    let inputs = send_inputs(&mut c, &job.inputs).await?;
    let req = pb::SubmitJobRequest {
        job: Some(pb::JobSpec {
            kernel: Some(kernel_to(&job.kernel)),
            inputs,
            lease: Some(pb::Lease {
                tenant: lease.tenant,
                price_per_gpu_second: lease.price_per_gpu_second,
                deadline: lease.deadline_unix_s.map(hearth::api::convert::timestamp),
                priority: lease.priority,
            }),
        }),
    };
    drop(job);
    let j = c.submit_job(req).await.map_err(grpc)?.into_inner();
    if wait {
        return follow(&mut c, &j.name, conn.json).await;
    }
    if conn.json {
        println!("{}", job_json(&j));
    } else {
        println!("{} queued", j.name);
    }
    Ok(())
}

/// Runs `hearth jobs submit`.
pub(super) fn run(
    job: Box<JobArgs>,
    tenant: Option<String>,
    price: Option<f64>,
    deadline_in: Option<f64>,
    priority: Option<i32>,
    wait: bool,
    conn: Conn,
) -> Result<()> {
    let (gpu_job, file) = job.load()?;
    // The lease: the flags, then the job file's keys, then the defaults.
    let deadline_in = deadline_in.or(file.deadline_in);
    let spec = JobSpec {
        job: gpu_job,
        lease: Lease {
            tenant: tenant.or(file.tenant).unwrap_or_else(|| "owner".into()),
            price_per_gpu_second: price.or(file.price).unwrap_or(0.0),
            deadline_unix_s: deadline_in.map(|d| now_unix_s() + d),
            priority: priority.or(file.priority).unwrap_or(0),
        },
    };
    // Obvious mistakes fail here, before the network: the spec's own checks, and the
    // kernel's (arity, shapes, WGSL) against the default limits and the WebGPU default
    // binding size. The daemon checks again against its limits and device.
    spec.validate().map_err(one_line_err)?;
    spec.job
        .plan(&JobLimits::default(), 128 << 20)
        .map_err(one_line_err)?;
    rt()?.block_on(submit(spec.job, spec.lease, wait, &conn))
}
