//! The Braiins OS+ public API messages the emulator serves (packages `braiins.bos` and
//! `braiins.bos.v1`), written as prost structs with the field numbers of Braiins' published
//! `bos-plus-api` protos. Only the fields the emulator fills are declared; a client decoding the
//! full messages reads the rest as defaults.

/// Any message without fields (the requests of the getters and actions, `LoginResponse`):
/// they all encode to nothing.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Empty {}

/// `braiins.bos.ApiVersionRequest`: no fields.
pub type ApiVersionRequest = Empty;

/// `braiins.bos.ApiVersion`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiVersion {
    /// Major.
    #[prost(uint64, tag = "1")]
    pub major: u64,
    /// Minor.
    #[prost(uint64, tag = "2")]
    pub minor: u64,
    /// Patch.
    #[prost(uint64, tag = "3")]
    pub patch: u64,
    /// Pre-release.
    #[prost(string, tag = "4")]
    pub pre: String,
    /// Build.
    #[prost(string, tag = "5")]
    pub build: String,
}

/// `braiins.bos.v1.LoginRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoginRequest {
    /// User.
    #[prost(string, tag = "1")]
    pub username: String,
    /// Password.
    #[prost(string, tag = "2")]
    pub password: String,
}

/// `braiins.bos.v1.LoginResponse`: no fields.
pub type LoginResponse = Empty;

/// `braiins.bos.v1.Power`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Power {
    /// Watts.
    #[prost(uint64, tag = "1")]
    pub watt: u64,
}

/// `braiins.bos.v1.GigaHashrate`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct GigaHashrate {
    /// GH/s.
    #[prost(double, tag = "1")]
    pub gigahash_per_second: f64,
}

/// `braiins.bos.v1.Temperature`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Temperature {
    /// °C.
    #[prost(double, tag = "1")]
    pub degree_c: f64,
}

/// `braiins.bos.v1.SaveAction`: UNSPECIFIED 0, SAVE 1, SAVE_AND_APPLY 2,
/// SAVE_AND_FORCE_APPLY 3.
pub const SAVE_ACTION_SAVE: i32 = 1;
/// `SAVE_ACTION_SAVE_AND_APPLY`.
pub const SAVE_ACTION_SAVE_AND_APPLY: i32 = 2;
/// `SAVE_ACTION_SAVE_AND_FORCE_APPLY`.
pub const SAVE_ACTION_SAVE_AND_FORCE_APPLY: i32 = 3;

/// `braiins.bos.v1.SetPowerTargetRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetPowerTargetRequest {
    /// A `SaveAction`.
    #[prost(int32, tag = "1")]
    pub save_action: i32,
    /// The target.
    #[prost(message, optional, tag = "2")]
    pub power_target: Option<Power>,
}

/// `braiins.bos.v1.SetPowerTargetResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetPowerTargetResponse {
    /// The target now configured.
    #[prost(message, optional, tag = "1")]
    pub power_target: Option<Power>,
}

/// `braiins.bos.v1.GetConstraintsRequest`: no fields.
pub type GetConstraintsRequest = Empty;

/// `braiins.bos.v1.PowerConstraints`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PowerConstraints {
    /// Default.
    #[prost(message, optional, tag = "1")]
    pub default: Option<Power>,
    /// Minimum.
    #[prost(message, optional, tag = "2")]
    pub min: Option<Power>,
    /// Maximum.
    #[prost(message, optional, tag = "3")]
    pub max: Option<Power>,
}

/// `braiins.bos.v1.TunerConstraints` (power target part).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TunerConstraints {
    /// Power target constraints.
    #[prost(message, optional, tag = "1")]
    pub power_target: Option<PowerConstraints>,
    /// `TunerMode` default (1 = power target).
    #[prost(int32, tag = "4")]
    pub default_mode: i32,
}

/// `braiins.bos.v1.GetConstraintsResponse` (tuner part).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetConstraintsResponse {
    /// Tuner constraints.
    #[prost(message, optional, tag = "1")]
    pub tuner_constraints: Option<TunerConstraints>,
}

/// `braiins.bos.v1.GetMinerStatsRequest`: no fields.
pub type GetMinerStatsRequest = Empty;

/// `braiins.bos.v1.RealHashrate`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RealHashrate {
    /// Last 5 s.
    #[prost(message, optional, tag = "1")]
    pub last_5s: Option<GigaHashrate>,
    /// Last 15 s.
    #[prost(message, optional, tag = "2")]
    pub last_15s: Option<GigaHashrate>,
    /// Last 30 s.
    #[prost(message, optional, tag = "3")]
    pub last_30s: Option<GigaHashrate>,
    /// Last minute.
    #[prost(message, optional, tag = "4")]
    pub last_1m: Option<GigaHashrate>,
    /// Last 5 minutes.
    #[prost(message, optional, tag = "5")]
    pub last_5m: Option<GigaHashrate>,
}

/// `braiins.bos.v1.WorkSolverStats`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkSolverStats {
    /// Measured hashrate.
    #[prost(message, optional, tag = "1")]
    pub real_hashrate: Option<RealHashrate>,
    /// Nominal hashrate.
    #[prost(message, optional, tag = "2")]
    pub nominal_hashrate: Option<GigaHashrate>,
}

/// `braiins.bos.v1.MinerPowerStats`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MinerPowerStats {
    /// Power the miner estimates it draws.
    #[prost(message, optional, tag = "1")]
    pub approximated_consumption: Option<Power>,
}

/// `braiins.bos.v1.GetMinerStatsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMinerStatsResponse {
    /// Hashrate statistics.
    #[prost(message, optional, tag = "2")]
    pub miner_stats: Option<WorkSolverStats>,
    /// Power statistics.
    #[prost(message, optional, tag = "3")]
    pub power_stats: Option<MinerPowerStats>,
}

/// `braiins.bos.v1.GetMinerDetailsRequest`: no fields.
pub type GetMinerDetailsRequest = Empty;

/// `braiins.bos.v1.MinerIdentity`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MinerIdentity {
    /// `MinerBrand` (1 = Antminer).
    #[prost(int32, tag = "1")]
    pub brand: i32,
    /// Display name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Model.
    #[prost(string, tag = "4")]
    pub miner_model: String,
}

/// `braiins.bos.v1.BosVersion`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BosVersion {
    /// Current version.
    #[prost(string, tag = "1")]
    pub current: String,
    /// Major version.
    #[prost(string, tag = "2")]
    pub major: String,
    /// Braiins OS+.
    #[prost(bool, tag = "3")]
    pub bos_plus: bool,
}

/// `braiins.bos.v1.MinerStatus`: NORMAL.
pub const MINER_STATUS_NORMAL: i32 = 2;
/// `MINER_STATUS_PAUSED`.
pub const MINER_STATUS_PAUSED: i32 = 3;

/// `braiins.bos.v1.GetMinerDetailsResponse` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMinerDetailsResponse {
    /// Miner ID.
    #[prost(string, tag = "1")]
    pub uid: String,
    /// Identity.
    #[prost(message, optional, tag = "2")]
    pub miner_identity: Option<MinerIdentity>,
    /// OS version.
    #[prost(message, optional, tag = "5")]
    pub bos_version: Option<BosVersion>,
    /// Hostname.
    #[prost(string, tag = "6")]
    pub hostname: String,
    /// Hashrate on the sticker.
    #[prost(message, optional, tag = "9")]
    pub sticker_hashrate: Option<GigaHashrate>,
    /// Bosminer uptime, s.
    #[prost(uint64, tag = "10")]
    pub bosminer_uptime_s: u64,
    /// `MinerStatus`.
    #[prost(int32, tag = "12")]
    pub status: i32,
}

/// `braiins.bos.v1.GetCoolingStateRequest`: no fields.
pub type GetCoolingStateRequest = Empty;

/// `braiins.bos.v1.FanState`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FanState {
    /// Position.
    #[prost(uint32, optional, tag = "1")]
    pub position: Option<u32>,
    /// RPM.
    #[prost(uint32, tag = "2")]
    pub rpm: u32,
    /// PWM 0..1.
    #[prost(double, optional, tag = "3")]
    pub target_speed_ratio: Option<f64>,
}

/// `braiins.bos.v1.SensorLocation`: CHIP.
pub const SENSOR_LOCATION_CHIP: i32 = 1;

/// `braiins.bos.v1.TemperatureSensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TemperatureSensor {
    /// Sensor id.
    #[prost(uint32, optional, tag = "1")]
    pub id: Option<u32>,
    /// `SensorLocation`.
    #[prost(int32, tag = "2")]
    pub location: i32,
    /// Reading.
    #[prost(message, optional, tag = "3")]
    pub temperature: Option<Temperature>,
}

/// `braiins.bos.v1.GetCoolingStateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetCoolingStateResponse {
    /// Fans.
    #[prost(message, repeated, tag = "1")]
    pub fans: Vec<FanState>,
    /// The hottest sensor.
    #[prost(message, optional, tag = "2")]
    pub highest_temperature: Option<TemperatureSensor>,
}

/// `braiins.bos.v1.PauseMiningRequest`: no fields.
pub type PauseMiningRequest = Empty;

/// `braiins.bos.v1.PauseMiningResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PauseMiningResponse {
    /// It was paused already.
    #[prost(bool, tag = "1")]
    pub already_paused: bool,
}

/// `braiins.bos.v1.ResumeMiningRequest`: no fields.
pub type ResumeMiningRequest = Empty;

/// `braiins.bos.v1.ResumeMiningResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResumeMiningResponse {
    /// It was mining already.
    #[prost(bool, tag = "1")]
    pub already_mining: bool,
}

/// `braiins.bos.v1.GetTunerStateRequest`: no fields.
pub type GetTunerStateRequest = Empty;

/// `braiins.bos.v1.PowerTargetProfile` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PowerTargetProfile {
    /// Tuned target.
    #[prost(message, optional, tag = "2")]
    pub target: Option<Power>,
    /// Measured hashrate.
    #[prost(message, optional, tag = "3")]
    pub measured_hashrate: Option<GigaHashrate>,
    /// Estimated consumption.
    #[prost(message, optional, tag = "4")]
    pub estimated_power_consumption: Option<Power>,
}

/// `braiins.bos.v1.PowerTargetModeState`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PowerTargetModeState {
    /// Profile in use.
    #[prost(message, optional, tag = "1")]
    pub profile: Option<PowerTargetProfile>,
    /// Current target.
    #[prost(message, optional, tag = "2")]
    pub current_target: Option<Power>,
}

/// `braiins.bos.v1.TunerState`: STABLE.
pub const TUNER_STATE_STABLE: i32 = 2;
/// `TUNER_STATE_TUNING`.
pub const TUNER_STATE_TUNING: i32 = 3;

/// `braiins.bos.v1.GetTunerStateResponse` (the power-target arm of its `mode_state` oneof,
/// which is wire-identical to this optional field).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetTunerStateResponse {
    /// `TunerState`.
    #[prost(int32, tag = "1")]
    pub overall_tuner_state: i32,
    /// Power-target mode state.
    #[prost(message, optional, tag = "2")]
    pub power_target_mode_state: Option<PowerTargetModeState>,
}
