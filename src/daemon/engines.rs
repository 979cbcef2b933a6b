//! The engine tasks: the mining engine, the GPU runner and the resistive element (simulated, or
//! a smart plug), each handed its target every tick by a [`Follower`] with the target's dead-man deadline.

use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::tasks::Tasks;
use crate::clock::Clock;
use crate::config::{Config, ResistiveKind};
use crate::devices::config::DeviceKind;
use crate::devices::software_asic::device::SoftwareDevice;
use crate::devices::{self, resistive::ResistiveElement, DeviceContext};
use crate::gpu::device::Gpu;
use crate::gpu::runner::GpuRunner;
use crate::mining::engine::{MiningEngine, MiningStatus};
use crate::mining::fleet::device::MinerDevice;
use crate::mining::fleet::{Fleet, FleetStatus};
use crate::mining::stratum::client::{ClientConfig, Endpoint};
use crate::mining::stratum::pool::LocalPool;
use crate::ops::DaemonError;
use crate::power::PowerTarget;
use crate::sched::scheduler::{Targets, Workloads};
use crate::sched::workload::Workload;
use crate::status::GpuState;
use crate::thermal::safety::ChipTemperatures;

/// The engines the config enables, started and followed.
pub(super) struct Engines {
    /// Their workloads, for the scheduler and the simulated room.
    pub(super) workloads: Workloads,
    /// The mining fleet, its engine and local pool.
    pub(super) mining: Option<Mining>,
    /// The software ASIC's mining status, for the snapshot.
    pub(super) mining_rx: Option<watch::Receiver<MiningStatus>>,
    /// The fleet's devices, for the snapshot.
    pub(super) fleet_rx: Option<watch::Receiver<FleetStatus>>,
    /// The GPU runner, if enabled and opened.
    pub(super) gpu: Option<Arc<GpuRunner>>,
    /// The GPU's state, for the snapshot, if enabled.
    pub(super) gpu_rx: Option<watch::Receiver<GpuState>>,
}

/// The mining fleet, with the software ASIC's engine and the local pool it mines on when no
/// pools are configured.
pub(super) struct Mining {
    engine: Option<Arc<MiningEngine>>,
    pool: Option<LocalPool>,
}

impl Mining {
    /// Stops the engine (once its last handle is gone), then the local pool.
    pub(super) async fn shutdown(self) {
        if let Some(engine) = self.engine.and_then(|e| Arc::try_unwrap(e).ok()) {
            engine.shutdown().await;
        }
        if let Some(pool) = self.pool {
            pool.shutdown().await;
        }
    }
}

/// Starts the engines the config enables, each followed by its own task.
pub(super) async fn start(
    cfg: &Config,
    chips: &ChipTemperatures,
    targets: &watch::Receiver<Targets>,
    tasks: &mut Tasks,
) -> Result<Engines, DaemonError> {
    let mut workloads = Workloads::default();
    let (mining, mining_rx, fleet_rx) = if cfg.mining.enabled {
        let (mining, fleet, rx, fleet_rx) = follow_mining(cfg, chips, targets, tasks).await?;
        workloads.asic = Some(fleet);
        (Some(mining), rx, Some(fleet_rx))
    } else {
        (None, None, None)
    };
    let (gpu, gpu_rx) = if cfg.gpu.enabled {
        let (runner, rx) = follow_gpu(cfg, targets, tasks).await;
        workloads.gpu = runner.clone().map(|r| r as Arc<dyn Workload>);
        (runner, Some(rx))
    } else {
        (None, None)
    };
    if cfg.heater.resistive.max_watts > 0.0 {
        let element = start_resistive(cfg, tasks)?;
        let follower = Follower::new(tasks, targets, |t| t.resistive);
        tasks.spawn(follower.run(element.clone(), |_| {}));
        workloads.resistive = Some(element);
    }
    Ok(Engines {
        workloads,
        mining,
        mining_rx,
        fleet_rx,
        gpu,
        gpu_rx,
    })
}

/// The resistive element: simulated, or behind a smart plug on the `[mqtt]` broker (with the
/// task that switches it).
fn start_resistive(cfg: &Config, tasks: &mut Tasks) -> Result<Arc<dyn Workload>, DaemonError> {
    let r = &cfg.heater.resistive;
    let element: Arc<dyn Workload> = match r.kind {
        ResistiveKind::Element => Arc::new(ResistiveElement::new(r.max_watts)),
        ResistiveKind::MqttSwitch => {
            let mut link = super::sensors::mqtt_link(cfg, "plug")?;
            link.tick = Some(tasks.tick);
            let shutdown = tasks.shutdown.clone();
            let (plug, task) = devices::plug::start(r, link, tasks.clock.clone(), shutdown);
            tasks.spawn(task);
            plug
        }
    };
    Ok(element)
}

/// What [`follow_mining`] starts: the fleet's parts, the fleet, and the status channels.
type MiningParts = (
    Mining,
    Arc<Fleet>,
    Option<watch::Receiver<MiningStatus>>,
    watch::Receiver<FleetStatus>,
);

/// Starts the fleet (`[[mining.devices]]`, default the software ASIC alone) and its follower,
/// which publishes the fleet's and the software ASIC's status every tick.
async fn follow_mining(
    cfg: &Config,
    chips: &ChipTemperatures,
    targets: &watch::Receiver<Targets>,
    tasks: &mut Tasks,
) -> Result<MiningParts, DaemonError> {
    let ctx = DeviceContext {
        clock: tasks.clock.clone(),
        chips: chips.clone(),
        shutdown: tasks.shutdown.clone(),
    };
    let entries = cfg.mining.fleet();
    let mut devices: Vec<Arc<dyn MinerDevice>> = Vec::with_capacity(entries.len());
    let (mut engine, mut pool, mut software) = (None, None, None);
    for d in &entries {
        if d.kind == DeviceKind::Software {
            let (e, p) = start_mining(cfg, chips).await?;
            let e = Arc::new(e);
            let dev = Arc::new(SoftwareDevice::new(
                e.clone(),
                tasks.clock.clone(),
                cfg.mining.asic.chip_limit_celsius,
            ));
            devices.push(dev.clone());
            (engine, pool, software) = (Some(e), p, Some(dev));
        } else {
            let dev = devices::start_device(d, ctx.clone()).map_err(DaemonError::Mining)?;
            devices.push(dev);
        }
    }
    let fleet = Arc::new(Fleet::new(devices, tasks.clock.clone()));
    let (fleet_tx, fleet_rx) = watch::channel(fleet.status());
    let engine_status = engine.clone().zip(software).map(|(e, dev)| {
        let (tx, rx) = watch::channel(e.status(0.0));
        (tx, rx, e, dev)
    });
    let mining_rx = engine_status.as_ref().map(|(_, rx, _, _)| rx.clone());
    let f = fleet.clone();
    let follower = Follower::new(tasks, targets, |t| t.asic);
    tasks.spawn(follower.run(fleet.clone(), move |_| {
        fleet_tx.send_replace(f.status());
        if let Some((tx, _, e, dev)) = &engine_status {
            tx.send_replace(e.status(dev.asked_watts()));
        }
    }));
    Ok((Mining { engine, pool }, fleet, mining_rx, fleet_rx))
}

/// Opens the GPU and, if it opened, starts its follower, which publishes its state every tick.
async fn follow_gpu(
    cfg: &Config,
    targets: &watch::Receiver<Targets>,
    tasks: &mut Tasks,
) -> (Option<Arc<GpuRunner>>, watch::Receiver<GpuState>) {
    let (runner, state) = start_gpu(cfg).await;
    let (tx, rx) = watch::channel(state);
    if let Some(r) = &runner {
        let status_of = r.clone();
        let follower = Follower::new(tasks, targets, |t| t.gpu);
        tasks.spawn(follower.run(r.clone(), move |_| {
            tx.send_replace(GpuState::Ready(Box::new(status_of.status())));
        }));
    }
    (runner, rx)
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
    let engine = devices::start_mining(m.asic.clone(), client, Some(chips.clone()))
        .map_err(|e| DaemonError::Mining(e.to_string()))?;
    Ok((engine, local))
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
    /// A follower of `pick(targets)`, on the tasks' clock, tick and shutdown signal.
    fn new(
        tasks: &Tasks,
        targets: &watch::Receiver<Targets>,
        pick: fn(&Targets) -> PowerTarget,
    ) -> Self {
        Follower {
            clock: tasks.clock.clone(),
            targets: targets.clone(),
            pick,
            period: tasks.tick,
            shutdown: tasks.shutdown.clone(),
        }
    }

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
