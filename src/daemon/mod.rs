//! Wires the daemon's tasks together and handles shutdown.
//!
//! Tasks and the channels between them (data flows one way):
//! - **room** (simulated room only): advances the RC model with the heat actually applied and
//!   publishes the true temperatures (`watch<RoomTruth>`).
//! - **sensor pollers**: read the room and outdoor sources off the control loop's path (file I/O
//!   runs on the blocking pool) and publish the latest reading (`watch<Option<Reading>>`).
//! - **control**: each tick takes the latest readings, runs safety, the schedule and the
//!   controller, turns the heat budget into one [`PowerTarget`] per workload (the scheduler
//!   stage), each with a dead-man deadline, and publishes them with a [`Status`] snapshot. It
//!   never waits on I/O.
//! - **followers** (one per workload: ASIC, GPU, resistive element): hand the workload its
//!   latest target every tick; a stalled control loop leaves them with an expired deadline, so
//!   every workload drops to 0 W by itself.
//! - **job executor** ([`crate::jobs::executor`]): moves jobs between the store and the GPU
//!   runner and publishes the queue summary the allocator reads.
//!
//! The simulated room is heated by what the workloads report they draw.
//!
//! [`spawn`] wires them in small steps, one file each: `store` (the job store), `engines` (the
//! workloads and their followers), `market` (the market glue), `sensors` (the room and the
//! pollers), `control_loop` (the tick) and `tasks` (what the tasks share). Surfaces drive the daemon through
//! [`crate::ops::DaemonClient`] and read [`crate::status::Status`].
//!
//! Architecture Invariant: nothing in the library imports this module; only the binary does.

mod control_loop;
mod engines;
mod market;
mod sensors;
mod store;
mod tasks;

use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::gpu::runner::GpuRunner;
use crate::jobs::executor::{self, ExecutorConfig, ExecutorHandle};
use crate::jobs::{GroupCommit, JobId, JobSpec, JobStore, StoreError};
use crate::ops::{Command, DaemonClient, DaemonError};
use crate::power::PowerTarget;
use crate::sched::allocator::Mix;
use crate::sched::scheduler::{SchedSettings, Scheduler, Targets};
use crate::status::Status;
use crate::thermal::controller::Controller;
use crate::thermal::estimator::ModelEstimator;
use crate::thermal::safety::{ChipTemperatures, Supervisor};
use crate::thermal::schedule::{Override, Schedule, Setpoints};
use crate::thermal::sensor::Reading;
use control_loop::ControlLoop;
use engines::Mining;
use tasks::Tasks;

/// A running daemon.
pub struct DaemonHandle {
    /// The latest status snapshot.
    pub status: watch::Receiver<Status>,
    /// The latest heat budget target.
    pub target: watch::Receiver<PowerTarget>,
    /// The latest per-workload targets.
    pub targets: watch::Receiver<Targets>,
    /// The job store.
    pub store: Arc<JobStore>,
    /// Where engines report chip temperatures.
    pub chips: ChipTemperatures,
    /// The daemon's clock.
    pub clock: Clock,
    commands: mpsc::Sender<Command>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    mining: Option<Mining>,
    /// The GPU runner, if the GPU is enabled and opened.
    pub gpu: Option<Arc<GpuRunner>>,
    executor: ExecutorHandle,
    commits: GroupCommit,
    room_push: Option<Arc<watch::Sender<Option<Reading>>>>,
    job_limits: crate::gpu::job::JobLimits,
}

impl DaemonHandle {
    /// A cloneable client of this daemon.
    pub fn client(&self) -> DaemonClient {
        DaemonClient {
            status: self.status.clone(),
            store: self.store.clone(),
            commands: self.commands.clone(),
            gpu: self.gpu.clone(),
            wake_executor: self.executor.waker(),
            commits: self.commits.clone(),
            clock: self.clock.clone(),
            room_push: self.room_push.clone(),
            limits: self.job_limits.clone(),
        }
    }

    /// Sets (or clears) the manual override.
    pub async fn set_override(&self, manual: Option<Override>) -> Result<(), DaemonError> {
        self.client().set_override(manual).await
    }

    /// Sets the workload mix: stored durably first, then in force from the next tick.
    pub async fn set_mix(&self, mix: Mix) -> Result<(), DaemonError> {
        self.client().set_mix(mix).await
    }

    /// Checks a job, stores it durably and wakes the executor. Returns once the job is on disk.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobId, DaemonError> {
        self.client().submit(spec).await
    }

    /// Stops every task; the last published target is 0 W. The running job is checkpointed
    /// and PAUSED, the accounts written.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.executor.join().await;
        if let Some(mining) = self.mining {
            mining.shutdown().await;
        }
    }
}

/// Starts the daemon's tasks on the current tokio runtime.
pub async fn spawn(cfg: Config, clock: Clock) -> Result<DaemonHandle, DaemonError> {
    let schedule = Schedule::new(&cfg.thermostat, clock.epoch_weekday())?;
    let (store, kept) = store::open(&cfg).await?;
    let store::Kept {
        accounts,
        mix,
        heating,
    } = kept;
    let (target_tx, target_rx) = watch::channel(PowerTarget::zero());
    let (targets_tx, targets_rx) = watch::channel(Targets::default());
    let (accounts_tx, accounts_rx) = watch::channel(accounts.clone());
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let chips = ChipTemperatures::default();
    let mut tasks = Tasks {
        clock: clock.clone(),
        tick: clock.real(cfg.control.tick_seconds),
        shutdown: shutdown_rx,
        handles: Vec::new(),
    };
    let engines = engines::start(&cfg, &chips, &targets_rx, &mut tasks).await?;
    let market = market::join(&cfg, engines.gpu.as_ref(), &mut tasks)?;
    let executor = executor::spawn(
        store.clone(),
        engines.gpu.clone(),
        accounts_rx,
        ExecutorConfig::default(),
        tasks.shutdown.clone(),
    );
    let sensors = sensors::start(&cfg, &engines.workloads, &mut tasks)?;
    let settings = sched_settings(&cfg, market.is_some());
    let estimator = ModelEstimator::new(cfg.model.model(), cfg.model.estimate_online);
    let control = ControlLoop {
        controller: Controller::new(cfg.controller.clone(), cfg.heater.max_watts, estimator),
        supervisor: Supervisor::new(cfg.safety.clone()),
        setpoints: Setpoints::new(schedule),
        scheduler: Scheduler::new(engines.workloads, mix, accounts, settings),
        cfg: cfg.clone(),
        clock: clock.clone(),
        chips: chips.clone(),
        room_rx: sensors.room_rx,
        outdoor_rx: sensors.outdoor_rx,
        truth_rx: sensors.truth_rx,
        target_tx,
        targets_tx,
        accounts_tx,
        status_tx,
        mining_rx: engines.mining_rx,
        fleet_rx: engines.fleet_rx,
        gpu_rx: engines.gpu_rx,
        queue_rx: executor.summary.clone(),
        market,
        last_outdoor: None,
        heating,
    };
    let shutdown = tasks.shutdown.clone();
    tasks.spawn(control.run(cmd_rx, shutdown));
    let commits = start_commits(&store, &executor)?;
    Ok(DaemonHandle {
        status: status_rx,
        target: target_rx,
        targets: targets_rx,
        store,
        chips,
        clock,
        commands: cmd_tx,
        shutdown: shutdown_tx,
        tasks: tasks.handles,
        mining: engines.mining,
        gpu: engines.gpu,
        executor,
        commits,
        room_push: sensors.room_push,
        job_limits: cfg.gpu.runner.limits.clone(),
    })
}

/// The scheduler's settings from the config; market work is priced only when on a market.
fn sched_settings(cfg: &Config, on_market: bool) -> SchedSettings {
    SchedSettings {
        hysteresis: cfg.sched.hysteresis,
        asic_value_per_joule: cfg.sched.asic_value_per_joule(),
        value_per_share: cfg.sched.value_per_share(),
        deadline_margin: cfg.sched.deadline_margin,
        max_gap_seconds: f64::from(cfg.safety.deadman_ticks.max(3)) * cfg.control.tick_seconds,
        market_value_per_joule: market::value_per_joule(cfg, on_market),
    }
}

/// Starts the group commit of job submissions; it wakes the executor after each commit.
fn start_commits(
    store: &Arc<JobStore>,
    executor: &ExecutorHandle,
) -> Result<GroupCommit, DaemonError> {
    let waker = executor.waker();
    let commits = GroupCommit::start(store.clone(), move || waker.notify_one()).map_err(|e| {
        StoreError::Io {
            path: "hearth-commit thread".into(),
            source: e,
        }
    })?;
    Ok(commits)
}
