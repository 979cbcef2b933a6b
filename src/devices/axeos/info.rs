//! `GET /api/system/info` (ESP-Miner `main/http_server/system_api_json.c`). Every field is
//! optional: older firmware lacks some (`miningPaused` came with v2.14) and any may be `null`.
//! A field of the wrong type counts as missing; only a body that is not a JSON object is an error.

use serde_json::{Map, Value};

use crate::devices::driver::DeviceError;

/// What hearth reads from the info.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// Board power, W.
    pub power: Option<f64>,
    /// Chip temperature, °C (`-1` while the ASIC is powered down: missing).
    pub temp: Option<f64>,
    /// Second chip's temperature on two-chip boards, °C.
    pub temp2: Option<f64>,
    /// Voltage regulator temperature, °C.
    pub vr_temp: Option<f64>,
    /// Hashrate, GH/s.
    pub hash_rate_ghs: Option<f64>,
    /// Configured ASIC frequency, MHz.
    pub frequency: Option<f64>,
    /// Configured core voltage, mV.
    pub core_voltage: Option<f64>,
    /// Whether its own over-temperature protection has latched (`overheat_mode` = 1).
    pub overheat: Option<bool>,
    /// Whether mining is paused; present only on firmware with pause/resume.
    pub mining_paused: Option<bool>,
    /// Shares accepted.
    pub shares_accepted: Option<u64>,
    /// Shares rejected.
    pub shares_rejected: Option<u64>,
    /// ASIC model (`BM1370`).
    pub asic_model: Option<String>,
    /// Board version (`601`).
    pub board_version: Option<String>,
    /// Device family on older firmware (`Gamma`).
    pub device_model: Option<String>,
    /// Firmware version.
    pub version: Option<String>,
    /// A power or hardware fault it reports.
    pub fault: Option<String>,
}

/// Parses an info body.
pub fn parse(body: &str) -> Result<Info, DeviceError> {
    let value: Value = serde_json::from_str(body.trim()).map_err(|e| {
        DeviceError::BadReply(format!(
            "/api/system/info is not JSON: {e} (starts {:?})",
            body.chars().take(40).collect::<String>()
        ))
    })?;
    let Value::Object(o) = value else {
        return Err(DeviceError::BadReply(
            "/api/system/info is not a JSON object".into(),
        ));
    };
    let temp = |k: &str| number(&o, k).filter(|c| *c > 0.0);
    let fault = ["power_fault", "hardware_fault"]
        .iter()
        .filter_map(|k| text(&o, k))
        .collect::<Vec<_>>();
    Ok(Info {
        power: number(&o, "power").filter(|w| *w >= 0.0),
        temp: temp("temp"),
        temp2: temp("temp2"),
        vr_temp: temp("vrTemp"),
        hash_rate_ghs: number(&o, "hashRate").filter(|h| *h >= 0.0),
        frequency: number(&o, "frequency").filter(|f| *f > 0.0),
        core_voltage: number(&o, "coreVoltage").filter(|v| *v > 0.0),
        overheat: flag(&o, "overheat_mode"),
        mining_paused: flag(&o, "miningPaused"),
        shares_accepted: count(&o, "sharesAccepted"),
        shares_rejected: count(&o, "sharesRejected"),
        asic_model: text(&o, "ASICModel"),
        board_version: text(&o, "boardVersion"),
        device_model: text(&o, "deviceModel"),
        version: text(&o, "version"),
        fault: (!fault.is_empty()).then(|| fault.join("; ")),
    })
}

fn number(o: &Map<String, Value>, key: &str) -> Option<f64> {
    o.get(key)?.as_f64().filter(|x| x.is_finite())
}

fn count(o: &Map<String, Value>, key: &str) -> Option<u64> {
    number(o, key).filter(|n| *n >= 0.0).map(|n| n as u64)
}

/// A boolean written as `true`/`false` or `1`/`0`.
fn flag(o: &Map<String, Value>, key: &str) -> Option<bool> {
    match o.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        _ => None,
    }
}

fn text(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "Unknown")
        .map(str::to_string)
}
