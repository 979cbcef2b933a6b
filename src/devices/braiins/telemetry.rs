//! Braiins OS+ replies to hearth's [`Telemetry`], and hearth's settings to Braiins requests.
//! Pure functions: no I/O, so every mapping is tested on its own.
//!
//! - Power: `GetMinerStats.power_stats.approximated_consumption.watt`, the miner's own estimate
//!   of its wall power (a missing field is a bad reply; 0 W while it mines means "not estimated
//!   yet" and is left out, so the last reading stands).
//! - Setting: `Stop` while `GetMinerDetails.status` is PAUSED, else the power target in force
//!   (`GetTunerState.power_target_mode_state.current_target`).
//! - Profile: `GetConstraints.tuner_constraints.power_target` min/max as a [`PowerSteps::Range`].
//! - Temperature: `GetCoolingState.highest_temperature` (the hottest chip or board) feeds the chip
//!   trip, against the miner's own hot temperature (where its fans go to 100 %).
//! - Tuning: reported as `Ok` with the reason "tuning", not `Calibrating`. The public API
//!   documents no refusal while the tuner settles (`SetPowerTarget` has no busy answer; the
//!   tuner simply retargets), and `Calibrating` would hold every command, even "go cold".

use super::proto::bos::v1 as pb;
use super::proto::bos::ApiVersion;
use crate::devices::config::DeviceKind;
use crate::devices::driver::{DeviceError, Telemetry};
use crate::devices::identity::Identity;
use crate::mining::fleet::device::{DeviceProfile, DeviceState, PowerSteps, Setting, Temperature};

/// Wall power of a paused miner, W: control board, PSU standby and fans winding down. Braiins
/// publishes no figure; this is an estimate for an Antminer-class machine.
pub const STOPPED_WATTS: f64 = 15.0;

/// Seconds from a new power target (or a resume) to settled power when the miner does not report
/// its quick-ramping time (`GetConstraints.hashboards_constraints.quick_ramping_time_s`, API 1.7+).
pub const DEFAULT_SETTLE_SECONDS: f64 = 120.0;

/// Chip limit when the miner reports no hot temperature: Braiins' documented default hot
/// temperature (fans at 100 %), °C.
pub const DEFAULT_HOT_CELSIUS: f64 = 100.0;

/// More than this is not a reading, W.
const MAX_PLAUSIBLE_WATTS: f64 = 100_000.0;

/// What the miner's constraints say about driving it; read once per session.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Lowest power target, W.
    pub min_watts: f64,
    /// Highest power target, W.
    pub max_watts: f64,
    /// Its default hot temperature, °C, if reported.
    pub hot_celsius: Option<f64>,
    /// Seconds for a new setting to settle.
    pub settle_seconds: f64,
}

/// What the config says about the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrides {
    /// Least seconds between two setting changes.
    pub min_command_interval_seconds: f64,
    /// Chip limit, °C, overriding the miner's hot temperature.
    pub chip_limit_celsius: Option<f64>,
}

/// The replies one poll gathers.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    /// `MinerService/GetMinerDetails`.
    pub details: pb::GetMinerDetailsResponse,
    /// `MinerService/GetMinerStats`.
    pub stats: pb::GetMinerStatsResponse,
    /// `CoolingService/GetCoolingState`.
    pub cooling: pb::GetCoolingStateResponse,
    /// `PerformanceService/GetTunerState`.
    pub tuner: pb::GetTunerStateResponse,
}

/// A setting as the request that makes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `ActionsService/PauseMining`.
    Pause,
    /// `PerformanceService/SetPowerTarget` (then `ResumeMining` if paused).
    PowerTarget(pb::SetPowerTargetRequest),
}

/// A watt value from the device, checked.
fn watts(p: &pb::Power, what: &str) -> Result<f64, DeviceError> {
    // u64 to f64 loses precision only far above the plausible range.
    let w = p.watt as f64;
    if w > MAX_PLAUSIBLE_WATTS {
        return Err(DeviceError::BadReply(format!("{what} of {w} W")));
    }
    Ok(w)
}

/// The power-target range and settling time from `GetConstraints`.
pub fn limits(c: &pb::GetConstraintsResponse) -> Result<Limits, DeviceError> {
    let power = c
        .tuner_constraints
        .as_ref()
        .and_then(|t| t.power_target.as_ref())
        .ok_or_else(|| {
            DeviceError::BadReply("GetConstraints has no tuner_constraints.power_target".into())
        })?;
    let (Some(min), Some(max)) = (&power.min, &power.max) else {
        return Err(DeviceError::BadReply(
            "GetConstraints power_target lacks min or max".into(),
        ));
    };
    let (min_watts, max_watts) = (
        watts(min, "power_target.min")?,
        watts(max, "power_target.max")?,
    );
    if !(min_watts > 0.0 && max_watts >= min_watts) {
        return Err(DeviceError::BadReply(format!(
            "GetConstraints power_target range {min_watts}..{max_watts} W"
        )));
    }
    let hot_celsius = c
        .cooling_constraints
        .as_ref()
        .and_then(|c| c.hot_temperature.as_ref())
        .and_then(|h| h.default.as_ref())
        .map(|t| t.degree_c)
        .filter(|t| t.is_finite() && *t > 0.0 && *t < 200.0);
    let settle_seconds = c
        .hashboards_constraints
        .as_ref()
        .and_then(|h| h.quick_ramping_time_s.as_ref())
        .map(|q| f64::from(q.default))
        .filter(|s| *s > 0.0)
        .map_or(DEFAULT_SETTLE_SECONDS, |s| s.min(3600.0));
    Ok(Limits {
        min_watts,
        max_watts,
        hot_celsius,
        settle_seconds,
    })
}

/// The device's profile: a power-target range it can pause out of.
pub fn profile(limits: &Limits, overrides: &Overrides) -> DeviceProfile {
    DeviceProfile {
        steps: PowerSteps::Range {
            min_watts: limits.min_watts,
            max_watts: limits.max_watts,
        },
        stopped_watts: Some(STOPPED_WATTS),
        settle_seconds: limits.settle_seconds,
        min_command_interval_seconds: overrides.min_command_interval_seconds,
    }
}

/// The model the miner reports ("Antminer S19j Pro"), else its name.
fn model(details: &pb::GetMinerDetailsResponse) -> String {
    let id = details.miner_identity.clone().unwrap_or_default();
    [id.miner_model, id.name]
        .into_iter()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

/// Its state and why, from the miner's status and the tuner's.
fn state(status: pb::MinerStatus, tuner: pb::TunerState) -> (DeviceState, Option<String>) {
    use pb::MinerStatus as M;
    use pb::TunerState as T;
    match status {
        M::NotStarted => return (DeviceState::Fault, Some("bosminer is not running".into())),
        M::Suspended => return (DeviceState::Fault, Some("mining is suspended".into())),
        M::Restricted => return (DeviceState::Fault, Some("mining is restricted".into())),
        M::Paused => return (DeviceState::Ok, None),
        M::Normal | M::Unspecified => {}
    }
    match tuner {
        T::Error => (
            DeviceState::Fault,
            Some("the tuner reports an error".into()),
        ),
        T::Tuning => (DeviceState::Ok, Some("tuning".into())),
        T::Preheat => (DeviceState::Ok, Some("preheating".into())),
        T::Disabled => (
            DeviceState::Ok,
            Some("tuner disabled: no power target in force".into()),
        ),
        T::Stable | T::Continuous | T::Unspecified => (DeviceState::Ok, None),
    }
}

/// Maps one poll's replies to telemetry.
pub fn telemetry(
    r: &Replies,
    limits: &Limits,
    overrides: &Overrides,
) -> Result<Telemetry, DeviceError> {
    let status =
        pb::MinerStatus::try_from(r.details.status).unwrap_or(pb::MinerStatus::Unspecified);
    let tuner = pb::TunerState::try_from(r.tuner.overall_tuner_state)
        .unwrap_or(pb::TunerState::Unspecified);
    let paused = status == pb::MinerStatus::Paused;

    let power = r
        .stats
        .power_stats
        .as_ref()
        .and_then(|p| p.approximated_consumption.as_ref())
        .ok_or_else(|| {
            DeviceError::BadReply(
                "GetMinerStats has no power_stats.approximated_consumption".into(),
            )
        })?;
    let w = watts(power, "approximated_consumption")?;
    let measured = (paused || w > 0.0).then_some(w);

    let target = match &r.tuner.mode_state {
        Some(pb::get_tuner_state_response::ModeState::PowerTargetModeState(m)) => m
            .current_target
            .as_ref()
            .map(|p| watts(p, "current_target"))
            .transpose()?
            .filter(|w| *w > 0.0),
        None => None,
    };
    let (setting, setting_name) = if paused {
        (Some(Setting::Stop), Some("paused".to_string()))
    } else {
        match target {
            Some(t) => (Some(Setting::Watts(t)), Some(format!("{t:.0} W"))),
            None => (None, None),
        }
    };

    let hottest = r.cooling.highest_temperature.as_ref().and_then(|s| {
        let c = s.temperature.as_ref()?.degree_c;
        // Braiins reads 0 from a sensor that does not work.
        if !c.is_finite() || c == 0.0 {
            return None;
        }
        let sensor = match pb::SensorLocation::try_from(s.location) {
            Ok(pb::SensorLocation::Chip) => "chip",
            Ok(pb::SensorLocation::Pcb) => "board",
            _ => "hottest",
        };
        Some(Temperature {
            sensor: sensor.into(),
            celsius: c,
        })
    });

    let hashrate = r
        .stats
        .miner_stats
        .as_ref()
        .and_then(|m| m.real_hashrate.as_ref())
        .and_then(|h| h.last_1m.as_ref().or(h.last_5s.as_ref()))
        .map(|g| g.gigahash_per_second * 1e9)
        .filter(|h| h.is_finite() && *h >= 0.0)
        .unwrap_or(0.0);
    let shares = r.stats.pool_stats.unwrap_or_default();

    let (state, reason) = state(status, tuner);
    Ok(Telemetry {
        model: model(&r.details),
        profile: profile(limits, overrides),
        watts: measured,
        setting,
        setting_name,
        chip_celsius: hottest.as_ref().map(|t| t.celsius),
        temperatures: hottest.into_iter().collect(),
        chip_limit_celsius: overrides
            .chip_limit_celsius
            .or(limits.hot_celsius)
            .unwrap_or(DEFAULT_HOT_CELSIUS),
        hashes_per_second: hashrate,
        shares_accepted: shares.accepted_shares,
        shares_rejected: shares.rejected_shares,
        state,
        reason,
    })
}

/// The request that puts the device at `setting` of `profile`: pause, or a power target
/// (whole watts, within the profile's range) saved and applied.
pub fn action(setting: Setting, profile: &DeviceProfile) -> Result<Action, DeviceError> {
    match setting {
        Setting::Stop => Ok(Action::Pause),
        Setting::Watts(w) if w.is_finite() => {
            let w = profile.watts_of(Setting::Watts(w)).round().max(0.0);
            Ok(Action::PowerTarget(pb::SetPowerTargetRequest {
                save_action: pb::SaveAction::SaveAndApply as i32,
                // Saturating: within the profile's range, far below u64::MAX.
                power_target: Some(pb::Power { watt: w as u64 }),
            }))
        }
        Setting::Watts(w) => Err(DeviceError::Unsupported(format!(
            "power target {w} W is not a number"
        ))),
        Setting::Level(i) => Err(DeviceError::Unsupported(format!(
            "level {i}: a Braiins OS+ miner takes a power target, not levels"
        ))),
    }
}

/// What `probe` says about a Braiins OS+ miner: its API version, and its model and firmware if
/// it tells them without a login.
pub fn identity(
    host_port: &str,
    version: &ApiVersion,
    details: Option<&pb::GetMinerDetailsResponse>,
) -> Result<Identity, DeviceError> {
    if version.major == 0 && version.minor == 0 && version.patch == 0 && version.pre.is_empty() {
        return Err(DeviceError::BadReply(
            "GetApiVersion answered an empty version".into(),
        ));
    }
    let mut api = format!("{}.{}.{}", version.major, version.minor, version.patch);
    if !version.pre.is_empty() {
        api = format!("{api}-{}", version.pre);
    }
    let model = details.map(model).unwrap_or_default();
    let firmware = details
        .and_then(|d| d.bos_version.as_ref())
        .map(|v| v.current.trim().to_string())
        .filter(|v| !v.is_empty());
    let summary = match (&firmware, model.is_empty()) {
        (Some(f), false) => format!("Braiins OS+ {f} on {model} at {host_port} (public API {api})"),
        _ => {
            format!("Braiins OS+ public API {api} at {host_port}; model and firmware need a login")
        }
    };
    Ok(Identity {
        kind: DeviceKind::Braiins.as_str(),
        model,
        firmware: firmware.unwrap_or_else(|| format!("public API {api}")),
        summary,
    })
}
