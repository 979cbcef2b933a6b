//! Domain types ↔ protobuf messages. Errors name the request field.

use crate::mining::asic::PowerSource;
use crate::mining::fleet::device::Setting;
use crate::mining::fleet::DeviceReport;
use prost_types::Timestamp;
use tonic::Status as GrpcStatus;

use super::pb;
use crate::gpu::job::{GpuJob, KernelSpec};
use crate::gpu::kernels::ElementwiseOp;
use crate::gpu::tensor::Tensor;
use crate::jobs::store::{StoreError, Transition};
use crate::jobs::{JobId, JobRecord, JobSpec, JobState, Lease};
use crate::sched::allocator::Mix;
use crate::status::{GpuState, Status};

/// Largest inline input tensor, bytes.
pub const MAX_INLINE_TENSOR_BYTES: usize = 4 << 20;

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: &str, msg: impl std::fmt::Display) -> GrpcStatus {
    GrpcStatus::invalid_argument(format!("{field}: {msg}"))
}

/// Unix seconds as a protobuf timestamp.
pub fn timestamp(unix_s: f64) -> Timestamp {
    let secs = unix_s.floor();
    Timestamp {
        seconds: secs as i64,
        nanos: ((unix_s - secs) * 1e9) as i32,
    }
}

/// A protobuf timestamp as unix seconds.
pub fn unix_s(t: &Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) * 1e-9
}

/// "jobs/{id}" → the id.
pub fn parse_job_name(field: &str, name: &str) -> Result<JobId, GrpcStatus> {
    name.strip_prefix("jobs/")
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|&id| id > 0)
        .map(JobId)
        .ok_or_else(|| invalid(field, format!("{name:?} is not a job name (jobs/{{id}})")))
}

/// A store error as the gRPC status that fits it.
pub fn store_status(e: StoreError) -> GrpcStatus {
    match e {
        StoreError::InvalidArgument { field, msg } => invalid(&field, msg),
        StoreError::NotFound(id) => GrpcStatus::not_found(format!("jobs/{id} not found")),
        StoreError::FailedPrecondition(m) => GrpcStatus::failed_precondition(m),
        e @ StoreError::ResourceExhausted { .. } => GrpcStatus::resource_exhausted(e.to_string()),
        e => {
            tracing::error!(error = %e, "job store failure");
            GrpcStatus::internal(e.to_string())
        }
    }
}

/// The proto mix as a domain mix (percent → fractions), validated.
pub fn mix_from(m: Option<pb::Mix>) -> Result<Mix, GrpcStatus> {
    match m.and_then(|m| m.policy) {
        None => Err(invalid("mix", "set pinned or auto")),
        Some(pb::mix::Policy::Auto(_)) => Ok(Mix::Auto),
        Some(pb::mix::Policy::Pinned(p)) => {
            for (f, v) in [
                ("mix.pinned.asic_percent", p.asic_percent),
                ("mix.pinned.gpu_percent", p.gpu_percent),
            ] {
                if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                    return Err(invalid(f, format!("must be 0..=100, got {v}")));
                }
            }
            if (p.asic_percent + p.gpu_percent - 100.0).abs() > 1e-6 {
                return Err(invalid(
                    "mix.pinned",
                    format!(
                        "asic_percent + gpu_percent must add up to 100, got {}",
                        p.asic_percent + p.gpu_percent
                    ),
                ));
            }
            Ok(Mix::Pinned {
                asic: p.asic_percent / 100.0,
                gpu: p.gpu_percent / 100.0,
                strict: p.strict,
            })
        }
    }
}

/// A domain mix as the proto one.
pub fn mix_to(m: Mix) -> pb::Mix {
    pb::Mix {
        policy: Some(match m {
            Mix::Auto => pb::mix::Policy::Auto(pb::AutoMix {}),
            Mix::Pinned { asic, gpu, strict } => pb::mix::Policy::Pinned(pb::PinnedMix {
                asic_percent: asic * 100.0,
                gpu_percent: gpu * 100.0,
                strict,
            }),
        }),
    }
}

/// The status snapshot as the proto one.
pub fn status_to(s: &Status) -> pb::Status {
    let a = &s.sched.allocation;
    let p = &s.sched.actual;
    let acc = &s.sched.accounts;
    let gpu_joules: f64 = acc.jobs.values().map(|j| j.joules).sum();
    let fleet = s.fleet.as_ref().map_or(&[][..], |f| &f.devices[..]);
    let asic_measured = !fleet.is_empty()
        && fleet
            .iter()
            .all(|d| d.status.power_source == PowerSource::Measured);
    let power = vec![
        pb::WorkloadPower {
            workload: "asic".into(),
            target_watts: a.asic_watts,
            actual_watts: p.asic,
            source: if asic_measured {
                "measured"
            } else {
                "modelled"
            }
            .into(),
            energy_joules: acc.mining.joules,
        },
        pb::WorkloadPower {
            workload: "gpu".into(),
            target_watts: a.gpu_watts,
            actual_watts: p.gpu,
            source: "modelled".into(),
            energy_joules: gpu_joules,
        },
        pb::WorkloadPower {
            workload: "resistive".into(),
            target_watts: a.resistive_watts,
            actual_watts: p.resistive,
            source: "modelled".into(),
            energy_joules: acc.resistive_joules,
        },
    ];
    let mining = s.mining.as_ref().map(|m| pb::MiningStatus {
        pool: m.pool.clone().unwrap_or_default(),
        connected: m.connected,
        difficulty: m.difficulty,
        hashes_per_second: m.hashes_per_second,
        shares_accepted: m.shares.accepted,
        shares_rejected: m.shares.rejected.values().sum(),
        shares_stale: m.shares.stale,
        earned: acc.mining.earned,
        hash_kernel: format!(
            "{} ({})",
            m.kernel.name(),
            if m.kernel_forced {
                "forced"
            } else {
                "fastest measured"
            }
        ),
    });
    let running_job = s
        .sched
        .queue
        .running
        .map(|r| format!("jobs/{}", r.job))
        .unwrap_or_default();
    let gpu = s.gpu.as_ref().map(|g| match g {
        GpuState::Ready(r) => pb::GpuStatus {
            adapter: r.adapter.name.clone(),
            software: r.adapter.software,
            utilisation: r.duty,
            unavailable_reason: String::new(),
            running_job: running_job.clone(),
        },
        GpuState::Unavailable { reason } => pb::GpuStatus {
            unavailable_reason: reason.clone(),
            ..Default::default()
        },
    });
    pb::Status {
        time: Some(timestamp(crate::jobs::store::now_unix_s())),
        tick: s.tick,
        room_celsius: s.room_celsius,
        outdoor_celsius: s.outdoor_celsius,
        setpoint_celsius: s.setpoint_celsius,
        override_active: s.override_active,
        budget_watts: s.budget_watts,
        unmet_watts: a.unmet_watts,
        power,
        trips: s
            .trips
            .iter()
            .map(|t| pb::Trip {
                reason: serde_json::to_value(t.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                detail: t.reason.clone(),
            })
            .collect(),
        mix: s.sched.mix.map(mix_to),
        mining,
        gpu,
        live_jobs: s.sched.queue.live as u32,
        devices: fleet.iter().map(device_to).collect(),
    }
}

/// One fleet device as the proto one.
fn device_to(d: &DeviceReport) -> pb::Device {
    let s = &d.status;
    let setting_name = |set: Option<Setting>| match set {
        Some(Setting::Stop) => "stopped".to_string(),
        Some(Setting::Level(i)) => format!("level {i}"),
        Some(Setting::Watts(w)) => format!("{w:.0} W"),
        None => String::new(),
    };
    pb::Device {
        name: s.name.clone(),
        kind: s.kind.clone(),
        model: s.model.clone(),
        address: s.address.clone(),
        state: s.state.as_str().into(),
        reason: s.reason.clone().unwrap_or_default(),
        watts: s.watts,
        power_source: match s.power_source {
            PowerSource::Measured => "measured",
            PowerSource::Modelled => "modelled",
        }
        .into(),
        setting: s
            .setting_name
            .clone()
            .unwrap_or_else(|| setting_name(s.setting)),
        commanded: setting_name(d.commanded),
        temperatures: s
            .temperatures
            .iter()
            .map(|t| pb::DeviceTemperature {
                sensor: t.sensor.clone(),
                celsius: t.celsius,
            })
            .collect(),
        chip_limit_celsius: s.chip_limit_celsius,
        hashes_per_second: s.hashes_per_second,
        shares_accepted: s.shares_accepted,
        shares_rejected: s.shares_rejected,
        telemetry_age_seconds: d.telemetry_age_seconds,
        commands_sent: s.commands_sent,
        energy_kwh: d.energy_kwh,
    }
}

/// The proto job state.
pub fn state_to(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Paused => pb::JobState::Paused,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// The domain job state of a proto one (`None` for unspecified).
pub fn state_from(field: &str, v: i32) -> Result<Option<JobState>, GrpcStatus> {
    let s = pb::JobState::try_from(v).map_err(|_| invalid(field, format!("unknown state {v}")))?;
    Ok(match s {
        pb::JobState::Unspecified => None,
        pb::JobState::Queued => Some(JobState::Queued),
        pb::JobState::Running => Some(JobState::Running),
        pb::JobState::Paused => Some(JobState::Paused),
        pb::JobState::Succeeded => Some(JobState::Succeeded),
        pb::JobState::Failed => Some(JobState::Failed),
        pb::JobState::Cancelled => Some(JobState::Cancelled),
    })
}

/// A stored job as the proto one; `units_total` from the running job if known.
pub fn job_to(r: &JobRecord, units_total: u64) -> pb::Job {
    pb::Job {
        name: format!("jobs/{}", r.id),
        state: state_to(r.state) as i32,
        lease: Some(pb::Lease {
            tenant: r.lease.tenant.clone(),
            price_per_gpu_second: r.lease.price_per_gpu_second,
            deadline: r.lease.deadline_unix_s.map(timestamp),
            priority: r.lease.priority,
        }),
        kernel: r.kernel.name().to_string(),
        input_shapes: r
            .input_shapes
            .iter()
            .map(|s| pb::Tensor {
                shape: s.iter().map(|&d| d as u64).collect(),
                data: Vec::new(),
            })
            .collect(),
        create_time: Some(timestamp(r.submitted_unix_s)),
        start_time: r.started_unix_s.map(timestamp),
        end_time: r.finished_unix_s.map(timestamp),
        units_done: r.progress_units,
        units_total,
        gpu_seconds: r.usage.gpu_seconds,
        energy_joules: r.usage.joules,
        earned: r.usage.earned,
        error: r.last_error.clone().unwrap_or_default(),
        result_digest: r.result_digest.clone().unwrap_or_default(),
        history: Vec::new(),
    }
}

/// A recorded state change as the proto one.
pub fn state_change_to(t: &Transition) -> pb::StateChange {
    pb::StateChange {
        from_state: t.from.map_or(pb::JobState::Unspecified, state_to) as i32,
        to_state: state_to(t.to) as i32,
        reason: t.reason.clone(),
        time: Some(timestamp(t.at_unix_s)),
    }
}

/// A proto tensor as a domain one; `field` names it in errors.
pub fn tensor_from(field: &str, t: pb::Tensor) -> Result<Tensor, GrpcStatus> {
    if !t.data.len().is_multiple_of(4) {
        return Err(invalid(
            &format!("{field}.data"),
            format!("{} bytes is not a whole number of float32", t.data.len()),
        ));
    }
    let shape: Vec<usize> = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid(&format!("{field}.shape"), "dimension too large"))?;
    let data: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::new(shape, data).map_err(|e| invalid(field, e))
}

/// The proto kernel as a domain one.
pub fn kernel_from(k: Option<pb::Kernel>) -> Result<KernelSpec, GrpcStatus> {
    use pb::kernel::Kind;
    match k.and_then(|k| k.kind) {
        None => Err(invalid("job.kernel", "set one kernel")),
        Some(Kind::Matmul(_)) => Ok(KernelSpec::Matmul),
        Some(Kind::Softmax(_)) => Ok(KernelSpec::Softmax),
        Some(Kind::MlpInfer(_)) => Ok(KernelSpec::MlpInfer),
        Some(Kind::Elementwise(e)) => {
            let op = match e.op.as_str() {
                "add" => ElementwiseOp::Add,
                "mul" => ElementwiseOp::Mul,
                "relu" => ElementwiseOp::Relu,
                "gelu" => ElementwiseOp::Gelu,
                o => {
                    return Err(invalid(
                        "job.kernel.elementwise.op",
                        format!("unknown op {o:?} (add, mul, relu, gelu)"),
                    ))
                }
            };
            Ok(KernelSpec::Elementwise { op })
        }
        Some(Kind::MlpTrain(t)) => Ok(KernelSpec::MlpTrain {
            lr: t.learning_rate,
            batch: t.batch,
            epochs: t.epochs,
        }),
        Some(Kind::Custom(c)) => {
            let [x, y, z] = c.workgroups[..] else {
                return Err(invalid(
                    "job.kernel.custom.workgroups",
                    format!("give x, y, z; got {} values", c.workgroups.len()),
                ));
            };
            let outputs = c
                .output_lengths
                .iter()
                .map(|&n| usize::try_from(n))
                .collect::<Result<_, _>>()
                .map_err(|_| invalid("job.kernel.custom.output_lengths", "too large"))?;
            Ok(KernelSpec::Custom {
                wgsl: c.wgsl,
                entry_point: if c.entry_point.is_empty() {
                    "main".into()
                } else {
                    c.entry_point
                },
                workgroups: [x, y, z],
                outputs,
            })
        }
    }
}

/// A proto job spec as a domain one, for `tenant`. Uploaded tensors come from `uploaded`.
pub fn spec_from(
    j: Option<pb::JobSpec>,
    tenant: String,
    mut uploaded: impl FnMut(&str, &str) -> Result<Tensor, GrpcStatus>,
) -> Result<JobSpec, GrpcStatus> {
    let j = j.ok_or_else(|| invalid("job", "required"))?;
    let kernel = kernel_from(j.kernel)?;
    let mut inputs = Vec::with_capacity(j.inputs.len());
    for (i, t) in j.inputs.into_iter().enumerate() {
        let field = format!("job.inputs[{i}]");
        match t.source {
            Some(pb::tensor_input::Source::Inline(t)) => {
                if t.data.len() > MAX_INLINE_TENSOR_BYTES {
                    return Err(invalid(
                        &field,
                        format!(
                            "{} bytes inline; at most {MAX_INLINE_TENSOR_BYTES}, use UploadTensor",
                            t.data.len()
                        ),
                    ));
                }
                inputs.push(tensor_from(&field, t)?);
            }
            Some(pb::tensor_input::Source::Uploaded(name)) => inputs.push(uploaded(&field, &name)?),
            None => return Err(invalid(&field, "set inline or uploaded")),
        }
    }
    let lease = j.lease.unwrap_or_default();
    Ok(JobSpec {
        job: GpuJob { kernel, inputs },
        lease: Lease {
            tenant,
            price_per_gpu_second: lease.price_per_gpu_second,
            deadline_unix_s: lease.deadline.as_ref().map(unix_s),
            priority: lease.priority,
        },
    })
}
