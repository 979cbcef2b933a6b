//! The domain operations every surface calls (the gRPC API today, the web page and MQTT
//! later): the status, the setpoint override, the mix, jobs and pushed readings. Requests are
//! validated here, once; the control loop gets them as `Command`s.

use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::config::validate_mix;
use crate::gpu::runner::GpuRunner;
use crate::jobs::{GroupCommit, JobId, JobRecord, JobSpec, JobStore, StoreError};
use crate::sched::allocator::Mix;
use crate::status::Status;
use crate::thermal::schedule::{Override, ScheduleError};
use crate::thermal::sensor::Reading;

/// The daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The schedule is invalid, or a command was rejected.
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// The control loop has stopped.
    #[error("the control loop has stopped")]
    Stopped,
    /// Mining could not start.
    #[error("mining: {0}")]
    Mining(String),
    /// The market device could not start (its key).
    #[error("market: {0}")]
    Market(String),
    /// The job store could not be opened or written.
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// A size or work cap was exceeded.
    #[error("{limit} exhausted: {msg}")]
    ResourceExhausted {
        /// The cap's name.
        limit: &'static str,
        /// By how much.
        msg: String,
    },
    /// A request was rejected; names the field.
    #[error("{field}: {msg}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong.
        msg: String,
    },
}

/// A command to the control loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Sets or clears the manual setpoint override.
    SetOverride {
        /// The override, or `None` to return to the schedule.
        manual: Option<Override>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), ScheduleError>>,
    },
    /// Changes the workload mix (already validated and stored).
    SetMix(Mix),
    /// Switches heating on or off (already stored); off holds the heat budget at 0 W.
    SwitchHeating(bool),
}

/// The store setting that keeps the owner's mix.
pub(crate) const MIX_SETTING: &str = "mix";

/// The store setting that keeps whether the owner switched heating off (`true`/`false`, JSON).
pub(crate) const HEATING_SETTING: &str = "heating";

/// A cloneable handle on a running daemon for its surfaces (the gRPC API): status, commands
/// and job submission.
#[derive(Clone)]
pub struct DaemonClient {
    /// The latest status snapshot.
    pub status: watch::Receiver<Status>,
    /// The job store.
    pub store: Arc<JobStore>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) gpu: Option<Arc<GpuRunner>>,
    pub(crate) wake_executor: Arc<tokio::sync::Notify>,
    pub(crate) commits: GroupCommit,
    pub(crate) clock: Clock,
    pub(crate) room_push: Option<Arc<watch::Sender<Option<Reading>>>>,
    pub(crate) limits: crate::gpu::job::JobLimits,
}

impl DaemonClient {
    /// Sets (or clears) the manual override.
    pub async fn set_override(&self, manual: Option<Override>) -> Result<(), DaemonError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SetOverride { manual, reply })
            .await
            .map_err(|_| DaemonError::Stopped)?;
        Ok(rx.await.map_err(|_| DaemonError::Stopped)??)
    }

    /// Sets the workload mix: stored durably first, then in force from the next tick.
    pub async fn set_mix(&self, mix: Mix) -> Result<(), DaemonError> {
        validate_mix(&mix).map_err(|(k, msg)| DaemonError::Invalid {
            field: k.to_string(),
            msg,
        })?;
        let json = serde_json::to_string(&mix).map_err(|e| DaemonError::Invalid {
            field: "mix".into(),
            msg: e.to_string(),
        })?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.set_setting(MIX_SETTING, &json))
            .await
            .map_err(|_| DaemonError::Stopped)??;
        tracing::info!(?mix, "mix changed");
        self.commands
            .send(Command::SetMix(mix))
            .await
            .map_err(|_| DaemonError::Stopped)
    }

    /// Switches heating on (`true`: the thermostat sets the budget) or off (`false`: the budget
    /// is 0 W, whatever the room). Stored durably first, so it survives a restart, then in force
    /// from the next tick; the status shows it as `heating_off`.
    pub async fn set_heating(&self, on: bool) -> Result<(), DaemonError> {
        let store = self.store.clone();
        let value = on.to_string();
        tokio::task::spawn_blocking(move || store.set_setting(HEATING_SETTING, &value))
            .await
            .map_err(|_| DaemonError::Stopped)??;
        tracing::info!(on, "heating switched");
        self.commands
            .send(Command::SwitchHeating(on))
            .await
            .map_err(|_| DaemonError::Stopped)
    }

    /// Checks a job against the GPU's limits and the kernel's own rules (arity, shapes, WGSL),
    /// stores it durably and wakes the executor. Returns once the job is on disk.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobId, DaemonError> {
        Ok(self.submit_record(spec).await?.id)
    }

    /// [`DaemonClient::submit`], answering with the stored record.
    pub async fn submit_record(&self, spec: JobSpec) -> Result<JobRecord, DaemonError> {
        spec.validate().map_err(|e| DaemonError::Invalid {
            field: e.field,
            msg: e.msg,
        })?;
        let (limits, max_binding) = match &self.gpu {
            Some(r) => (
                r.config().limits.clone(),
                r.status().adapter.max_storage_buffer_binding_size,
            ),
            None => (self.limits.clone(), 128 << 20),
        };
        spec.job.plan(&limits, max_binding).map_err(|e| match e {
            crate::gpu::job::JobError::Invalid { field, msg } => DaemonError::Invalid {
                field: format!("job.{field}"),
                msg,
            },
            crate::gpu::job::JobError::Limit { limit, msg } => {
                DaemonError::ResourceExhausted { limit, msg }
            }
            e => DaemonError::Invalid {
                field: "job".into(),
                msg: e.to_string(),
            },
        })?;
        Ok(self.commits.submit(spec).await?)
    }

    /// A room reading from an external thermostat (`sensors.room.kind = "pushed"`), taken at
    /// `read_unix_s` (unix seconds; `None` = now).
    pub fn push_room_reading(
        &self,
        celsius: f64,
        read_unix_s: Option<f64>,
    ) -> Result<(), DaemonError> {
        let Some(tx) = &self.room_push else {
            return Err(DaemonError::Invalid {
                field: "sensors.room.kind".into(),
                msg: "the room sensor is not `pushed`; readings cannot be reported".into(),
            });
        };
        let wall = crate::jobs::store::now_unix_s();
        let age = read_unix_s.map_or(0.0, |t| (wall - t).max(0.0));
        tx.send_replace(Some(Reading {
            celsius,
            at_s: self.clock.now_s() - age,
        }));
        Ok(())
    }

    /// Cancels a job that has not ended; a running one stops within the executor's poll.
    pub async fn cancel(&self, id: JobId, reason: String) -> Result<(), DaemonError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.transition(id, crate::jobs::JobState::Cancelled, &reason)
        })
        .await
        .map_err(|_| DaemonError::Stopped)??;
        self.wake_executor.notify_one();
        Ok(())
    }
}
