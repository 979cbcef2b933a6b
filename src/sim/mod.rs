//! `hearth simulate`: runs a scenario in simulated time for hearth's controller and a bang-bang
//! baseline side by side, on the same room, weather, schedule and sensor noise.

pub mod kpi;
pub mod leases;
pub mod plot;
pub mod split_plot;
pub mod workloads;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::thermal::controller::{ControlInput, Controller, ControllerConfig};
use crate::thermal::estimator::{ModelEstimator, RoomModel};
use crate::thermal::room::{ua_factor_at, Disturbance, OutdoorProfile, Room, RoomParams};
use crate::thermal::schedule::{
    parse_days, Schedule, ScheduleConfig, ScheduleError, SetpointPlan, Setpoints,
};
use crate::thermal::sensor::SensorNoise;

pub use kpi::Kpis;
pub use workloads::{PolicyRun, WorkloadRuns, WorkloadsConfig};

/// A scenario that cannot run.
#[derive(Debug, Error)]
pub enum SimError {
    /// The schedule is invalid.
    #[error("scenario schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// A parameter is out of range.
    #[error("scenario {key}: {msg}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
}

/// Everything that defines a simulation run. Defaults are the reference scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Length of the run, hours.
    pub hours: f64,
    /// Control tick, seconds.
    pub tick_seconds: f64,
    /// Weekday of day one: "mon" … "sun".
    pub start_weekday: String,
    /// Room temperature at the start, °C.
    pub initial_celsius: f64,
    /// The room.
    pub room: RoomParams,
    /// Heater power, W.
    pub max_power_watts: f64,
    /// Outdoor temperature.
    pub outdoor: OutdoorProfile,
    /// The setpoint schedule.
    pub schedule: ScheduleConfig,
    /// Window openings and the like.
    pub disturbances: Vec<Disturbance>,
    /// Sensor noise standard deviation, K.
    pub sensor_noise_celsius: f64,
    /// Sensor resolution, K.
    pub sensor_quantum_celsius: f64,
    /// Seed of the sensor noise.
    pub seed: u64,
    /// hearth's controller tuning.
    pub controller: ControllerConfig,
    /// Give hearth's controller a wrong model (UA and C × this factor) and let it learn online.
    /// `None` configures it with the room's true UA and C.
    pub estimate_from_prior_factor: Option<f64>,
    /// Half-width of the baseline's hysteresis band, K.
    pub baseline_tolerance_celsius: f64,
    /// Hours simulated before KPIs start counting, so that the start state washes out.
    pub warmup_hours: f64,
    /// The compute workloads behind the heat budget (`hearth simulate --workloads`).
    pub workloads: WorkloadsConfig,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            hours: 48.0,
            tick_seconds: 1.0,
            start_weekday: "mon".into(),
            initial_celsius: 18.0,
            room: RoomParams::from_rc(0.03, 3e6),
            max_power_watts: 1200.0,
            outdoor: OutdoorProfile::default(),
            schedule: ScheduleConfig::default(),
            disturbances: vec![Disturbance {
                day: 2,
                at: "10:00".into(),
                duration_minutes: 30.0,
                ua_factor: 4.0,
            }],
            sensor_noise_celsius: 0.05,
            sensor_quantum_celsius: 0.1,
            seed: 1,
            controller: ControllerConfig::default(),
            estimate_from_prior_factor: None,
            baseline_tolerance_celsius: 0.3,
            warmup_hours: 0.0,
            workloads: WorkloadsConfig::default(),
        }
    }
}

/// A controller under test in the simulator.
pub trait SimController {
    /// Its name in tables and plots.
    fn name(&self) -> &str;
    /// Heat power for the next tick, W.
    fn step(&mut self, input: &ControlInput) -> f64;
}

/// hearth's controller.
pub struct HearthController(Controller);

impl SimController for HearthController {
    fn name(&self) -> &str {
        "hearth"
    }
    fn step(&mut self, input: &ControlInput) -> f64 {
        self.0.step(input).budget_watts
    }
}

/// Home Assistant `generic_thermostat` style: fully on below `sp − tol`, off above `sp + tol`.
pub struct BangBang {
    tolerance: f64,
    max_power_watts: f64,
    on: bool,
}

impl BangBang {
    /// A bang-bang thermostat with ±`tolerance` K hysteresis driving a `max_power_watts` heater.
    pub fn new(tolerance: f64, max_power_watts: f64) -> Self {
        Self {
            tolerance,
            max_power_watts,
            on: false,
        }
    }
}

impl SimController for BangBang {
    fn name(&self) -> &str {
        "bang-bang"
    }
    fn step(&mut self, input: &ControlInput) -> f64 {
        let sp = input.plan.celsius;
        if input.room_celsius <= sp - self.tolerance {
            self.on = true;
        } else if input.room_celsius >= sp + self.tolerance {
            self.on = false;
        }
        if self.on {
            self.max_power_watts
        } else {
            0.0
        }
    }
}

/// Per-tick record of one controller's run.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The controller's name.
    pub name: String,
    /// Time, seconds since the start.
    pub t_s: Vec<f64>,
    /// True room temperature, °C.
    pub room_celsius: Vec<f64>,
    /// Scheduled setpoint, °C.
    pub setpoint_celsius: Vec<f64>,
    /// Outdoor temperature, °C.
    pub outdoor_celsius: Vec<f64>,
    /// Heat power, W.
    pub power_watts: Vec<f64>,
}

/// One controller's result.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The per-tick trace.
    pub trace: Trace,
    /// Its KPIs.
    pub kpis: Kpis,
}

impl Scenario {
    /// Checks the scenario and compiles its schedule.
    pub fn compile_schedule(&self) -> Result<Schedule, SimError> {
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SimError::Invalid {
                    key,
                    msg: format!("must be a positive number, got {v}"),
                })
            }
        };
        positive("hours", self.hours)?;
        if self.warmup_hours.is_nan() || self.warmup_hours < 0.0 {
            return Err(SimError::Invalid {
                key: "warmup_hours",
                msg: format!("must not be negative, got {}", self.warmup_hours),
            });
        }
        positive("tick_seconds", self.tick_seconds)?;
        positive("room.ua_watts_per_kelvin", self.room.ua_watts_per_kelvin)?;
        positive(
            "room.capacity_joules_per_kelvin",
            self.room.capacity_joules_per_kelvin,
        )?;
        positive("max_power_watts", self.max_power_watts)?;
        if self.sensor_noise_celsius < 0.0 || self.sensor_quantum_celsius < 0.0 {
            return Err(SimError::Invalid {
                key: "sensor_noise_celsius",
                msg: "noise and quantum must not be negative".into(),
            });
        }
        self.workloads.validate()?;
        let days = parse_days(&self.start_weekday)?;
        if days.count_ones() != 1 {
            return Err(SimError::Invalid {
                key: "start_weekday",
                msg: format!("name one day, got {:?}", self.start_weekday),
            });
        }
        Ok(Schedule::new(&self.schedule, days.trailing_zeros() as u8)?)
    }

    /// hearth's controller as configured for this scenario.
    pub fn hearth_controller(&self) -> HearthController {
        let truth = RoomModel {
            ua_watts_per_kelvin: self.room.ua_watts_per_kelvin,
            capacity_joules_per_kelvin: self.room.capacity_joules_per_kelvin,
        };
        let estimator = match self.estimate_from_prior_factor {
            None => ModelEstimator::fixed(truth),
            Some(f) => ModelEstimator::new(
                RoomModel {
                    ua_watts_per_kelvin: truth.ua_watts_per_kelvin * f,
                    capacity_joules_per_kelvin: truth.capacity_joules_per_kelvin * f,
                },
                true,
            ),
        };
        HearthController(Controller::new(
            self.controller.clone(),
            self.max_power_watts,
            estimator,
        ))
    }

    /// The baseline for this scenario.
    pub fn baseline(&self) -> BangBang {
        BangBang::new(self.baseline_tolerance_celsius, self.max_power_watts)
    }

    /// Runs one controller through the scenario.
    pub fn run(&self, controller: &mut dyn SimController) -> Result<RunResult, SimError> {
        self.run_heating(controller, &mut |_, budget| budget)
    }

    /// Runs one controller through the scenario; each tick `heat(t, budget)` turns the budget
    /// (clamped to the heater's power) into the heat actually applied, which the room receives
    /// and the trace records.
    pub fn run_heating(
        &self,
        controller: &mut dyn SimController,
        heat: &mut dyn FnMut(f64, f64) -> f64,
    ) -> Result<RunResult, SimError> {
        let schedule = self.compile_schedule()?;
        let mut setpoints = Setpoints::new(schedule.clone());
        let mut room = Room::new(self.room.clone(), self.initial_celsius);
        let mut noise = SensorNoise::new(
            self.sensor_noise_celsius,
            self.sensor_quantum_celsius,
            self.seed,
        );
        let dt = self.tick_seconds;
        let steps = ((self.warmup_hours + self.hours) * 3600.0 / dt).round() as usize;
        let mut trace = Trace {
            name: controller.name().to_string(),
            ..Trace::default()
        };
        for k in 0..steps {
            let t = k as f64 * dt;
            let outdoor = self.outdoor.celsius_at(t);
            let plan: SetpointPlan = setpoints.plan(t);
            let budget = controller
                .step(&ControlInput {
                    now_s: t,
                    dt_s: dt,
                    room_celsius: noise.apply(room.air_celsius()),
                    outdoor_celsius: outdoor,
                    plan,
                })
                .clamp(0.0, self.max_power_watts);
            let watts = heat(t, budget);
            trace.t_s.push(t);
            trace.room_celsius.push(room.air_celsius());
            trace.setpoint_celsius.push(plan.celsius);
            trace.outdoor_celsius.push(outdoor);
            trace.power_watts.push(watts);
            room.step(dt, watts, outdoor, ua_factor_at(&self.disturbances, t));
        }
        let kpis = kpi::compute(&trace, &schedule, dt, self.warmup_hours * 3600.0);
        Ok(RunResult { trace, kpis })
    }

    /// Runs hearth's controller and the baseline: `[hearth, baseline]`.
    pub fn run_both(&self) -> Result<[RunResult; 2], SimError> {
        let hearth = self.run(&mut self.hearth_controller())?;
        let baseline = self.run(&mut self.baseline())?;
        Ok([hearth, baseline])
    }
}
