//! The seam between the fleet and one mining device: what a driver reports and what it takes.
//!
//! Every device kind (the software ASIC with its pool client, a CGMiner-API Avalon, an AxeOS
//! Bitaxe, a Braiins OS+ miner) implements [`MinerDevice`]. A driver owns its device: it polls it
//! in its own task with timeouts, keeps the latest [`DeviceStatus`], and applies the latest
//! [`DeviceCommand`] it was given. The calls here never block and never do I/O.
//!
//! Times are *schedule* seconds (`Clock::now_s`), so a simulation at `--sim-speed N` runs the
//! devices' ramps, rate limits and dead-man deadlines N times faster too.

use serde::Serialize;

use crate::mining::asic::PowerSource;

/// One discrete setting of a device (an Avalon work mode, a Bitaxe frequency step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// Its name as the owner knows it ("low", "medium", "high", "490 MHz").
    pub name: String,
    /// Nominal wall power at this setting, W.
    pub watts: f64,
}

/// What powers a device can be set to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSteps {
    /// Discrete levels, ascending by watts; [`Setting::Level`] indexes them.
    Levels(Vec<Level>),
    /// Any power target within a range, W ([`Setting::Watts`]).
    Range {
        /// Lowest target, W.
        min_watts: f64,
        /// Highest target, W.
        max_watts: f64,
    },
}

/// How a device can be driven: its steps, whether it can stop, how fast it follows and how often
/// it may be told something new.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceProfile {
    /// The settings it runs at.
    pub steps: PowerSteps,
    /// Wall power when stopped (paused, idle, soft-off), W; `None` when its API cannot stop it
    /// (the lowest setting is then its floor).
    pub stopped_watts: Option<f64>,
    /// Schedule seconds from a new setting until its power has settled (calibration, ramp).
    pub settle_seconds: f64,
    /// Least schedule seconds between two commands that change its setting.
    pub min_command_interval_seconds: f64,
}

impl DeviceProfile {
    /// The lowest power it draws while running, W.
    pub fn min_running_watts(&self) -> f64 {
        match &self.steps {
            PowerSteps::Levels(l) => l.first().map_or(0.0, |l| l.watts),
            PowerSteps::Range { min_watts, .. } => *min_watts,
        }
    }

    /// The highest power it draws, W.
    pub fn max_watts(&self) -> f64 {
        match &self.steps {
            PowerSteps::Levels(l) => l.last().map_or(0.0, |l| l.watts),
            PowerSteps::Range { max_watts, .. } => *max_watts,
        }
    }

    /// The nominal power of `setting`, W.
    pub fn watts_of(&self, setting: Setting) -> f64 {
        match (setting, &self.steps) {
            (Setting::Stop, _) => self
                .stopped_watts
                .unwrap_or_else(|| self.min_running_watts()),
            (Setting::Level(i), PowerSteps::Levels(l)) => {
                l.get(i).or(l.last()).map_or(0.0, |l| l.watts)
            }
            (
                Setting::Watts(w),
                PowerSteps::Range {
                    min_watts,
                    max_watts,
                },
            ) => w.clamp(*min_watts, *max_watts),
            (Setting::Level(_), PowerSteps::Range { min_watts, .. }) => *min_watts,
            (Setting::Watts(w), PowerSteps::Levels(_)) => w,
        }
    }

    /// The level `setting` asks for: `Level(i)` itself, `Watts(w)` the highest level of at most
    /// `w` (else the lowest); `None` for `Stop` and for a power range.
    pub fn level_index(&self, setting: Setting) -> Option<usize> {
        match (setting, &self.steps) {
            (Setting::Stop, _) | (_, PowerSteps::Range { .. }) => None,
            (Setting::Level(i), PowerSteps::Levels(_)) => Some(i),
            (Setting::Watts(w), PowerSteps::Levels(l)) => {
                Some(l.iter().rposition(|l| l.watts <= w).unwrap_or(0))
            }
        }
    }

    /// The setting it falls back to when it must be cold: stopped if it can stop, else its
    /// lowest setting.
    pub fn coldest(&self) -> Setting {
        match (&self.steps, self.stopped_watts) {
            (_, Some(_)) => Setting::Stop,
            (PowerSteps::Levels(_), None) => Setting::Level(0),
            (PowerSteps::Range { min_watts, .. }, None) => Setting::Watts(*min_watts),
        }
    }
}

/// A setting a device is told to run at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// Stopped (paused, idle); only for devices whose profile has `stopped_watts`.
    Stop,
    /// Level `i` of [`PowerSteps::Levels`].
    Level(usize),
    /// A power target within [`PowerSteps::Range`], W.
    Watts(f64),
}

/// The setting a device should run at, until a schedule-time deadline: past it, with no fresh
/// command, the driver puts the device at its profile's [`DeviceProfile::coldest`] setting by
/// itself (a stalled control loop leaves every device cold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceCommand {
    /// The setting.
    pub setting: Setting,
    /// Schedule seconds after which it no longer holds.
    pub valid_until_s: f64,
}

/// A device's condition, as its driver last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Not yet identified (no successful poll yet).
    Starting,
    /// Answering and following commands.
    Ok,
    /// Not answering (refused, timed out, garbage, HTTP error): it cannot be stopped by hearth.
    Unreachable,
    /// Answering, but busy settling after a change (an Avalon calibrating): commands wait.
    Calibrating,
    /// Its own over-temperature protection is active; hearth does not fight it.
    Overheated,
    /// Answering, but refusing commands or reporting a fault.
    Fault,
}

impl DeviceState {
    /// Its name in status and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceState::Starting => "starting",
            DeviceState::Ok => "ok",
            DeviceState::Unreachable => "unreachable",
            DeviceState::Calibrating => "calibrating",
            DeviceState::Overheated => "overheated",
            DeviceState::Fault => "fault",
        }
    }
}

/// One temperature a device reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Temperature {
    /// Which sensor ("chip", "vr", "board0", "inlet").
    pub sensor: String,
    /// °C.
    pub celsius: f64,
}

/// A device's latest telemetry and condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStatus {
    /// Its name (configured, else `KIND@ADDRESS`).
    pub name: String,
    /// `software`, `avalon`, `axeos` or `braiins`.
    pub kind: String,
    /// The model it reported ("Avalon Nano3s", "Bitaxe Gamma 601"), empty until identified.
    pub model: String,
    /// Where it is reached (`host:port`), empty for the software ASIC.
    pub address: String,
    /// Its condition.
    pub state: DeviceState,
    /// Why it is in that state (the last error or the device's own message), if not `ok`.
    pub reason: Option<String>,
    /// The last power it reported (or, for the software ASIC, modelled), W.
    pub watts: Option<f64>,
    /// How `watts` was obtained.
    pub power_source: PowerSource,
    /// The setting it reports running at, if known.
    pub setting: Option<Setting>,
    /// The name of that setting ("high", "140 W", "stopped").
    pub setting_name: Option<String>,
    /// Its temperatures.
    pub temperatures: Vec<Temperature>,
    /// Its chip temperature limit, °C (the chip over-temperature trip uses it).
    pub chip_limit_celsius: f64,
    /// Hashrate it reports, H/s.
    pub hashes_per_second: f64,
    /// Shares its pool accepted, as it reports them.
    pub shares_accepted: u64,
    /// Shares its pool rejected.
    pub shares_rejected: u64,
    /// Schedule seconds of its last good telemetry.
    pub telemetry_at_s: Option<f64>,
    /// Commands sent to it that change its setting.
    pub commands_sent: u64,
    /// Schedule seconds of the last such command.
    pub last_command_at_s: Option<f64>,
}

impl DeviceStatus {
    /// A fresh status for a device not yet heard from.
    pub fn starting(name: &str, kind: &str, address: &str, power_source: PowerSource) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            model: String::new(),
            address: address.into(),
            state: DeviceState::Starting,
            reason: None,
            watts: None,
            power_source,
            setting: None,
            setting_name: None,
            temperatures: Vec::new(),
            chip_limit_celsius: 85.0,
            hashes_per_second: 0.0,
            shares_accepted: 0,
            shares_rejected: 0,
            telemetry_at_s: None,
            commands_sent: 0,
            last_command_at_s: None,
        }
    }

    /// The hottest temperature it reports, °C.
    pub fn max_celsius(&self) -> Option<f64> {
        self.temperatures.iter().map(|t| t.celsius).reduce(f64::max)
    }
}

/// A mining device as the fleet sees it; every call returns at once (no I/O).
pub trait MinerDevice: Send + Sync {
    /// How it can be driven; `None` until the driver has identified it.
    fn profile(&self) -> Option<DeviceProfile>;
    /// Its latest telemetry and condition.
    fn status(&self) -> DeviceStatus;
    /// The setting it should run at, until the command's deadline. Called every tick with a
    /// fresh deadline; the driver sends the device a command only when the setting changes, no
    /// more often than the profile's `min_command_interval_seconds`, except to go cold.
    fn command(&self, command: DeviceCommand);
    /// Whether it has work to hash (a real miner mines its own pools: yes while it answers).
    fn has_work(&self) -> bool {
        true
    }
}
