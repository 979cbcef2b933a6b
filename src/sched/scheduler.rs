//! The scheduler stage of the control tick: turns the heat budget into one power target per
//! workload, and integrates what the workloads report into the accounts.
//!
//! It owns the allocator, the mix in force and the accountant. It reads the workloads only
//! through the [`Workload`] trait (envelope, work, actual power: no I/O), the job queue only
//! through the [`QueueSummary`] the job executor publishes, and mining only through the
//! [`AcceptedShares`] its status reports.
//! It never waits on anything: the control loop calls [`Scheduler::tick`] every tick.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::accounting::{Accountant, Accounts, Sample};
use super::allocator::{Allocation, Allocator, Envelope, Hysteresis, Inputs, Mix, Preferred};
use super::workload::{Source, Workload};
use crate::power::PowerTarget;

/// The shares a pool accepted since the mining engine started: all the scheduler knows of
/// mining (it accounts the value they earn).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AcceptedShares {
    /// Shares accepted.
    pub count: u64,
    /// Their summed difficulty.
    pub work: f64,
}

/// The workloads the heater has; a missing one gets no budget.
#[derive(Clone, Default)]
pub struct Workloads {
    /// The hashing board.
    pub asic: Option<Arc<dyn Workload>>,
    /// The GPU runner.
    pub gpu: Option<Arc<dyn Workload>>,
    /// The resistive element.
    pub resistive: Option<Arc<dyn Workload>>,
}

/// The job on the GPU, as the executor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunningJob {
    /// The store's job id.
    pub job: u64,
    /// The runner's id for this run of it (a resumed job gets a new one).
    pub run: u64,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub units: u64,
}

/// A live job's exact GPU-busy seconds and earnings over all its runs, as the executor counts
/// them from the runner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct JobUsage {
    /// GPU-busy seconds.
    pub gpu_seconds: f64,
    /// GPU-seconds × the lease's price.
    pub earned: f64,
}

/// What the job executor publishes about the queue, for the allocator.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueSummary {
    /// Live jobs (QUEUED, RUNNING, PAUSED).
    pub live: usize,
    /// Ids of the live jobs (their accounts stay in memory).
    #[serde(skip)]
    pub live_ids: Vec<u64>,
    /// GPU utilisation (0–1, or more when deadlines cannot all be met) the deadline jobs need to
    /// finish in time, earliest deadline first; 0 if none has a deadline.
    pub deadline_utilisation: f64,
    /// The best price per GPU-second among live jobs.
    pub best_price_per_gpu_second: f64,
    /// The job on the GPU.
    pub running: Option<RunningJob>,
    /// Each live job's GPU-seconds and earnings.
    #[serde(skip)]
    pub usage: BTreeMap<u64, JobUsage>,
}

/// One tick's targets, each with the dead-man deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// The hashing board.
    pub asic: PowerTarget,
    /// The GPU.
    pub gpu: PowerTarget,
    /// The resistive element.
    pub resistive: PowerTarget,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            asic: PowerTarget::zero(),
            gpu: PowerTarget::zero(),
            resistive: PowerTarget::zero(),
        }
    }
}

/// Power each workload reports it draws, W.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PowerSplit {
    /// The hashing board.
    pub asic: f64,
    /// Whether the hashing board's figure is measured (every device of the fleet meters itself).
    pub asic_measured: bool,
    /// The GPU.
    pub gpu: f64,
    /// The resistive element.
    pub resistive: f64,
    /// Their sum: the heat going into the room.
    pub total: f64,
}

/// The scheduler's part of the status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedStatus {
    /// The mix in force.
    pub mix: Option<Mix>,
    /// Which workload the automatic mix prefers now.
    pub preferred: Option<Preferred>,
    /// This tick's targets and the budget nobody could absorb (`unmet_watts`).
    pub allocation: Allocation,
    /// What the workloads draw (reported, modelled or measured).
    pub actual: PowerSplit,
    /// The queue as the allocator saw it.
    pub queue: QueueSummary,
    /// Energy and earnings so far.
    pub accounts: Accounts,
    /// GPU watts a market job may take now (see [`super::allocator::market_headroom`]).
    pub market_headroom_watts: f64,
}

/// Economic and policy settings the scheduler needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedSettings {
    /// Hysteresis of the automatic mix.
    pub hysteresis: Hysteresis,
    /// Mining value per joule.
    pub asic_value_per_joule: f64,
    /// Earnings of one accepted difficulty-1 share.
    pub value_per_share: f64,
    /// Deadline jobs get this factor more than the minimum utilisation.
    pub deadline_margin: f64,
    /// Longest gap the accountant bridges, s.
    pub max_gap_seconds: f64,
    /// Value per joule of the cheapest market job this heater takes (`None`: not on a market).
    pub market_value_per_joule: Option<f64>,
}

/// The scheduler's state: owned by the control loop.
pub struct Scheduler {
    workloads: Workloads,
    allocator: Allocator,
    mix: Mix,
    accountant: Accountant,
    settings: SchedSettings,
    last_shares: Option<(u64, f64)>,
}

/// An envelope that admits nothing (a workload the heater does not have).
const NONE: Envelope = Envelope {
    min_watts: 0.0,
    max_watts: 0.0,
    below_min: true,
    ramp_watts_per_second: 0.0,
};

impl Scheduler {
    /// A scheduler for `workloads`, starting with `mix` and the stored `accounts`.
    pub fn new(
        workloads: Workloads,
        mix: Mix,
        accounts: Accounts,
        settings: SchedSettings,
    ) -> Self {
        Self {
            workloads,
            allocator: Allocator::new(settings.hysteresis),
            mix,
            accountant: Accountant::new(
                accounts,
                settings.max_gap_seconds,
                settings.value_per_share,
            ),
            settings,
            last_shares: None,
        }
    }

    /// Changes the mix from the next tick on.
    pub fn set_mix(&mut self, mix: Mix) {
        self.mix = mix;
    }

    /// The mix in force.
    pub fn mix(&self) -> Mix {
        self.mix
    }

    /// Splits `budget` (whose deadline every target inherits) and accounts for the power the
    /// workloads reported since the last tick.
    pub fn tick(
        &mut self,
        now_s: f64,
        budget: PowerTarget,
        queue: &QueueSummary,
        shares: Option<AcceptedShares>,
    ) -> (Targets, SchedStatus) {
        let w = &self.workloads;
        let env = |x: &Option<Arc<dyn Workload>>| x.as_ref().map_or(NONE, |x| x.envelope());
        let (asic_env, gpu_env) = (env(&w.asic), env(&w.gpu));
        let gpu_has_work =
            w.gpu.is_some() && (queue.live > 0 || w.gpu.as_ref().is_some_and(|g| g.has_work()));
        let gpu_deadline_watts = if gpu_has_work && queue.deadline_utilisation > 0.0 {
            let u = (queue.deadline_utilisation * self.settings.deadline_margin).min(1.0);
            gpu_env.min_watts + (gpu_env.max_watts - gpu_env.min_watts) * u
        } else {
            0.0
        };
        let inputs = Inputs {
            budget_watts: budget.watts_at(now_s),
            asic: asic_env,
            asic_has_work: w.asic.as_ref().is_some_and(|a| a.has_work()),
            gpu: gpu_env,
            gpu_has_work,
            resistive: w.resistive.as_ref().map(|r| r.envelope()),
            gpu_deadline_watts,
            asic_value_per_joule: self.settings.asic_value_per_joule,
            gpu_value_per_joule: if gpu_env.max_watts > 0.0 {
                queue.best_price_per_gpu_second / gpu_env.max_watts
            } else {
                0.0
            },
        };
        let allocation = self.allocator.tick(now_s, self.mix, &inputs);
        // A fleet that steps or ramps draws other than its target: the others cover the gap.
        let allocation = match &w.asic {
            Some(a) => {
                let expected = a.expected_watts(allocation.asic_watts);
                super::allocator::cover(allocation, expected, self.mix, &inputs)
            }
            None => allocation,
        };
        let market_headroom_watts = self.settings.market_value_per_joule.map_or(0.0, |v| {
            super::allocator::market_headroom(self.mix, &inputs, queue.live > 0, v)
        });
        let target = |watts: f64| PowerTarget { watts, ..budget };
        let targets = Targets {
            asic: target(allocation.asic_watts),
            gpu: target(allocation.gpu_watts),
            resistive: target(allocation.resistive_watts),
        };

        let actual_of =
            |x: &Option<Arc<dyn Workload>>| x.as_ref().map_or(0.0, |x| x.actual_watts().0);
        let (asic, asic_source) = w
            .asic
            .as_ref()
            .map_or((0.0, Source::Modelled), |a| a.actual_watts());
        let (gpu, resistive) = (actual_of(&w.gpu), actual_of(&w.resistive));
        let actual = PowerSplit {
            asic,
            asic_measured: asic_source == Source::Measured,
            gpu,
            resistive,
            total: asic + gpu + resistive,
        };
        self.account(now_s, &actual, queue, shares);
        let mut accounts = self.accountant.accounts.clone();
        for (id, u) in &queue.usage {
            let a = accounts.jobs.entry(*id).or_default();
            a.gpu_seconds = u.gpu_seconds;
            a.earned = u.earned;
        }
        let status = SchedStatus {
            mix: Some(self.mix),
            preferred: matches!(self.mix, Mix::Auto).then(|| self.allocator.preferred()),
            allocation,
            actual,
            queue: queue.clone(),
            accounts,
            market_headroom_watts,
        };
        (targets, status)
    }

    fn account(
        &mut self,
        now_s: f64,
        actual: &PowerSplit,
        queue: &QueueSummary,
        shares: Option<AcceptedShares>,
    ) {
        // Shares accepted since the last tick (counters restart with the engine).
        let new_shares = match shares {
            Some(s) => {
                let now = (s.count, s.work);
                let d = match self.last_shares {
                    Some((n, w)) if n <= now.0 => (now.0 - n, (now.1 - w).max(0.0)),
                    _ => now,
                };
                self.last_shares = Some(now);
                d
            }
            None => (0, 0.0),
        };
        self.accountant.record(Sample {
            at_s: now_s,
            asic_watts: actual.asic,
            asic_measured: actual.asic_measured,
            gpu_watts: actual.gpu,
            // Energy only: GPU-seconds and earnings are the executor's exact count.
            gpu_job: queue.running.map(|r| (r.job, 0.0)),
            gpu_busy_seconds: 0.0,
            resistive_watts: actual.resistive,
            new_shares,
        });
        // Finished jobs' accounts are in the store; keep only the live ones in memory.
        let jobs = &mut self.accountant.accounts.jobs;
        if jobs.len() > queue.live_ids.len() {
            jobs.retain(|id, _| queue.live_ids.contains(id));
        }
    }
}
