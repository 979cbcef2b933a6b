//! Configuration: a TOML file over built-in defaults, then `HEARTH_*` environment overrides, then
//! validation whose errors name the key and say what is wrong.
//!
//! An environment variable `HEARTH_SECTION__KEY=value` overrides `[section] key`; a double
//! underscore separates levels, single underscores belong to the key
//! (`HEARTH_SAFETY__ROOM_MAX_CELSIUS=26`). `HEARTH_LOG` is the log filter, not a key.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::devices::software_asic::AsicConfig;
use crate::mining::stratum::client::Endpoint;
use crate::mining::stratum::pool::PoolConfig;
use crate::sched::allocator::{Hysteresis, Mix};
use crate::thermal::controller::ControllerConfig;
use crate::thermal::estimator::RoomModel;
use crate::thermal::room::{Disturbance, OutdoorProfile, ProfileError, RoomParams};
use crate::thermal::safety::SafetyConfig;
use crate::thermal::schedule::ScheduleConfig;
use crate::thermal::sensor::FileUnit;

/// Environment variables with the `HEARTH_` prefix that are not config keys.
pub const RESERVED_ENV: &[&str] = &["HEARTH_LOG"];

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema.
    #[error("config {origin}: {msg}")]
    Parse {
        /// The file, or "environment".
        origin: String,
        /// The parser's message (names the key and line).
        msg: String,
    },
    /// An override names no key, or its value is unusable.
    #[error("{origin}: {msg}")]
    Override {
        /// The variable or flag.
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// A value is out of range.
    #[error("config key `{key}`: {msg}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A referenced file could not be loaded.
    #[error("config key `simulation.outdoor`: {0}")]
    Profile(#[from] ProfileError),
}

/// The control loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Seconds between control ticks (simulated seconds when the room is simulated).
    pub tick_seconds: f64,
    /// Log budget and room temperature every this many ticks (at least once per real second).
    pub log_every_ticks: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            tick_seconds: 1.0,
            log_every_ticks: 10,
        }
    }
}

/// The heater's electrical envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaterConfig {
    /// Power drawn by the powered but idle hardware, W.
    pub idle_watts: f64,
    /// The most the heater may draw, W; the heat budget never exceeds it.
    pub max_watts: f64,
    /// The resistive element for boost heat (`[heater.resistive]`).
    pub resistive: ResistiveConfig,
}

impl Default for HeaterConfig {
    fn default() -> Self {
        Self {
            idle_watts: 20.0,
            max_watts: 1200.0,
            resistive: ResistiveConfig::default(),
        }
    }
}

/// A resistive element that supplies only the heat compute cannot absorb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResistiveConfig {
    /// Its power, W; 0 = no element. (`max_w` is accepted too.)
    #[serde(alias = "max_w")]
    pub max_watts: f64,
    /// How it is switched: `element` (draws any power up to `max_watts`) or `mqtt_switch` (on or
    /// off through a smart plug on the `[mqtt]` broker, time-proportioned).
    pub kind: ResistiveKind,
    /// `mqtt_switch`: the plug's command topic (Tasmota `cmnd/<topic>/POWER`, zigbee2mqtt
    /// `zigbee2mqtt/<name>/set`, Shelly `shellies/<id>/relay/0/command`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command_topic: String,
    /// `mqtt_switch`: the payload that switches it on.
    pub payload_on: String,
    /// `mqtt_switch`: the payload that switches it off.
    pub payload_off: String,
    /// `mqtt_switch`: where the plug reports its state (`ON`/`OFF`, `on`/`off`, `true`/`false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    /// The JSON field of the state (zigbee2mqtt: `state`); absent for a plain payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_field: Option<String>,
    /// `mqtt_switch`: where the plug reports the power it measures, W.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_topic: Option<String>,
    /// The JSON field of the power (zigbee2mqtt: `power`; Tasmota: `ENERGY.Power`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_field: Option<String>,
    /// `mqtt_switch`: the time-proportioning window, s (on for duty × window in each).
    pub window_seconds: f64,
    /// `mqtt_switch`: the shortest on time, s (relay wear).
    pub min_on_seconds: f64,
    /// `mqtt_switch`: the shortest off time, s (relay wear).
    pub min_off_seconds: f64,
}

/// How the resistive element is switched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResistiveKind {
    /// A load that draws exactly its target (simulated).
    #[default]
    Element,
    /// An on/off element behind a smart plug on the `[mqtt]` broker.
    MqttSwitch,
}

impl Default for ResistiveConfig {
    fn default() -> Self {
        // The default heater: 400 W ASIC + 250 W GPU + 600 W element covers its 1200 W.
        Self {
            max_watts: 600.0,
            kind: ResistiveKind::Element,
            command_topic: String::new(),
            payload_on: "ON".into(),
            payload_off: "OFF".into(),
            state_topic: None,
            state_field: None,
            power_topic: None,
            power_field: None,
            window_seconds: 600.0,
            min_on_seconds: 120.0,
            min_off_seconds: 120.0,
        }
    }
}

impl ResistiveConfig {
    /// Checks the switch's keys; the error is the key under `heater.resistive.` and what is
    /// wrong. `has_mqtt`: whether the config has an `[mqtt]` section.
    pub fn validate(&self, has_mqtt: bool) -> Result<(), (&'static str, String)> {
        use crate::home::sensors::{check_field, check_topic};
        if self.kind == ResistiveKind::Element {
            if self.command_topic.is_empty() {
                return Ok(());
            }
            return Err(("command_topic", "is for kind = \"mqtt_switch\"".into()));
        }
        if !has_mqtt {
            return Err((
                "kind",
                "mqtt_switch needs an [mqtt] section (the broker)".into(),
            ));
        }
        if !(self.max_watts.is_finite() && self.max_watts > 0.0) {
            return Err((
                "max_watts",
                "an mqtt_switch needs the element's power, W".into(),
            ));
        }
        check_topic(&self.command_topic).map_err(|m| ("command_topic", m))?;
        for (key, topic) in [
            ("state_topic", &self.state_topic),
            ("power_topic", &self.power_topic),
        ] {
            if let Some(t) = topic {
                check_topic(t).map_err(|m| (key, m))?;
            }
        }
        for (key, field) in [
            ("state_field", &self.state_field),
            ("power_field", &self.power_field),
        ] {
            if let Some(f) = field {
                check_field(f).map_err(|m| (key, m))?;
            }
        }
        for (key, p) in [
            ("payload_on", &self.payload_on),
            ("payload_off", &self.payload_off),
        ] {
            if p.is_empty() || p.len() > 256 {
                return Err((key, "must be 1–256 bytes".into()));
            }
        }
        if self.payload_on == self.payload_off {
            return Err(("payload_off", "must differ from payload_on".into()));
        }
        let (w, on, off) = (
            self.window_seconds,
            self.min_on_seconds,
            self.min_off_seconds,
        );
        if !(w.is_finite() && (10.0..=7200.0).contains(&w)) {
            return Err(("window_seconds", format!("must be 10–7200 s, got {w}")));
        }
        for (key, v) in [("min_on_seconds", on), ("min_off_seconds", off)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((key, format!("must not be negative, got {v}")));
            }
        }
        if on + off > w {
            return Err((
                "window_seconds",
                format!(
                    "must hold min_on_seconds + min_off_seconds ({} s), got {w}",
                    on + off
                ),
            ));
        }
        Ok(())
    }
}

/// The scheduler: how the heat budget is split and what work is worth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedConfig {
    /// The mix at first start; once the owner sets one it is kept in the data dir.
    pub mix: Mix,
    /// Switching hysteresis of the automatic mix.
    pub hysteresis: Hysteresis,
    /// What mining earns: currency per TH/s per day.
    pub hashprice_per_th_day: f64,
    /// The hashing board's nominal efficiency, J/TH.
    pub asic_joules_per_th: f64,
    /// Deadline jobs get this much more GPU power than the bare minimum to finish in time.
    pub deadline_margin: f64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            mix: Mix::Auto,
            hysteresis: Hysteresis::default(),
            hashprice_per_th_day: 0.045,
            asic_joules_per_th: 17.5,
            deadline_margin: 1.25,
        }
    }
}

impl SchedConfig {
    /// Mining value per joule: hashprice over the board's efficiency.
    pub fn asic_value_per_joule(&self) -> f64 {
        self.hashprice_per_th_day / (86_400.0 * self.asic_joules_per_th)
    }

    /// What one accepted difficulty-1 share (2^32 hashes) earns at the hashprice.
    pub fn value_per_share(&self) -> f64 {
        // A TH/s for a day is 1e12 · 86 400 hashes.
        self.hashprice_per_th_day * 4_294_967_296.0 / (1e12 * 86_400.0)
    }
}

/// The job store and the executor that runs its jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Where jobs, checkpoints and results live; the CLI's `--data-dir` overrides it. Unset:
    /// `$XDG_DATA_HOME/hearth`, else `~/.local/share/hearth`.
    pub data_dir: Option<PathBuf>,
    /// Queue caps.
    pub limits: crate::jobs::store::StoreLimits,
    /// `normal`: an accepted job survives the daemon being killed; `full`: it also survives
    /// power loss (an fsync per group commit).
    pub sync: crate::jobs::store::SyncMode,
}

impl JobsConfig {
    /// The data dir in use: the configured one, else the XDG default.
    pub fn resolved_data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let xdg = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        match (xdg, home) {
            (Some(x), _) => Ok(x.join("hearth")),
            (None, Some(h)) => Ok(h.join(".local/share/hearth")),
            (None, None) => Err(ConfigError::Invalid {
                key: "jobs.data_dir".into(),
                msg: "neither XDG_DATA_HOME nor HOME is set; give --data-dir".into(),
            }),
        }
    }
}

/// The controller's room model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Heat loss coefficient, W/K.
    pub ua_watts_per_kelvin: f64,
    /// Heat capacity, J/K.
    pub capacity_joules_per_kelvin: f64,
    /// Refine UA and C online from the heat delivered and the room's response.
    pub estimate_online: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            ua_watts_per_kelvin: 1.0 / 0.03,
            capacity_joules_per_kelvin: 3e6,
            estimate_online: false,
        }
    }
}

impl ModelConfig {
    /// The configured model.
    pub fn model(&self) -> RoomModel {
        RoomModel {
            ua_watts_per_kelvin: self.ua_watts_per_kelvin,
            capacity_joules_per_kelvin: self.capacity_joules_per_kelvin,
        }
    }
}

/// Where a temperature comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The simulated room of `[simulation]`.
    Simulated {
        /// Sensor noise, standard deviation, K.
        noise_celsius: f64,
        /// Sensor resolution, K.
        quantum_celsius: f64,
    },
    /// A file such as `/sys/bus/w1/devices/28-*/w1_slave` or `/sys/class/thermal/*/temp`.
    File {
        /// The file to read.
        path: PathBuf,
        /// How the file encodes the temperature.
        unit: FileUnit,
    },
    /// A constant (for the outdoor temperature when there is no outdoor sensor).
    Fixed {
        /// The temperature, °C.
        celsius: f64,
    },
    /// An external thermostat reports the room temperature over the API (`ReportTemperature`).
    Pushed,
    /// A device publishes it on the `[mqtt]` broker (a zigbee2mqtt thermometer).
    Mqtt {
        /// The topic, e.g. `zigbee2mqtt/living_room`.
        topic: String,
        /// The JSON field holding °C, e.g. `temperature`; absent for a plain number payload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
}

/// The room and outdoor temperature sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorsConfig {
    /// The room sensor.
    pub room: SourceConfig,
    /// The outdoor temperature, for feed-forward and recovery planning.
    pub outdoor: SourceConfig,
}

impl Default for SensorsConfig {
    fn default() -> Self {
        Self {
            room: SourceConfig::Simulated {
                noise_celsius: 0.05,
                quantum_celsius: 0.1,
            },
            outdoor: SourceConfig::Simulated {
                noise_celsius: 0.0,
                quantum_celsius: 0.0,
            },
        }
    }
}

/// The simulated room used by `kind = "simulated"` sensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationConfig {
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Room temperature at start, °C.
    pub initial_celsius: f64,
    /// The room.
    pub room: RoomParams,
    /// Outdoor temperature profile.
    pub outdoor: OutdoorProfile,
    /// Disturbances (window openings), by day of the run.
    pub disturbances: Vec<Disturbance>,
    /// Seed of the sensor noise.
    pub seed: u64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            speed: 1.0,
            initial_celsius: 19.0,
            room: RoomParams::from_rc(0.03, 3e6),
            outdoor: OutdoorProfile::default(),
            disturbances: Vec::new(),
            seed: 1,
        }
    }
}

/// Bitcoin mining: the software ASIC and its pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Hash with the software ASIC while the room wants heat.
    pub enabled: bool,
    /// Pools in failover order (`stratum+tcp://` or `stratum+ssl://host:port`); empty: the in-process local pool.
    pub pools: Vec<Endpoint>,
    /// The software ASIC.
    pub asic: AsicConfig,
    /// The in-process local pool, used when `pools` is empty.
    pub local_pool: PoolConfig,
    /// The fleet (`[[mining.devices]]`); empty: the software ASIC alone.
    pub devices: Vec<crate::devices::config::DeviceConfig>,
}

impl MiningConfig {
    /// The fleet's entries: the configured devices, or the software ASIC alone.
    pub fn fleet(&self) -> Vec<crate::devices::config::DeviceConfig> {
        if self.devices.is_empty() {
            vec![crate::devices::config::DeviceConfig::new(
                crate::devices::config::DeviceKind::Software,
                None,
            )]
        } else {
            self.devices.clone()
        }
    }
}

impl Default for MiningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pools: Vec::new(),
            asic: AsicConfig::default(),
            local_pool: PoolConfig::default(),
            devices: Vec::new(),
        }
    }
}

/// The GPU: which adapter, its power envelope, pacing and per-job caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Open the GPU and run jobs on it.
    pub enabled: bool,
    /// `auto` (hardware first, else software), `software`, `name:SUBSTRING` or `backend:vulkan|gl|metal|dx12`.
    pub adapter: crate::gpu::device::AdapterChoice,
    /// Power envelope, pacing and caps.
    pub runner: crate::gpu::runner::RunnerConfig,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            adapter: crate::gpu::device::AdapterChoice::Auto,
            runner: Default::default(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The control loop.
    pub control: ControlConfig,
    /// The heater's power envelope.
    pub heater: HeaterConfig,
    /// Setpoint presets and programs.
    pub thermostat: ScheduleConfig,
    /// Controller tuning.
    pub controller: ControllerConfig,
    /// The controller's room model.
    pub model: ModelConfig,
    /// Safety limits.
    pub safety: SafetyConfig,
    /// Temperature sources.
    pub sensors: SensorsConfig,
    /// The simulated room.
    pub simulation: SimulationConfig,
    /// Bitcoin mining.
    pub mining: MiningConfig,
    /// Leased AI jobs on the GPU.
    pub gpu: GpuConfig,
    /// How the budget is split between workloads.
    pub sched: SchedConfig,
    /// The durable job queue.
    pub jobs: JobsConfig,
    /// The metrics endpoint.
    pub telemetry: TelemetryConfig,
    /// The compute marketplace.
    pub market: crate::market::MarketConfig,
    /// The MQTT link to Home Assistant; absent = no MQTT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<crate::home::config::MqttConfig>,
}

/// The Prometheus metrics endpoint (see [`crate::telemetry`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where Prometheus scrapes `/metrics`, `host:port`.
    pub metrics_listen: SocketAddr,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_listen: crate::telemetry::DEFAULT_LISTEN,
        }
    }
}

/// Checks a mix: pinned fractions are finite, in [0, 1] and add up to 1. The error names the
/// field (`asic`, `gpu`).
pub fn validate_mix(mix: &Mix) -> Result<(), (&'static str, String)> {
    if let Mix::Pinned { asic, gpu, .. } = *mix {
        for (k, v) in [("asic", asic), ("gpu", gpu)] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err((k, format!("must be a fraction in [0, 1], got {v}")));
            }
        }
        if (asic + gpu - 1.0).abs() > 1e-6 {
            return Err((
                "gpu",
                format!("asic + gpu must add up to 1 (100 %), got {}", asic + gpu),
            ));
        }
    }
    Ok(())
}

/// Sets `dotted.path = value` in a TOML table; `value` is read as TOML (number, bool, array …)
/// and, failing that, taken as a string.
pub fn set_path(root: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a section", parents[..=i].join(".")))?;
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// Deserializes `user`; if that fails, tries again with its tagged sections that name no variant
/// completed from `T`'s defaults: a section given only some keys of a serde-tagged enum
/// (`kind = …` or `mode = …`), as `--set outdoor.mean_celsius=-5` or
/// `HEARTH_SIMULATION__OUTDOOR__MEAN_CELSIUS=-5` give, gets the tag and the other keys of the
/// default variant, so it changes that one key. If neither parses, the error is the first one
/// (about what the user wrote).
pub fn from_table_with_defaults<T>(user: toml::Table) -> Result<T, toml::de::Error>
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    match toml::Value::Table(user.clone()).try_into::<T>() {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut filled = user;
            let defaults = toml::Table::try_from(T::default()).unwrap_or_default();
            fill_variants(&mut filled, &defaults);
            toml::Value::Table(filled)
                .try_into::<T>()
                .map_err(|_| first)
        }
    }
}

const TAGS: [&str; 2] = ["kind", "mode"];

fn fill_variants(user: &mut toml::Table, defaults: &toml::Table) {
    for (k, v) in user.iter_mut() {
        let (toml::Value::Table(u), Some(toml::Value::Table(d))) = (v, defaults.get(k)) else {
            continue;
        };
        let tagged = TAGS.iter().any(|t| d.contains_key(*t));
        if tagged && !TAGS.iter().any(|t| u.contains_key(*t)) {
            for (dk, dv) in d {
                u.entry(dk.clone()).or_insert_with(|| dv.clone());
            }
        }
        fill_variants(u, d);
    }
}

/// Applies `key.path=value` overrides (from `--set` flags) to a TOML table.
pub fn apply_assignments(table: &mut toml::Table, sets: &[String]) -> Result<(), ConfigError> {
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| ConfigError::Override {
            origin: format!("--set {s}"),
            msg: "expected key.path=value".into(),
        })?;
        let path: Vec<String> = k.trim().split('.').map(str::to_string).collect();
        set_path(table, &path, v.trim()).map_err(|msg| ConfigError::Override {
            origin: format!("--set {s}"),
            msg,
        })?;
    }
    Ok(())
}

impl Config {
    /// Loads the config: defaults, then `file` if given, then `HEARTH_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, origin, base_dir) = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let table = text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: p.display().to_string(),
                        msg: e.to_string(),
                    })?;
                let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (table, p.display().to_string(), dir)
            }
            None => (toml::Table::new(), "defaults".to_string(), PathBuf::new()),
        };
        let mut from_env = false;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("HEARTH_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut table, &path, &value).map_err(|msg| ConfigError::Override {
                origin: name.clone(),
                msg,
            })?;
            from_env = true;
        }
        let origin = if from_env {
            format!("{origin} + HEARTH_* environment")
        } else {
            origin
        };
        let mut cfg: Config =
            from_table_with_defaults(table).map_err(|e: toml::de::Error| ConfigError::Parse {
                origin,
                msg: e.to_string(),
            })?;
        cfg.simulation.outdoor.load(&base_dir)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults as a commented TOML document.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# hearth configuration: the built-in defaults.\n\
             # Every key can be overridden by HEARTH_SECTION__KEY=value (e.g. HEARTH_SAFETY__ROOM_MAX_CELSIUS=26).\n\n{body}"
        )
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                msg,
            })
        };
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a positive number, got {v}"))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(key, format!("must not be negative, got {v}"))
            }
        };
        let c = &self.control;
        positive("control.tick_seconds", c.tick_seconds)?;
        if c.tick_seconds > 60.0 {
            return bad(
                "control.tick_seconds",
                format!("must be at most 60 s, got {}", c.tick_seconds),
            );
        }
        if c.log_every_ticks == 0 {
            return bad("control.log_every_ticks", "must be at least 1".into());
        }
        let h = &self.heater;
        non_negative("heater.idle_watts", h.idle_watts)?;
        positive("heater.max_watts", h.max_watts)?;
        if h.max_watts < h.idle_watts {
            return bad(
                "heater.max_watts",
                format!(
                    "{} W is below heater.idle_watts ({} W)",
                    h.max_watts, h.idle_watts
                ),
            );
        }
        for (name, &v) in &self.thermostat.presets {
            if !(5.0..=30.0).contains(&v) {
                return bad(
                    &format!("thermostat.presets.{name}"),
                    format!("setpoint must be between 5 and 30 °C, got {v}"),
                );
            }
        }
        if let Err(e) = crate::thermal::schedule::Schedule::new(&self.thermostat, 0) {
            let key = match &e {
                crate::thermal::schedule::ScheduleError::Program(i, _) => {
                    format!("thermostat.program[{i}]")
                }
                _ => "thermostat.default_preset".to_string(),
            };
            return bad(&key, e.to_string());
        }
        let k = &self.controller;
        positive("controller.closed_loop_seconds", k.closed_loop_seconds)?;
        non_negative(
            "controller.measurement_filter_seconds",
            k.measurement_filter_seconds,
        )?;
        non_negative(
            "controller.recovery_margin_minutes",
            k.recovery_margin_minutes,
        )?;
        if !(k.recovery_power_fraction > 0.0 && k.recovery_power_fraction <= 1.0) {
            return bad(
                "controller.recovery_power_fraction",
                format!("must be in (0, 1], got {}", k.recovery_power_fraction),
            );
        }
        positive("model.ua_watts_per_kelvin", self.model.ua_watts_per_kelvin)?;
        positive(
            "model.capacity_joules_per_kelvin",
            self.model.capacity_joules_per_kelvin,
        )?;
        let s = &self.safety;
        positive(
            "safety.sensor_stale_after_seconds",
            s.sensor_stale_after_seconds,
        )?;
        non_negative("safety.clear_down_seconds", s.clear_down_seconds)?;
        if s.deadman_ticks == 0 {
            return bad("safety.deadman_ticks", "must be at least 1".into());
        }
        let highest = self
            .thermostat
            .presets
            .values()
            .copied()
            .chain(self.thermostat.programs.iter().filter_map(|p| p.celsius))
            .fold(f64::NEG_INFINITY, f64::max);
        if !(s.room_max_celsius > highest && s.room_max_celsius <= 45.0) {
            return bad(
                "safety.room_max_celsius",
                format!(
                    "must be above the highest setpoint ({highest} °C) and at most 45 °C, got {}",
                    s.room_max_celsius
                ),
            );
        }
        for (key, src) in [
            ("sensors.room", &self.sensors.room),
            ("sensors.outdoor", &self.sensors.outdoor),
        ] {
            match src {
                SourceConfig::Simulated {
                    noise_celsius,
                    quantum_celsius,
                } => {
                    non_negative(&format!("{key}.noise_celsius"), *noise_celsius)?;
                    non_negative(&format!("{key}.quantum_celsius"), *quantum_celsius)?;
                }
                SourceConfig::File { path, .. } if path.as_os_str().is_empty() => {
                    return bad(&format!("{key}.path"), "must name a file".into());
                }
                SourceConfig::Fixed { celsius } if !celsius.is_finite() => {
                    return bad(&format!("{key}.celsius"), "must be a number".into());
                }
                SourceConfig::Mqtt { topic, field } => {
                    if self.mqtt.is_none() {
                        return bad(
                            &format!("{key}.kind"),
                            "mqtt needs an [mqtt] section (the broker)".into(),
                        );
                    }
                    if let Err(msg) = crate::home::sensors::check_topic(topic) {
                        return bad(&format!("{key}.topic"), msg);
                    }
                    if let Some(Err(msg)) = field.as_deref().map(crate::home::sensors::check_field)
                    {
                        return bad(&format!("{key}.field"), msg);
                    }
                }
                _ => {}
            }
        }
        if matches!(self.sensors.outdoor, SourceConfig::Pushed) {
            return bad(
                "sensors.outdoor.kind",
                "only the room reading can be pushed; use simulated, file, fixed or mqtt".into(),
            );
        }
        if matches!(self.sensors.room, SourceConfig::Fixed { .. }) {
            return bad(
                "sensors.room.kind",
                "a fixed room temperature cannot be controlled; use simulated, file or mqtt".into(),
            );
        }
        non_negative(
            "heater.resistive.max_watts",
            self.heater.resistive.max_watts,
        )?;
        if let Err((key, msg)) = self.heater.resistive.validate(self.mqtt.is_some()) {
            return bad(&format!("heater.resistive.{key}"), msg);
        }
        let sc = &self.sched;
        if let Err((key, msg)) = validate_mix(&sc.mix) {
            return bad(&format!("sched.mix.{key}"), msg);
        }
        non_negative("sched.hysteresis.min_gain", sc.hysteresis.min_gain)?;
        non_negative(
            "sched.hysteresis.dwell_seconds",
            sc.hysteresis.dwell_seconds,
        )?;
        non_negative("sched.hashprice_per_th_day", sc.hashprice_per_th_day)?;
        positive("sched.asic_joules_per_th", sc.asic_joules_per_th)?;
        if !(sc.deadline_margin.is_finite() && sc.deadline_margin >= 1.0) {
            return bad(
                "sched.deadline_margin",
                format!("must be at least 1, got {}", sc.deadline_margin),
            );
        }
        if self.jobs.limits.max_jobs_per_tenant == 0 {
            return bad(
                "jobs.limits.max_jobs_per_tenant",
                "must be at least 1".into(),
            );
        }
        if let Some(d) = &self.jobs.data_dir {
            if d.as_os_str().is_empty() {
                return bad("jobs.data_dir", "must name a directory".into());
            }
        }
        if self.telemetry.metrics_listen.port() == 0 {
            return bad(
                "telemetry.metrics_listen",
                "must name a port (0 would pick a random one no scraper can find)".into(),
            );
        }
        if let Err((key, msg)) = self.market.validate() {
            return bad(&format!("market.{key}"), msg);
        }
        if self.market.enabled && !self.gpu.enabled {
            return bad(
                "market.enabled",
                "the market runs jobs on the GPU: set gpu.enabled = true".into(),
            );
        }
        if let Err((key, msg)) = self.gpu.runner.validate() {
            return bad(&format!("gpu.runner.{key}"), msg);
        }
        if let Some(Err((key, msg))) = self.mqtt.as_ref().map(|m| m.validate()) {
            return bad(&key, msg);
        }
        let m = &self.mining;
        if let Err(e) = m.asic.validate() {
            return bad("mining.asic", e.to_string());
        }
        if let Err(e) = m.local_pool.validate() {
            return bad("mining.local_pool", e.to_string());
        }
        for (i, p) in m.pools.iter().enumerate() {
            if let Err(e) = p.parsed_url() {
                return bad(&format!("mining.pools[{i}].url"), e.to_string());
            }
            if let Err(e) = p.link() {
                return bad(&format!("mining.pools[{i}].tls_ca"), e.to_string());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut software = 0;
        for (i, d) in m.devices.iter().enumerate() {
            if let Err((key, msg)) = d.validate(i) {
                return bad(&key, msg);
            }
            software += usize::from(d.kind == crate::devices::config::DeviceKind::Software);
            if software > 1 {
                return bad(
                    &format!("mining.devices[{i}].kind"),
                    "the software ASIC can be listed once".into(),
                );
            }
            if !names.insert(d.display_name()) {
                return bad(
                    &format!("mining.devices[{i}].name"),
                    format!("{:?} names two devices", d.display_name()),
                );
            }
        }
        let sim = &self.simulation;
        positive("simulation.speed", sim.speed)?;
        if sim.speed > 1000.0 {
            return bad(
                "simulation.speed",
                format!("must be at most 1000, got {}", sim.speed),
            );
        }
        if c.tick_seconds / sim.speed < 0.001 {
            return bad(
                "simulation.speed",
                format!(
                    "control.tick_seconds / speed must be at least 1 ms, got {} s",
                    c.tick_seconds / sim.speed
                ),
            );
        }
        positive(
            "simulation.room.ua_watts_per_kelvin",
            sim.room.ua_watts_per_kelvin,
        )?;
        positive(
            "simulation.room.capacity_joules_per_kelvin",
            sim.room.capacity_joules_per_kelvin,
        )?;
        for (i, d) in sim.disturbances.iter().enumerate() {
            if d.window_seconds().is_none() {
                return bad(
                    &format!("simulation.disturbances[{i}].at"),
                    format!("{:?} is not HH:MM", d.at),
                );
            }
            positive(
                &format!("simulation.disturbances[{i}].ua_factor"),
                d.ua_factor,
            )?;
        }
        Ok(())
    }

    /// True when any sensor reads the simulated room.
    pub fn uses_simulated_room(&self) -> bool {
        matches!(self.sensors.room, SourceConfig::Simulated { .. })
            || matches!(self.sensors.outdoor, SourceConfig::Simulated { .. })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn partial_sections_keep_their_defaults_and_other_variants_replace_them() {
        // One key of a tagged section: the rest of the default variant stays.
        let env = [(
            "HEARTH_SIMULATION__OUTDOOR__MEAN_CELSIUS".to_string(),
            "-5".to_string(),
        )];
        let cfg = Config::load(None, env).unwrap();
        match cfg.simulation.outdoor {
            crate::thermal::room::OutdoorProfile::Sine {
                mean_celsius,
                amplitude_kelvin,
                ..
            } => assert_eq!((mean_celsius, amplitude_kelvin), (-5.0, 5.0)),
            other => panic!("{other:?}"),
        }
        // Another variant replaces the default one whole.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[sensors.outdoor]\nkind = \"fixed\"\ncelsius = 3.0\n").unwrap();
        let cfg = Config::load(Some(&p), []).unwrap();
        assert!(matches!(cfg.sensors.outdoor, SourceConfig::Fixed { celsius } if celsius == 3.0));
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn err_of(toml_text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.toml");
        std::fs::write(&p, toml_text).unwrap();
        Config::load(Some(&p), env(&[])).unwrap_err().to_string()
    }

    #[test]
    fn defaults_validate_and_print_default_round_trips() {
        let cfg = Config::load(None, env(&[])).unwrap();
        assert_eq!(cfg, Config::default());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        std::fs::write(&p, Config::default_toml()).unwrap();
        assert_eq!(Config::load(Some(&p), env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn mqtt_sensors_and_the_plug_need_the_broker_and_name_their_keys() {
        let room = "[sensors.room]\nkind = \"mqtt\"\ntopic = \"zigbee2mqtt/living\"\nfield = \"temperature\"\n";
        let e = err_of(room);
        assert!(
            e.contains("`sensors.room.kind`") && e.contains("[mqtt]"),
            "{e}"
        );
        let broker = "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.toml");
        std::fs::write(&p, format!("{room}{broker}")).unwrap();
        let cfg = Config::load(Some(&p), env(&[])).unwrap();
        assert_eq!(
            cfg.sensors.room,
            SourceConfig::Mqtt {
                topic: "zigbee2mqtt/living".into(),
                field: Some("temperature".into())
            }
        );
        let e = err_of(&format!(
            "{broker}[sensors.outdoor]\nkind = \"mqtt\"\ntopic = \"a/+\"\n"
        ));
        assert!(e.contains("`sensors.outdoor.topic`"), "{e}");
        let e = err_of(&format!(
            "{broker}[sensors.room]\nkind = \"mqtt\"\ntopic = \"a\"\nfield = \"x..y\"\n"
        ));
        assert!(e.contains("`sensors.room.field`"), "{e}");

        let plug = "[heater.resistive]\nmax_w = 1500\nkind = \"mqtt_switch\"\ncommand_topic = \"cmnd/heater/POWER\"\n";
        let e = err_of(plug);
        assert!(
            e.contains("`heater.resistive.kind`") && e.contains("[mqtt]"),
            "{e}"
        );
        std::fs::write(&p, format!("{plug}{broker}")).unwrap();
        let r = Config::load(Some(&p), env(&[])).unwrap().heater.resistive;
        assert_eq!((r.kind, r.max_watts), (ResistiveKind::MqttSwitch, 1500.0));
        assert_eq!(
            (r.payload_on.as_str(), r.payload_off.as_str()),
            ("ON", "OFF")
        );
        assert_eq!(
            (r.window_seconds, r.min_on_seconds, r.min_off_seconds),
            (600.0, 120.0, 120.0)
        );
        for (extra, key) in [
            (
                "window_seconds = 200\n",
                "`heater.resistive.window_seconds`",
            ),
            (
                "min_off_seconds = -1\n",
                "`heater.resistive.min_off_seconds`",
            ),
            ("payload_off = \"ON\"\n", "`heater.resistive.payload_off`"),
            (
                "state_topic = \"stat/#\"\n",
                "`heater.resistive.state_topic`",
            ),
            (
                "power_field = \".Power\"\n",
                "`heater.resistive.power_field`",
            ),
        ] {
            let e = err_of(&format!("{plug}{extra}{broker}"));
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = err_of("[heater.resistive]\ncommand_topic = \"cmnd/x/POWER\"\n");
        assert!(e.contains("`heater.resistive.command_topic`"), "{e}");
        assert_eq!(
            Config::default().heater.resistive.kind,
            ResistiveKind::Element
        );
    }

    #[test]
    fn mqtt_is_off_unless_its_section_is_there() {
        assert!(Config::load(None, env(&[])).unwrap().mqtt.is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.toml");
        std::fs::write(&p, "[mqtt]\nurl = \"mqtt://127.0.0.1:1884\"\n").unwrap();
        let cfg = Config::load(Some(&p), env(&[])).unwrap();
        let m = cfg.mqtt.unwrap();
        assert_eq!(m.url, "mqtt://127.0.0.1:1884");
        assert_eq!(m.discovery_prefix, "homeassistant");
        let cfg = Config::load(None, env(&[("HEARTH_MQTT__USERNAME", "heater")])).unwrap();
        assert_eq!(cfg.mqtt.unwrap().username.as_deref(), Some("heater"));
        let e = err_of("[mqtt]\nurl = \"http://broker:80\"\n");
        assert!(e.contains("`mqtt.url`"), "{e}");
        let e = err_of("[mqtt]\nreconnect_max_seconds = 0.1\n");
        assert!(e.contains("`mqtt.reconnect_max_seconds`"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.toml");
        std::fs::write(&p, "[safety]\nroom_max_celsius = 26.0\n").unwrap();
        let cfg = Config::load(
            Some(&p),
            env(&[
                ("HEARTH_SAFETY__ROOM_MAX_CELSIUS", "25.5"),
                ("HEARTH_HEATER__MAX_WATTS", "900"),
                ("HEARTH_LOG", "debug"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.safety.room_max_celsius, 25.5);
        assert_eq!(cfg.heater.max_watts, 900.0);
    }

    #[test]
    fn telemetry_listen_address_is_parsed_and_checked() {
        let cfg = Config::load(
            None,
            env(&[("HEARTH_TELEMETRY__METRICS_LISTEN", "0.0.0.0:9100")]),
        )
        .unwrap();
        assert_eq!(
            cfg.telemetry.metrics_listen,
            "0.0.0.0:9100".parse().unwrap()
        );
        let e = err_of("[telemetry]\nmetrics_listen = \"127.0.0.1:0\"\n");
        assert!(e.contains("telemetry.metrics_listen"), "{e}");
        let e = err_of("[telemetry]\nmetrics_listen = \"localhost\"\n");
        assert!(e.contains("metrics_listen"), "{e}");
    }

    #[test]
    fn unknown_environment_key_is_named() {
        let e = Config::load(None, env(&[("HEARTH_SAFETY__ROOM_MAXIMUM", "25")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("room_maximum"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let e = err_of("[thermostat.presets]\ncomfort = 35.0\neco = 18.0\naway = 15.0\n");
        assert!(
            e.contains("thermostat.presets.comfort") && e.contains("between 5 and 30"),
            "{e}"
        );
        let e = err_of("[heater]\nidle_watts = -5.0\n");
        assert!(
            e.contains("heater.idle_watts") && e.contains("negative"),
            "{e}"
        );
        let e = err_of("[heater]\nidle_watts = 300.0\nmax_watts = 200.0\n");
        assert!(e.contains("heater.max_watts") && e.contains("below"), "{e}");
        let e = err_of(
            "[[thermostat.program]]\nfrom = \"06:00\"\nto = \"25:00\"\npreset = \"comfort\"\n",
        );
        assert!(
            e.contains("thermostat.program[0]") && e.contains("25:00"),
            "{e}"
        );
        let e = err_of("[control]\ntick_seconds = 0\n");
        assert!(e.contains("control.tick_seconds"), "{e}");
        let e = err_of("[safety]\nroom_mx_celsius = 20\n");
        assert!(e.contains("room_mx_celsius"), "{e}");
        let e = err_of("[sensors.room]\nkind = \"file\"\npath = \"/x\"\nunit = \"kelvin\"\n");
        assert!(e.contains("kelvin"), "{e}");
    }
}
