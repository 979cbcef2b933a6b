//! The `Control` service: status, setpoint, mix, pushed room readings.

use std::pin::Pin;

use tokio_stream::{wrappers::WatchStream, Stream, StreamExt};
use tonic::{Request, Response, Status as GrpcStatus};

use super::auth::{Caller, Role};
use super::convert::{invalid, mix_from, mix_to, status_to};
use super::pb;
use crate::ops::{DaemonClient, DaemonError};
use crate::thermal::schedule::Override;

/// The Control service over a running daemon.
pub struct ControlApi {
    /// The daemon.
    pub daemon: DaemonClient,
    /// Turns true when the server stops taking calls; open streams end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The caller the auth interceptor attached.
pub(super) fn caller<T>(req: &Request<T>) -> Result<Caller, GrpcStatus> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| GrpcStatus::unauthenticated("no caller"))
}

/// A daemon error as a gRPC status.
pub(super) fn daemon_status(e: DaemonError) -> GrpcStatus {
    match e {
        DaemonError::Invalid { field, msg } => invalid(&field, msg),
        e @ DaemonError::ResourceExhausted { .. } => GrpcStatus::resource_exhausted(e.to_string()),
        DaemonError::Schedule(e) => invalid("celsius", e),
        DaemonError::Store(e) => super::convert::store_status(e),
        DaemonError::Stopped => GrpcStatus::unavailable("the daemon is stopping"),
        e => GrpcStatus::internal(e.to_string()),
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::Status, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl pb::control_server::Control for ControlApi {
    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, GrpcStatus> {
        caller(&req)?.require(&[Role::Owner, Role::Viewer], "GetStatus")?;
        let s = self.daemon.status.borrow().clone();
        Ok(Response::new(status_to(&s)))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        req: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, GrpcStatus> {
        caller(&req)?.require(&[Role::Owner, Role::Viewer], "WatchStatus")?;
        let mut snapshots = WatchStream::new(self.daemon.status.clone());
        let mut stop = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // One snapshot per tick until the client goes or the server stops (a graceful stop
        // waits for open streams, so they must end).
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    s = snapshots.next() => match s {
                        Some(s) => {
                            if tx.send(Ok(status_to(&s))).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn set_setpoint(
        &self,
        req: Request<pb::SetSetpointRequest>,
    ) -> Result<Response<pb::SetSetpointResponse>, GrpcStatus> {
        caller(&req)?.require(&[Role::Owner], "SetSetpoint")?;
        let r = req.into_inner();
        let manual = if r.clear {
            None
        } else {
            if !(r.celsius.is_finite() && (5.0..=30.0).contains(&r.celsius)) {
                return Err(invalid(
                    "celsius",
                    format!("must be between 5 and 30 °C, got {}", r.celsius),
                ));
            }
            if !(r.hold_minutes.is_finite() && r.hold_minutes >= 0.0) {
                return Err(invalid(
                    "hold_minutes",
                    format!(
                        "must be 0 (until the next scheduled change) or more, got {}",
                        r.hold_minutes
                    ),
                ));
            }
            let now = self.daemon.status.borrow().at_s;
            Some(Override {
                celsius: r.celsius,
                until_s: (r.hold_minutes > 0.0).then_some(now + 60.0 * r.hold_minutes),
            })
        };
        self.daemon
            .set_override(manual)
            .await
            .map_err(daemon_status)?;
        let sp = manual.map_or_else(
            || self.daemon.status.borrow().setpoint_celsius,
            |m| m.celsius,
        );
        Ok(Response::new(pb::SetSetpointResponse {
            setpoint_celsius: sp,
        }))
    }

    async fn set_mix(
        &self,
        req: Request<pb::SetMixRequest>,
    ) -> Result<Response<pb::Mix>, GrpcStatus> {
        caller(&req)?.require(&[Role::Owner], "SetMix")?;
        let mix = mix_from(req.into_inner().mix)?;
        self.daemon.set_mix(mix).await.map_err(daemon_status)?;
        Ok(Response::new(mix_to(mix)))
    }

    async fn report_temperature(
        &self,
        req: Request<pb::ReportTemperatureRequest>,
    ) -> Result<Response<pb::ReportTemperatureResponse>, GrpcStatus> {
        caller(&req)?.require(&[Role::Owner], "ReportTemperature")?;
        let r = req.into_inner();
        if !(r.celsius.is_finite() && (-40.0..=60.0).contains(&r.celsius)) {
            return Err(invalid(
                "celsius",
                format!("must be between -40 and 60 °C, got {}", r.celsius),
            ));
        }
        self.daemon
            .push_room_reading(r.celsius, r.read_time.as_ref().map(super::convert::unix_s))
            .map_err(|e| GrpcStatus::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::ReportTemperatureResponse {}))
    }
}
