//! The thermostat controller: setpoint plan + room temperature + outdoor temperature → heat budget.
//!
//! Structure (a two-degree-of-freedom controller):
//! - A **reference generator** moves the internal reference towards the target along a trajectory
//!   the room model says is feasible: up at `recovery_power_fraction · max_power`, down along the
//!   room's free cooling curve. Setpoint changes therefore never kick the output.
//! - **Feed-forward** is the power that holds the room on that trajectory:
//!   `UA·(ref − T_out) + C·d(ref)/dt`. On a steady setpoint it is `(setpoint − T_out)·UA`.
//! - A **PI** on the filtered measurement corrects what the model misses. Its gains follow from the
//!   model (critically damped, closed-loop time constant `closed_loop_seconds`), so another room
//!   needs another model, not another tuning. The integrator is conditional and clamped within
//!   `[0 − ff, max_power − ff]`.
//! - **Adaptive recovery**: before a scheduled rise the model predicts how long the rise takes at
//!   the recovery power and starts early enough to arrive when the new setpoint begins.

use serde::{Deserialize, Serialize};

use super::estimator::{ModelEstimator, RoomModel};
use super::schedule::SetpointPlan;

/// Tuning of the controller. Every field has a default that works across rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Closed-loop time constant of the PI, seconds.
    pub closed_loop_seconds: f64,
    /// Time constant of the measurement low-pass filter, seconds.
    pub measurement_filter_seconds: f64,
    /// Share of max power that planned rises (recovery, raised setpoints) assume, 0–1.
    pub recovery_power_fraction: f64,
    /// Extra time allowed before a scheduled rise, minutes (plus 10 % of the predicted rise).
    pub recovery_margin_minutes: f64,
    /// Start heating early so that scheduled rises are met on time.
    pub adaptive_recovery: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            closed_loop_seconds: 1800.0,
            measurement_filter_seconds: 120.0,
            recovery_power_fraction: 0.8,
            recovery_margin_minutes: 15.0,
            adaptive_recovery: true,
        }
    }
}

/// One tick's inputs.
#[derive(Debug, Clone, Copy)]
pub struct ControlInput {
    /// Now, seconds since the schedule epoch.
    pub now_s: f64,
    /// Seconds since the previous tick.
    pub dt_s: f64,
    /// The room temperature reading, °C.
    pub room_celsius: f64,
    /// The outdoor temperature, °C.
    pub outdoor_celsius: f64,
    /// The setpoint now and the next change.
    pub plan: SetpointPlan,
}

/// One tick's output and the terms behind it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ControlOutput {
    /// The heat budget, W, within `[0, max_power]`.
    pub budget_watts: f64,
    /// The internal reference the room is steered along, °C.
    pub reference_celsius: f64,
    /// The filtered room temperature, °C.
    pub filtered_celsius: f64,
    /// Feed-forward term, W.
    pub feedforward_watts: f64,
    /// Proportional term, W.
    pub proportional_watts: f64,
    /// Integral term, W.
    pub integral_watts: f64,
    /// True while pre-heating for a scheduled rise.
    pub recovering: bool,
}

/// The PI + feed-forward controller with adaptive recovery.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: ControllerConfig,
    max_power_watts: f64,
    estimator: ModelEstimator,
    /// Two cascaded low-pass stages of the measurement.
    filtered: Option<(f64, f64)>,
    reference: Option<f64>,
    integral_watts: f64,
    /// The scheduled rise being pre-heated for, by its start time.
    recovering_for: Option<f64>,
    last_budget: f64,
}

impl Controller {
    /// A controller for a heater of `max_power_watts` in a room described by `estimator`.
    pub fn new(cfg: ControllerConfig, max_power_watts: f64, estimator: ModelEstimator) -> Self {
        Self {
            cfg,
            max_power_watts,
            estimator,
            filtered: None,
            reference: None,
            integral_watts: 0.0,
            recovering_for: None,
            last_budget: 0.0,
        }
    }

    /// The room model in use (configured or estimated).
    pub fn model(&self) -> RoomModel {
        self.estimator.model()
    }

    /// Whether the model in use was estimated online.
    pub fn model_is_estimated(&self) -> bool {
        self.estimator.is_estimated()
    }

    /// Forgets dynamic state, e.g. after a safety trip forced the output to zero.
    pub fn reset(&mut self) {
        self.filtered = None;
        self.reference = None;
        self.integral_watts = 0.0;
        self.recovering_for = None;
        self.last_budget = 0.0;
        self.estimator.discard_window();
    }

    /// Runs one tick.
    pub fn step(&mut self, inp: &ControlInput) -> ControlOutput {
        let dt = inp.dt_s.max(1e-3);
        let pmax = self.max_power_watts;
        // The heat actually applied since the last tick teaches the estimator.
        self.estimator
            .observe(dt, inp.room_celsius, inp.outdoor_celsius, self.last_budget);
        let model = self.estimator.model();

        // Two stages of half the time constant each: the same lag as one stage, but the noise
        // that reaches the actuator is far smoother.
        let (f1, y) = match self.filtered {
            None => (inp.room_celsius, inp.room_celsius),
            Some((f1, f2)) => {
                let tau = (0.5 * self.cfg.measurement_filter_seconds).max(1e-3);
                let a = 1.0 - (-dt / tau).exp();
                let f1 = f1 + a * (inp.room_celsius - f1);
                (f1, f2 + a * (f1 - f2))
            }
        };
        self.filtered = Some((f1, y));

        let target = self.target(inp, y, &model);
        let r0 = self.reference.unwrap_or(y);
        let deadline = self.recovering_for.map(|at| at - inp.now_s);
        let power = self.ramp_power(r0, target, inp.outdoor_celsius, deadline, &model);
        let r1 = advance_reference(r0, target, inp.outdoor_celsius, dt, power, &model);
        self.reference = Some(r1);

        let c = model.capacity_joules_per_kelvin;
        let ff = (model.ua_watts_per_kelvin * (r1 - inp.outdoor_celsius) + c * (r1 - r0) / dt)
            .clamp(0.0, pmax);
        let omega = 1.0 / self.cfg.closed_loop_seconds.max(1.0);
        let (kp, ki) = (2.0 * c * omega, c * omega * omega);
        let e = r1 - y;
        let p = kp * e;
        let unsat = ff + p + self.integral_watts;
        let pushing_high = unsat > pmax && e > 0.0;
        let pushing_low = unsat < 0.0 && e < 0.0;
        if !pushing_high && !pushing_low {
            self.integral_watts += ki * e * dt;
        }
        self.integral_watts = self.integral_watts.clamp(-ff, pmax - ff);
        let budget = (ff + p + self.integral_watts).clamp(0.0, pmax);
        self.last_budget = budget;
        ControlOutput {
            budget_watts: budget,
            reference_celsius: r1,
            filtered_celsius: y,
            feedforward_watts: ff,
            proportional_watts: p,
            integral_watts: self.integral_watts,
            recovering: self.recovering_for.is_some(),
        }
    }

    /// The temperature to steer towards: the current setpoint, or the next one while recovering.
    fn target(&mut self, inp: &ControlInput, y: f64, model: &RoomModel) -> f64 {
        let Some(next) = inp.plan.next.filter(|n| n.celsius > inp.plan.celsius) else {
            self.recovering_for = None;
            return inp.plan.celsius;
        };
        if !self.cfg.adaptive_recovery {
            return inp.plan.celsius;
        }
        if self.recovering_for != Some(next.at_s) {
            let power = self.cfg.recovery_power_fraction * self.max_power_watts;
            let needed = model.seconds_to_heat(y, next.celsius, power, inp.outdoor_celsius);
            let margin = self.cfg.recovery_margin_minutes * 60.0 + 0.1 * needed;
            if needed + margin >= next.at_s - inp.now_s {
                self.recovering_for = Some(next.at_s);
            }
        }
        if self.recovering_for == Some(next.at_s) {
            next.celsius
        } else {
            inp.plan.celsius
        }
    }

    /// The heat a rise is planned with: the recovery fraction of max power, or more when that
    /// would arrive late: then just enough to arrive `recovery_margin_minutes` before the
    /// deadline. Continuous in its inputs, so noise cannot make it flicker.
    fn ramp_power(
        &self,
        from: f64,
        to: f64,
        t_out: f64,
        deadline: Option<f64>,
        m: &RoomModel,
    ) -> f64 {
        let nominal = self.cfg.recovery_power_fraction * self.max_power_watts;
        let pmax = self.max_power_watts;
        match deadline {
            Some(remaining) => {
                let available = remaining - self.cfg.recovery_margin_minutes * 60.0;
                m.power_to_heat_within(from, to, available, t_out)
                    .clamp(nominal, pmax)
            }
            None if m.seconds_to_heat(from, to, nominal, t_out).is_finite() => nominal,
            None => pmax,
        }
    }
}

/// Moves the reference one tick towards `target` along a trajectory the model deems feasible:
/// up as heated by `power`, down as the room cools with the heater off.
fn advance_reference(r: f64, target: f64, t_out: f64, dt: f64, power: f64, m: &RoomModel) -> f64 {
    let decay = (-dt / m.time_constant_seconds()).exp();
    if target > r {
        let t_eq = t_out + power / m.ua_watts_per_kelvin;
        // Where the heater cannot lift the room any further, hold the reference.
        (t_eq + (r - t_eq) * decay).clamp(r, target)
    } else {
        (t_out + (r - t_out) * decay).clamp(target, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermal::room::{Room, RoomParams};

    fn controller(ua: f64, c: f64, pmax: f64) -> Controller {
        Controller::new(
            ControllerConfig::default(),
            pmax,
            ModelEstimator::fixed(RoomModel {
                ua_watts_per_kelvin: ua,
                capacity_joules_per_kelvin: c,
            }),
        )
    }

    fn steady(celsius: f64) -> SetpointPlan {
        SetpointPlan {
            celsius,
            next: None,
        }
    }

    #[test]
    fn holds_setpoint_with_feedforward_and_no_error() {
        let mut ctl = controller(33.3, 3e6, 1200.0);
        let mut room = Room::new(RoomParams::from_rc(1.0 / 33.3, 3e6), 21.0);
        let mut out = ControlOutput::default();
        for k in 0..3600 * 6 {
            out = ctl.step(&ControlInput {
                now_s: f64::from(k),
                dt_s: 1.0,
                room_celsius: room.air_celsius(),
                outdoor_celsius: 5.0,
                plan: steady(21.0),
            });
            room.step(1.0, out.budget_watts, 5.0, 1.0);
        }
        assert!((room.air_celsius() - 21.0).abs() < 0.01);
        assert!((out.feedforward_watts - 16.0 * 33.3).abs() < 1.0);
    }

    #[test]
    fn setpoint_step_does_not_kick_the_output() {
        let mut ctl = controller(33.3, 3e6, 1200.0);
        let mut last = 0.0;
        for k in 0..600 {
            let sp = if k < 300 { 20.0 } else { 23.0 };
            let out = ctl.step(&ControlInput {
                now_s: f64::from(k),
                dt_s: 1.0,
                room_celsius: 20.0,
                outdoor_celsius: 5.0,
                plan: steady(sp),
            });
            if k == 300 {
                // A 3 K step times Kp would ask for ~10 kW; instead the reference starts a ramp
                // whose feed-forward is the planned recovery power, well below max.
                assert!(
                    out.budget_watts <= 0.8 * 1200.0 + 1.0,
                    "kick: {}",
                    out.budget_watts
                );
            } else if k > 0 {
                assert!((out.budget_watts - last).abs() < 5.0, "jump at tick {k}");
            }
            last = out.budget_watts;
        }
    }

    #[test]
    fn integrator_does_not_wind_up_while_saturated() {
        let mut ctl = controller(33.3, 3e6, 1200.0);
        for k in 0..7200 {
            let out = ctl.step(&ControlInput {
                now_s: f64::from(k),
                dt_s: 1.0,
                room_celsius: 15.0, // far below; output saturates
                outdoor_celsius: -10.0,
                plan: steady(21.0),
            });
            assert!(out.integral_watts <= 1200.0 - out.feedforward_watts + 1e-9);
            assert!(out.budget_watts <= 1200.0);
        }
    }

    #[test]
    fn recovery_starts_early_enough_to_meet_the_scheduled_rise() {
        use crate::thermal::schedule::NextSetpoint;
        let model = RoomModel {
            ua_watts_per_kelvin: 33.3,
            capacity_joules_per_kelvin: 3e6,
        };
        let mut ctl = controller(model.ua_watts_per_kelvin, 3e6, 1200.0);
        let mut room = Room::new(RoomParams::from_rc(1.0 / 33.3, 3e6), 18.0);
        let rise_at = 12.0 * 3600.0;
        let mut started = None;
        for k in 0..(12 * 3600) {
            let t = f64::from(k);
            let out = ctl.step(&ControlInput {
                now_s: t,
                dt_s: 1.0,
                room_celsius: room.air_celsius(),
                outdoor_celsius: 2.0,
                plan: SetpointPlan {
                    celsius: 18.0,
                    next: Some(NextSetpoint {
                        at_s: rise_at,
                        celsius: 21.0,
                    }),
                },
            });
            if out.recovering && started.is_none() {
                started = Some(t);
            }
            room.step(1.0, out.budget_watts, 2.0, 1.0);
        }
        let needed = model.seconds_to_heat(18.0, 21.0, 0.8 * 1200.0, 2.0);
        let latest = rise_at - needed;
        let started = started.expect("recovery started");
        // Starts ahead of the last possible moment by the margin (15 min + 10 %), no more.
        let lead = latest - started;
        assert!(
            lead > 0.0 && lead < 900.0 + 0.1 * needed + 60.0,
            "lead {lead} s"
        );
        assert!(
            room.air_celsius() > 20.9,
            "arrived at {}",
            room.air_celsius()
        );
    }
}
