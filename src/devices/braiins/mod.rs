//! Braiins OS+ miners through their public gRPC API (package `braiins.bos.v1`, port 50051).
//!
//! [`start`] drives one miner with the shared polling task ([`driver::spawn`]): each poll reads
//! `GetMinerDetails` (model, paused), `GetMinerStats` (power, hashrate, shares),
//! `GetCoolingState` (hottest sensor) and `GetTunerState` (power target, tuning), plus
//! `GetConstraints` (power-target range) once; a setting is a `SetPowerTarget` (save and apply),
//! or `PauseMining` to stop, with `ResumeMining` to leave it. [`probe`] identifies a miner
//! through `GetApiVersion`, which needs no login.
//!
//! - [`proto`]: the generated client of hearth's transcription of the API subset;
//! - [`client`]: the channel, the session token and the calls;
//! - [`telemetry`]: replies to telemetry and settings to requests.

pub mod client;
pub mod proto;
pub mod telemetry;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use super::config::DeviceConfig;
use super::driver::{self, DeviceError, Protocol, Telemetry};
use super::identity::Identity;
use super::DeviceContext;
use crate::mining::fleet::device::{DeviceProfile, MinerDevice, Setting};
use client::Client;
use telemetry::{Action, Limits, Overrides, Replies};

/// Starts the task that drives the Braiins OS+ miner `cfg` describes.
pub fn start(cfg: &DeviceConfig, ctx: DeviceContext) -> Arc<dyn MinerDevice> {
    driver::spawn(cfg, BraiinsProtocol::new(cfg), ctx)
}

/// Identifies the Braiins OS+ miner at `host_port` within `timeout`, without credentials.
pub async fn probe(host_port: &str, timeout: Duration) -> Result<Identity, DeviceError> {
    let work = async {
        let mut c = Client::new(client::channel(host_port, timeout)?, "", "");
        let version = c.api_version().await?;
        // Most firmware wants a login for this; use it if it answers.
        let details = c.details_without_login().await.ok();
        telemetry::identity(host_port, &version, details.as_ref())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(DeviceError::Timeout(timeout.as_secs_f64())))
}

/// The Braiins OS+ gRPC API as a [`Protocol`].
pub struct BraiinsProtocol {
    /// The client, or why there is none (an address that is not host:port).
    client: Result<Client, DeviceError>,
    /// The miner's constraints, once read.
    limits: Option<Limits>,
    /// From the config.
    overrides: Overrides,
    /// Whether the last poll saw it paused.
    paused: Option<bool>,
}

impl BraiinsProtocol {
    /// A protocol for the miner `cfg` describes; it connects on first use.
    pub fn new(cfg: &DeviceConfig) -> Self {
        let timeout =
            Duration::try_from_secs_f64(cfg.timeout_seconds()).unwrap_or(Duration::from_secs(3));
        let client = client::channel(&cfg.host_port(), timeout).map(|ch| {
            Client::new(
                ch,
                cfg.username.as_deref().unwrap_or(client::DEFAULT_USERNAME),
                cfg.password.as_deref().unwrap_or(""),
            )
        });
        Self {
            client,
            limits: None,
            overrides: Overrides {
                min_command_interval_seconds: cfg.min_command_interval_seconds(),
                chip_limit_celsius: cfg.chip_limit_celsius,
            },
            paused: None,
        }
    }
}

impl Protocol for BraiinsProtocol {
    async fn poll(&mut self) -> Result<Telemetry, DeviceError> {
        let c = self.client.as_mut().map_err(|e| e.clone())?;
        let limits = match &self.limits {
            Some(l) => l.clone(),
            None => {
                let l = telemetry::limits(&c.constraints().await?)?;
                self.limits = Some(l.clone());
                l
            }
        };
        let replies = Replies {
            details: c.details().await?,
            stats: c.stats().await?,
            cooling: c.cooling().await?,
            tuner: c.tuner().await?,
        };
        let t = telemetry::telemetry(&replies, &limits, &self.overrides)?;
        self.paused = Some(t.setting == Some(Setting::Stop));
        Ok(t)
    }

    async fn apply(
        &mut self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> Result<(), DeviceError> {
        let action = telemetry::action(setting, profile)?;
        let c = self.client.as_mut().map_err(|e| e.clone())?;
        match action {
            Action::Pause => {
                c.pause().await?;
                self.paused = Some(true);
            }
            Action::PowerTarget(req) => {
                c.set_power_target(req).await?;
                if self.paused != Some(false) {
                    c.resume().await?;
                    self.paused = Some(false);
                }
            }
        }
        Ok(())
    }
}
