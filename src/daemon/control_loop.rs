//! The control loop: each tick takes the latest readings, runs safety, the schedule and the
//! controller, splits the heat budget into per-workload targets and publishes them with the
//! status snapshot. It never waits on I/O.

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::market::MarketLink;
use crate::clock::{format_clock, Clock};
use crate::config::Config;
use crate::market::device::{Demand, MarketStatus};
use crate::mining::engine::MiningStatus;
use crate::mining::fleet::FleetStatus;
use crate::ops::Command;
use crate::power::PowerTarget;
use crate::sched::accounting::Accounts;
use crate::sched::scheduler::{AcceptedShares, QueueSummary, SchedStatus, Scheduler, Targets};
use crate::status::{GpuState, Status};
use crate::thermal::controller::{ControlInput, ControlOutput, Controller};
use crate::thermal::safety::{ChipTemperatures, SafetyInputs, Supervisor, Verdict};
use crate::thermal::schedule::{NextSetpoint, SetpointPlan, Setpoints};
use crate::thermal::sensor::{Reading, RoomTruth};

/// The control loop's state: owned by its task alone.
pub(super) struct ControlLoop {
    pub(super) controller: Controller,
    pub(super) supervisor: Supervisor,
    pub(super) setpoints: Setpoints,
    pub(super) scheduler: Scheduler,
    pub(super) cfg: Config,
    pub(super) clock: Clock,
    pub(super) chips: ChipTemperatures,
    pub(super) room_rx: watch::Receiver<Option<Reading>>,
    pub(super) outdoor_rx: watch::Receiver<Option<Reading>>,
    pub(super) truth_rx: Option<watch::Receiver<RoomTruth>>,
    pub(super) target_tx: watch::Sender<PowerTarget>,
    pub(super) targets_tx: watch::Sender<Targets>,
    pub(super) accounts_tx: watch::Sender<Accounts>,
    pub(super) status_tx: watch::Sender<Status>,
    pub(super) mining_rx: Option<watch::Receiver<MiningStatus>>,
    pub(super) fleet_rx: Option<watch::Receiver<FleetStatus>>,
    pub(super) gpu_rx: Option<watch::Receiver<GpuState>>,
    pub(super) queue_rx: watch::Receiver<QueueSummary>,
    /// The market task's demand input and status, when on a market.
    pub(super) market: Option<MarketLink>,
    pub(super) last_outdoor: Option<f64>,
    /// Heating switched on by the owner; off holds the budget at 0 W.
    pub(super) heating: bool,
}

impl ControlLoop {
    /// Ticks until shutdown, taking commands between ticks; publishes 0 W on the way out.
    pub(super) async fn run(
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
                log_tick(now, &status);
            }
            self.status_tx.send_replace(status);
            tick += 1;
        }
        // Fail cold on the way out.
        self.target_tx.send_replace(PowerTarget::zero());
        self.targets_tx.send_replace(Targets::default());
        tracing::info!("control loop stopped; heat budget 0 W");
    }

    /// Applies a command from a surface.
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
            Command::SwitchHeating(on) => self.heating = on,
        }
    }

    /// One control tick: readings, safety, the controller's budget, the split; the snapshot.
    fn tick(&mut self, tick: u64, now: f64, since_last_tick_s: f64) -> Status {
        let room = *self.room_rx.borrow();
        let (verdict, plan, control, budget) = self.heat_budget(now, since_last_tick_s, room);
        let tick_s = self.cfg.control.tick_seconds;
        let budget_target = PowerTarget {
            watts: budget,
            issued_at_s: now,
            valid_until_s: now + f64::from(self.cfg.safety.deadman_ticks) * tick_s,
        };
        self.target_tx.send_replace(budget_target);
        let (mining, market, sched) = self.split(now, budget_target, verdict.tripped);
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
            heating_off: !self.heating,
            budget_watts: budget,
            control,
            model: Some(self.controller.model()),
            model_estimated: self.controller.model_is_estimated(),
            trips: verdict.trips,
            simulated_room_celsius: self.truth_rx.as_ref().map(|t| t.borrow().room_celsius),
            mining,
            fleet: self.fleet_rx.as_ref().map(|f| f.borrow().clone()),
            gpu: self.gpu_rx.as_ref().map(|g| g.borrow().clone()),
            sched,
            market,
            // Measured by the caller around this call.
            tick_seconds_spent: 0.0,
        }
    }

    /// Safety, the schedule and the controller: the heat budget, W (0 while tripped or
    /// switched off).
    fn heat_budget(
        &mut self,
        now: f64,
        since_last_tick_s: f64,
        room: Option<Reading>,
    ) -> (Verdict, SetpointPlan, ControlOutput, f64) {
        let tick_s = self.cfg.control.tick_seconds;
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
            (false, Some(r), Some(out)) if self.heating => {
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
                // Tripped, switched off (or no outdoor value yet): cold, and start afresh when
                // it clears.
                self.controller.reset();
                0.0
            }
        };
        (verdict, plan, control, budget)
    }

    /// The scheduler stage: splits the budget into per-workload targets and publishes them,
    /// and tells the market how many GPU watts are spare.
    fn split(
        &mut self,
        now: f64,
        budget_target: PowerTarget,
        tripped: bool,
    ) -> (Option<MiningStatus>, Option<MarketStatus>, SchedStatus) {
        let mining = self.mining_rx.as_ref().map(|m| m.borrow().clone());
        let mut queue = self.queue_rx.borrow().clone();
        let market = self.market.as_ref().map(|(_, m)| m.borrow().clone());
        if let Some(m) = market.as_ref().filter(|m| m.job.is_some()) {
            // The market job on the GPU is worth its price, like a local one.
            queue.best_price_per_gpu_second = queue.best_price_per_gpu_second.max(m.job_price);
        }
        let shares = mining.as_ref().map(AcceptedShares::from);
        let (targets, sched) = self.scheduler.tick(now, budget_target, &queue, shares);
        self.targets_tx.send_replace(targets);
        self.accounts_tx.send_replace(sched.accounts.clone());
        if let Some((demand, _)) = &self.market {
            let spare = if tripped {
                0.0
            } else {
                sched.market_headroom_watts
            };
            demand.send_replace(Demand {
                spare_gpu_watts: spare,
            });
        }
        (mining, market, sched)
    }
}

/// Logs the tick's status: the room, the mining, the split and the GPU.
fn log_tick(now: f64, status: &Status) {
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
