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

use serde::Serialize;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::{format_clock, Clock};
use crate::config::{validate_mix, Config, SourceConfig};
use crate::gpu::device::Gpu;
use crate::gpu::runner::{GpuRunner, RunnerStatus};
use crate::jobs::executor::{self, ExecutorConfig, ExecutorHandle};
use crate::jobs::{GroupCommit, JobId, JobRecord, JobSpec, JobStore, StoreError};
use crate::market::{
    self,
    device::{Compute, Demand, MarketStatus},
    receipt::DeviceKey,
};
use crate::mining::engine::{MiningEngine, MiningStatus};
use crate::mining::stratum::client::{ClientConfig, Endpoint};
use crate::mining::stratum::pool::LocalPool;
use crate::power::PowerTarget;
use crate::sched::accounting::Accounts;
use crate::sched::allocator::Mix;
use crate::sched::scheduler::{
    QueueSummary, SchedSettings, SchedStatus, Scheduler, Targets, Workloads,
};
use crate::sched::workload::{ResistiveElement, Workload};
use crate::thermal::controller::{ControlInput, ControlOutput, Controller};
use crate::thermal::estimator::{ModelEstimator, RoomModel};
use crate::thermal::room::{ua_factor_at, Room};
use crate::thermal::safety::{ChipTemperatures, SafetyInputs, Supervisor, Trip};
use crate::thermal::schedule::{NextSetpoint, Override, Schedule, ScheduleError, Setpoints};
use crate::thermal::sensor::{
    FileSource, FixedSource, Reading, RoomTruth, SensorError, SensorNoise, SimulatedPoint,
    SimulatedSource, TemperatureSource,
};

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
pub enum Command {
    /// Sets or clears the manual setpoint override.
    SetOverride {
        /// The override, or `None` to return to the schedule.
        manual: Option<Override>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), ScheduleError>>,
    },
    /// Changes the workload mix (already validated and stored).
    SetMix(Mix),
}

/// The snapshot published every tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Ticks since start.
    pub tick: u64,
    /// Clock time, seconds since local midnight of the start day.
    pub at_s: f64,
    /// The latest room reading, °C.
    pub room_celsius: Option<f64>,
    /// Age of that reading, seconds.
    pub room_reading_age_s: Option<f64>,
    /// The outdoor temperature in use, °C.
    pub outdoor_celsius: Option<f64>,
    /// The setpoint in force, °C.
    pub setpoint_celsius: f64,
    /// The next scheduled change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_setpoint_celsius: Option<f64>,
    /// When it happens, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_setpoint_at_s: Option<f64>,
    /// A manual override is in force.
    pub override_active: bool,
    /// The heat budget, W (0 while tripped).
    pub budget_watts: f64,
    /// The controller's terms.
    pub control: ControlOutput,
    /// The room model in use.
    pub model: Option<RoomModel>,
    /// Whether that model was estimated online.
    pub model_estimated: bool,
    /// Latched safety trips.
    pub trips: Vec<Trip>,
    /// The simulated room's true temperature, when simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated_room_celsius: Option<f64>,
    /// Mining: pool, difficulty, hashrate, shares, power.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mining: Option<MiningStatus>,
    /// The GPU: adapter (hardware or software), target, duty, modelled power, jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuState>,
    /// The budget split: mix, targets, unmet watts, actual power, queue and accounts.
    pub sched: SchedStatus,
    /// The compute marketplace, when this heater has joined one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<MarketStatus>,
    /// Wall-clock compute time of the control tick that made this snapshot, seconds.
    pub tick_seconds_spent: f64,
}

/// The GPU as the status snapshot shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GpuState {
    /// Open and running.
    Ready(Box<RunnerStatus>),
    /// Enabled but could not be opened; the heater runs without it.
    Unavailable {
        /// Why.
        reason: String,
    },
}

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
    mining: Option<(Arc<MiningEngine>, Option<LocalPool>)>,
    /// The GPU runner, if the GPU is enabled and opened.
    pub gpu: Option<Arc<GpuRunner>>,
    executor: ExecutorHandle,
    commits: GroupCommit,
    room_push: Option<Arc<watch::Sender<Option<Reading>>>>,
    job_limits: crate::gpu::job::JobLimits,
}

/// A cloneable handle on a running daemon for its surfaces (the gRPC API): status, commands
/// and job submission.
#[derive(Clone)]
pub struct DaemonClient {
    /// The latest status snapshot.
    pub status: watch::Receiver<Status>,
    /// The job store.
    pub store: Arc<JobStore>,
    commands: mpsc::Sender<Command>,
    gpu: Option<Arc<GpuRunner>>,
    wake_executor: Arc<tokio::sync::Notify>,
    commits: GroupCommit,
    clock: Clock,
    room_push: Option<Arc<watch::Sender<Option<Reading>>>>,
    limits: crate::gpu::job::JobLimits,
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
        if let Some((engine, pool)) = self.mining {
            if let Ok(engine) = Arc::try_unwrap(engine) {
                engine.shutdown().await;
            }
            if let Some(pool) = pool {
                pool.shutdown().await;
            }
        }
    }
}

/// The store setting that keeps the owner's mix.
const MIX_SETTING: &str = "mix";

/// A source shared with the blocking pool.
type SharedSource = Arc<Mutex<Box<dyn TemperatureSource>>>;

/// The source a sensor config describes; `None` for a simulated source without a simulated room.
fn source_for(
    cfg: &SourceConfig,
    truth: Option<&watch::Receiver<RoomTruth>>,
    seed: u64,
    point: SimulatedPoint,
) -> Option<Box<dyn TemperatureSource>> {
    match cfg {
        SourceConfig::Simulated {
            noise_celsius,
            quantum_celsius,
        } => {
            let truth = truth?.clone();
            let noise = SensorNoise::new(*noise_celsius, *quantum_celsius, seed);
            Some(Box::new(SimulatedSource::new(truth, point, noise)))
        }
        SourceConfig::File { path, unit } => Some(Box::new(FileSource::new(path.clone(), *unit))),
        SourceConfig::Fixed { celsius } => Some(Box::new(FixedSource(*celsius))),
        SourceConfig::Pushed => None,
    }
}

/// Starts the local pool (unless pools are configured) and the mining engine.
async fn start_mining(
    cfg: &Config,
    chips: &ChipTemperatures,
) -> Result<(MiningEngine, Option<LocalPool>), DaemonError> {
    let m = &cfg.mining;
    let (pools, local) = if m.pools.is_empty() {
        let pool = LocalPool::start(m.local_pool.clone(), ([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| DaemonError::Mining(e.to_string()))?;
        let ep = Endpoint {
            url: format!("stratum+tcp://{}", pool.addr()),
            user: "hearth".into(),
            password: String::new(),
            tls_ca: None,
        };
        (vec![ep], Some(pool))
    } else {
        (m.pools.clone(), None)
    };
    let client = ClientConfig {
        pools,
        ..ClientConfig::default()
    };
    if m.asic.kernel.is_none() {
        // The kernel is chosen by timing each one (about 0.1 s): do it on the blocking pool, so
        // that the engine's start below finds the choice made.
        let _ = tokio::task::spawn_blocking(crate::mining::sha256d::Kernel::best).await;
    }
    let engine = MiningEngine::start(m.asic.clone(), client, Some(chips.clone()))
        .map_err(|e| DaemonError::Mining(e.to_string()))?;
    Ok((engine, local))
}

/// Opens the job store in the configured data dir (on the blocking pool), re-queues jobs a
/// crash left RUNNING, and loads the stored accounts and mix.
async fn open_store(cfg: &Config) -> Result<(Arc<JobStore>, Accounts, Mix), DaemonError> {
    let dir = cfg.jobs.resolved_data_dir()?;
    let limits = cfg.jobs.limits.clone();
    let sync = cfg.jobs.sync;
    let default_mix = cfg.sched.mix;
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let store = JobStore::open_with(&dir, limits, sync)?;
        let requeued = store.recover()?;
        let accounts = executor::load_accounts(&store)?;
        let mix = match store.setting(MIX_SETTING)? {
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored mix unreadable; using the configured one");
                default_mix
            }),
            None => default_mix,
        };
        tracing::info!(data_dir = %dir.display(), live_jobs = requeued.len(), "job store open");
        Ok((Arc::new(store), accounts, mix))
    })
    .await
    .map_err(|_| DaemonError::Stopped)?
}

/// Starts the daemon's tasks on the current tokio runtime.
pub async fn spawn(cfg: Config, clock: Clock) -> Result<DaemonHandle, DaemonError> {
    let schedule = Schedule::new(&cfg.thermostat, clock.epoch_weekday())?;
    let (store, accounts, mix) = open_store(&cfg).await?;
    let (target_tx, target_rx) = watch::channel(PowerTarget::zero());
    let (targets_tx, targets_rx) = watch::channel(Targets::default());
    let (accounts_tx, accounts_rx) = watch::channel(accounts.clone());
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let chips = ChipTemperatures::default();
    let tick_real = clock.real(cfg.control.tick_seconds);
    let mut tasks = Vec::new();
    let mut workloads = Workloads::default();
    let follower = |pick: fn(&Targets) -> PowerTarget| Follower {
        clock: clock.clone(),
        targets: targets_rx.clone(),
        pick,
        period: tick_real,
        shutdown: shutdown_rx.clone(),
    };

    let mut mining = None;
    let mut mining_rx = None;
    if cfg.mining.enabled {
        let (engine, pool) = start_mining(&cfg, &chips).await?;
        let engine = Arc::new(engine);
        let (tx, rx) = watch::channel(engine.status(0.0));
        let e = engine.clone();
        tasks.push(tokio::spawn(follower(|t| t.asic).run(
            engine.clone(),
            move |asked| {
                tx.send_replace(e.status(asked));
            },
        )));
        workloads.asic = Some(engine.clone());
        mining = Some((engine, pool));
        mining_rx = Some(rx);
    }

    let (gpu, gpu_rx) = if cfg.gpu.enabled {
        let (runner, state) = start_gpu(&cfg).await;
        let (tx, rx) = watch::channel(state);
        if let Some(r) = &runner {
            let status_of = r.clone();
            tasks.push(tokio::spawn(follower(|t| t.gpu).run(
                r.clone(),
                move |_| {
                    tx.send_replace(GpuState::Ready(Box::new(status_of.status())));
                },
            )));
            workloads.gpu = Some(r.clone());
        }
        (runner, Some(rx))
    } else {
        (None, None)
    };

    if cfg.heater.resistive.max_watts > 0.0 {
        let element = Arc::new(ResistiveElement::new(cfg.heater.resistive.max_watts));
        tasks.push(tokio::spawn(
            follower(|t| t.resistive).run(element.clone(), |_| {}),
        ));
        workloads.resistive = Some(element);
    }

    let market = match (&gpu, cfg.market.enabled) {
        (Some(runner), true) => {
            let key_path = cfg.market.key_path(&cfg.jobs.resolved_data_dir()?);
            let key = DeviceKey::load_or_create(&key_path)
                .map_err(|e| DaemonError::Market(e.to_string()))?;
            tracing::info!(device = %key.device_id(), url = %cfg.market.url, "joining the market");
            let (demand_tx, demand_rx) = watch::channel(Demand::default());
            let compute: Arc<dyn Compute> = runner.clone();
            let handle = market::device::spawn(
                cfg.market.device(),
                key,
                compute,
                demand_rx,
                shutdown_rx.clone(),
            );
            let status = handle.status.clone();
            tasks.push(tokio::spawn(handle.join()));
            Some((demand_tx, status))
        }
        (None, true) => {
            tracing::error!("the market needs the GPU, which is unavailable; not joining");
            None
        }
        _ => None,
    };

    let executor = executor::spawn(
        store.clone(),
        gpu.clone(),
        accounts_rx,
        ExecutorConfig::default(),
        shutdown_rx.clone(),
    );

    let truth_rx = if cfg.uses_simulated_room() {
        let sim = &cfg.simulation;
        let now = clock.now_s();
        let outdoor = sim.outdoor.celsius_at(now);
        let (truth_tx, truth_rx) = watch::channel(RoomTruth {
            room_celsius: sim.initial_celsius,
            outdoor_celsius: outdoor,
            at_s: now,
        });
        let room = Room::new(sim.room.clone(), sim.initial_celsius);
        tasks.push(tokio::spawn(room_task(
            room,
            cfg.clone(),
            clock.clone(),
            workloads.clone(),
            truth_tx,
            shutdown_rx.clone(),
        )));
        Some(truth_rx)
    } else {
        None
    };

    let mut poller = |src_cfg: &SourceConfig, point: SimulatedPoint, seed: u64| {
        let (tx, rx) = watch::channel(None);
        if let Some(src) = source_for(src_cfg, truth_rx.as_ref(), seed, point) {
            let shared: SharedSource = Arc::new(Mutex::new(src));
            tasks.push(tokio::spawn(sensor_task(
                shared,
                clock.clone(),
                tick_real,
                tx,
                shutdown_rx.clone(),
            )));
        }
        rx
    };
    let seed = cfg.simulation.seed;
    let (room_push, room_rx) = if matches!(cfg.sensors.room, SourceConfig::Pushed) {
        let (tx, rx) = watch::channel(None);
        (Some(Arc::new(tx)), rx)
    } else {
        (None, poller(&cfg.sensors.room, SimulatedPoint::Room, seed))
    };
    let outdoor_rx = poller(&cfg.sensors.outdoor, SimulatedPoint::Outdoor, seed + 1);

    let estimator = ModelEstimator::new(cfg.model.model(), cfg.model.estimate_online);
    let settings = SchedSettings {
        hysteresis: cfg.sched.hysteresis,
        asic_value_per_joule: cfg.sched.asic_value_per_joule(),
        value_per_share: cfg.sched.value_per_share(),
        deadline_margin: cfg.sched.deadline_margin,
        max_gap_seconds: f64::from(cfg.safety.deadman_ticks.max(3)) * cfg.control.tick_seconds,
        market_value_per_joule: market
            .is_some()
            .then(|| cfg.market.price_floor / cfg.gpu.runner.max_watts.max(1.0)),
    };
    let control = ControlLoop {
        controller: Controller::new(cfg.controller.clone(), cfg.heater.max_watts, estimator),
        supervisor: Supervisor::new(cfg.safety.clone()),
        setpoints: Setpoints::new(schedule),
        scheduler: Scheduler::new(workloads, mix, accounts, settings),
        cfg: cfg.clone(),
        clock: clock.clone(),
        chips: chips.clone(),
        room_rx,
        outdoor_rx,
        truth_rx,
        target_tx,
        targets_tx,
        accounts_tx,
        status_tx,
        mining_rx,
        gpu_rx,
        queue_rx: executor.summary.clone(),
        market,
        last_outdoor: None,
    };
    tasks.push(tokio::spawn(control.run(cmd_rx, shutdown_rx)));
    let waker = executor.waker();
    let commits = GroupCommit::start(store.clone(), move || waker.notify_one()).map_err(|e| {
        StoreError::Io {
            path: "hearth-commit thread".into(),
            source: e,
        }
    })?;
    Ok(DaemonHandle {
        status: status_rx,
        target: target_rx,
        targets: targets_rx,
        store,
        chips,
        clock,
        commands: cmd_tx,
        shutdown: shutdown_tx,
        tasks,
        mining,
        gpu,
        executor,
        commits,
        room_push,
        job_limits: cfg.gpu.runner.limits.clone(),
    })
}

/// Opens the GPU (on a blocking thread: adapter enumeration and pipeline builds take a while).
/// A heater without its GPU still heats: a failure is logged and shown, not fatal.
async fn start_gpu(cfg: &Config) -> (Option<Arc<GpuRunner>>, GpuState) {
    let g = cfg.gpu.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let gpu = Gpu::open(&g.adapter).map_err(|e| e.to_string())?;
        GpuRunner::start(gpu, g.runner).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("GPU start-up panicked: {e}")));
    match opened {
        Ok(r) => {
            let state = GpuState::Ready(Box::new(r.status()));
            (Some(Arc::new(r)), state)
        }
        Err(reason) => {
            tracing::error!(%reason, "GPU unavailable; running without it");
            (None, GpuState::Unavailable { reason })
        }
    }
}

/// Hands one workload its target every tick, with the target's dead-man deadline: if the
/// control loop stalls, the workload switches off by itself.
struct Follower {
    clock: Clock,
    targets: watch::Receiver<Targets>,
    pick: fn(&Targets) -> PowerTarget,
    period: std::time::Duration,
    shutdown: watch::Receiver<bool>,
}

impl Follower {
    /// Runs until shutdown, then sets the workload to 0 W; `after` gets the watts asked.
    async fn run(self, w: Arc<dyn Workload>, mut after: impl FnMut(f64) + Send) {
        let Follower {
            clock,
            targets,
            pick,
            period,
            shutdown,
        } = self;
        each_tick(period, shutdown, || {
            let t = pick(&targets.borrow());
            let now = clock.now_s();
            let watts = t.watts_at(now);
            w.set_target(watts, clock.real(t.valid_until_s - now));
            after(watts);
        })
        .await;
        w.set_target(0.0, std::time::Duration::ZERO);
        after(0.0);
    }
}

/// Runs `f` every `period` until shutdown.
async fn each_tick(
    period: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
    mut f: impl FnMut(),
) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => break,
        }
        f();
    }
}

/// The power the workloads report, W: the heat going into the room.
fn heat_watts(w: &Workloads) -> f64 {
    [&w.asic, &w.gpu, &w.resistive]
        .into_iter()
        .flatten()
        .map(|x| x.actual_watts().0)
        .sum()
}

async fn room_task(
    mut room: Room,
    cfg: Config,
    clock: Clock,
    workloads: Workloads,
    truth_tx: watch::Sender<RoomTruth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sim = cfg.simulation;
    let mut interval = tokio::time::interval(clock.real(cfg.control.tick_seconds));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = clock.now_s();
    let mut last_watts = heat_watts(&workloads);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now_s();
        // Every watt drawn ends up in the room: the heat over the interval is the mean of what
        // the workloads reported at its ends.
        let watts = heat_watts(&workloads);
        room.step(
            now - last,
            0.5 * (watts + last_watts),
            sim.outdoor.celsius_at(last),
            ua_factor_at(&sim.disturbances, last),
        );
        last = now;
        last_watts = watts;
        truth_tx.send_replace(RoomTruth {
            room_celsius: room.air_celsius(),
            outdoor_celsius: sim.outdoor.celsius_at(now),
            at_s: now,
        });
    }
}

async fn sensor_task(
    source: SharedSource,
    clock: Clock,
    period: std::time::Duration,
    tx: watch::Sender<Option<Reading>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = source.lock().map(|s| s.name()).unwrap_or_default();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now_s();
        let src = source.clone();
        let read = tokio::task::spawn_blocking(move || match src.lock() {
            Ok(mut s) => s.read(now),
            Err(_) => Err(SensorError::NoData),
        })
        .await;
        match read {
            Ok(Ok(r)) => {
                if failing {
                    tracing::info!(sensor = %name, "sensor readings are back");
                    failing = false;
                }
                tx.send_replace(Some(r));
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(sensor = %name, error = %e, "sensor read failed; keeping the last reading, which will go stale");
                    failing = true;
                }
            }
            Err(e) => tracing::error!(sensor = %name, error = %e, "sensor read task failed"),
        }
    }
}

/// The control loop's state: owned by its task alone.
struct ControlLoop {
    controller: Controller,
    supervisor: Supervisor,
    setpoints: Setpoints,
    scheduler: Scheduler,
    cfg: Config,
    clock: Clock,
    chips: ChipTemperatures,
    room_rx: watch::Receiver<Option<Reading>>,
    outdoor_rx: watch::Receiver<Option<Reading>>,
    truth_rx: Option<watch::Receiver<RoomTruth>>,
    target_tx: watch::Sender<PowerTarget>,
    targets_tx: watch::Sender<Targets>,
    accounts_tx: watch::Sender<Accounts>,
    status_tx: watch::Sender<Status>,
    mining_rx: Option<watch::Receiver<MiningStatus>>,
    gpu_rx: Option<watch::Receiver<GpuState>>,
    queue_rx: watch::Receiver<QueueSummary>,
    /// The market task's demand input and status, when on a market.
    market: Option<(watch::Sender<Demand>, watch::Receiver<MarketStatus>)>,
    last_outdoor: Option<f64>,
}

impl ControlLoop {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let tick_s = self.cfg.control.tick_seconds;
        let mut interval = tokio::time::interval(self.clock.real(tick_s));
        // A late tick is taken at once and counted as late: the stall detector must see it.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let log_every = u64::from(
            self.cfg
                .control
                .log_every_ticks
                .max(self.clock.speed().round() as u32),
        );
        let mut last_tick: Option<f64> = None;
        let mut tick: u64 = 0;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                Some(cmd) = commands.recv() => { self.handle(cmd); continue; }
                _ = shutdown.changed() => break,
            }
            let now = self.clock.now_s();
            let since = last_tick.map_or(tick_s, |l| now - l);
            last_tick = Some(now);
            let started = std::time::Instant::now();
            let mut status = self.tick(tick, now, since);
            status.tick_seconds_spent = started.elapsed().as_secs_f64();
            if tick.is_multiple_of(log_every) {
                tracing::info!(
                    time = %format_clock(now),
                    room_celsius = %status.room_celsius.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
                    setpoint_celsius = status.setpoint_celsius,
                    outdoor_celsius = %status.outdoor_celsius.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
                    budget_watts = %format!("{:.0}", status.budget_watts),
                    recovering = status.control.recovering,
                    trips = status.trips.len(),
                    "tick"
                );
                if let Some(m) = &status.mining {
                    tracing::info!(
                        pool = m.pool.as_deref().unwrap_or("-"),
                        mhs = %format!("{:.2}", m.hashes_per_second / 1e6),
                        difficulty = m.difficulty,
                        asic_watts = %format!("{:.0}", m.power_watts),
                        accepted = m.shares.accepted,
                        rejected = m.shares.rejected.values().sum::<u64>(),
                        stale = m.shares.stale,
                        "mining"
                    );
                }
                let a = &status.sched.allocation;
                let p = &status.sched.actual;
                tracing::info!(
                    mix = %status.sched.mix.map(|m| format!("{m:?}")).unwrap_or_default(),
                    asic_watts = %format!("{:.0}/{:.0}", p.asic, a.asic_watts),
                    gpu_watts = %format!("{:.0}/{:.0}", p.gpu, a.gpu_watts),
                    resistive_watts = %format!("{:.0}/{:.0}", p.resistive, a.resistive_watts),
                    unmet_watts = %format!("{:.0}", a.unmet_watts),
                    jobs = status.sched.queue.live,
                    "split (actual/target)"
                );
                match &status.gpu {
                    Some(GpuState::Ready(g)) => tracing::info!(
                        adapter = %g.adapter.name,
                        kind = if g.adapter.software { "software" } else { "hardware" },
                        target_watts = %format!("{:.0}", g.target_watts),
                        duty = %format!("{:.2}", g.duty),
                        gpu_watts = %format!("{:.0}", g.watts),
                        jobs = g.jobs,
                        "gpu"
                    ),
                    Some(GpuState::Unavailable { reason }) => {
                        tracing::warn!(%reason, "gpu unavailable")
                    }
                    None => {}
                }
            }
            self.status_tx.send_replace(status);
            tick += 1;
        }
        // Fail cold on the way out.
        self.target_tx.send_replace(PowerTarget::zero());
        self.targets_tx.send_replace(Targets::default());
        tracing::info!("control loop stopped; heat budget 0 W");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::SetOverride { manual, reply } => {
                let r = self.setpoints.set_override(manual);
                if r.is_ok() {
                    tracing::info!(?manual, "setpoint override changed");
                }
                let _ = reply.send(r);
            }
            Command::SetMix(mix) => self.scheduler.set_mix(mix),
        }
    }

    fn tick(&mut self, tick: u64, now: f64, since_last_tick_s: f64) -> Status {
        let tick_s = self.cfg.control.tick_seconds;
        let room = *self.room_rx.borrow();
        let outdoor = *self.outdoor_rx.borrow();
        let stale_after = self.cfg.safety.sensor_stale_after_seconds;
        if let Some(o) = outdoor.filter(|o| now - o.at_s <= stale_after) {
            self.last_outdoor = Some(o.celsius);
        }
        let verdict = self.supervisor.evaluate(&SafetyInputs {
            now_s: now,
            room,
            chips: self.chips.snapshot(),
            since_last_tick_s,
            tick_s,
        });
        let plan = self.setpoints.plan(now);
        let mut control = ControlOutput::default();
        let budget = match (verdict.tripped, room, self.last_outdoor) {
            (false, Some(r), Some(out)) => {
                control = self.controller.step(&ControlInput {
                    now_s: now,
                    dt_s: since_last_tick_s,
                    room_celsius: r.celsius,
                    outdoor_celsius: out,
                    plan,
                });
                control.budget_watts
            }
            _ => {
                // Tripped (or no outdoor value yet): cold, and start afresh when it clears.
                self.controller.reset();
                0.0
            }
        };
        let budget_target = PowerTarget {
            watts: budget,
            issued_at_s: now,
            valid_until_s: now + f64::from(self.cfg.safety.deadman_ticks) * tick_s,
        };
        self.target_tx.send_replace(budget_target);
        let mining = self.mining_rx.as_ref().map(|m| m.borrow().clone());
        let mut queue = self.queue_rx.borrow().clone();
        let market = self.market.as_ref().map(|(_, m)| m.borrow().clone());
        if let Some(m) = market.as_ref().filter(|m| m.job.is_some()) {
            // The market job on the GPU is worth its price, like a local one.
            queue.best_price_per_gpu_second = queue.best_price_per_gpu_second.max(m.job_price);
        }
        let (targets, sched) = self
            .scheduler
            .tick(now, budget_target, &queue, mining.as_ref());
        self.targets_tx.send_replace(targets);
        self.accounts_tx.send_replace(sched.accounts.clone());
        if let Some((demand, _)) = &self.market {
            let spare = if verdict.tripped {
                0.0
            } else {
                sched.market_headroom_watts
            };
            demand.send_replace(Demand {
                spare_gpu_watts: spare,
            });
        }
        let next: Option<NextSetpoint> = plan.next;
        Status {
            tick,
            at_s: now,
            room_celsius: room.map(|r| r.celsius),
            room_reading_age_s: room.map(|r| now - r.at_s),
            outdoor_celsius: self.last_outdoor,
            setpoint_celsius: plan.celsius,
            next_setpoint_celsius: next.map(|n| n.celsius),
            next_setpoint_at_s: next.map(|n| n.at_s),
            override_active: self.setpoints.active_override(now).is_some(),
            budget_watts: budget,
            control,
            model: Some(self.controller.model()),
            model_estimated: self.controller.model_is_estimated(),
            trips: verdict.trips,
            simulated_room_celsius: self.truth_rx.as_ref().map(|t| t.borrow().room_celsius),
            mining,
            gpu: self.gpu_rx.as_ref().map(|g| g.borrow().clone()),
            sched,
            market,
            // Measured by the caller around this call.
            tick_seconds_spent: 0.0,
        }
    }
}
