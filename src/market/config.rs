//! The `[market]` section: whether and how this heater joins a compute marketplace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::device::{DeviceConfig, ALL_KERNELS};
use super::layout::LayoutConfig;

/// `[market]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Join the market (needs the GPU).
    pub enabled: bool,
    /// NATS server URL(s), comma-separated (`nats://host:4222`).
    pub url: String,
    /// A NATS `.creds` file (JWT and nkey seed), if the market wants one.
    pub credentials_file: Option<PathBuf>,
    /// Least price per GPU-second this heater takes.
    pub price_floor: f64,
    /// Kernel catalog names this heater takes.
    pub kernels: Vec<String>,
    /// The device's ed25519 key; unset: `market-device.key` in the data dir. Created on first
    /// start.
    pub key_file: Option<PathBuf>,
    /// Seconds between heartbeats.
    pub heartbeat_seconds: f64,
    /// Seconds a device entry lives without a heartbeat.
    pub device_ttl_seconds: f64,
    /// Seconds a delivered offer stays this device's without an ack (set by the first heater
    /// that creates the shared consumer).
    pub ack_wait_seconds: f64,
    /// Seconds without heat wanted before a running market job is given back.
    pub preempt_after_seconds: f64,
    /// Copies of each stream: 1 on one server, 3 on a 3-node cluster.
    pub replicas: usize,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            price_floor: 0.0,
            kernels: ALL_KERNELS.iter().map(|k| k.to_string()).collect(),
            key_file: None,
            heartbeat_seconds: 5.0,
            device_ttl_seconds: 30.0,
            ack_wait_seconds: 30.0,
            preempt_after_seconds: 2.0,
            replicas: 1,
        }
    }
}

impl MarketConfig {
    /// Checks the section; the error names the key (without `market.`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.url.trim().is_empty() {
            return Err(("url", "must name a NATS server".into()));
        }
        let p = self.price_floor;
        if !(p.is_finite() && p >= 0.0) {
            return Err(("price_floor", format!("must be finite and >= 0, got {p}")));
        }
        if self.kernels.is_empty() {
            return Err(("kernels", "must name at least one kernel".into()));
        }
        if let Some(k) = self
            .kernels
            .iter()
            .find(|k| !ALL_KERNELS.contains(&k.as_str()))
        {
            return Err((
                "kernels",
                format!("unknown kernel {k:?} (known: {})", ALL_KERNELS.join(", ")),
            ));
        }
        for (key, v) in [
            ("heartbeat_seconds", self.heartbeat_seconds),
            ("device_ttl_seconds", self.device_ttl_seconds),
            ("ack_wait_seconds", self.ack_wait_seconds),
            ("preempt_after_seconds", self.preempt_after_seconds),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 86_400.0) {
                return Err((key, format!("must be in (0, 86400) seconds, got {v}")));
            }
        }
        if self.device_ttl_seconds < 2.0 * self.heartbeat_seconds {
            return Err((
                "device_ttl_seconds",
                format!(
                    "{} s is less than two heartbeats ({} s each): live devices would expire",
                    self.device_ttl_seconds, self.heartbeat_seconds
                ),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err((
                "replicas",
                format!("must be in 1..=5, got {}", self.replicas),
            ));
        }
        Ok(())
    }

    /// The key file in use: the configured one, else `market-device.key` in `data_dir`.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("market-device.key"))
    }

    /// The layout settings every process on this market shares.
    pub fn layout(&self) -> LayoutConfig {
        LayoutConfig {
            replicas: self.replicas,
            device_ttl: Duration::from_secs_f64(self.device_ttl_seconds),
            ..LayoutConfig::default()
        }
    }

    /// The device task's settings.
    pub fn device(&self) -> DeviceConfig {
        DeviceConfig {
            credentials: self.credentials_file.clone(),
            price_floor: self.price_floor,
            kernels: self.kernels.clone(),
            layout: self.layout(),
            ack_wait: Duration::from_secs_f64(self.ack_wait_seconds),
            heartbeat: Duration::from_secs_f64(self.heartbeat_seconds),
            preempt_after: Duration::from_secs_f64(self.preempt_after_seconds),
            ..DeviceConfig::new(self.url.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_keys_are_named() {
        MarketConfig::default().validate().unwrap();
        let key = |f: fn(&mut MarketConfig)| {
            let mut c = MarketConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(key(|c| c.url = " ".into()), "url");
        assert_eq!(key(|c| c.price_floor = -1.0), "price_floor");
        assert_eq!(key(|c| c.kernels = vec!["fft".into()]), "kernels");
        assert_eq!(key(|c| c.kernels.clear()), "kernels");
        assert_eq!(key(|c| c.ack_wait_seconds = 0.0), "ack_wait_seconds");
        assert_eq!(key(|c| c.device_ttl_seconds = 6.0), "device_ttl_seconds");
        assert_eq!(key(|c| c.replicas = 0), "replicas");
    }
}
