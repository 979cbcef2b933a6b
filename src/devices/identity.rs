//! What `hearth devices probe ADDR` learns about a device: its kind, model and firmware, and a
//! line saying what it reports now. Every networked driver's `probe` returns one.

use std::time::Duration;

use super::config::{DeviceConfig, DeviceKind};
use super::driver::Telemetry;

/// A device as identified by one round of its own API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The driver kind that identified it (`avalon`, `axeos`, `braiins`).
    pub kind: &'static str,
    /// The model it reports ("Avalon Nano 3S", "Bitaxe Gamma 601 (BM1370)").
    pub model: String,
    /// Its firmware version, as it reports it.
    pub firmware: String,
    /// One line: its setting, power, temperatures, hashrate and condition now.
    pub summary: String,
}

impl Identity {
    /// The identity a first poll of a `kind` device gives.
    pub fn of(kind: DeviceKind, tel: &Telemetry, firmware: &str) -> Self {
        Self {
            kind: kind.as_str(),
            model: tel.model.clone(),
            firmware: firmware.to_string(),
            summary: describe(tel),
        }
    }
}

/// The configuration `probe` uses: a `kind` device at `host_port`, requests timing out after
/// `timeout`.
pub fn probe_config(kind: DeviceKind, host_port: &str, timeout: Duration) -> DeviceConfig {
    let mut cfg = DeviceConfig::new(kind, Some(host_port));
    cfg.timeout_seconds = Some(timeout.as_secs_f64());
    cfg
}

/// The one-line summary of what a poll learned: setting, power, chip temperature, hashrate and
/// condition.
pub fn describe(tel: &Telemetry) -> String {
    let mut parts = vec![tel
        .setting_name
        .clone()
        .unwrap_or_else(|| "setting unknown".into())];
    parts.push(
        tel.watts
            .map_or_else(|| "power unknown".into(), |w| format!("{w:.0} W")),
    );
    if let Some(c) = tel.chip_celsius {
        parts.push(format!("chip {c:.0} °C"));
    }
    parts.push(format!("{:.2} TH/s", tel.hashes_per_second / 1e12));
    let state = tel.state.as_str();
    parts.push(match &tel.reason {
        Some(r) => format!("{state}: {r}"),
        None => state.to_string(),
    });
    parts.join(", ")
}
