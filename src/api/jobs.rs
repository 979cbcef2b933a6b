//! The `Jobs` service: tenants submit, watch and fetch their jobs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use super::auth::{Caller, Role};
use super::control::{caller, daemon_status};
use super::convert::{
    invalid, job_to, parse_job_name, spec_from, state_change_to, state_from, store_status,
};
use super::pb;
use super::uploads::Uploads;
use crate::jobs::{JobId, JobRecord, JobStore, ListFilter};
use crate::ops::DaemonClient;

/// Bytes per result chunk.
const RESULT_CHUNK: usize = 1 << 20;

/// The Jobs service over a running daemon.
pub struct JobsApi {
    /// The daemon.
    pub daemon: DaemonClient,
    /// Tensors uploaded ahead of a submit.
    pub uploads: Arc<Uploads>,
    /// Turns true when the server stops taking calls; open streams end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Runs a store call on the blocking pool; a store error becomes its gRPC status.
async fn blocking<T: Send + 'static>(
    store: &Arc<JobStore>,
    f: impl FnOnce(&JobStore) -> Result<T, crate::jobs::StoreError> + Send + 'static,
) -> Result<T, GrpcStatus> {
    crate::jobs::executor::blocking(store, f)
        .await
        .map_err(store_status)
}

impl JobsApi {
    /// The job `name`, if the caller may see it.
    async fn visible(
        &self,
        who: &Caller,
        field: &str,
        name: &str,
    ) -> Result<JobRecord, GrpcStatus> {
        let id = parse_job_name(field, name)?;
        let r = blocking(&self.daemon.store, move |s| s.get(id)).await?;
        if who.role == Role::Tenant && who.tenant.as_deref() != Some(r.lease.tenant.as_str()) {
            return Err(GrpcStatus::permission_denied(format!(
                "{name} belongs to another tenant"
            )));
        }
        Ok(r)
    }

    /// Units in all for a job (known while it runs on the GPU).
    fn units_total(&self, id: JobId) -> u64 {
        self.daemon
            .status
            .borrow()
            .sched
            .queue
            .running
            .filter(|r| r.job == id.0)
            .map_or(0, |r| r.units)
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, GrpcStatus>> + Send>>;
type Chunks = Pin<Box<dyn Stream<Item = Result<pb::JobResultChunk, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl pb::jobs_server::Jobs for JobsApi {
    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "SubmitJob")?;
        let r = req.into_inner();
        let tenant = match (who.role, &r.job) {
            (Role::Tenant, _) => who.tenant.clone().unwrap_or_default(),
            (_, Some(j)) => j
                .lease
                .as_ref()
                .map(|l| l.tenant.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "owner".into()),
            _ => "owner".into(),
        };
        let uploads = self.uploads.clone();
        // A tenant may use only its own uploads.
        let uploader = (who.role == Role::Tenant).then(|| tenant.clone());
        let spec = spec_from(r.job, tenant, |field, name| {
            uploads.take(field, name, uploader.as_deref())
        })?;
        let rec = self
            .daemon
            .submit_record(spec)
            .await
            .map_err(daemon_status)?;
        Ok(Response::new(job_to(&rec, 0)))
    }

    async fn get_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "GetJob")?;
        let r = self.visible(&who, "name", &req.get_ref().name).await?;
        let id = r.id;
        let history = blocking(&self.daemon.store, move |s| s.transitions(id)).await?;
        let mut job = job_to(&r, self.units_total(id));
        job.history = history.iter().map(state_change_to).collect();
        Ok(Response::new(job))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "ListJobs")?;
        let r = req.into_inner();
        if r.page_size < 0 {
            return Err(invalid(
                "page_size",
                format!("must not be negative, got {}", r.page_size),
            ));
        }
        let size = if r.page_size == 0 {
            100
        } else {
            r.page_size.min(1000)
        } as u32;
        let filter = ListFilter {
            tenant: if who.role == Role::Tenant {
                who.tenant.clone()
            } else {
                None
            },
            state: state_from("state", r.state)?,
        };
        let token = (!r.page_token.is_empty()).then_some(r.page_token);
        let (jobs, next) =
            blocking(&self.daemon.store, move |s| s.list(filter, size, token)).await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(|j| job_to(j, 0)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "CancelJob")?;
        let r = self.visible(&who, "name", &req.get_ref().name).await?;
        if r.state.is_terminal() {
            return Err(GrpcStatus::failed_precondition(format!(
                "jobs/{} has already ended ({})",
                r.id, r.state
            )));
        }
        let reason = format!("cancelled by token {}", who.token_id);
        self.daemon
            .cancel(r.id, reason)
            .await
            .map_err(daemon_status)?;
        let id = r.id;
        let rec = blocking(&self.daemon.store, move |s| s.get(id)).await?;
        Ok(Response::new(job_to(&rec, 0)))
    }

    type WatchJobStream = Events;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "WatchJob")?;
        let first = self.visible(&who, "name", &req.get_ref().name).await?;
        let (tx, rx) = mpsc::channel(16);
        let store = self.daemon.store.clone();
        let status = self.daemon.status.clone();
        let mut stop = self.shutdown.clone();
        tokio::spawn(async move {
            let id = first.id;
            let mut last: Option<JobRecord> = None;
            let mut rec = first;
            loop {
                let units = status
                    .borrow()
                    .sched
                    .queue
                    .running
                    .filter(|r| r.job == id.0)
                    .map_or(0, |r| r.units);
                let kind = match &last {
                    None => Some("state"),
                    Some(l) if l.state != rec.state => Some("state"),
                    Some(l) if l.progress_units != rec.progress_units || l.usage != rec.usage => {
                        Some("progress")
                    }
                    _ => None,
                };
                if let Some(kind) = kind {
                    let reason = if kind == "state" {
                        let s = store.clone();
                        tokio::task::spawn_blocking(move || s.transitions(id))
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .and_then(|t| t.last().map(|t| t.reason.clone()))
                            .unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let ev = pb::JobEvent {
                        job: Some(job_to(&rec, units)),
                        kind: kind.into(),
                        reason,
                    };
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                if rec.state.is_terminal() {
                    return;
                }
                last = Some(rec);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    // A graceful stop waits for open streams: end this one.
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.get(id)).await {
                    Ok(Ok(r)) => rec = r,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(GrpcStatus::internal(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type GetJobResultStream = Chunks;

    async fn get_job_result(
        &self,
        req: Request<pb::GetJobResultRequest>,
    ) -> Result<Response<Self::GetJobResultStream>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "GetJobResult")?;
        let r = self.visible(&who, "name", &req.get_ref().name).await?;
        if r.state != crate::jobs::JobState::Succeeded {
            return Err(GrpcStatus::failed_precondition(format!(
                "jobs/{} is {}: only a SUCCEEDED job has a result",
                r.id, r.state
            )));
        }
        let id = r.id;
        let (outputs, digest) = blocking(&self.daemon.store, move |s| s.result(id)).await?;
        let shapes: Vec<pb::Tensor> = outputs
            .iter()
            .map(|t| pb::Tensor {
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                data: Vec::new(),
            })
            .collect();
        let bytes: Vec<u8> = outputs.iter().flat_map(|t| t.le_bytes()).collect();
        let mut chunks = vec![pb::JobResultChunk {
            digest,
            outputs: shapes,
            data: Vec::new(),
        }];
        chunks.extend(bytes.chunks(RESULT_CHUNK).map(|c| pb::JobResultChunk {
            digest: String::new(),
            outputs: Vec::new(),
            data: c.to_vec(),
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn upload_tensor(
        &self,
        req: Request<Streaming<pb::UploadTensorRequest>>,
    ) -> Result<Response<pb::TensorRef>, GrpcStatus> {
        let who = caller(&req)?;
        who.require(&[Role::Owner, Role::Tenant], "UploadTensor")?;
        let mut stream = req.into_inner();
        let mut shape: Option<Vec<u64>> = None;
        let mut data: Vec<u8> = Vec::new();
        let cap = self.uploads.max_bytes();
        while let Some(msg) = stream.next().await {
            let m = msg?;
            if shape.is_none() {
                if m.shape.is_empty() {
                    return Err(invalid("shape", "the first message must carry the shape"));
                }
                shape = Some(m.shape);
            } else if !m.shape.is_empty() {
                return Err(invalid("shape", "only the first message carries the shape"));
            }
            if data.len() + m.data.len() > cap {
                return Err(GrpcStatus::resource_exhausted(format!(
                    "tensor over the {cap}-byte upload cap"
                )));
            }
            data.extend_from_slice(&m.data);
        }
        let shape = shape.ok_or_else(|| invalid("shape", "no message received"))?;
        let t = super::convert::tensor_from("tensor", pb::Tensor { shape, data })?;
        let bytes = t.bytes() as u64;
        let tenant = if who.role == Role::Tenant {
            who.tenant.clone()
        } else {
            None
        };
        let name = self.uploads.put(t, tenant)?;
        Ok(Response::new(pb::TensorRef { name, bytes }))
    }
}
