//! The status snapshot the control loop publishes every tick, and that telemetry and the API
//! read: plain values, with no handle on the tasks that made them.

use serde::Serialize;

use crate::gpu::runner::RunnerStatus;
use crate::market::device::MarketStatus;
use crate::mining::engine::MiningStatus;
use crate::mining::fleet::FleetStatus;
use crate::sched::scheduler::SchedStatus;
use crate::thermal::controller::ControlOutput;
use crate::thermal::estimator::RoomModel;
use crate::thermal::safety::Trip;

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
    /// The owner switched heating off (the budget is then 0 W).
    pub heating_off: bool,
    /// The heat budget, W (0 while tripped or switched off).
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
    /// The mining fleet: each device's state, setting, measured power and temperatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
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
