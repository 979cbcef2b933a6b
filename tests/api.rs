//! The gRPC API end to end over loopback against the real daemon: submit → watch → result with
//! the digest of `hearth gpu run`; the error contract, one row per case; role enforcement;
//! pagination; health and reflection.

mod common;

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::{Code, Request};

use hearth::api::auth::Role;
use hearth::api::pb;
use hearth::api::pb::control_client::ControlClient;
use hearth::api::pb::jobs_client::JobsClient;
use hearth::gpu::job::KernelSpec;
use hearth::gpu::reference::synthetic_inputs;
use hearth::gpu::tensor::Tensor;

use common::api::{authed, hex_sha256, inline, Api};
use common::bin::hearth;

fn matmul_spec(size: &[usize]) -> pb::JobSpec {
    let inputs = synthetic_inputs(&KernelSpec::Matmul, size, 1).unwrap();
    pb::JobSpec {
        kernel: Some(pb::Kernel {
            kind: Some(pb::kernel::Kind::Matmul(pb::MatmulKernel {})),
        }),
        inputs: inputs.iter().map(inline).collect(),
        lease: Some(pb::Lease {
            tenant: String::new(),
            price_per_gpu_second: 0.01,
            deadline: None,
            priority: 0,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_watch_and_result_match_hearth_gpu_run() {
    let api = Api::start(|c| c.gpu.enabled = true, |_| {}).await;
    let tenant = api.token(Role::Tenant, Some("acme"));
    let mut jobs = JobsClient::new(api.channel().await);
    let job = jobs
        .submit_job(authed(
            pb::SubmitJobRequest {
                job: Some(matmul_spec(&[96, 80, 72])),
            },
            &tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        job.lease.as_ref().unwrap().tenant,
        "acme",
        "the token names the tenant"
    );
    let mut events = jobs
        .watch_job(authed(
            pb::WatchJobRequest {
                name: job.name.clone(),
            },
            &tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut states = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(60), events.next())
        .await
        .expect("an event")
    {
        let ev = ev.unwrap();
        states.push(ev.job.unwrap().state);
    }
    assert_eq!(
        states.last(),
        Some(&(pb::JobState::Succeeded as i32)),
        "{states:?}"
    );
    let mut chunks = jobs
        .get_job_result(authed(
            pb::GetJobResultRequest {
                name: job.name.clone(),
            },
            &tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = chunks.next().await.unwrap().unwrap();
    assert_eq!(first.outputs[0].shape, [96, 72]);
    let mut bytes = Vec::new();
    while let Some(c) = chunks.next().await {
        bytes.extend(c.unwrap().data);
    }
    assert_eq!(bytes.len(), 96 * 72 * 4);
    // The receipt is the SHA-256 of the outputs' bytes, and equals `hearth gpu run`'s.
    let digest = hex_sha256(&bytes);
    assert_eq!(first.digest, digest);
    let out = hearth()
        .args(["gpu", "run", "matmul", "--size", "96,80,72"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("sha256: {digest}")), "{text}");

    // GetJob carries every recorded state change with its reason, oldest first.
    let got = jobs
        .get_job(authed(
            pb::GetJobRequest {
                name: job.name.clone(),
            },
            &tenant,
        ))
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<(i32, i32)> = got
        .history
        .iter()
        .map(|c| (c.from_state, c.to_state))
        .collect();
    use pb::JobState as S;
    assert_eq!(
        steps,
        [
            (S::Unspecified as i32, S::Queued as i32),
            (S::Queued as i32, S::Running as i32),
            (S::Running as i32, S::Succeeded as i32),
        ],
        "{:?}",
        got.history
    );
    assert_eq!(got.history[0].reason, "submitted");
    assert!(got.history.iter().all(|c| !c.reason.is_empty()));
    let times: Vec<i64> = got
        .history
        .iter()
        .map(|c| c.time.as_ref().unwrap().seconds)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_code_and_names_the_field() {
    let api = Api::start(
        |c| {
            c.jobs.limits.max_jobs_per_tenant = 2;
            c.gpu.runner.limits.max_job_bytes = 8 << 10;
        },
        |_| {},
    )
    .await;
    let ch = api.channel().await;
    let mut control = ControlClient::new(ch.clone());
    let mut jobs = JobsClient::new(ch);
    let owner = api.owner.clone();
    let viewer = api.token(Role::Viewer, None);
    let acme = api.token(Role::Tenant, Some("acme"));
    let other = api.token(Role::Tenant, Some("other"));
    let acme_job = jobs
        .submit_job(authed(
            pb::SubmitJobRequest {
                job: Some(matmul_spec(&[8, 8, 8])),
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    let kernel = |k: pb::kernel::Kind| Some(pb::Kernel { kind: Some(k) });
    let with = |f: &dyn Fn(&mut pb::JobSpec)| {
        let mut s = matmul_spec(&[8, 8, 8]);
        f(&mut s);
        pb::SubmitJobRequest { job: Some(s) }
    };
    let mut cases: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = Vec::new();
    macro_rules! case {
        ($name:expr, $call:expr, $code:expr, $needle:expr) => {
            cases.push(($name, $call.await.map(|_| ()), $code, $needle));
        };
    }
    case!(
        "setpoint out of range",
        control.set_setpoint(authed(
            pb::SetSetpointRequest {
                celsius: 40.0,
                hold_minutes: 0.0,
                clear: false
            },
            &owner
        )),
        Code::InvalidArgument,
        "celsius"
    );
    case!(
        "fractions not adding to 100",
        control.set_mix(authed(
            pb::SetMixRequest {
                mix: Some(pb::Mix {
                    policy: Some(pb::mix::Policy::Pinned(pb::PinnedMix {
                        asic_percent: 30.0,
                        gpu_percent: 60.0,
                        strict: false
                    }))
                })
            },
            &owner
        )),
        Code::InvalidArgument,
        "mix.pinned"
    );
    case!(
        "no kernel",
        jobs.submit_job(authed(with(&|s| s.kernel = None), &owner)),
        Code::InvalidArgument,
        "job.kernel"
    );
    case!(
        "unknown elementwise op",
        jobs.submit_job(authed(
            with(
                &|s| s.kernel = kernel(pb::kernel::Kind::Elementwise(pb::ElementwiseKernel {
                    op: "tanh".into()
                }))
            ),
            &owner
        )),
        Code::InvalidArgument,
        "job.kernel.elementwise.op"
    );
    case!(
        "invalid WGSL (naga's message)",
        jobs.submit_job(authed(
            with(
                &|s| s.kernel = kernel(pb::kernel::Kind::Custom(pb::CustomKernel {
                    wgsl: "@compute @workgroup_size(1) fn main() { let x = ; }".into(),
                    entry_point: "main".into(),
                    workgroups: vec![1, 1, 1],
                    output_lengths: vec![4],
                }))
            ),
            &owner
        )),
        Code::InvalidArgument,
        "job.kernel.wgsl"
    );
    case!(
        "shapes that do not fit the kernel",
        jobs.submit_job(authed(
            with(&|s| s.inputs[1] = inline(&Tensor::new(vec![5, 8], vec![0.0; 40]).unwrap())),
            &owner
        )),
        Code::InvalidArgument,
        "job.inputs"
    );
    case!(
        "tensor bytes not whole float32s",
        jobs.submit_job(authed(
            with(&|s| s.inputs[0] = pb::TensorInput {
                source: Some(pb::tensor_input::Source::Inline(pb::Tensor {
                    shape: vec![1],
                    data: vec![0, 0, 0],
                })),
            }),
            &owner
        )),
        Code::InvalidArgument,
        "job.inputs[0].data"
    );
    case!(
        "inline tensor over 4 MiB",
        jobs.submit_job(authed(
            with(&|s| s.inputs[0] = pb::TensorInput {
                source: Some(pb::tensor_input::Source::Inline(pb::Tensor {
                    shape: vec![(4 << 20) / 4 + 1],
                    data: vec![0; (4 << 20) + 4],
                })),
            }),
            &owner
        )),
        Code::InvalidArgument,
        "UploadTensor"
    );
    case!(
        "job over the size cap",
        jobs.submit_job(authed(
            pb::SubmitJobRequest {
                job: Some(matmul_spec(&[64, 64, 64]))
            },
            &owner
        )),
        Code::ResourceExhausted,
        "max_job_bytes"
    );
    case!(
        "malformed job name",
        jobs.get_job(authed(
            pb::GetJobRequest {
                name: "job/1".into()
            },
            &owner
        )),
        Code::InvalidArgument,
        "name"
    );
    case!(
        "no such job",
        jobs.get_job(authed(
            pb::GetJobRequest {
                name: "jobs/999".into()
            },
            &owner
        )),
        Code::NotFound,
        "jobs/999"
    );
    case!(
        "result of a job that has not succeeded",
        jobs.get_job_result(authed(
            pb::GetJobResultRequest {
                name: acme_job.name.clone()
            },
            &owner
        )),
        Code::FailedPrecondition,
        "SUCCEEDED"
    );
    case!(
        "negative page size",
        jobs.list_jobs(authed(
            pb::ListJobsRequest {
                page_size: -1,
                ..Default::default()
            },
            &owner
        )),
        Code::InvalidArgument,
        "page_size"
    );
    case!(
        "garbage page token",
        jobs.list_jobs(authed(
            pb::ListJobsRequest {
                page_token: "zzz".into(),
                ..Default::default()
            },
            &owner
        )),
        Code::InvalidArgument,
        "page_token"
    );
    case!(
        "pushed reading without a pushed sensor",
        control.report_temperature(authed(
            pb::ReportTemperatureRequest {
                celsius: 20.0,
                read_time: None
            },
            &owner
        )),
        Code::FailedPrecondition,
        "pushed"
    );
    case!(
        "no token",
        control.get_status(Request::new(pb::GetStatusRequest {})),
        Code::Unauthenticated,
        "authorization"
    );
    case!(
        "unknown token",
        control.get_status(authed(pb::GetStatusRequest {}, "hth_nope")),
        Code::Unauthenticated,
        "token"
    );
    case!(
        "viewer submits",
        jobs.submit_job(authed(with(&|_| {}), &viewer)),
        Code::PermissionDenied,
        "SubmitJob"
    );
    case!(
        "tenant pins the mix",
        control.set_mix(authed(
            pb::SetMixRequest {
                mix: Some(pb::Mix {
                    policy: Some(pb::mix::Policy::Auto(pb::AutoMix {}))
                })
            },
            &acme
        )),
        Code::PermissionDenied,
        "SetMix"
    );
    case!(
        "tenant reads the status",
        control.get_status(authed(pb::GetStatusRequest {}, &acme)),
        Code::PermissionDenied,
        "GetStatus"
    );
    case!(
        "tenant reads another tenant's job",
        jobs.get_job(authed(
            pb::GetJobRequest {
                name: acme_job.name.clone()
            },
            &other
        )),
        Code::PermissionDenied,
        "another tenant"
    );
    case!(
        "tenant cancels another tenant's job",
        jobs.cancel_job(authed(
            pb::CancelJobRequest {
                name: acme_job.name.clone()
            },
            &other
        )),
        Code::PermissionDenied,
        "another tenant"
    );
    // The per-tenant cap is 2: acme has one; the second is accepted, the third refused.
    jobs.submit_job(authed(with(&|_| {}), &acme)).await.unwrap();
    case!(
        "over the per-tenant queue cap",
        jobs.submit_job(authed(with(&|_| {}), &acme)),
        Code::ResourceExhausted,
        "tenant"
    );
    jobs.cancel_job(authed(
        pb::CancelJobRequest {
            name: acme_job.name.clone(),
        },
        &acme,
    ))
    .await
    .unwrap();
    case!(
        "cancelling an ended job",
        jobs.cancel_job(authed(
            pb::CancelJobRequest {
                name: acme_job.name.clone()
            },
            &acme
        )),
        Code::FailedPrecondition,
        "ended"
    );
    let mut failures = Vec::new();
    for (name, r, code, needle) in &cases {
        match r {
            Ok(()) => failures.push(format!("{name}: succeeded, wanted {code:?}")),
            Err(s) if s.code() != *code || !s.message().contains(needle) => failures.push(format!(
                "{name}: {:?} {:?}, wanted {code:?} naming {needle:?}",
                s.code(),
                s.message()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Viewers read the status; the owner sets the setpoint and the mix.
    control
        .get_status(authed(pb::GetStatusRequest {}, &viewer))
        .await
        .unwrap();
    let sp = control
        .set_setpoint(authed(
            pb::SetSetpointRequest {
                celsius: 22.5,
                hold_minutes: 30.0,
                clear: false,
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sp.setpoint_celsius, 22.5);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_visits_every_job_once_and_tenants_see_their_own() {
    let api = Api::start(|_| {}, |_| {}).await;
    let ch = api.channel().await;
    let mut jobs = JobsClient::new(ch);
    let acme = api.token(Role::Tenant, Some("acme"));
    let other = api.token(Role::Tenant, Some("other"));
    let mut mine = Vec::new();
    for i in 0..7 {
        let t = if i % 3 == 0 { &other } else { &acme };
        let j = jobs
            .submit_job(authed(
                pb::SubmitJobRequest {
                    job: Some(matmul_spec(&[4, 4, 4])),
                },
                t,
            ))
            .await
            .unwrap()
            .into_inner();
        if t == &acme {
            mine.push(j.name);
        }
    }
    let list = |token: String, size: i32| {
        let mut jobs = jobs.clone();
        async move {
            let mut names = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = jobs
                    .list_jobs(authed(
                        pb::ListJobsRequest {
                            page_size: size,
                            page_token: page_token.clone(),
                            state: 0,
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.jobs.len() <= size as usize);
                names.extend(r.jobs.into_iter().map(|j| j.name));
                if r.next_page_token.is_empty() {
                    return names;
                }
                page_token = r.next_page_token;
            }
        }
    };
    assert_eq!(list(acme.clone(), 2).await, mine);
    let all = list(api.owner.clone(), 3).await;
    assert_eq!(all.len(), 7);
    let mut dedup = all.clone();
    dedup.dedup();
    assert_eq!(dedup, all);
    // A state filter.
    let queued = jobs
        .list_jobs(authed(
            pb::ListJobsRequest {
                page_size: 100,
                page_token: String::new(),
                state: pb::JobState::Succeeded as i32,
            },
            &api.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(queued.jobs.is_empty());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_a_token() {
    let api = Api::start(|_| {}, |_| {}).await;
    let ch = api.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["", "hearth.v1.Control", "hearth.v1.Jobs"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "hearth.v1.Control",
        "hearth.v1.Jobs",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    // A file descriptor for a symbol, as grpcurl asks for one.
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "hearth.v1.Jobs".into(),
        )),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    assert!(
        matches!(msg.message_response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{msg:?}"
    );
    api.stop().await;
}
