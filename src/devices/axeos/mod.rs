//! Bitaxe and other ESP-Miner boards through the AxeOS REST API (HTTP 80).
//!
//! A poll is `GET /api/system/info`. A level is a frequency/voltage step set with one
//! `PATCH /api/system` (which writes the board's flash: few levels, changed rarely, and never
//! re-sent when the board already runs it); stopping is `POST /api/system/pause` (and
//! `/resume`) where the firmware has it. When the board's own overheat protection has latched
//! (`overheat_mode = 1`), hearth reports it and leaves it alone: it never PATCHes `overheat_mode`.

pub mod http;
pub mod info;
pub mod models;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use super::config::{DeviceConfig, DeviceKind};
use super::driver::{self, DeviceError, Protocol, Telemetry};
use super::identity::{probe_config, Identity};
use super::DeviceContext;
use crate::mining::fleet::device::{
    DeviceProfile, DeviceState, Level, MinerDevice, PowerSteps, Setting, Temperature,
};
use info::Info;
use models::Asic;

/// Where the info is.
pub const INFO_PATH: &str = "/api/system/info";

/// One level as the driver applies it.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    mhz: u32,
    /// Core voltage to set with it; `None` for configured levels (the board keeps its own).
    millivolts: Option<u32>,
    level: Level,
}

/// One HTTP request of a setting change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `PATCH` or `POST`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// The JSON body, if any.
    pub body: Option<String>,
}

/// The AxeOS protocol: what the polling task calls.
pub struct Axeos {
    /// Its `[[mining.devices]]` entry.
    cfg: DeviceConfig,
    steps: Vec<Step>,
    /// `Some(false)` once pause answered 404.
    pause_found: Option<bool>,
    can_pause: bool,
    paused: bool,
    /// Its own power reading while paused, W.
    paused_watts_seen: Option<f64>,
    frequency: Option<f64>,
    core_voltage: Option<f64>,
    firmware: String,
}

impl Axeos {
    /// A protocol for the device `cfg` describes.
    pub fn new(cfg: &DeviceConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            steps: Vec::new(),
            pause_found: None,
            can_pause: false,
            paused: false,
            paused_watts_seen: None,
            frequency: None,
            core_voltage: None,
            firmware: String::new(),
        }
    }

    fn steps_for(&self, asic: Option<&Asic>) -> Vec<Step> {
        let named = |mhz: u32, watts: f64, millivolts: Option<u32>| Step {
            mhz,
            millivolts,
            level: Level {
                name: format!("{mhz} MHz"),
                watts,
            },
        };
        match (&self.cfg.levels, asic) {
            (Some(levels), _) => levels
                .iter()
                .map(|l| named(l.value, l.watts, None))
                .collect(),
            (None, Some(a)) => a
                .steps
                .iter()
                .map(|s| named(s.mhz, s.watts, Some(s.millivolts)))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Turns an info into telemetry and remembers the steps, pause state and frequency.
    pub fn telemetry(&mut self, info: &Info) -> Telemetry {
        let asic = info.asic_model.as_deref().and_then(models::lookup);
        let family = info
            .device_model
            .as_deref()
            .or(asic.map(|a| a.family))
            .unwrap_or("board");
        let board = info
            .board_version
            .as_deref()
            .map_or(String::new(), |b| format!(" {b}"));
        let chip_name = info.asic_model.as_deref().unwrap_or("unknown ASIC");
        let model = format!("Bitaxe {family}{board} ({chip_name})");
        self.steps = self.steps_for(asic);
        self.firmware = info.version.clone().unwrap_or_else(|| "unknown".into());
        self.frequency = info.frequency;
        self.core_voltage = info.core_voltage;
        self.can_pause = self.pause_found != Some(false) && info.mining_paused.is_some();
        self.paused = info.mining_paused == Some(true);
        if self.paused {
            self.paused_watts_seen = info.power.or(self.paused_watts_seen);
        }
        let stopped_watts = self.can_pause.then(|| {
            self.paused_watts_seen
                .or(asic.map(|a| a.paused_watts))
                .unwrap_or(3.0)
        });
        let mut temperatures = Vec::new();
        for (sensor, c) in [
            ("chip", info.temp),
            ("chip2", info.temp2),
            ("vr", info.vr_temp),
        ] {
            if let Some(celsius) = c {
                temperatures.push(Temperature {
                    sensor: sensor.into(),
                    celsius,
                });
            }
        }
        let (setting, setting_name) = if self.paused {
            (Some(Setting::Stop), Some("paused".to_string()))
        } else {
            match info.frequency {
                Some(f) => match self
                    .steps
                    .iter()
                    .position(|s| (f64::from(s.mhz) - f).abs() < 0.5)
                {
                    Some(i) => (
                        Some(Setting::Level(i)),
                        Some(self.steps[i].level.name.clone()),
                    ),
                    None => (None, Some(format!("{f:.0} MHz"))),
                },
                None => (None, None),
            }
        };
        let (state, reason) = if info.overheat == Some(true) {
            (
                DeviceState::Overheated,
                Some(format!(
                    "AxeOS overheat protection latched (chip {}, regulator {}): check its cooling, \
                     then clear it on the board; hearth never clears it",
                    celsius_text(info.temp),
                    celsius_text(info.vr_temp)
                )),
            )
        } else if let Some(fault) = &info.fault {
            (DeviceState::Fault, Some(format!("board reports {fault}")))
        } else if self.steps.is_empty() {
            (
                DeviceState::Fault,
                Some(format!(
                    "no frequency table for ASIC {chip_name:?}: give its levels (MHz and watts) in \
                     [[mining.devices]] levels"
                )),
            )
        } else {
            (DeviceState::Ok, None)
        };
        Telemetry {
            model,
            profile: DeviceProfile {
                steps: PowerSteps::Levels(self.steps.iter().map(|s| s.level.clone()).collect()),
                stopped_watts,
                settle_seconds: 30.0,
                min_command_interval_seconds: self.cfg.min_command_interval_seconds(),
            },
            watts: info.power,
            setting,
            setting_name,
            temperatures,
            chip_celsius: info.temp.into_iter().chain(info.temp2).reduce(f64::max),
            chip_limit_celsius: self
                .cfg
                .chip_limit_celsius
                .unwrap_or(models::CHIP_LIMIT_CELSIUS),
            hashes_per_second: info.hash_rate_ghs.unwrap_or(0.0) * 1e9,
            shares_accepted: info.shares_accepted.unwrap_or(0),
            shares_rejected: info.shares_rejected.unwrap_or(0),
            state,
            reason,
        }
    }

    /// The requests that put the board at `setting` of `profile`, in order (none if it runs it
    /// already: each PATCH writes its flash).
    pub fn calls(
        &self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> Result<Vec<Call>, DeviceError> {
        let post = |path: &'static str| Call {
            method: "POST",
            path,
            body: None,
        };
        let Some(index) = profile.level_index(setting) else {
            return if self.can_pause {
                Ok(vec![post("/api/system/pause")])
            } else {
                Err(DeviceError::Unsupported(
                    "this AxeOS firmware cannot pause (v2.14+ can)".into(),
                ))
            };
        };
        let step = self
            .steps
            .get(index)
            .ok_or_else(|| DeviceError::Unsupported(format!("no level {index}")))?;
        let mut calls = Vec::new();
        if self.paused && self.can_pause {
            calls.push(post("/api/system/resume"));
        }
        let same_mhz = self
            .frequency
            .is_some_and(|f| (f - f64::from(step.mhz)).abs() < 0.5);
        let same_mv = step.millivolts.is_none_or(|mv| {
            self.core_voltage
                .is_some_and(|v| (v - f64::from(mv)).abs() < 0.5)
        });
        if !(same_mhz && same_mv) {
            let body = match step.millivolts {
                Some(mv) => format!(r#"{{"frequency":{},"coreVoltage":{mv}}}"#, step.mhz),
                None => format!(r#"{{"frequency":{}}}"#, step.mhz),
            };
            calls.push(Call {
                method: "PATCH",
                path: "/api/system",
                body: Some(body),
            });
        }
        Ok(calls)
    }

    async fn get_info(&self) -> Result<Info, DeviceError> {
        let r = http::send(
            &self.cfg.host_port(),
            "GET",
            INFO_PATH,
            None,
            self.cfg.timeout(),
        )
        .await?;
        if r.status != 200 {
            return Err(status_error(r.status, &r.body));
        }
        info::parse(&r.body)
    }
}

/// The error for a non-2xx answer to a setting change or poll.
fn status_error(status: u16, body: &str) -> DeviceError {
    let text: String = body.trim().chars().take(200).collect();
    match status {
        400 => DeviceError::Refused(format!("400: {text}")),
        _ => DeviceError::Status(format!("HTTP {status}: {text}")),
    }
}

fn celsius_text(c: Option<f64>) -> String {
    c.map_or_else(|| "? °C".into(), |c| format!("{c:.0} °C"))
}

/// Starts driving the AxeOS board `cfg` describes.
pub fn start(cfg: &DeviceConfig, ctx: DeviceContext) -> Arc<dyn MinerDevice> {
    driver::spawn(cfg, Axeos::new(cfg), ctx)
}

/// Identifies the AxeOS board at `host_port` with one poll.
pub async fn probe(host_port: &str, timeout: Duration) -> Result<Identity, DeviceError> {
    let mut axeos = Axeos::new(&probe_config(DeviceKind::Axeos, host_port, timeout));
    let tel = axeos.poll().await?;
    Ok(Identity::of(DeviceKind::Axeos, &tel, &axeos.firmware))
}

impl Protocol for Axeos {
    async fn poll(&mut self) -> Result<Telemetry, DeviceError> {
        let info = self.get_info().await?;
        Ok(self.telemetry(&info))
    }

    async fn apply(
        &mut self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> Result<(), DeviceError> {
        for call in self.calls(setting, profile)? {
            let r = http::send(
                &self.cfg.host_port(),
                call.method,
                call.path,
                call.body.as_deref(),
                self.cfg.timeout(),
            )
            .await?;
            if r.status == 404 && call.method == "POST" {
                self.pause_found = Some(false);
                self.can_pause = false;
                return Err(DeviceError::Unsupported(format!(
                    "{} not found: this AxeOS firmware cannot pause",
                    call.path
                )));
            }
            if !(200..300).contains(&r.status) {
                return Err(status_error(r.status, &r.body));
            }
        }
        self.paused = setting == Setting::Stop;
        Ok(())
    }
}
