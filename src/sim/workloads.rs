//! `hearth simulate --workloads`: the heat budget spent on an ASIC, a GPU running leased jobs and
//! an optional resistive element, split by the real allocator under four mix policies.
//!
//! Each policy runs hearth's controller on the same room, weather, schedule and sensor noise as
//! the heat-only run, and on the same lease stream. Each tick the controller's budget goes to
//! [`Allocator::tick`]; the room receives the heat the workloads actually draw, which can be less
//! than the budget (a share nobody can absorb, a GPU whose queue empties mid-tick).
//!
//! Models, all nominal:
//! - ASIC: draws its target (0, or between its minimum and maximum). Mining earns
//!   `hashprice / (86 400 · j_per_th)` per joule: a board of `j_per_th` J/TH at the configured
//!   hashprice per TH/s per day, with no pool fees, luck or difficulty changes.
//! - GPU: `idle + (max − idle)·u` while it has a job (utilisation `u` follows from its target),
//!   idle power for the rest of a tick in which its queue empties, 0 W when its target is 0.
//!   A job earns its price per GPU-second of work done (`u·dt` per tick).
//! - Resistive element: draws its target.
//!
//! Energy, revenue, unmet heat, jobs and misses count from the end of the warm-up, like the KPIs.

use serde::{Deserialize, Serialize};

use super::leases::{self, LeaseConfig, LeaseQueue};
use super::{RunResult, Scenario, SimError};
use crate::sched::allocator::{Allocator, Envelope, Hysteresis, Inputs, Mix};

/// Safety margin on the GPU utilisation the deadlines need.
pub const DEADLINE_MARGIN: f64 = 1.2;
/// The resistive element follows its target at once (W/s, large enough never to bind).
const RESISTIVE_RAMP_WATTS_PER_SECOND: f64 = 1e9;

/// The hashing board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsicConfig {
    /// Idle/minimum power while hashing, W; it cannot run below it (only off).
    pub min_watts: f64,
    /// Highest power, W.
    pub max_watts: f64,
    /// Largest increase per second, W/s.
    pub ramp_watts_per_second: f64,
    /// Nominal efficiency, J/TH.
    pub j_per_th: f64,
    /// What 1 TH/s earns per day, in the revenue currency.
    pub hashprice_per_th_day: f64,
}

impl Default for AsicConfig {
    fn default() -> Self {
        Self {
            min_watts: 150.0,
            max_watts: 700.0,
            ramp_watts_per_second: 20.0,
            j_per_th: 17.5,
            hashprice_per_th_day: 0.045,
        }
    }
}

impl AsicConfig {
    /// What mining earns per joule.
    pub fn value_per_joule(&self) -> f64 {
        self.hashprice_per_th_day / (86_400.0 * self.j_per_th)
    }

    /// The allocator's view of the board.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            min_watts: self.min_watts,
            max_watts: self.max_watts,
            below_min: false,
            ramp_watts_per_second: self.ramp_watts_per_second,
        }
    }
}

/// The GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Power with a job loaded at zero utilisation, W; also its minimum when on.
    pub idle_watts: f64,
    /// Power at full utilisation, W.
    pub max_watts: f64,
    /// Largest increase per second, W/s.
    pub ramp_watts_per_second: f64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            idle_watts: 30.0,
            // With the ASIC's 700 W, the two reach the default heater's 1200 W.
            max_watts: 500.0,
            ramp_watts_per_second: 100.0,
        }
    }
}

impl GpuConfig {
    /// Power at utilisation `u` (0..=1), W.
    pub fn watts_at(&self, u: f64) -> f64 {
        self.idle_watts + (self.max_watts - self.idle_watts) * u.clamp(0.0, 1.0)
    }

    /// Utilisation at power `w` while running, 0..=1.
    pub fn utilisation_at(&self, w: f64) -> f64 {
        ((w - self.idle_watts) / (self.max_watts - self.idle_watts)).clamp(0.0, 1.0)
    }

    /// The allocator's view of the GPU: off, or between idle and max.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            min_watts: self.idle_watts,
            max_watts: self.max_watts,
            below_min: false,
            ramp_watts_per_second: self.ramp_watts_per_second,
        }
    }
}

/// The resistive element, for boost heat only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResistiveConfig {
    /// Its power, W; 0 means none is fitted.
    pub max_watts: f64,
}

/// The workloads section of a scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadsConfig {
    /// The hashing board.
    pub asic: AsicConfig,
    /// The GPU.
    pub gpu: GpuConfig,
    /// The resistive element.
    pub resistive: ResistiveConfig,
    /// The stream of leased GPU jobs.
    pub leases: LeaseConfig,
}

impl WorkloadsConfig {
    /// Checks every parameter; errors name the key.
    pub fn validate(&self) -> Result<(), SimError> {
        let check = |key: &'static str, v: f64, positive: bool| {
            let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                let what = if positive { "positive" } else { "non-negative" };
                Err(SimError::Invalid {
                    key,
                    msg: format!("must be a {what} number, got {v}"),
                })
            }
        };
        let (a, g) = (&self.asic, &self.gpu);
        check("workloads.asic.min_watts", a.min_watts, false)?;
        check("workloads.asic.max_watts", a.max_watts, true)?;
        check(
            "workloads.asic.ramp_watts_per_second",
            a.ramp_watts_per_second,
            true,
        )?;
        check("workloads.asic.j_per_th", a.j_per_th, true)?;
        check(
            "workloads.asic.hashprice_per_th_day",
            a.hashprice_per_th_day,
            false,
        )?;
        if a.min_watts > a.max_watts {
            return Err(SimError::Invalid {
                key: "workloads.asic.min_watts",
                msg: format!("{} is above max_watts {}", a.min_watts, a.max_watts),
            });
        }
        check("workloads.gpu.idle_watts", g.idle_watts, false)?;
        check("workloads.gpu.max_watts", g.max_watts, true)?;
        check(
            "workloads.gpu.ramp_watts_per_second",
            g.ramp_watts_per_second,
            true,
        )?;
        if g.idle_watts >= g.max_watts {
            return Err(SimError::Invalid {
                key: "workloads.gpu.idle_watts",
                msg: format!("{} must be below max_watts {}", g.idle_watts, g.max_watts),
            });
        }
        check(
            "workloads.resistive.max_watts",
            self.resistive.max_watts,
            false,
        )?;
        self.leases.validate()
    }

    fn resistive_envelope(&self) -> Option<Envelope> {
        (self.resistive.max_watts > 0.0).then_some(Envelope {
            min_watts: 0.0,
            max_watts: self.resistive.max_watts,
            below_min: true,
            ramp_watts_per_second: RESISTIVE_RAMP_WATTS_PER_SECOND,
        })
    }
}

/// A mix policy under comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Its name in tables and plots.
    pub name: &'static str,
    /// The mix handed to the allocator.
    pub mix: Mix,
}

/// The policies compared, in table order.
pub const POLICIES: [Policy; 4] = [
    Policy {
        name: "pinned 50:50",
        mix: Mix::Pinned {
            asic: 0.5,
            gpu: 0.5,
            strict: false,
        },
    },
    Policy {
        name: "auto",
        mix: Mix::Auto,
    },
    Policy {
        name: "mining-only",
        mix: Mix::Pinned {
            asic: 1.0,
            gpu: 0.0,
            strict: true,
        },
    },
    Policy {
        name: "ai-only",
        mix: Mix::Pinned {
            asic: 0.0,
            gpu: 1.0,
            strict: true,
        },
    },
];

/// What one policy spent and earned over the KPI window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WorkloadTotals {
    /// Mining revenue.
    pub mining_revenue: f64,
    /// Revenue from leased GPU jobs.
    pub ai_revenue: f64,
    /// Both.
    pub total_revenue: f64,
    /// ASIC energy, kWh.
    pub asic_kwh: f64,
    /// GPU energy, kWh.
    pub gpu_kwh: f64,
    /// Resistive element energy, kWh.
    pub resistive_kwh: f64,
    /// The controller's budget, integrated, kWh.
    pub budget_kwh: f64,
    /// Budget no workload drew (budget − actual, integrated), kWh.
    pub unmet_heat_kwh: f64,
    /// GPU jobs finished.
    pub jobs_done: u64,
    /// Jobs finished after their deadline, plus those still unfinished past it at the end.
    pub deadline_misses: u64,
}

/// Per-tick power split of one policy's run, W.
#[derive(Debug, Clone, Default)]
pub struct SplitTrace {
    /// The policy's name.
    pub name: String,
    /// Time, seconds since the start.
    pub t_s: Vec<f64>,
    /// The controller's budget.
    pub budget_watts: Vec<f64>,
    /// ASIC power drawn.
    pub asic_watts: Vec<f64>,
    /// GPU power drawn (tick average).
    pub gpu_watts: Vec<f64>,
    /// Resistive element power drawn.
    pub resistive_watts: Vec<f64>,
}

/// One policy's result.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    /// The policy.
    pub policy: Policy,
    /// Room trace (its power is the heat actually applied) and comfort KPIs.
    pub run: RunResult,
    /// The power split over time.
    pub split: SplitTrace,
    /// Energy, revenue and jobs.
    pub totals: WorkloadTotals,
}

/// Every policy's result on one scenario.
#[derive(Debug, Clone)]
pub struct WorkloadRuns {
    /// Leases that arrived in the KPI window (the same stream for every policy).
    pub leases_arrived: usize,
    /// One run per policy, in [`POLICIES`] order.
    pub policies: Vec<PolicyRun>,
}

/// The workloads' state during one policy's run.
struct Plant<'a> {
    cfg: &'a WorkloadsConfig,
    mix: Mix,
    allocator: Allocator,
    queue: LeaseQueue,
    dt_s: f64,
    from_s: f64,
    totals: WorkloadTotals,
    split: SplitTrace,
}

impl Plant<'_> {
    /// One tick: allocate `budget`, run the workloads, return the heat they draw (W).
    fn tick(&mut self, t: f64, budget: f64) -> f64 {
        let (cfg, dt) = (self.cfg, self.dt_s);
        self.queue.admit(t);
        let need = self.queue.deadline_utilisation(t);
        let deadline_watts = if need > 0.0 {
            cfg.gpu.watts_at((DEADLINE_MARGIN * need).min(1.0))
        } else {
            0.0
        };
        let inputs = Inputs {
            budget_watts: budget,
            asic: cfg.asic.envelope(),
            asic_has_work: true,
            gpu: cfg.gpu.envelope(),
            gpu_has_work: self.queue.has_work(),
            resistive: cfg.resistive_envelope(),
            gpu_deadline_watts: deadline_watts,
            asic_value_per_joule: cfg.asic.value_per_joule(),
            gpu_value_per_joule: self
                .queue
                .best_price()
                .map_or(0.0, |p| p / cfg.gpu.max_watts),
        };
        let a = self.allocator.tick(t, self.mix, &inputs);
        let (gpu_watts, work) = if a.gpu_watts > 0.0 {
            let work = self.queue.run(t, dt, cfg.gpu.utilisation_at(a.gpu_watts));
            // Loaded: its target; once the queue has emptied: idle until the next tick.
            let joules =
                a.gpu_watts * work.busy_seconds + cfg.gpu.idle_watts * (dt - work.busy_seconds);
            (joules / dt, work)
        } else {
            (0.0, leases::TickWork::default())
        };
        let actual = a.asic_watts + gpu_watts + a.resistive_watts;
        self.split.t_s.push(t);
        self.split.budget_watts.push(budget);
        self.split.asic_watts.push(a.asic_watts);
        self.split.gpu_watts.push(gpu_watts);
        self.split.resistive_watts.push(a.resistive_watts);
        if t >= self.from_s {
            let kwh = |w: f64| w * dt / 3.6e6;
            let s = &mut self.totals;
            s.asic_kwh += kwh(a.asic_watts);
            s.gpu_kwh += kwh(gpu_watts);
            s.resistive_kwh += kwh(a.resistive_watts);
            s.budget_kwh += kwh(budget);
            s.unmet_heat_kwh += kwh(budget - actual);
            s.mining_revenue += a.asic_watts * dt * cfg.asic.value_per_joule();
            s.ai_revenue += work.earned;
            s.jobs_done += work.completed;
            s.deadline_misses += work.late;
        }
        actual
    }
}

impl Scenario {
    /// Runs hearth's controller with the workloads under every policy in [`POLICIES`].
    pub fn run_workloads(&self) -> Result<WorkloadRuns, SimError> {
        self.compile_schedule()?;
        let from_s = self.warmup_hours * 3600.0;
        let end_s = (self.warmup_hours + self.hours) * 3600.0;
        let stream = leases::generate(&self.workloads.leases, end_s);
        let leases_arrived = stream.iter().filter(|l| l.arrival_s >= from_s).count();
        let mut policies = Vec::with_capacity(POLICIES.len());
        for policy in POLICIES {
            let mut plant = Plant {
                cfg: &self.workloads,
                mix: policy.mix,
                allocator: Allocator::new(Hysteresis::default()),
                queue: LeaseQueue::new(stream.clone()),
                dt_s: self.tick_seconds,
                from_s,
                totals: WorkloadTotals::default(),
                split: SplitTrace {
                    name: policy.name.to_string(),
                    ..SplitTrace::default()
                },
            };
            let mut run = self.run_heating(&mut self.hearth_controller(), &mut |t, budget| {
                plant.tick(t, budget)
            })?;
            run.trace.name = policy.name.to_string();
            let mut totals = plant.totals;
            totals.deadline_misses += plant.queue.overdue(end_s);
            totals.total_revenue = totals.mining_revenue + totals.ai_revenue;
            policies.push(PolicyRun {
                policy,
                run,
                split: plant.split,
                totals,
            });
        }
        Ok(WorkloadRuns {
            leases_arrived,
            policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(hours: f64) -> Scenario {
        Scenario {
            hours,
            ..Scenario::default()
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// Monday 00:00 to 12:00: the night setback, the morning pre-heat at high power and a hold.
    #[test]
    fn every_tick_draws_within_the_budget_and_the_envelopes() {
        let s = scenario(12.0);
        let runs = s.run_workloads().unwrap();
        let names: Vec<_> = runs.policies.iter().map(|p| p.policy.name).collect();
        assert_eq!(names, ["pinned 50:50", "auto", "mining-only", "ai-only"]);
        let (asic, gpu) = (s.workloads.asic.envelope(), s.workloads.gpu.envelope());
        for p in &runs.policies {
            let sp = &p.split;
            assert_eq!(sp.t_s.len(), p.run.trace.t_s.len());
            for i in 0..sp.t_s.len() {
                let sum = sp.asic_watts[i] + sp.gpu_watts[i] + sp.resistive_watts[i];
                assert!(
                    sum <= sp.budget_watts[i] + 1e-6,
                    "{} tick {i}: {sum} W over a {} W budget",
                    p.policy.name,
                    sp.budget_watts[i]
                );
                // The room receives what the workloads draw.
                assert_eq!(p.run.trace.power_watts[i], sum);
                assert!(asic.allows(sp.asic_watts[i]), "asic {}", sp.asic_watts[i]);
                assert!(sp.gpu_watts[i] == 0.0 || sp.gpu_watts[i] >= gpu.min_watts - 1e-9);
                assert!(sp.gpu_watts[i] <= gpu.max_watts + 1e-9);
                assert_eq!(sp.resistive_watts[i], 0.0);
            }
            let t = &p.totals;
            let heat = p.run.kpis.energy_kwh;
            assert!(close(t.asic_kwh + t.gpu_kwh + t.resistive_kwh, heat, 1e-9));
            assert!(close(heat + t.unmet_heat_kwh, t.budget_kwh, 1e-9));
            assert!(close(
                t.mining_revenue,
                t.asic_kwh * 3.6e6 * s.workloads.asic.value_per_joule(),
                1e-9
            ));
            assert!(t.jobs_done as usize <= runs.leases_arrived);
        }
        let [pinned, auto, mining, ai] = &runs.policies[..] else {
            panic!("four policies");
        };
        assert!(mining.split.gpu_watts.iter().all(|&w| w == 0.0));
        assert!(ai.split.asic_watts.iter().all(|&w| w == 0.0));
        // Work-conserving policies with both sides busy use both.
        assert!(pinned.totals.gpu_kwh > 0.0 && pinned.totals.asic_kwh > 0.0);
        assert!(auto.totals.ai_revenue > 0.0 && auto.totals.mining_revenue > 0.0);
    }

    #[test]
    fn a_resistive_element_takes_what_compute_cannot() {
        let mut s = scenario(12.0);
        s.workloads.resistive.max_watts = 1200.0;
        let runs = s.run_workloads().unwrap();
        let heat_only = s.run(&mut s.hearth_controller()).unwrap().kpis;
        for p in &runs.policies {
            // Nearly nothing is left unmet (only the idle rest of a tick in which the GPU's
            // queue empties), so comfort is the heat-only run's.
            let t = &p.totals;
            assert!(t.unmet_heat_kwh.abs() < 1e-3, "{} {t:?}", p.policy.name);
            assert!(t.resistive_kwh > 0.0, "{}", p.policy.name);
            assert!(close(p.run.kpis.energy_kwh, heat_only.energy_kwh, 1e-3));
            assert!(
                (p.run.kpis.discomfort_kelvin_hours - heat_only.discomfort_kelvin_hours).abs()
                    < 0.01
            );
            assert!((p.run.kpis.rms_error_celsius - heat_only.rms_error_celsius).abs() < 0.01);
        }
    }

    #[test]
    fn invalid_parameters_name_their_key() {
        let key_of = |f: &dyn Fn(&mut WorkloadsConfig)| {
            let mut w = WorkloadsConfig::default();
            f(&mut w);
            match w.validate() {
                Err(SimError::Invalid { key, .. }) => key,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            key_of(&|w| w.gpu.idle_watts = 600.0),
            "workloads.gpu.idle_watts"
        );
        assert_eq!(
            key_of(&|w| w.asic.min_watts = 800.0),
            "workloads.asic.min_watts"
        );
        assert_eq!(
            key_of(&|w| w.asic.j_per_th = 0.0),
            "workloads.asic.j_per_th"
        );
        assert_eq!(
            key_of(&|w| w.resistive.max_watts = -1.0),
            "workloads.resistive.max_watts"
        );
        assert_eq!(
            key_of(&|w| w.leases.slack = [0.5, 2.0]),
            "workloads.leases.slack"
        );
        assert_eq!(
            key_of(&|w| w.leases.work_gpu_seconds = [10.0, 5.0]),
            "workloads.leases.work_gpu_seconds"
        );
        assert_eq!(
            key_of(&|w| w.leases.mean_interarrival_minutes = f64::NAN),
            "workloads.leases.mean_interarrival_minutes"
        );
        assert!(WorkloadsConfig::default().validate().is_ok());
    }
}
