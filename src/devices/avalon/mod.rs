//! Canaan Avalon miners (Nano 3, Nano 3S, Mini 3) through the CGMiner API (TCP 4028).
//!
//! One poll is one connection: `version+summary+estats` joined. Power, temperatures, work mode
//! and calibration come from the bracket tokens of `STATS[0]["MM ID0"]`; which token means what
//! on which model is the data in [`models`]. A setting is `ascset|0,workmode,set,N`; soft-off only
//! where the model's firmware has it (the Nano 3S has none: its coldest is work mode 0).

pub mod models;
pub mod reply;
pub mod tokens;
pub mod wire;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

use super::config::{DeviceConfig, DeviceKind};
use super::driver::{self, DeviceError, Protocol, Telemetry};
use super::identity::{probe_config, Identity};
use super::DeviceContext;
use crate::mining::fleet::device::{
    DeviceProfile, DeviceState, Level, MinerDevice, PowerSteps, Setting, Temperature,
};
use models::{Model, PowerField};
use reply::Object;
use tokens::Tokens;

/// The joined request of one poll.
pub const POLL_COMMAND: &str = "version+summary+estats";

/// What one poll's reply says, before the model's data is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `PROD` and `MODEL` of `version`, as reported.
    pub product: String,
    /// The model table's row for it.
    pub model: Option<&'static Model>,
    /// Firmware version (`CGVERSION`, else `LVERSION`, else the CGMiner version).
    pub firmware: String,
    /// The `MM ID0` tokens.
    pub tokens: Tokens,
    /// Hashrate, H/s.
    pub hashes_per_second: Option<f64>,
    /// Shares accepted.
    pub accepted: Option<u64>,
    /// Shares rejected.
    pub rejected: Option<u64>,
}

/// Reads a parsed `version+summary+estats` reply (or the three single replies merged).
pub fn read(root: &Object) -> Result<Reading, DeviceError> {
    let version = reply::section(root, "version")?;
    let v = reply::first(version, "VERSION")
        .ok_or_else(|| DeviceError::BadReply("version: no VERSION[0]".into()))?;
    let prod = reply::text(v, "PROD").unwrap_or("");
    let model_text = reply::text(v, "MODEL").unwrap_or("");
    if prod.is_empty() && model_text.is_empty() {
        return Err(DeviceError::BadReply(
            "version names no PROD or MODEL".into(),
        ));
    }
    let product = [prod, model_text]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let firmware = ["CGVERSION", "LVERSION", "CGMiner"]
        .iter()
        .find_map(|k| reply::text(v, k))
        .unwrap_or("unknown")
        .to_string();
    let summary = reply::section(root, "summary")?;
    let s = reply::first(summary, "SUMMARY");
    let hashes_per_second = s
        .and_then(|s| reply::number(s, "MHS 1m").or_else(|| reply::number(s, "MHS av")))
        .map(|mhs| mhs * 1e6);
    let count = |key: &str| {
        s.and_then(|s| reply::number(s, key))
            .filter(|n| *n >= 0.0)
            .map(|n| n as u64)
    };
    let estats = reply::section(root, "estats")?;
    let mm = mm_string(estats)
        .ok_or_else(|| DeviceError::BadReply("estats: no \"MM ID\" string in STATS".into()))?;
    let tokens = Tokens::parse(mm);
    if tokens.is_empty() {
        return Err(DeviceError::BadReply(
            "MM ID0 holds no NAME[..] tokens".into(),
        ));
    }
    let hashes_per_second =
        hashes_per_second.or_else(|| tokens.number("GHSspd", 0).map(|g| g * 1e9));
    Ok(Reading {
        model: models::lookup(prod, model_text),
        product,
        firmware,
        tokens,
        hashes_per_second,
        accepted: count("Accepted"),
        rejected: count("Rejected"),
    })
}

/// The first `MM ID…` string of any `STATS` entry (`MM ID0`, or `MM ID0:Summary` on some
/// firmware).
fn mm_string(estats: &Object) -> Option<&str> {
    estats
        .get("STATS")?
        .as_array()?
        .iter()
        .filter_map(|s| s.as_object())
        .flat_map(|s| s.iter())
        .find(|(k, v)| k.starts_with("MM ID") && v.is_string())
        .and_then(|(_, v)| v.as_str())
}

/// One level as the driver applies it: the work mode number and the fleet's view.
#[derive(Debug, Clone, PartialEq)]
struct ModeLevel {
    value: u32,
    level: Level,
}

/// The Avalon protocol: what the polling task calls.
pub struct Avalon {
    /// Its `[[mining.devices]]` entry.
    cfg: DeviceConfig,
    /// The model and levels of the last poll (apply maps level indices through them).
    model: Option<&'static Model>,
    levels: Vec<ModeLevel>,
    /// Whether it is soft-off (last poll, or hearth's last command).
    stopped: bool,
    firmware: String,
}

impl Avalon {
    /// A protocol for the device `cfg` describes.
    pub fn new(cfg: &DeviceConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            model: None,
            levels: Vec::new(),
            stopped: false,
            firmware: String::new(),
        }
    }

    /// The levels for `model`: the configured ones, else the model's table.
    fn levels_for(&self, model: Option<&Model>) -> Vec<ModeLevel> {
        let modes = model.map_or(&[][..], |m| m.modes);
        match &self.cfg.levels {
            Some(levels) => levels
                .iter()
                .map(|l| ModeLevel {
                    value: l.value,
                    level: Level {
                        name: modes
                            .iter()
                            .find(|m| m.value == l.value)
                            .map_or_else(|| format!("mode {}", l.value), |m| m.name.to_string()),
                        watts: l.watts,
                    },
                })
                .collect(),
            None => modes
                .iter()
                .map(|m| ModeLevel {
                    value: m.value,
                    level: Level {
                        name: m.name.into(),
                        watts: m.watts,
                    },
                })
                .collect(),
        }
    }

    /// Turns a reading into telemetry and remembers the model, levels and soft-off state.
    pub fn telemetry(&mut self, r: &Reading) -> Result<Telemetry, DeviceError> {
        let levels = self.levels_for(r.model);
        let model_name = r
            .model
            .map_or_else(|| r.product.clone(), |m| m.name.to_string());
        let t = &r.tokens;
        let chip_limit = self
            .cfg
            .chip_limit_celsius
            .or(r.model.map(|m| m.chip_limit_celsius))
            .unwrap_or(95.0);
        let celsius = |name: &str| t.number(name, 0).filter(|c| *c > -100.0);
        let temperatures: Vec<Temperature> = [
            ("TMax", "chip max"),
            ("TAvg", "chip avg"),
            ("ITemp", "inlet"),
            ("OTemp", "outlet"),
        ]
        .iter()
        .filter_map(|(token, sensor)| {
            celsius(token).map(|c| Temperature {
                sensor: (*sensor).into(),
                celsius: c,
            })
        })
        .collect();
        let chip_celsius = celsius("TMax");
        let profile = DeviceProfile {
            steps: PowerSteps::Levels(levels.iter().map(|l| l.level.clone()).collect()),
            stopped_watts: r.model.and_then(|m| m.softoff_watts),
            settle_seconds: r.model.map_or(600.0, |m| m.settle_seconds),
            min_command_interval_seconds: self.cfg.min_command_interval_seconds(),
        };
        let mut tel = Telemetry {
            model: model_name.clone(),
            profile,
            watts: None,
            setting: None,
            setting_name: None,
            temperatures,
            chip_celsius,
            chip_limit_celsius: chip_limit,
            hashes_per_second: r.hashes_per_second.unwrap_or(0.0),
            shares_accepted: r.accepted.unwrap_or(0),
            shares_rejected: r.rejected.unwrap_or(0),
            state: DeviceState::Ok,
            reason: None,
        };
        self.model = r.model;
        self.firmware = r.firmware.clone();
        self.levels = levels;
        if self.levels.is_empty() {
            tel.state = DeviceState::Fault;
            tel.reason = Some(format!(
                "unknown Avalon model {:?}: hearth has no work-mode table for it; give its levels \
                 (work mode number and watts) in [[mining.devices]] levels",
                r.product
            ));
            return Ok(tel);
        }
        let fields = r.model.map_or(models::GENERIC_POWER, |m| m.power);
        tel.watts = Some(power(t, fields).ok_or_else(|| {
            DeviceError::BadReply(format!(
                "{model_name}: no wall power in MM ID0 (looked for {})",
                fields
                    .iter()
                    .map(|f| format!("{}[{}]", f.token, f.index))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?);
        let soft_off = r.model.is_some_and(|m| m.softoff_watts.is_some())
            && t.raw("SYSTEMSTATU").is_some_and(|s| s.contains("Idle"));
        self.stopped = soft_off;
        if soft_off {
            tel.setting = Some(Setting::Stop);
            tel.setting_name = Some("soft-off".into());
        } else if let Some(mode) = t.number("WORKMODE", 0) {
            if let Some(i) = self.levels.iter().position(|l| f64::from(l.value) == mode) {
                tel.setting = Some(Setting::Level(i));
                tel.setting_name = Some(self.levels[i].level.name.clone());
            } else {
                tel.setting_name = Some(format!("work mode {mode}"));
            }
        }
        (tel.state, tel.reason) = condition(t, r.model);
        Ok(tel)
    }

    /// The requests that put the device at `setting` of `profile`, in order.
    pub fn requests(
        &self,
        setting: Setting,
        profile: &DeviceProfile,
        unix_now: u64,
    ) -> Result<Vec<String>, DeviceError> {
        let name = self.model.map_or("this Avalon", |m| m.name);
        let can_soft_off = self.model.is_some_and(|m| m.softoff_watts.is_some());
        let Some(index) = profile.level_index(setting) else {
            if !can_soft_off {
                return Err(DeviceError::Unsupported(format!(
                    "{name} firmware has no soft-off; its coldest setting is its lowest work mode"
                )));
            }
            // The firmware takes the time to act; a few seconds ahead, as its app does.
            let param = format!("0,softoff,1:{}", unix_now + 5);
            return Ok(vec![wire::request_text("ascset", Some(&param))]);
        };
        let mode = self
            .levels
            .get(index)
            .ok_or_else(|| DeviceError::Unsupported(format!("{name} has no level {index}")))?;
        let mut out = Vec::new();
        if self.stopped && can_soft_off {
            let param = format!("0,softon,1:{}", unix_now + 5);
            out.push(wire::request_text("ascset", Some(&param)));
        }
        let param = format!("0,workmode,set,{}", mode.value);
        out.push(wire::request_text("ascset", Some(&param)));
        Ok(out)
    }

    async fn send(&self, request: &str) -> Result<(), DeviceError> {
        let text = wire::exchange(&self.cfg.host_port(), request, self.cfg.timeout()).await?;
        let root = reply::parse(&text)?;
        reply::section(&root, "ascset").map(|_| ())
    }
}

/// The first of `fields` that the tokens carry, W.
fn power(t: &Tokens, fields: &[PowerField]) -> Option<f64> {
    fields
        .iter()
        .find_map(|f| t.number(f.token, f.index))
        .filter(|w| *w >= 0.0)
}

/// Its condition from the tokens: its own protection first, then a fault, then calibration.
fn condition(t: &Tokens, model: Option<&Model>) -> (DeviceState, Option<String>) {
    let tmax = t.number("TMax", 0);
    let ecmm = t.number("ECMM", 0).filter(|e| *e >= 0.0).map(|e| e as u64);
    if let Some(m) = model {
        let flagged = ecmm.is_some_and(|e| e & m.ecmm_overheat_mask != 0);
        let hot = tmax.is_some_and(|c| c >= m.overheat_celsius);
        if flagged || hot {
            return (
                DeviceState::Overheated,
                Some(format!(
                    "its over-temperature protection is active (ECMM {}, TMax {} °C)",
                    ecmm.map_or("?".into(), |e| e.to_string()),
                    tmax.map_or("?".into(), |c| c.to_string())
                )),
            );
        }
    }
    if let Some(status) = t.raw("SYSTEMSTATU").filter(|s| s.contains("Fault")) {
        return (
            DeviceState::Fault,
            Some(format!("device reports {status:?}")),
        );
    }
    if t.number("ADJ", 0) == Some(0.0) {
        let progress = t
            .number("BAR", 0)
            .map_or(String::new(), |b| format!(" ({b} %)"));
        return (
            DeviceState::Calibrating,
            Some(format!("calibrating after a work-mode change{progress}")),
        );
    }
    (DeviceState::Ok, None)
}

impl Protocol for Avalon {
    async fn poll(&mut self) -> Result<Telemetry, DeviceError> {
        let request = wire::request_text(POLL_COMMAND, None);
        let text = wire::exchange(&self.cfg.host_port(), &request, self.cfg.timeout()).await?;
        let root = reply::parse(&text)?;
        let reading = read(&root)?;
        self.telemetry(&reading)
    }

    async fn apply(
        &mut self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> Result<(), DeviceError> {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for request in self.requests(setting, profile, unix_now)? {
            self.send(&request).await?;
        }
        self.stopped = setting == Setting::Stop;
        Ok(())
    }
}

/// Starts driving the Avalon `cfg` describes.
pub fn start(cfg: &DeviceConfig, ctx: DeviceContext) -> Arc<dyn MinerDevice> {
    driver::spawn(cfg, Avalon::new(cfg), ctx)
}

/// Identifies the Avalon at `host_port` with one poll.
pub async fn probe(host_port: &str, timeout: Duration) -> Result<Identity, DeviceError> {
    let mut avalon = Avalon::new(&probe_config(DeviceKind::Avalon, host_port, timeout));
    let tel = avalon.poll().await?;
    Ok(Identity::of(DeviceKind::Avalon, &tel, &avalon.firmware))
}
