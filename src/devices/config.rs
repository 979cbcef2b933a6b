//! `[[mining.devices]]`: the mining fleet, one entry per device.

use serde::{Deserialize, Serialize};

/// The kinds of mining device hearth drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// The software ASIC with hearth's own Stratum client (`[mining.asic]`, `[mining] pools`).
    Software,
    /// A Canaan Avalon (Nano 3, Nano 3S, Mini 3) through the CGMiner API (TCP 4028).
    Avalon,
    /// A Bitaxe (or other ESP-Miner board) through the AxeOS REST API (HTTP 80).
    Axeos,
    /// A miner on Braiins OS+ through its public gRPC API (`braiins.bos.v1`, port 50051).
    Braiins,
}

impl DeviceKind {
    /// Its name in config, status and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceKind::Software => "software",
            DeviceKind::Avalon => "avalon",
            DeviceKind::Axeos => "axeos",
            DeviceKind::Braiins => "braiins",
        }
    }

    /// The port its API listens on when the address names none.
    pub fn default_port(&self) -> u16 {
        match self {
            DeviceKind::Software => 0,
            DeviceKind::Avalon => 4028,
            DeviceKind::Axeos => 80,
            DeviceKind::Braiins => 50051,
        }
    }

    /// Least seconds between two commands that change the setting, unless configured: an Avalon
    /// recalibrates after a work-mode change, a Bitaxe writes its flash on every PATCH, Braiins
    /// ramps its tuner; the software ASIC follows at once.
    pub fn default_min_command_interval_seconds(&self) -> f64 {
        match self {
            DeviceKind::Software => 0.0,
            DeviceKind::Avalon => 300.0,
            DeviceKind::Axeos => 120.0,
            DeviceKind::Braiins => 120.0,
        }
    }

    /// Seconds between polls, unless configured.
    pub fn default_poll_seconds(&self) -> f64 {
        match self {
            DeviceKind::Software => 1.0,
            _ => 5.0,
        }
    }
}

/// One power level of a device, as the owner may override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// The device's own setting: a work mode number (Avalon) or a frequency in MHz (AxeOS).
    pub value: u32,
    /// Nominal wall power at this level, W.
    pub watts: f64,
}

/// One device of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Its kind.
    pub kind: DeviceKind,
    /// `host` or `host:port` of its API (not for `software`).
    #[serde(default)]
    pub address: Option<String>,
    /// Its name in status, metrics and logs; default `KIND@ADDRESS` (`software` for the software
    /// ASIC).
    #[serde(default)]
    pub name: Option<String>,
    /// API user, where the API has one (Braiins OS+: `root`).
    #[serde(default)]
    pub username: Option<String>,
    /// API password.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds between polls.
    #[serde(default)]
    pub poll_seconds: Option<f64>,
    /// Real seconds (whatever the clock speed) before a request counts as failed.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// Least seconds between two commands that change its setting.
    #[serde(default)]
    pub min_command_interval_seconds: Option<f64>,
    /// Seconds without good telemetry before it counts as unreachable.
    #[serde(default)]
    pub stale_after_seconds: Option<f64>,
    /// Its levels, overriding the per-model table (Avalon work modes, AxeOS frequencies).
    #[serde(default)]
    pub levels: Option<Vec<LevelConfig>>,
    /// Chip temperature limit, °C, overriding the per-model default.
    #[serde(default)]
    pub chip_limit_celsius: Option<f64>,
}

impl DeviceConfig {
    /// A device of `kind` at `address`, everything else default.
    pub fn new(kind: DeviceKind, address: Option<&str>) -> Self {
        Self {
            kind,
            address: address.map(str::to_string),
            name: None,
            username: None,
            password: None,
            poll_seconds: None,
            timeout_seconds: None,
            min_command_interval_seconds: None,
            stale_after_seconds: None,
            levels: None,
            chip_limit_celsius: None,
        }
    }

    /// `host:port`, with the kind's default port if the address names none; empty for `software`.
    pub fn host_port(&self) -> String {
        match &self.address {
            None => String::new(),
            Some(a) if has_port(a) => a.clone(),
            Some(a) => format!("{a}:{}", self.kind.default_port()),
        }
    }

    /// Its name: configured, else `KIND@ADDRESS`, or `software`.
    pub fn display_name(&self) -> String {
        match (&self.name, self.kind) {
            (Some(n), _) => n.clone(),
            (None, DeviceKind::Software) => "software".into(),
            (None, k) => format!("{}@{}", k.as_str(), self.host_port()),
        }
    }

    /// Seconds between polls.
    pub fn poll_seconds(&self) -> f64 {
        self.poll_seconds
            .unwrap_or_else(|| self.kind.default_poll_seconds())
    }

    /// Seconds before a request fails.
    pub fn timeout_seconds(&self) -> f64 {
        self.timeout_seconds.unwrap_or(3.0)
    }

    /// [`Self::timeout_seconds`] as a real duration.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.timeout_seconds())
            .unwrap_or(std::time::Duration::from_secs(3))
    }

    /// Least seconds between two setting changes.
    pub fn min_command_interval_seconds(&self) -> f64 {
        self.min_command_interval_seconds
            .unwrap_or_else(|| self.kind.default_min_command_interval_seconds())
    }

    /// Seconds without good telemetry before it counts as unreachable: three missed polls.
    pub fn stale_after_seconds(&self) -> f64 {
        self.stale_after_seconds
            .unwrap_or_else(|| 3.0 * self.poll_seconds() + self.timeout_seconds())
    }

    /// Checks the entry; errors name the key under `mining.devices[i]`.
    pub fn validate(&self, i: usize) -> Result<(), (String, String)> {
        let key = |k: &str| format!("mining.devices[{i}].{k}");
        match (self.kind, &self.address) {
            (DeviceKind::Software, Some(_)) => {
                return Err((key("address"), "the software ASIC has no address".into()))
            }
            (DeviceKind::Software, None) => {}
            (_, None) => return Err((key("address"), "is required for this kind".into())),
            (_, Some(a)) if a.trim().is_empty() || a.contains('/') || a.contains(' ') => {
                return Err((key("address"), format!("{a:?} is not host or host:port")))
            }
            _ => {}
        }
        let positive = [
            ("poll_seconds", self.poll_seconds),
            ("timeout_seconds", self.timeout_seconds),
            ("stale_after_seconds", self.stale_after_seconds),
            ("chip_limit_celsius", self.chip_limit_celsius),
        ];
        for (k, v) in positive {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err((key(k), format!("must be a positive number, not {v}")));
                }
            }
        }
        if let Some(v) = self.min_command_interval_seconds {
            if !(v.is_finite() && v >= 0.0) {
                return Err((
                    key("min_command_interval_seconds"),
                    format!("must be ≥ 0, not {v}"),
                ));
            }
        }
        if let Some(levels) = &self.levels {
            if levels.is_empty() {
                return Err((key("levels"), "needs at least one level".into()));
            }
            for (j, l) in levels.iter().enumerate() {
                if !(l.watts.is_finite() && l.watts > 0.0) {
                    return Err((key(&format!("levels[{j}].watts")), "must be > 0".into()));
                }
                if j > 0 && l.watts <= levels[j - 1].watts {
                    return Err((key("levels"), "must ascend by watts".into()));
                }
            }
        }
        Ok(())
    }
}

/// Whether `a` ends in `:PORT` (an IPv6 literal needs brackets: `[::1]:4028`).
fn has_port(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_the_kind_port() {
        let d = DeviceConfig::new(DeviceKind::Avalon, Some("127.0.0.1"));
        assert_eq!(d.host_port(), "127.0.0.1:4028");
        let d = DeviceConfig::new(DeviceKind::Axeos, Some("127.0.0.1:8081"));
        assert_eq!(d.host_port(), "127.0.0.1:8081");
        let d = DeviceConfig::new(DeviceKind::Braiins, Some("[::1]"));
        assert_eq!(d.host_port(), "[::1]:50051");
        let d = DeviceConfig::new(DeviceKind::Braiins, Some("[::1]:9"));
        assert_eq!(d.host_port(), "[::1]:9");
        assert_eq!(d.display_name(), "braiins@[::1]:9");
    }

    #[test]
    fn validation_names_the_key() {
        let d = DeviceConfig::new(DeviceKind::Avalon, None);
        assert_eq!(d.validate(2).unwrap_err().0, "mining.devices[2].address");
        let mut d = DeviceConfig::new(DeviceKind::Axeos, Some("127.0.0.1"));
        d.poll_seconds = Some(0.0);
        assert_eq!(
            d.validate(0).unwrap_err().0,
            "mining.devices[0].poll_seconds"
        );
        d.poll_seconds = None;
        d.levels = Some(vec![
            LevelConfig {
                value: 500,
                watts: 15.0,
            },
            LevelConfig {
                value: 400,
                watts: 12.0,
            },
        ]);
        assert_eq!(d.validate(0).unwrap_err().0, "mining.devices[0].levels");
        let d = DeviceConfig::new(DeviceKind::Software, Some("x"));
        assert!(d.validate(0).is_err());
    }
}
