//! The gRPC API end to end over loopback against the real daemon, for what `tests/api.rs` does not
//! walk: every RPC × every kind of caller (owner, tenant, viewer, no token, a wrong token),
//! tenants kept apart, revocation without a restart; `UploadTensor` used by a job whose digest
//! is `hearth gpu run`'s; `ReportTemperature` feeding the controller until the readings stop and
//! the stale-sensor trip takes the heat away; TLS and the loopback rule; and the Prometheus
//! endpoint against `GetStatus` over gRPC.
//!
//! The metrics recorder is process-global: only `metrics_agree_with_get_status_over_grpc`
//! installs it in this binary.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Status};

use hearth::api::auth::{Role, TokenStore};
use hearth::api::pb;
use hearth::api::pb::control_client::ControlClient;
use hearth::api::pb::jobs_client::JobsClient;
use hearth::api::ApiError;
use hearth::config::SourceConfig;
use hearth::gpu::job::KernelSpec;
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::reference::synthetic_inputs;
use hearth::gpu::tensor::Tensor;

use common::api::{api_config, config, hex_sha256, inline, owner_token, req, Api};
use common::bin::{free_port, hearth};
use common::daemon::spawn_at_noon;
use common::prom::{scrape, Scrape};

/// A well-formed token that was never issued.
const WRONG_TOKEN: &str = "hth_0000000000000000000000000000000000000000000000000000000000000000";

/// Generous limit for anything that waits on the daemon.
const PATIENCE: Duration = Duration::from_secs(120);

fn uploaded(name: &str) -> pb::TensorInput {
    pb::TensorInput {
        source: Some(pb::tensor_input::Source::Uploaded(name.into())),
    }
}

fn add_kernel() -> Option<pb::Kernel> {
    Some(pb::Kernel {
        kind: Some(pb::kernel::Kind::Elementwise(pb::ElementwiseKernel {
            op: "add".into(),
        })),
    })
}

/// An `add` job on `inputs`; `tenant` only counts for the owner.
fn add_job(inputs: Vec<pb::TensorInput>, tenant: &str) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        job: Some(pb::JobSpec {
            kernel: add_kernel(),
            inputs,
            lease: Some(pb::Lease {
                tenant: tenant.into(),
                price_per_gpu_second: 0.01,
                deadline: None,
                priority: 0,
            }),
        }),
    }
}

/// A four-element `add` job.
fn tiny_job(tenant: &str) -> pb::SubmitJobRequest {
    let t = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    add_job(vec![inline(&t), inline(&t)], tenant)
}

/// Polls `f` every 100 ms until it gives `Some`, or panics after `PATIENCE`.
async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(control: &ControlClient<Channel>, token: &str) -> pb::Status {
    control
        .clone()
        .get_status(req(pb::GetStatusRequest {}, Some(token)))
        .await
        .unwrap()
        .into_inner()
}

async fn get_job(jobs: &JobsClient<Channel>, token: &str, name: &str) -> pb::Job {
    jobs.clone()
        .get_job(req(pb::GetJobRequest { name: name.into() }, Some(token)))
        .await
        .unwrap()
        .into_inner()
}

/// The shapes, digest and bytes of a job's result.
async fn result(
    jobs: &JobsClient<Channel>,
    token: Option<&str>,
    name: &str,
) -> Result<(Vec<Vec<u64>>, String, Vec<u8>), Status> {
    let mut chunks = jobs
        .clone()
        .get_job_result(req(pb::GetJobResultRequest { name: name.into() }, token))
        .await?
        .into_inner();
    let first = chunks
        .next()
        .await
        .ok_or_else(|| Status::unknown("no first chunk"))??;
    let mut bytes = Vec::new();
    while let Some(c) = chunks.next().await {
        bytes.extend(c?.data);
    }
    let shapes = first.outputs.into_iter().map(|t| t.shape).collect();
    Ok((shapes, first.digest, bytes))
}

/// Uploads `t` in messages of at most `chunk` bytes (the shape in the first).
async fn upload(
    jobs: &JobsClient<Channel>,
    token: Option<&str>,
    shape: Vec<u64>,
    data: &[u8],
    chunk: usize,
) -> Result<pb::TensorRef, Status> {
    let mut msgs: Vec<pb::UploadTensorRequest> = data
        .chunks(chunk)
        .map(|c| pb::UploadTensorRequest {
            shape: Vec::new(),
            data: c.to_vec(),
        })
        .collect();
    if msgs.is_empty() {
        msgs.push(pb::UploadTensorRequest::default());
    }
    msgs[0].shape = shape;
    upload_msgs(jobs, token, msgs).await
}

async fn upload_msgs(
    jobs: &JobsClient<Channel>,
    token: Option<&str>,
    msgs: Vec<pb::UploadTensorRequest>,
) -> Result<pb::TensorRef, Status> {
    jobs.clone()
        .upload_tensor(req(tokio_stream::iter(msgs), token))
        .await
        .map(|r| r.into_inner())
}

/// `Err` with a clear message when an answer that succeeded is wrong.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Status> {
    if ok {
        Ok(())
    } else {
        Err(Status::unknown(format!("wrong answer: {}", what())))
    }
}

/// Asserts `r` failed with `code` and a message containing `needle`.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("succeeded with {v:?}, wanted {code:?} naming {needle:?}"),
        Err(s) => assert!(
            s.code() == code && s.message().contains(needle),
            "{:?} {:?}, wanted {code:?} naming {needle:?}",
            s.code(),
            s.message()
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Owner,
    Tenant,
    Viewer,
    NoToken,
    WrongToken,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rpc {
    GetStatus,
    WatchStatus,
    SetSetpoint,
    SetMix,
    ReportTemperature,
    SubmitJob,
    GetJob,
    ListJobs,
    CancelJob,
    WatchJob,
    GetJobResult,
    UploadTensor,
}

const RPCS: [Rpc; 12] = [
    Rpc::GetStatus,
    Rpc::WatchStatus,
    Rpc::SetSetpoint,
    Rpc::SetMix,
    Rpc::ReportTemperature,
    Rpc::SubmitJob,
    Rpc::GetJob,
    Rpc::ListJobs,
    Rpc::CancelJob,
    Rpc::WatchJob,
    Rpc::GetJobResult,
    Rpc::UploadTensor,
];

const WHO: [Who; 5] = [
    Who::Owner,
    Who::Tenant,
    Who::Viewer,
    Who::NoToken,
    Who::WrongToken,
];

impl Rpc {
    fn is_jobs(self) -> bool {
        !matches!(
            self,
            Rpc::GetStatus
                | Rpc::WatchStatus
                | Rpc::SetSetpoint
                | Rpc::SetMix
                | Rpc::ReportTemperature
        )
    }

    /// The policy (README, `auth.rs`, the protos): the owner everything; a tenant the job calls
    /// only (not even GetStatus); a viewer GetStatus and WatchStatus only; no or a bad token
    /// nothing.
    fn expected(self, who: Who) -> Code {
        match who {
            Who::NoToken | Who::WrongToken => Code::Unauthenticated,
            Who::Owner => Code::Ok,
            Who::Tenant if self.is_jobs() => Code::Ok,
            Who::Viewer if matches!(self, Rpc::GetStatus | Rpc::WatchStatus) => Code::Ok,
            Who::Tenant | Who::Viewer => Code::PermissionDenied,
        }
    }
}

/// What the role table needs from the running API.
struct Table {
    control: ControlClient<Channel>,
    jobs: JobsClient<Channel>,
    owner: String,
    /// acme's job that SUCCEEDED, and its result digest.
    done: String,
    digest: String,
    /// The mix in force during the table (GPU 0 W, so submitted jobs stay live).
    mix: pb::Mix,
}

impl Table {
    /// One call of `rpc` as `token`; an answer that succeeded is checked for what it must say.
    async fn call(&self, rpc: Rpc, who: Who, token: Option<&str>) -> Result<(), Status> {
        let (mut control, mut jobs) = (self.control.clone(), self.jobs.clone());
        match rpc {
            Rpc::GetStatus => {
                let s = control
                    .get_status(req(pb::GetStatusRequest {}, token))
                    .await?
                    .into_inner();
                check(s.power.len() == 3 && s.setpoint_celsius >= 5.0, || {
                    format!("{s:?}")
                })
            }
            Rpc::WatchStatus => {
                let mut st = control
                    .watch_status(req(pb::WatchStatusRequest {}, token))
                    .await?
                    .into_inner();
                let first = tokio::time::timeout(PATIENCE, st.next())
                    .await
                    .map_err(|_| Status::unknown("no snapshot"))?
                    .ok_or_else(|| Status::unknown("stream ended"))??;
                check(first.power.len() == 3, || format!("{first:?}"))
            }
            Rpc::SetSetpoint => {
                let r = control
                    .set_setpoint(req(
                        pb::SetSetpointRequest {
                            celsius: 21.0,
                            hold_minutes: 0.0,
                            clear: false,
                        },
                        token,
                    ))
                    .await?
                    .into_inner();
                check(r.setpoint_celsius == 21.0, || format!("{r:?}"))
            }
            Rpc::SetMix => {
                let r = control
                    .set_mix(req(
                        pb::SetMixRequest {
                            mix: Some(self.mix),
                        },
                        token,
                    ))
                    .await?
                    .into_inner();
                check(r == self.mix, || format!("{r:?}"))
            }
            Rpc::ReportTemperature => {
                control
                    .report_temperature(req(
                        pb::ReportTemperatureRequest {
                            celsius: 15.0,
                            read_time: None,
                        },
                        token,
                    ))
                    .await?;
                Ok(())
            }
            Rpc::SubmitJob => {
                let j = jobs
                    .submit_job(req(tiny_job("acme"), token))
                    .await?
                    .into_inner();
                let tenant = j.lease.as_ref().map(|l| l.tenant.as_str());
                check(
                    j.name.starts_with("jobs/")
                        && j.state == pb::JobState::Queued as i32
                        && tenant == Some("acme"),
                    || format!("{j:?}"),
                )
            }
            Rpc::GetJob => {
                let j = jobs
                    .get_job(req(
                        pb::GetJobRequest {
                            name: self.done.clone(),
                        },
                        token,
                    ))
                    .await?
                    .into_inner();
                check(
                    j.name == self.done
                        && j.state == pb::JobState::Succeeded as i32
                        && j.result_digest == self.digest,
                    || format!("{j:?}"),
                )
            }
            Rpc::ListJobs => {
                let r = jobs
                    .list_jobs(req(
                        pb::ListJobsRequest {
                            page_size: 1000,
                            ..Default::default()
                        },
                        token,
                    ))
                    .await?
                    .into_inner();
                check(
                    r.jobs.iter().any(|j| j.name == self.done)
                        && (who != Who::Tenant
                            || r.jobs
                                .iter()
                                .all(|j| j.lease.as_ref().unwrap().tenant == "acme")),
                    || format!("{r:?}"),
                )
            }
            Rpc::CancelJob => {
                // A fresh live job of acme's for each row (submitted by the owner).
                let live = self
                    .jobs
                    .clone()
                    .submit_job(req(tiny_job("acme"), Some(&self.owner)))
                    .await
                    .unwrap()
                    .into_inner()
                    .name;
                let r = jobs
                    .cancel_job(req(pb::CancelJobRequest { name: live.clone() }, token))
                    .await;
                let after = get_job(&self.jobs, &self.owner, &live).await;
                let j = match r {
                    Ok(j) => j.into_inner(),
                    Err(e) => {
                        // Refused: the job is untouched.
                        assert!(
                            after.state == pb::JobState::Queued as i32
                                || after.state == pb::JobState::Running as i32,
                            "{who:?} was refused CancelJob but {live} is now {after:?}"
                        );
                        return Err(e);
                    }
                };
                check(
                    j.name == live
                        && j.state == pb::JobState::Cancelled as i32
                        && after.state == pb::JobState::Cancelled as i32,
                    || format!("{j:?}"),
                )
            }
            Rpc::WatchJob => {
                let mut ev = jobs
                    .watch_job(req(
                        pb::WatchJobRequest {
                            name: self.done.clone(),
                        },
                        token,
                    ))
                    .await?
                    .into_inner();
                let first = tokio::time::timeout(PATIENCE, ev.next())
                    .await
                    .map_err(|_| Status::unknown("no event"))?
                    .ok_or_else(|| Status::unknown("stream ended"))??;
                let j = first.job.unwrap_or_default();
                check(
                    j.name == self.done && j.state == pb::JobState::Succeeded as i32,
                    || format!("{j:?}"),
                )
            }
            Rpc::GetJobResult => {
                let (shapes, digest, bytes) = result(&self.jobs, token, &self.done).await?;
                check(
                    shapes == [vec![4]] && digest == self.digest && hex_sha256(&bytes) == digest,
                    || format!("{shapes:?} {digest}"),
                )
            }
            Rpc::UploadTensor => {
                let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                let r = upload(&self.jobs, token, vec![4], &data, 8).await?;
                check(r.name.starts_with("tensors/") && r.bytes == 16, || {
                    format!("{r:?}")
                })
            }
        }
    }
}

/// A pinned mix.
fn pinned(asic: f64, gpu: f64, strict: bool) -> pb::Mix {
    pb::Mix {
        policy: Some(pb::mix::Policy::Pinned(pb::PinnedMix {
            asic_percent: asic,
            gpu_percent: gpu,
            strict,
        })),
    }
}

/// Pushes `celsius` as the owner every 100 ms until `stop` turns true.
fn pusher(
    control: ControlClient<Channel>,
    owner: String,
    celsius: f64,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut control = control;
        loop {
            control
                .report_temperature(req(
                    pb::ReportTemperatureRequest {
                        celsius,
                        read_time: None,
                    },
                    Some(&owner),
                ))
                .await
                .unwrap();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop_rx.wait_for(|s| *s) => return,
            }
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_kind_of_caller_by_its_role() {
    // GPU on (for a job with a result); the room pushed (so ReportTemperature can succeed).
    let api = Api::start(
        |c| {
            c.gpu.enabled = true;
            c.sensors.room = SourceConfig::Pushed;
        },
        |_| {},
    )
    .await;
    let ch = api.channel().await;
    let control = ControlClient::new(ch.clone());
    let jobs = JobsClient::new(ch);
    let (push_stop, push_task) = pusher(control.clone(), api.owner.clone(), 15.0);
    let acme = api.token(Role::Tenant, Some("acme"));
    let beta = api.token(Role::Tenant, Some("beta"));
    let viewer = api.token(Role::Viewer, None);

    // A job of acme's that succeeds, for the calls that read one.
    let done = jobs
        .clone()
        .submit_job(req(tiny_job(""), Some(&acme)))
        .await
        .unwrap()
        .into_inner()
        .name;
    let finished = poll("acme's job to succeed", || async {
        let j = get_job(&jobs, &acme, &done).await;
        assert!(
            j.state != pb::JobState::Failed as i32 && j.state != pb::JobState::Cancelled as i32,
            "{j:?}"
        );
        (j.state == pb::JobState::Succeeded as i32).then_some(j)
    })
    .await;
    // Then no power for the GPU, so the jobs the table submits stay live.
    let mix = pinned(100.0, 0.0, true);
    control
        .clone()
        .set_mix(req(pb::SetMixRequest { mix: Some(mix) }, Some(&api.owner)))
        .await
        .unwrap();
    poll("the pinned mix with the GPU at 0 W", || async {
        let s = status(&control, &api.owner).await;
        let gpu = s.power.iter().find(|p| p.workload == "gpu").unwrap();
        (s.mix.as_ref() == Some(&mix) && gpu.target_watts == 0.0).then_some(())
    })
    .await;

    let table = Table {
        control: control.clone(),
        jobs: jobs.clone(),
        owner: api.owner.clone(),
        done: done.clone(),
        digest: finished.result_digest.clone(),
        mix,
    };
    let mut failures = Vec::new();
    for rpc in RPCS {
        for who in WHO {
            let token = match who {
                Who::Owner => Some(api.owner.as_str()),
                Who::Tenant => Some(acme.as_str()),
                Who::Viewer => Some(viewer.as_str()),
                Who::NoToken => None,
                Who::WrongToken => Some(WRONG_TOKEN),
            };
            let want = rpc.expected(who);
            let got = table.call(rpc, who, token).await;
            let row = format!("{rpc:?} as {who:?}");
            match (want, got) {
                (Code::Ok, Ok(())) => {}
                (Code::Ok, Err(e)) => failures.push(format!("{row}: {e:?}, wanted success")),
                (want, Ok(())) => failures.push(format!("{row}: succeeded, wanted {want:?}")),
                (want, Err(e)) => {
                    // A role refusal names the call it refused.
                    let named =
                        want != Code::PermissionDenied || e.message().contains(&format!("{rpc:?}"));
                    if e.code() != want || !named {
                        failures.push(format!(
                            "{row}: {:?} {:?}, wanted {want:?}",
                            e.code(),
                            e.message()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Another tenant may not touch acme's jobs; the jobs are untouched.
    let live = jobs
        .clone()
        .submit_job(req(tiny_job(""), Some(&acme)))
        .await
        .unwrap()
        .into_inner()
        .name;
    let mut j = jobs.clone();
    let name = |n: &str| n.to_string();
    assert_status(
        j.get_job(req(pb::GetJobRequest { name: name(&done) }, Some(&beta)))
            .await,
        Code::PermissionDenied,
        "another tenant",
    );
    assert_status(
        j.cancel_job(req(pb::CancelJobRequest { name: name(&live) }, Some(&beta)))
            .await,
        Code::PermissionDenied,
        "another tenant",
    );
    assert_status(
        j.watch_job(req(pb::WatchJobRequest { name: name(&live) }, Some(&beta)))
            .await,
        Code::PermissionDenied,
        "another tenant",
    );
    assert_status(
        result(&jobs, Some(&beta), &done).await,
        Code::PermissionDenied,
        "another tenant",
    );
    let live_after = get_job(&jobs, &acme, &live).await;
    assert!(
        [pb::JobState::Queued as i32, pb::JobState::Running as i32].contains(&live_after.state),
        "{live_after:?}"
    );
    let done_after = get_job(&jobs, &acme, &done).await;
    assert_eq!(done_after.state, pb::JobState::Succeeded as i32);
    assert_eq!(
        result(&jobs, Some(&acme), &done).await.unwrap().1,
        finished.result_digest
    );

    // Each tenant lists its own jobs only; the owner all of them.
    let beta_job = jobs
        .clone()
        .submit_job(req(tiny_job("acme"), Some(&beta)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(beta_job.lease.as_ref().unwrap().tenant, "beta");
    let list = |token: String| {
        let mut jobs = jobs.clone();
        async move {
            jobs.list_jobs(req(
                pb::ListJobsRequest {
                    page_size: 1000,
                    ..Default::default()
                },
                Some(&token),
            ))
            .await
            .unwrap()
            .into_inner()
            .jobs
        }
    };
    let beta_sees = list(beta.clone()).await;
    assert_eq!(
        beta_sees.iter().map(|j| &j.name).collect::<Vec<_>>(),
        [&beta_job.name]
    );
    let acme_sees = list(acme.clone()).await;
    assert!(acme_sees
        .iter()
        .all(|j| j.lease.as_ref().unwrap().tenant == "acme"));
    assert!(acme_sees.iter().any(|j| j.name == done));
    assert!(acme_sees.iter().any(|j| j.name == live));
    let all = list(api.owner.clone()).await;
    assert_eq!(all.len(), acme_sees.len() + 1);

    // A revoked token is refused without a restart; the others still work.
    let store = TokenStore::new(api.dir.path());
    let (gamma, entry) = store.add(Role::Tenant, Some("gamma".into())).unwrap();
    let list_as = |token: String| {
        let mut jobs = jobs.clone();
        async move {
            jobs.list_jobs(req(pb::ListJobsRequest::default(), Some(&token)))
                .await
        }
    };
    poll("the new token to be accepted", || async {
        list_as(gamma.clone()).await.ok()
    })
    .await;
    assert!(store.revoke(&entry.id).unwrap());
    let refused = poll("the revoked token to be refused", || async {
        list_as(gamma.clone()).await.err()
    })
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    list_as(acme.clone()).await.unwrap();
    status(&control, &viewer).await;

    push_stop.send_replace(true);
    push_task.await.unwrap();
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_tensors_over_the_inline_limit_give_hearth_gpu_runs_digest() {
    // Two 4.4 MB inputs: over the 4 MiB inline limit, under an 8 MiB per-tensor cap; the
    // 12 MiB total cap holds two of them but not three.
    const N: usize = 1_100_000;
    let api = Api::start(
        |c| c.gpu.enabled = true,
        |a| {
            a.max_upload_bytes = 8 << 20;
            a.max_total_upload_bytes = 12 << 20;
        },
    )
    .await;
    let jobs = JobsClient::new(api.channel().await);
    let acme = api.token(Role::Tenant, Some("acme"));
    let beta = api.token(Role::Tenant, Some("beta"));
    let add = KernelSpec::Elementwise {
        op: ElementwiseOp::Add,
    };
    let inputs = synthetic_inputs(&add, &[N], 1).unwrap();
    assert!(inputs[0].bytes() > hearth::api::convert::MAX_INLINE_TENSOR_BYTES);

    // Over the per-tensor cap: refused while it streams in.
    let big = vec![0u8; (8 << 20) + 4];
    assert_status(
        upload(
            &jobs,
            Some(&acme),
            vec![big.len() as u64 / 4],
            &big,
            1 << 20,
        )
        .await,
        Code::ResourceExhausted,
        "upload cap",
    );
    // Each input in five 1 MiB messages.
    let mut names = Vec::new();
    for t in &inputs {
        let r = upload(&jobs, Some(&acme), vec![N as u64], &t.le_bytes(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.bytes, t.bytes() as u64);
        assert!(r.name.starts_with("tensors/"), "{r:?}");
        names.push(r.name);
    }
    // A third would pass the total cap.
    assert_status(
        upload(
            &jobs,
            Some(&acme),
            vec![N as u64],
            &inputs[0].le_bytes(),
            1 << 20,
        )
        .await,
        Code::ResourceExhausted,
        "cap",
    );

    // The stream itself is checked, naming the field.
    let floats = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let msg = |shape: Vec<u64>, data: Vec<u8>| pb::UploadTensorRequest { shape, data };
    for (what, msgs, needle) in [
        (
            "shape and data disagree",
            vec![msg(vec![3], floats(&[1.0, 2.0]))],
            "tensor: shape [3] holds 3 values, got 2",
        ),
        (
            "bytes not whole float32s",
            vec![msg(vec![1], vec![0, 0, 0])],
            "tensor.data",
        ),
        ("no shape first", vec![msg(vec![], floats(&[1.0]))], "shape"),
        (
            "a shape after the first message",
            vec![msg(vec![2], floats(&[1.0])), msg(vec![2], floats(&[2.0]))],
            "shape",
        ),
        ("no message", vec![], "shape"),
    ] {
        let r = upload_msgs(&jobs, Some(&acme), msgs).await;
        assert!(
            matches!(&r, Err(s) if s.code() == Code::InvalidArgument && s.message().contains(needle)),
            "{what}: {r:?}, wanted INVALID_ARGUMENT naming {needle:?}"
        );
    }

    // Another tenant cannot use acme's uploads; they stay held for acme.
    let refs = || names.iter().map(|n| uploaded(n)).collect::<Vec<_>>();
    assert_status(
        jobs.clone()
            .submit_job(req(add_job(refs(), ""), Some(&beta)))
            .await,
        Code::PermissionDenied,
        "job.inputs[0]",
    );
    let job = jobs
        .clone()
        .submit_job(req(add_job(refs(), ""), Some(&acme)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.input_shapes.len(), 2);
    assert_eq!(job.input_shapes[1].shape, [N as u64]);

    // An upload is taken by the submit that names it: a second use, an unknown name and a
    // malformed one are refused, naming the input.
    // (The input before it is inline and fine; the refusal comes before the kernel's checks.)
    let small = inline(&Tensor::new(vec![4], vec![0.0; 4]).unwrap());
    for (what, input, code, needle) in [
        (
            "used twice",
            uploaded(&names[0]),
            Code::NotFound,
            "job.inputs[1]: ",
        ),
        (
            "never uploaded",
            uploaded("tensors/999999"),
            Code::NotFound,
            "job.inputs[1]: tensors/999999 not found",
        ),
        (
            "not a tensor name",
            uploaded("blobs/1"),
            Code::InvalidArgument,
            "job.inputs[1]",
        ),
    ] {
        let r = jobs
            .clone()
            .submit_job(req(add_job(vec![small.clone(), input], ""), Some(&acme)))
            .await;
        assert!(
            matches!(&r, Err(s) if s.code() == code && s.message().contains(needle)),
            "{what}: {r:?}, wanted {code:?} naming {needle:?}"
        );
    }
    // Taking them freed the total cap.
    upload(
        &jobs,
        Some(&acme),
        vec![N as u64],
        &inputs[0].le_bytes(),
        1 << 20,
    )
    .await
    .unwrap();

    let done = poll("the uploaded job to succeed", || async {
        let j = get_job(&jobs, &acme, &job.name).await;
        assert!(
            j.state != pb::JobState::Failed as i32 && j.state != pb::JobState::Cancelled as i32,
            "{j:?}"
        );
        (j.state == pb::JobState::Succeeded as i32).then_some(j)
    })
    .await;
    let (shapes, digest, bytes) = result(&jobs, Some(&acme), &job.name).await.unwrap();
    assert_eq!(shapes, [vec![N as u64]]);
    assert_eq!(bytes.len(), N * 4);
    assert_eq!(digest, hex_sha256(&bytes));
    assert_eq!(done.result_digest, digest);
    let out = hearth()
        .args(["gpu", "run", "add", "--size", &N.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("sha256: {digest}")), "{text}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_readings_drive_the_heater_and_their_absence_trips_it() {
    let api = Api::start(|c| c.sensors.room = SourceConfig::Pushed, |_| {}).await;
    let control = ControlClient::new(api.channel().await);
    let owner = api.owner.clone();

    // Readings that cannot be a room are refused, naming the field.
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1000.0,
        -273.15,
        60.5,
    ] {
        assert_status(
            control
                .clone()
                .report_temperature(req(
                    pb::ReportTemperatureRequest {
                        celsius: bad,
                        read_time: None,
                    },
                    Some(&owner),
                ))
                .await,
            Code::InvalidArgument,
            "celsius",
        );
    }

    // A cold room, pushed: the status shows the reading and the controller heats.
    let (stop, task) = pusher(control.clone(), owner.clone(), 15.0);
    let s = poll("the pushed reading and a budget", || async {
        let s = status(&control, &owner).await;
        (s.room_celsius == Some(15.0) && s.budget_watts > 0.0 && s.trips.is_empty()).then_some(s)
    })
    .await;
    assert!(s.setpoint_celsius > 15.0, "{s:?}");
    poll("power drawn", || async {
        let s = status(&control, &owner).await;
        (s.power.iter().map(|p| p.actual_watts).sum::<f64>() > 0.0).then_some(())
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();
    // A new value shows up as it is.
    let (stop, task) = pusher(control.clone(), owner.clone(), 16.5);
    poll("the second pushed reading", || async {
        let s = status(&control, &owner).await;
        (s.room_celsius == Some(16.5) && s.trips.is_empty()).then_some(())
    })
    .await;

    // The thermostat goes quiet: once the reading is older than the limit the heater trips
    // and every workload goes to 0 W.
    stop.send_replace(true);
    task.await.unwrap();
    let s = poll("the stale-sensor trip", || async {
        let s = status(&control, &owner).await;
        let cold = s.budget_watts == 0.0
            && s.power
                .iter()
                .all(|p| p.target_watts == 0.0 && p.actual_watts == 0.0);
        (cold && s.trips.iter().any(|t| t.reason == "sensor_stale")).then_some(s)
    })
    .await;
    let trip = s.trips.iter().find(|t| t.reason == "sensor_stale").unwrap();
    assert!(!trip.detail.is_empty(), "{trip:?}");
    assert_eq!(s.room_celsius, Some(16.5), "the last reading, now stale");
    api.stop().await;
}

/// A self-signed certificate for `localhost`, as PEM files in `dir`; returns (cert, key).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// GetStatus over `https://127.0.0.1:port` trusting `ca` for `localhost`.
async fn tls_status(port: u16, ca: &Path, token: Option<&str>) -> Result<pb::Status, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    let call = async {
        let ch = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        ControlClient::new(ch)
            .get_status(req(pb::GetStatusRequest {}, token))
            .await
            .map(|r| r.into_inner())
            .map_err(|e| format!("{e:?}"))
    };
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_trusting_clients_and_non_loopback_needs_tls_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let d = spawn_at_noon(config(dir.path())).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();

    // Not loopback, no TLS, not insecure: refused.
    let r = hearth::api::serve(d.client(), api_config(dir.path(), any), stop_rx.clone()).await;
    assert!(
        matches!(r, Err(ApiError::NeedsTls(a)) if a == any),
        "{:?}",
        r.err()
    );

    // With --insecure it starts and answers in plain text.
    let mut insecure = api_config(dir.path(), any);
    insecure.insecure = true;
    let plain = hearth::api::serve(d.client(), insecure, stop_rx.clone())
        .await
        .unwrap();
    let owner = owner_token(dir.path());
    let ch = Channel::from_shared(format!("http://127.0.0.1:{}", plain.addr.port()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ControlClient::new(ch)
        .get_status(req(pb::GetStatusRequest {}, Some(&owner)))
        .await
        .unwrap();

    // With a certificate it serves TLS (on any address).
    let (cert, key) = self_signed(dir.path(), "api");
    let mut with_tls = api_config(dir.path(), any);
    with_tls.tls = Some((cert.clone(), key));
    let tls = hearth::api::serve(d.client(), with_tls, stop_rx.clone())
        .await
        .unwrap();
    let port = tls.addr.port();
    let s = tls_status(port, &cert, Some(&owner)).await.unwrap();
    assert_eq!(s.power.len(), 3);
    // The token is still checked over TLS.
    let e = tls_status(port, &cert, None).await.unwrap_err();
    assert!(e.contains("Unauthenticated"), "{e}");
    // A client that trusts another certificate does not get through.
    let (other, _) = self_signed(dir.path(), "other");
    let e = tls_status(port, &other, Some(&owner)).await.unwrap_err();
    assert!(!e.contains("timed out"), "{e}");
    // Nor does a plain-text client.
    let plain_to_tls = async {
        let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        ControlClient::new(ch)
            .get_status(req(pb::GetStatusRequest {}, Some(&owner)))
            .await
            .map_err(|e| e.to_string())
    };
    let r = tokio::time::timeout(Duration::from_secs(30), plain_to_tls)
        .await
        .expect("a plain-text client is refused, not left hanging");
    assert!(r.is_err(), "{r:?}");

    stop.send_replace(true);
    plain.join().await;
    tls.join().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_get_status_over_grpc() {
    let port = free_port();
    hearth::telemetry::install(([127, 0, 0, 1], port).into()).unwrap();
    // Real time (one tick a second), so a GetStatus, a scrape and another GetStatus fit in one
    // tick; the software ASIC mines so that every workload has figures.
    let api = Api::start(
        |c| {
            c.simulation.speed = 1.0;
            c.mining.enabled = true;
            c.mining.asic.chips = 1;
            c.mining.local_pool.initial_difficulty = 2e-4;
        },
        |_| {},
    )
    .await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let exporter = tokio::spawn(hearth::telemetry::run(
        api.daemon.status.clone(),
        api.daemon.store.clone(),
        stop_rx,
    ));
    let control = ControlClient::new(api.channel().await);
    let owner = api.owner.clone();
    poll(
        "a room reading, a budget and the ASIC drawing power",
        || async {
            let s = status(&control, &owner).await;
            let asic = s.power.iter().find(|p| p.workload == "asic").unwrap();
            (s.room_celsius.is_some() && s.budget_watts > 0.0 && asic.actual_watts > 0.0)
                .then_some(())
        },
    )
    .await;
    // The scan kernel the ASIC uses is shown with how it was chosen.
    let mining = status(&control, &owner).await.mining.unwrap();
    let best = hearth::mining::sha256d::Kernel::best();
    assert_eq!(
        mining.hash_kernel,
        format!("{} (fastest measured)", best.name())
    );

    // A GetStatus, a scrape and a GetStatus of the same tick, which the scrape reports: then
    // every gauge comes from that tick's snapshot.
    let consistent = |want_setpoint: Option<f64>| {
        let (control, owner) = (control.clone(), owner.clone());
        poll("a GetStatus and a scrape of one tick", move || {
            let (control, owner) = (control.clone(), owner.clone());
            async move {
                let before = status(&control, &owner).await;
                let m = scrape(port).await;
                let after = status(&control, &owner).await;
                let ticks = m.value("hearth_control_ticks_total");
                (before.tick == after.tick
                    && ticks == Some(before.tick as f64 + 1.0)
                    && want_setpoint.is_none_or(|sp| before.setpoint_celsius == sp))
                .then_some((before, m))
            }
        })
    };
    let compare = |s: &pb::Status, m: &Scrape| {
        let get = |k: &str| m.get(k);
        assert_eq!(get("hearth_setpoint_celsius"), s.setpoint_celsius);
        assert_eq!(Some(get("hearth_room_temperature_celsius")), s.room_celsius);
        assert_eq!(
            Some(get("hearth_outdoor_temperature_celsius")),
            s.outdoor_celsius
        );
        assert_eq!(get("hearth_heat_budget_watts"), s.budget_watts);
        assert_eq!(get("hearth_unmet_watts"), s.unmet_watts);
        assert_eq!(s.power.len(), 3);
        for p in &s.power {
            let w = &p.workload;
            assert_eq!(
                get(&format!("hearth_power_target_watts{{workload=\"{w}\"}}")),
                p.target_watts,
                "{w}"
            );
            assert_eq!(
                get(&format!("hearth_power_watts{{workload=\"{w}\"}}")),
                p.actual_watts,
                "{w}"
            );
        }
        for reason in [
            "sensor_stale",
            "room_over_temperature",
            "chip_over_temperature",
            "loop_stall",
        ] {
            let latched = s.trips.iter().any(|t| t.reason == reason);
            assert_eq!(
                get(&format!("hearth_safety_trips{{reason=\"{reason}\"}}")),
                f64::from(u8::from(latched)),
                "{reason}"
            );
        }
    };
    let (s, m) = consistent(None).await;
    assert!(s.budget_watts > 0.0);
    compare(&s, &m);

    // A setpoint set over gRPC shows in both.
    control
        .clone()
        .set_setpoint(req(
            pb::SetSetpointRequest {
                celsius: 22.5,
                hold_minutes: 30.0,
                clear: false,
            },
            Some(&owner),
        ))
        .await
        .unwrap();
    let (s, m) = consistent(Some(22.5)).await;
    assert!(s.override_active);
    compare(&s, &m);

    stop.send_replace(true);
    exporter.await.unwrap();
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_in_flight_cap_get_resource_exhausted_and_are_served_after() {
    let api = Api::start(|_| {}, |a| a.max_in_flight = 1).await;
    let ch = api.channel().await;
    let control = ControlClient::new(ch.clone());
    let jobs = JobsClient::new(ch.clone());
    // An upload holds its call open (and its permit) until the client ends the stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadTensorRequest>(4);
    tx.send(pb::UploadTensorRequest {
        shape: vec![4],
        data: 1f32.to_le_bytes().repeat(2),
    })
    .await
    .unwrap();
    let owner = api.owner.clone();
    let open = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            jobs.clone()
                .upload_tensor(req(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    Some(&owner),
                ))
                .await
                .map(|r| r.into_inner())
        })
    };
    // Once the upload is being served, every other call is shed at once, health checks too.
    let shed = poll("the cap to be reached", || {
        let control = control.clone();
        let owner = api.owner.clone();
        async move {
            match control
                .clone()
                .get_status(req(pb::GetStatusRequest {}, Some(&owner)))
                .await
            {
                Err(s) if s.code() == Code::ResourceExhausted => Some(s),
                _ => None,
            }
        }
    })
    .await;
    assert!(shed.message().contains("max-in-flight"), "{shed:?}");
    let health = tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert_status(health, Code::ResourceExhausted, "1 calls in flight");
    assert_status(
        jobs.clone()
            .submit_job(req(tiny_job("acme"), Some(&api.owner)))
            .await,
        Code::ResourceExhausted,
        "busy",
    );
    // The held call completes normally, and the next calls are served.
    tx.send(pb::UploadTensorRequest {
        shape: Vec::new(),
        data: 2f32.to_le_bytes().repeat(2),
    })
    .await
    .unwrap();
    drop(tx);
    let uploaded = open.await.unwrap().unwrap();
    assert_eq!(uploaded.bytes, 16);
    status(&control, &api.owner).await;
    let job = jobs
        .clone()
        .submit_job(req(tiny_job("acme"), Some(&api.owner)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.state, pb::JobState::Queued as i32);
    api.stop().await;
}
