//! The allocator: each tick it turns the heat budget, the mix policy, what each workload has to do
//! and each workload's power envelope into power targets.
//!
//! Invariants (property-tested):
//! - the targets add up to no more than the budget;
//! - every target is inside its envelope, or exactly zero;
//! - it is work-conserving: a compute workload with nothing to do gives its share to the other,
//!   except under a `strict` pin; the resistive element takes only heat compute cannot absorb;
//! - what is left is reported as `unmet_watts`.
//!
//! Increases are ramp-limited to what each envelope allows per second; decreases never are, so a
//! falling budget is always obeyed at once.

use serde::{Deserialize, Serialize};

/// A workload's power envelope, as it reports it each tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Lowest power it runs at, W (when running).
    pub min_watts: f64,
    /// Highest power, W.
    pub max_watts: f64,
    /// Whether it can run between 0 and `min_watts` (a duty-cycled GPU can; an ASIC string
    /// cannot).
    pub below_min: bool,
    /// Largest increase per second it can follow, W/s.
    pub ramp_watts_per_second: f64,
}

impl Envelope {
    /// The nearest allowed target at or below `w`: 0, or within [min, max].
    pub fn fit_down(&self, w: f64) -> f64 {
        let w = w.clamp(0.0, self.max_watts);
        if w < self.min_watts && !self.below_min {
            0.0
        } else {
            w
        }
    }

    /// Whether `w` is a target this envelope allows.
    pub fn allows(&self, w: f64) -> bool {
        w == 0.0 || (w <= self.max_watts + 1e-9 && (self.below_min || w >= self.min_watts - 1e-9))
    }
}

/// How the owner wants the budget split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mix {
    /// Fixed fractions of the budget (they add up to 1).
    Pinned {
        /// Share for hashing.
        asic: f64,
        /// Share for AI jobs.
        gpu: f64,
        /// Keep the split even when one side has nothing to do.
        strict: bool,
    },
    /// Deadlines first, then the work worth more per joule.
    Auto,
}

/// What the allocator sees of the workloads this tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// The heat budget, W.
    pub budget_watts: f64,
    /// The ASIC's envelope.
    pub asic: Envelope,
    /// Whether the ASIC has work (a pool job).
    pub asic_has_work: bool,
    /// The GPU's envelope.
    pub gpu: Envelope,
    /// Whether a GPU job is runnable.
    pub gpu_has_work: bool,
    /// The resistive element, if fitted.
    pub resistive: Option<Envelope>,
    /// GPU power the queued leases need to meet their deadlines, W (0 if none is at risk).
    pub gpu_deadline_watts: f64,
    /// Value of mining per joule (hashprice over the board's efficiency).
    pub asic_value_per_joule: f64,
    /// Value of the best runnable lease per joule (price per GPU-second over GPU watts).
    pub gpu_value_per_joule: f64,
}

/// One tick's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Allocation {
    /// ASIC target, W.
    pub asic_watts: f64,
    /// GPU target, W.
    pub gpu_watts: f64,
    /// Resistive element target, W.
    pub resistive_watts: f64,
    /// Budget nobody could absorb, W.
    pub unmet_watts: f64,
    /// What the ASIC fleet will draw over the tick, W: its target, or, for a fleet that steps
    /// or ramps, what it really draws (see [`cover`]).
    pub asic_expected_watts: f64,
}

impl Allocation {
    /// Sum of the targets.
    pub fn total(&self) -> f64 {
        self.asic_watts + self.gpu_watts + self.resistive_watts
    }
}

/// Which compute workload the automatic policy prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preferred {
    /// Hashing.
    Asic,
    /// AI jobs.
    Gpu,
}

/// Hysteresis settings of the automatic policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hysteresis {
    /// The other workload must be worth at least this much more (0.05 = 5 %).
    pub min_gain: f64,
    /// ... for at least this long, s.
    pub dwell_seconds: f64,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            min_gain: 0.05,
            dwell_seconds: 300.0,
        }
    }
}

/// The allocator's state between ticks: the automatic policy's choice, its pending switch, and
/// the last targets (for ramp limits).
#[derive(Debug, Clone)]
pub struct Allocator {
    hysteresis: Hysteresis,
    preferred: Preferred,
    /// Since when the other workload has been better by the margin.
    challenger_since: Option<f64>,
    last: Allocation,
    last_at: Option<f64>,
}

impl Allocator {
    /// A fresh allocator that prefers hashing until the AI side proves better.
    pub fn new(hysteresis: Hysteresis) -> Self {
        Self {
            hysteresis,
            preferred: Preferred::Asic,
            challenger_since: None,
            last: Allocation::default(),
            last_at: None,
        }
    }

    /// The automatic policy's current preference.
    pub fn preferred(&self) -> Preferred {
        self.preferred
    }

    /// Allocates the budget at time `now_s`.
    pub fn tick(&mut self, now_s: f64, mix: Mix, i: &Inputs) -> Allocation {
        let budget = if i.budget_watts.is_finite() {
            i.budget_watts.max(0.0)
        } else {
            0.0
        };
        let dt = self.last_at.map_or(f64::INFINITY, |t| (now_s - t).max(0.0));
        // Ramp limits: the most each workload may reach this tick.
        let cap = |e: &Envelope, last: f64| -> Envelope {
            let up = last + e.ramp_watts_per_second * dt;
            // A workload that is off may always start at its minimum.
            let max = e.max_watts.min(if up.is_nan() {
                e.max_watts
            } else {
                up.max(e.min_watts)
            });
            Envelope {
                max_watts: max.max(0.0),
                ..*e
            }
        };
        let asic_env = cap(&i.asic, self.last.asic_watts);
        let gpu_env = cap(&i.gpu, self.last.gpu_watts);
        let res_env = i.resistive.map(|r| cap(&r, self.last.resistive_watts));
        let asic_env = if i.asic_has_work {
            Some(asic_env)
        } else {
            None
        };
        let gpu_env = if i.gpu_has_work { Some(gpu_env) } else { None };

        let (mut asic, mut gpu) = (0.0, 0.0);
        match mix {
            Mix::Pinned {
                asic: fa,
                gpu: fg,
                strict,
            } => {
                let (fa, fg) = normalise(fa, fg);
                asic = asic_env.map_or(0.0, |e| e.fit_down(budget * fa));
                gpu = gpu_env.map_or(0.0, |e| e.fit_down(budget * fg));
                if !strict {
                    // Work-conserving: what one side could not take goes to the other.
                    let spare = budget - asic - gpu;
                    if let Some(e) = gpu_env {
                        gpu = e.fit_down(gpu + spare);
                    }
                    let spare = budget - asic - gpu;
                    if let Some(e) = asic_env {
                        asic = e.fit_down(asic + spare);
                    }
                    (asic, gpu) = close_gap(budget, (asic, asic_env), (gpu, gpu_env), 0.0);
                }
            }
            Mix::Auto => {
                self.update_preference(now_s, i);
                // Deadlines first, within the budget: comfort outranks revenue.
                if let Some(e) = gpu_env {
                    gpu = e.fit_down(i.gpu_deadline_watts.min(budget));
                }
                let order = match self.preferred {
                    Preferred::Asic => [true, false],
                    Preferred::Gpu => [false, true],
                };
                for is_asic in order {
                    let spare = budget - asic - gpu;
                    if is_asic {
                        if let Some(e) = asic_env {
                            asic = e.fit_down(asic + spare);
                        }
                    } else if let Some(e) = gpu_env {
                        gpu = e.fit_down(gpu + spare);
                    }
                }
                let deadline =
                    gpu_env.map_or(0.0, |e| e.fit_down(i.gpu_deadline_watts.min(budget)));
                (asic, gpu) = close_gap(budget, (asic, asic_env), (gpu, gpu_env), deadline);
            }
        }
        // Boost heat only for what compute cannot absorb.
        let spare = (budget - asic - gpu).max(0.0);
        let resistive = res_env.map_or(0.0, |e| e.fit_down(spare));
        let mut a = Allocation {
            asic_watts: asic,
            gpu_watts: gpu,
            resistive_watts: resistive,
            unmet_watts: 0.0,
            asic_expected_watts: 0.0,
        };
        // Rounding must never tip the sum over the budget: trim the element, then the GPU, then
        // the ASIC (by a rounding error, so each stays inside its envelope's tolerance).
        let mut over = a.total() - budget;
        for w in [&mut a.resistive_watts, &mut a.gpu_watts, &mut a.asic_watts] {
            if over <= 0.0 {
                break;
            }
            let cut = over.min(*w);
            *w -= cut;
            over -= cut;
        }
        a.unmet_watts = (budget - a.total()).max(0.0);
        a.asic_expected_watts = a.asic_watts;
        self.last = a;
        self.last_at = Some(now_s);
        a
    }

    /// Switches the preferred workload only after the other has been better by `min_gain` for
    /// `dwell_seconds`.
    fn update_preference(&mut self, now_s: f64, i: &Inputs) {
        let (current, other) = match self.preferred {
            Preferred::Asic => (i.asic_value_per_joule, i.gpu_value_per_joule),
            Preferred::Gpu => (i.gpu_value_per_joule, i.asic_value_per_joule),
        };
        let other_has_work = match self.preferred {
            Preferred::Asic => i.gpu_has_work,
            Preferred::Gpu => i.asic_has_work,
        };
        if other_has_work && other > current * (1.0 + self.hysteresis.min_gain) {
            let since = *self.challenger_since.get_or_insert(now_s);
            if now_s - since >= self.hysteresis.dwell_seconds {
                self.preferred = match self.preferred {
                    Preferred::Asic => Preferred::Gpu,
                    Preferred::Gpu => Preferred::Asic,
                };
                self.challenger_since = None;
            }
        } else {
            self.challenger_since = None;
        }
    }
}

/// The ASIC fleet will draw `expected` W over the tick instead of its target (its devices step,
/// ramp or cannot stop): the GPU and the resistive element make up the difference, either way,
/// within their envelopes, so that the room still sees the budget. Short of the target, the GPU
/// takes more first (not under a strict pin, whose split is the owner's), then the element; over
/// it, the element gives back first, then the GPU. What neither can absorb is unmet.
pub fn cover(a: Allocation, expected: f64, mix: Mix, i: &Inputs) -> Allocation {
    let budget = if i.budget_watts.is_finite() {
        i.budget_watts.max(0.0)
    } else {
        0.0
    };
    let expected = if expected.is_finite() {
        expected.max(0.0)
    } else {
        a.asic_watts
    };
    let mut out = Allocation {
        asic_expected_watts: expected,
        ..a
    };
    let gpu_may = i.gpu_has_work && !matches!(mix, Mix::Pinned { strict: true, .. });
    let mut short = a.asic_watts - expected;
    if short.abs() < 1e-6 {
        return out;
    }
    if short > 0.0 {
        if gpu_may {
            let g = i.gpu.fit_down(out.gpu_watts + short);
            if g > out.gpu_watts {
                short -= g - out.gpu_watts;
                out.gpu_watts = g;
            }
        }
        if let Some(r) = &i.resistive {
            let w = r.fit_down(out.resistive_watts + short);
            if w > out.resistive_watts {
                out.resistive_watts = w;
            }
        }
    } else if short < 0.0 {
        let mut excess = -short;
        if let Some(r) = &i.resistive {
            let w = r.fit_down((out.resistive_watts - excess).max(0.0));
            excess -= out.resistive_watts - w;
            out.resistive_watts = w;
        }
        if excess > 0.0 && out.gpu_watts > 0.0 {
            let g = i.gpu.fit_down((out.gpu_watts - excess).max(0.0));
            out.gpu_watts = g;
        }
    }
    let drawn = expected + out.gpu_watts + out.resistive_watts;
    out.unmet_watts = (budget - drawn).max(0.0);
    out
}

/// Comfort before revenue: when a workload with work is off only because the spare budget is
/// below its minimum, it starts at its minimum and the shortfall comes from the other, if the
/// other stays inside its envelope (and the GPU above `gpu_floor`, the share its deadlines need).
/// Then the whole budget is absorbed. Returns the new (asic, gpu).
fn close_gap(
    budget: f64,
    (asic, asic_env): (f64, Option<Envelope>),
    (gpu, gpu_env): (f64, Option<Envelope>),
    gpu_floor: f64,
) -> (f64, f64) {
    let spare = budget - asic - gpu;
    let (Some(ae), Some(ge)) = (asic_env, gpu_env) else {
        return (asic, gpu);
    };
    if spare <= 1e-9 {
        return (asic, gpu);
    }
    if asic == 0.0 && ae.min_watts > spare && ae.min_watts <= ae.max_watts {
        let g = gpu - (ae.min_watts - spare);
        if g >= gpu_floor && g > 0.0 && ge.allows(g) {
            return (ae.min_watts, g);
        }
    }
    if gpu == 0.0 && ge.min_watts > spare && ge.min_watts <= ge.max_watts {
        let a = asic - (ge.min_watts - spare);
        if a > 0.0 && ae.allows(a) {
            return (a, ge.min_watts);
        }
    }
    (asic, gpu)
}

/// Fractions as shares of their sum (both 0 or invalid: half each).
fn normalise(a: f64, g: f64) -> (f64, f64) {
    let (a, g) = (a.max(0.0), g.max(0.0));
    let s = a + g;
    if !(s.is_finite() && s > 0.0) {
        return (0.5, 0.5);
    }
    (a / s, g / s)
}

/// The GPU watts a market job would get this tick: what the room wants, the mix lets the GPU
/// take and no local job uses (0 while a local job is live). `market_value_per_joule` is what
/// the least market job this heater takes pays per joule: in the automatic mix it must beat
/// hashing to displace it, otherwise only the heat the ASIC cannot absorb is spare. A mix
/// pinned wholly to the ASIC leaves nothing.
pub fn market_headroom(mix: Mix, i: &Inputs, local_jobs: bool, market_value_per_joule: f64) -> f64 {
    if local_jobs {
        return 0.0;
    }
    let budget = if i.budget_watts.is_finite() {
        i.budget_watts.max(0.0)
    } else {
        0.0
    };
    let asic_takes = if i.asic_has_work {
        i.asic.max_watts
    } else {
        0.0
    };
    let want = match mix {
        Mix::Pinned { asic, gpu, strict } => {
            let (fa, fg) = normalise(asic, gpu);
            if fg <= 0.0 {
                0.0
            } else if strict {
                budget * fg
            } else {
                budget * fg + (budget * fa - asic_takes).max(0.0)
            }
        }
        Mix::Auto => {
            if !i.asic_has_work || market_value_per_joule >= i.asic_value_per_joule {
                budget
            } else {
                (budget - asic_takes).max(0.0)
            }
        }
    };
    let want = want.min(i.gpu.max_watts);
    if want <= 0.0 || (want < i.gpu.min_watts && !i.gpu.below_min) {
        0.0
    } else {
        want
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn asic() -> Envelope {
        Envelope {
            min_watts: 100.0,
            max_watts: 400.0,
            below_min: false,
            ramp_watts_per_second: 1e6,
        }
    }

    fn gpu() -> Envelope {
        Envelope {
            min_watts: 30.0,
            max_watts: 250.0,
            below_min: true,
            ramp_watts_per_second: 1e6,
        }
    }

    fn inputs(budget: f64) -> Inputs {
        Inputs {
            budget_watts: budget,
            asic: asic(),
            asic_has_work: true,
            gpu: gpu(),
            gpu_has_work: true,
            resistive: None,
            gpu_deadline_watts: 0.0,
            asic_value_per_joule: 1.0,
            gpu_value_per_joule: 1.0,
        }
    }

    #[test]
    fn a_pinned_split_holds_when_both_have_work() {
        let mut a = Allocator::new(Hysteresis::default());
        let mix = Mix::Pinned {
            asic: 30.0,
            gpu: 70.0,
            strict: false,
        };
        let r = a.tick(0.0, mix, &inputs(350.0));
        assert!((r.asic_watts - 105.0).abs() < 1e-9 && (r.gpu_watts - 245.0).abs() < 1e-9);
        // The GPU tops out at 250 W: the rest goes to the ASIC (work-conserving).
        let r = a.tick(1.0, mix, &inputs(500.0));
        assert_eq!((r.asic_watts, r.gpu_watts), (250.0, 250.0));
        // 30 % of 300 W is below the ASIC's minimum; the GPU alone would leave 50 W unmet, so
        // the ASIC runs at its minimum and the GPU takes the rest.
        let r = a.tick(2.0, mix, &inputs(300.0));
        assert_eq!(
            (r.asic_watts, r.gpu_watts, r.unmet_watts),
            (100.0, 200.0, 0.0)
        );
    }

    #[test]
    fn a_strict_pin_leaves_an_idle_share_unmet_or_to_the_element() {
        let mut a = Allocator::new(Hysteresis::default());
        let mix = Mix::Pinned {
            asic: 50.0,
            gpu: 50.0,
            strict: true,
        };
        let mut i = inputs(400.0);
        i.gpu_has_work = false;
        let r = a.tick(0.0, mix, &i);
        assert_eq!(
            (r.asic_watts, r.gpu_watts, r.unmet_watts),
            (200.0, 0.0, 200.0)
        );
        i.resistive = Some(Envelope {
            min_watts: 0.0,
            max_watts: 1000.0,
            below_min: true,
            ramp_watts_per_second: 1e6,
        });
        let r = a.tick(1.0, mix, &i);
        assert_eq!(
            (r.asic_watts, r.resistive_watts, r.unmet_watts),
            (200.0, 200.0, 0.0)
        );
    }

    #[test]
    fn an_asic_never_runs_below_its_minimum() {
        let mut a = Allocator::new(Hysteresis::default());
        let mut i = inputs(80.0);
        i.gpu_has_work = false;
        let r = a.tick(0.0, Mix::Auto, &i);
        assert_eq!((r.asic_watts, r.unmet_watts), (0.0, 80.0));
    }

    #[test]
    fn deadlines_come_first_but_never_beyond_the_budget() {
        let mut a = Allocator::new(Hysteresis::default());
        let mut i = inputs(300.0);
        i.gpu_deadline_watts = 200.0;
        let r = a.tick(0.0, Mix::Auto, &i);
        assert_eq!((r.gpu_watts, r.asic_watts), (200.0, 100.0));
        i.budget_watts = 150.0;
        let r = a.tick(1.0, Mix::Auto, &i);
        assert_eq!((r.gpu_watts, r.asic_watts), (150.0, 0.0));
    }

    #[test]
    fn the_preference_switches_only_after_a_held_gain_and_does_not_flap() {
        let h = Hysteresis {
            min_gain: 0.05,
            dwell_seconds: 60.0,
        };
        let mut a = Allocator::new(h);
        let mut i = inputs(300.0);
        // A noisy AI price around the mining value, within ±4 %: never a switch.
        for t in 0..1000 {
            i.gpu_value_per_joule = 1.0 + 0.04 * ((t as f64) * 0.7).sin();
            a.tick(t as f64, Mix::Auto, &i);
            assert_eq!(a.preferred(), Preferred::Asic, "t {t}");
        }
        // 10 % better, held: the switch comes after the dwell, not before.
        i.gpu_value_per_joule = 1.1;
        for t in 1000..1059 {
            a.tick(t as f64, Mix::Auto, &i);
            assert_eq!(a.preferred(), Preferred::Asic);
        }
        let r = a.tick(1060.0, Mix::Auto, &i);
        assert_eq!(a.preferred(), Preferred::Gpu);
        // The GPU first; the ASIC at its minimum absorbs what the GPU cannot.
        assert_eq!((r.gpu_watts, r.asic_watts), (200.0, 100.0));
    }

    #[test]
    fn increases_are_ramp_limited_and_decreases_are_not() {
        let mut a = Allocator::new(Hysteresis::default());
        let mut i = inputs(0.0);
        i.gpu_has_work = false;
        i.asic.ramp_watts_per_second = 50.0;
        a.tick(0.0, Mix::Auto, &i);
        i.budget_watts = 400.0;
        // From off it may start at its minimum, then climb 50 W/s.
        assert_eq!(a.tick(1.0, Mix::Auto, &i).asic_watts, 100.0);
        assert_eq!(a.tick(2.0, Mix::Auto, &i).asic_watts, 150.0);
        i.budget_watts = 120.0;
        assert_eq!(a.tick(3.0, Mix::Auto, &i).asic_watts, 120.0);
    }

    #[test]
    fn an_idle_workload_starts_at_its_minimum_rather_than_leave_heat_unmet() {
        let mut i = inputs(600.0);
        i.asic = Envelope {
            min_watts: 150.0,
            max_watts: 700.0,
            below_min: false,
            ramp_watts_per_second: 1e6,
        };
        i.gpu = Envelope {
            min_watts: 30.0,
            max_watts: 500.0,
            below_min: false,
            ramp_watts_per_second: 1e6,
        };
        i.gpu_value_per_joule = 10.0;
        let mut a = Allocator::new(Hysteresis {
            min_gain: 0.05,
            dwell_seconds: 0.0,
        });
        a.tick(0.0, Mix::Auto, &i);
        let r = a.tick(1.0, Mix::Auto, &i);
        assert_eq!(a.preferred(), Preferred::Gpu);
        // GPU 500 + ASIC 0 would leave 100 W unmet; 450 + 150 absorbs it all.
        assert_eq!(
            (r.gpu_watts, r.asic_watts, r.unmet_watts),
            (450.0, 150.0, 0.0)
        );
        // A deadline share is not given up for it.
        i.gpu_deadline_watts = 480.0;
        let r = a.tick(2.0, Mix::Auto, &i);
        assert_eq!((r.gpu_watts, r.asic_watts), (500.0, 0.0));
        // Pinned (not strict) too.
        i.gpu_deadline_watts = 0.0;
        let pin = Mix::Pinned {
            asic: 0.0,
            gpu: 1.0,
            strict: false,
        };
        let r = a.tick(3.0, pin, &i);
        assert_eq!((r.gpu_watts, r.asic_watts), (450.0, 150.0));
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        // Ramps never bind here (they have their own test), so work conservation is exact.
        (0.0f64..500.0, 0.0f64..1500.0, any::<bool>()).prop_map(|(min, extra, below)| Envelope {
            min_watts: min,
            max_watts: min + extra,
            below_min: below,
            ramp_watts_per_second: 1e12,
        })
    }

    fn mix() -> impl Strategy<Value = Mix> {
        prop_oneof![
            Just(Mix::Auto),
            (0.0f64..100.0, 0.0f64..100.0, any::<bool>()).prop_map(|(a, g, strict)| Mix::Pinned {
                asic: a,
                gpu: g,
                strict
            }),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_on_any_tick_sequence(
            asic_env in envelope(),
            gpu_env in envelope(),
            res in proptest::option::of(envelope()),
            steps in proptest::collection::vec(
                (0.0f64..3000.0, any::<bool>(), any::<bool>(), 0.0f64..2000.0, 0.0f64..3.0, 0.0f64..3.0, mix(), 0.0f64..5.0),
                1..40,
            ),
        ) {
            let mut a = Allocator::new(Hysteresis { min_gain: 0.05, dwell_seconds: 10.0 });
            let mut t = 0.0;
            for (budget, aw, gw, deadline, av, gv, mix, dt) in steps {
                t += dt;
                let i = Inputs {
                    budget_watts: budget,
                    asic: asic_env,
                    asic_has_work: aw,
                    gpu: gpu_env,
                    gpu_has_work: gw,
                    resistive: res,
                    gpu_deadline_watts: deadline,
                    asic_value_per_joule: av,
                    gpu_value_per_joule: gv,
                };
                let r = a.tick(t, mix, &i);
                prop_assert!(r.total() <= budget + 1e-9, "{r:?} over {budget}");
                prop_assert!(asic_env.allows(r.asic_watts), "asic {r:?} {asic_env:?}");
                prop_assert!(gpu_env.allows(r.gpu_watts), "gpu {r:?} {gpu_env:?}");
                prop_assert!(res.map_or(r.resistive_watts == 0.0, |e| e.allows(r.resistive_watts)));
                prop_assert!(aw || r.asic_watts == 0.0);
                prop_assert!(gw || r.gpu_watts == 0.0);
                prop_assert!((r.unmet_watts - (budget - r.total())).abs() < 1e-6);
                // Work-conserving: unmet heat only where no workload could take more.
                if !matches!(mix, Mix::Pinned { strict: true, .. }) && r.unmet_watts > 1e-6 {
                    let room = |on: bool, e: &Envelope, w: f64| {
                        on && w + 1e-9 < e.max_watts && (e.below_min || w + r.unmet_watts >= e.min_watts)
                    };
                    prop_assert!(!room(aw, &asic_env, r.asic_watts), "asic could take more: {r:?}");
                    prop_assert!(!room(gw, &gpu_env, r.gpu_watts), "gpu could take more: {r:?}");
                    prop_assert!(res.is_none_or(|e| !room(true, &e, r.resistive_watts)), "element could take more: {r:?}");
                    // Nor by starting an idle workload at its minimum with power moved from
                    // the other (which must stay in its envelope, the GPU above its deadline
                    // share).
                    let floor = if mix == Mix::Auto && gw {
                        gpu_env.fit_down(deadline.min(budget))
                    } else {
                        0.0
                    };
                    let startable = |on: bool, off: &Envelope, other: &Envelope, w: f64, floor: f64| {
                        let moved = w - (off.min_watts - r.unmet_watts);
                        on && off.min_watts <= off.max_watts && moved > 0.0 && moved >= floor && other.allows(moved)
                    };
                    if r.asic_watts == 0.0 && r.gpu_watts > 0.0 {
                        prop_assert!(!startable(aw, &asic_env, &gpu_env, r.gpu_watts, floor), "asic could start: {r:?}");
                    }
                    if r.gpu_watts == 0.0 && r.asic_watts > 0.0 {
                        prop_assert!(!startable(gw, &gpu_env, &asic_env, r.asic_watts, 0.0), "gpu could start: {r:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn market_headroom_is_spare_heat_the_mix_lets_the_gpu_take() {
        let env = |min, max| Envelope {
            min_watts: min,
            max_watts: max,
            below_min: false,
            ramp_watts_per_second: 1e9,
        };
        let i = Inputs {
            budget_watts: 1000.0,
            asic: env(100.0, 600.0),
            asic_has_work: true,
            gpu: env(50.0, 300.0),
            gpu_has_work: false,
            resistive: None,
            gpu_deadline_watts: 0.0,
            asic_value_per_joule: 1e-5,
            gpu_value_per_joule: 0.0,
        };
        // Auto: a market job worth more per joule takes what the GPU can; a cheaper one only
        // the heat the ASIC cannot absorb.
        assert_eq!(market_headroom(Mix::Auto, &i, false, 1e-4), 300.0);
        assert_eq!(market_headroom(Mix::Auto, &i, false, 1e-6), 300.0);
        let small = Inputs {
            budget_watts: 500.0,
            ..i
        };
        assert_eq!(market_headroom(Mix::Auto, &small, false, 1e-6), 0.0);
        // A local job, a warm room (no budget), or a mix pinned wholly to the ASIC: nothing.
        assert_eq!(market_headroom(Mix::Auto, &i, true, 1e-4), 0.0);
        let warm = Inputs {
            budget_watts: 0.0,
            ..i
        };
        assert_eq!(market_headroom(Mix::Auto, &warm, false, 1e-4), 0.0);
        let asic_only = Mix::Pinned {
            asic: 1.0,
            gpu: 0.0,
            strict: false,
        };
        assert_eq!(market_headroom(asic_only, &i, false, 1e-4), 0.0);
        // Pinned 70 % AI of 200 W: 140 W; below the GPU's minimum it cannot run at all.
        let ai = Mix::Pinned {
            asic: 0.3,
            gpu: 0.7,
            strict: true,
        };
        let b200 = Inputs {
            budget_watts: 200.0,
            ..i
        };
        assert_eq!(market_headroom(ai, &b200, false, 0.0), 140.0);
        let b50 = Inputs {
            budget_watts: 50.0,
            ..i
        };
        assert_eq!(market_headroom(ai, &b50, false, 0.0), 0.0);
    }

    #[test]
    fn the_gpu_and_the_element_cover_a_fleet_that_lags_or_steps() {
        let mut i = inputs(500.0);
        i.resistive = Some(Envelope {
            min_watts: 0.0,
            max_watts: 1000.0,
            below_min: true,
            ramp_watts_per_second: 1e6,
        });
        let a = Allocator::new(Hysteresis::default()).tick(0.0, Mix::Auto, &i);
        assert_eq!(a.asic_watts, 400.0, "{a:?}");
        // The fleet is still ramping (or its levels stop at 300 W): 100 W short.
        let c = cover(a, 300.0, Mix::Auto, &i);
        assert_eq!(c.asic_expected_watts, 300.0);
        assert!(
            (c.asic_expected_watts + c.gpu_watts + c.resistive_watts - 500.0).abs() < 1e-9,
            "{c:?}"
        );
        assert_eq!(c.gpu_watts, a.gpu_watts + 100.0);
        assert_eq!(c.unmet_watts, 0.0);
        // Under a strict pin the GPU keeps its share and the element covers.
        let strict = Mix::Pinned {
            asic: 0.8,
            gpu: 0.2,
            strict: true,
        };
        let a = Allocator::new(Hysteresis::default()).tick(0.0, strict, &i);
        let c = cover(a, a.asic_watts - 50.0, strict, &i);
        assert_eq!(c.gpu_watts, a.gpu_watts);
        assert_eq!(c.resistive_watts, a.resistive_watts + 50.0);
        // A fleet that cannot stop draws more than its target: the element gives back first.
        let mut hot = a;
        hot.resistive_watts = 30.0;
        let c = cover(hot, hot.asic_watts + 80.0, strict, &i);
        assert_eq!(c.resistive_watts, 0.0);
        assert_eq!(c.gpu_watts, hot.gpu_watts - 50.0);
        // Nothing to cover: unchanged.
        let same = cover(a, a.asic_watts, strict, &i);
        assert_eq!(
            (same.gpu_watts, same.resistive_watts),
            (a.gpu_watts, a.resistive_watts)
        );
    }

    proptest! {
        #[test]
        fn covered_draw_never_exceeds_the_budget_unless_the_fleet_alone_does(
            budget in 0.0f64..1500.0,
            expected in 0.0f64..800.0,
            strict in any::<bool>(),
            with_element in any::<bool>(),
        ) {
            let mut i = inputs(budget);
            if with_element {
                i.resistive = Some(Envelope {
                    min_watts: 0.0,
                    max_watts: 600.0,
                    below_min: true,
                    ramp_watts_per_second: 1e6,
                });
            }
            let mix = Mix::Pinned { asic: 0.6, gpu: 0.4, strict };
            let a = Allocator::new(Hysteresis::default()).tick(0.0, mix, &i);
            let c = cover(a, expected, mix, &i);
            let drawn = c.asic_expected_watts + c.gpu_watts + c.resistive_watts;
            if expected <= budget {
                prop_assert!(drawn <= budget + 1e-6, "{c:?}");
            }
            prop_assert!(i.gpu.allows(c.gpu_watts), "{c:?}");
            prop_assert!((c.unmet_watts - (budget - drawn).max(0.0)).abs() < 1e-6);
        }
    }
}
