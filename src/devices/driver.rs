//! The task every networked mining device runs, whatever its protocol: poll it with a timeout,
//! keep its status, report its chip temperature, and apply the latest command: rate-limited,
//! never while it calibrates or protects itself, and cold at once when the command's deadline
//! has passed.
//!
//! A protocol (CGMiner API, AxeOS REST, Braiins gRPC) implements [`Protocol`]: two calls, each
//! one round trip (or a few) to the device. [`spawn`] wraps it in a [`Driver`], the
//! [`MinerDevice`] the fleet sees. Nothing here knows a wire format.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use super::config::DeviceConfig;
use super::DeviceContext;
use crate::mining::asic::PowerSource;
use crate::mining::fleet::device::{
    DeviceCommand, DeviceProfile, DeviceState, DeviceStatus, MinerDevice, PowerSteps, Setting,
    Temperature,
};
use crate::thermal::safety::ChipReading;

/// Why a request to a device failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DeviceError {
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No (complete) answer within the timeout.
    #[error("no answer within {0:.1} s")]
    Timeout(f64),
    /// The reply could not be understood (garbage, truncated, oversized, missing field).
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The device answered with an HTTP or gRPC error status.
    #[error("device answered {0}")]
    Status(String),
    /// The device refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The device is settling (an Avalon calibrating) and refused the change; try later.
    #[error("busy: {0}")]
    Busy(String),
    /// The device refused the command (its own message).
    #[error("refused: {0}")]
    Refused(String),
    /// The device cannot do this (no soft-off on this firmware).
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// What one poll learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The model the device reports.
    pub model: String,
    /// How it can be driven (levels from the per-model table or the config, what stops it).
    pub profile: DeviceProfile,
    /// Wall power it measures, W (`None` if this poll did not carry it).
    pub watts: Option<f64>,
    /// The setting it runs at.
    pub setting: Option<Setting>,
    /// That setting's name.
    pub setting_name: Option<String>,
    /// Its temperatures, for display.
    pub temperatures: Vec<Temperature>,
    /// Its hottest chip, °C (the chip over-temperature trip reads it).
    pub chip_celsius: Option<f64>,
    /// The limit for `chip_celsius`, °C.
    pub chip_limit_celsius: f64,
    /// Hashrate, H/s.
    pub hashes_per_second: f64,
    /// Shares its pool accepted.
    pub shares_accepted: u64,
    /// Shares its pool rejected.
    pub shares_rejected: u64,
    /// `Ok`, `Calibrating`, `Overheated` or `Fault`.
    pub state: DeviceState,
    /// Why, if not `Ok` (the device's own words where it has them).
    pub reason: Option<String>,
}

/// One device's wire protocol: what the driver task calls. Each call should make as few round
/// trips as it can; the task applies the timeout.
pub trait Protocol: Send + 'static {
    /// Reads the device's identity, setting, power, temperatures and condition.
    fn poll(&mut self) -> impl Future<Output = Result<Telemetry, DeviceError>> + Send;
    /// Puts the device at `setting` of `profile`.
    fn apply(
        &mut self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> impl Future<Output = Result<(), DeviceError>> + Send;
}

/// A device driven by its own task; the fleet's view of it.
pub struct Driver {
    status: Mutex<DeviceStatus>,
    profile: Mutex<Option<DeviceProfile>>,
    command: watch::Sender<Option<DeviceCommand>>,
}

impl MinerDevice for Driver {
    fn profile(&self) -> Option<DeviceProfile> {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn status(&self) -> DeviceStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn command(&self, command: DeviceCommand) {
        self.command.send_replace(Some(command));
    }

    fn has_work(&self) -> bool {
        !matches!(
            self.status().state,
            DeviceState::Unreachable | DeviceState::Starting
        )
    }
}

/// Starts the task that drives `protocol` as the device `cfg` describes.
pub fn spawn<P: Protocol>(cfg: &DeviceConfig, protocol: P, ctx: DeviceContext) -> Arc<Driver> {
    let status = DeviceStatus::starting(
        &cfg.display_name(),
        cfg.kind.as_str(),
        &cfg.host_port(),
        PowerSource::Measured,
    );
    let (tx, rx) = watch::channel(None);
    let driver = Arc::new(Driver {
        status: Mutex::new(status),
        profile: Mutex::new(None),
        command: tx,
    });
    let task = Task {
        driver: driver.clone(),
        protocol,
        commands: rx,
        ctx,
        timing: Timing::of(cfg),
        last_attempt: None,
        last_error: None,
    };
    tokio::spawn(task.run());
    driver
}

/// The driver's timing settings, in schedule seconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    poll_s: f64,
    timeout_s: f64,
    min_interval_s: f64,
    stale_after_s: f64,
}

impl Timing {
    fn of(cfg: &DeviceConfig) -> Self {
        Self {
            poll_s: cfg.poll_seconds(),
            timeout_s: cfg.timeout_seconds(),
            min_interval_s: cfg.min_command_interval_seconds(),
            stale_after_s: cfg.stale_after_seconds(),
        }
    }
}

/// The polling task's state.
struct Task<P> {
    driver: Arc<Driver>,
    protocol: P,
    commands: watch::Receiver<Option<DeviceCommand>>,
    ctx: DeviceContext,
    timing: Timing,
    /// The last setting tried and when (schedule seconds).
    last_attempt: Option<(Setting, f64)>,
    /// The last logged error, so a persisting one is logged once.
    last_error: Option<String>,
}

impl<P: Protocol> Task<P> {
    async fn run(mut self) {
        let mut shutdown = self.ctx.shutdown.clone();
        let mut next_poll = self.ctx.clock.now_s();
        loop {
            let now = self.ctx.clock.now_s();
            if now >= next_poll {
                self.poll().await;
                next_poll = self.ctx.clock.now_s() + self.timing.poll_s;
            }
            if self.act().await {
                // See the new setting at once.
                next_poll = self.ctx.clock.now_s();
            }
            // Wake for the next poll, a new command, or the command's deadline.
            let deadline = self
                .commands
                .borrow()
                .map_or(f64::INFINITY, |c| c.valid_until_s);
            let now = self.ctx.clock.now_s();
            let wake = if deadline > now {
                next_poll.min(deadline)
            } else {
                next_poll
            };
            let sleep = self.ctx.clock.real((wake - now).max(0.0)) + Duration::from_millis(1);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                r = self.commands.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // The daemon stops: leave the device cold, as a stalled loop would.
        if let Some(profile) = self.driver.profile() {
            let cold = profile.coldest();
            if let Err(e) = self.timed_apply(cold, &profile).await {
                tracing::warn!(device = %self.name(), error = %e, "could not leave the device cold at shutdown");
            }
        }
    }

    fn name(&self) -> String {
        self.driver.status().name
    }

    /// One poll: updates the status, the profile and the chip temperature.
    async fn poll(&mut self) {
        let t = self.timing.timeout_s;
        let result = match tokio::time::timeout(real_seconds(t), self.protocol.poll()).await {
            Ok(r) => r,
            Err(_) => Err(DeviceError::Timeout(t)),
        };
        let now = self.ctx.clock.now_s();
        match result {
            Ok(tel) => {
                if let Some(c) = tel.chip_celsius {
                    self.ctx.chips.report(ChipReading {
                        chip: self.name(),
                        celsius: c,
                        // The fleet rests a device at its chip limit; past the margin its own
                        // protection has failed, and the heater trips.
                        limit_celsius: tel.chip_limit_celsius + CHIP_TRIP_MARGIN_KELVIN,
                        at_s: Some(self.ctx.clock.now_s()),
                    });
                }
                if self.last_error.take().is_some() {
                    tracing::info!(device = %self.name(), "device answers again");
                }
                let mut s = self.driver.status.lock().unwrap_or_else(|e| e.into_inner());
                if s.state != tel.state {
                    tracing::info!(device = %s.name, from = s.state.as_str(), to = tel.state.as_str(), reason = ?tel.reason, "device state");
                }
                s.model = tel.model;
                s.state = tel.state;
                s.reason = tel.reason;
                if tel.watts.is_some() {
                    s.watts = tel.watts;
                }
                s.setting = tel.setting;
                s.setting_name = tel.setting_name;
                s.temperatures = tel.temperatures;
                s.chip_limit_celsius = tel.chip_limit_celsius;
                s.hashes_per_second = tel.hashes_per_second;
                s.shares_accepted = tel.shares_accepted;
                s.shares_rejected = tel.shares_rejected;
                s.telemetry_at_s = Some(now);
                drop(s);
                *self
                    .driver
                    .profile
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(tel.profile);
            }
            Err(e) => {
                let text = e.to_string();
                let mut s = self.driver.status.lock().unwrap_or_else(|e| e.into_inner());
                let stale = s
                    .telemetry_at_s
                    .is_none_or(|at| now - at >= self.timing.stale_after_s);
                if self.last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(device = %s.name, error = %text, "device poll failed");
                    self.last_error = Some(text.clone());
                }
                if stale && s.state != DeviceState::Unreachable {
                    tracing::warn!(device = %s.name, last_watts = ?s.watts, "device unreachable: hearth cannot stop it; counted at its last known power");
                    s.state = DeviceState::Unreachable;
                }
                s.reason = Some(if s.state == DeviceState::Unreachable {
                    format!(
                        "{text}; hearth cannot stop it: counted at its last known {}",
                        s.watts.map_or("power".into(), |w| format!("{w:.0} W"))
                    )
                } else {
                    text
                });
            }
        }
    }

    /// Sends the command in force if the device needs it and may take it now; whether it sent.
    async fn act(&mut self) -> bool {
        let Some(profile) = self.driver.profile() else {
            return false;
        };
        // A device not yet mapped to any setting (an unknown model without configured levels)
        // cannot be told anything; its state already says why.
        if matches!(&profile.steps, PowerSteps::Levels(l) if l.is_empty()) {
            return false;
        }
        let now = self.ctx.clock.now_s();
        let cold = profile.coldest();
        let wanted = match *self.commands.borrow() {
            Some(c) if now <= c.valid_until_s => c.setting,
            _ => cold,
        };
        let status = self.driver.status();
        match status.state {
            // It cannot hear us, is settling, or protects itself: hearth does not fight it.
            DeviceState::Unreachable | DeviceState::Calibrating | DeviceState::Overheated => {
                return false
            }
            DeviceState::Starting | DeviceState::Ok | DeviceState::Fault => {}
        }
        if status.setting.is_some_and(|s| same(&profile, s, wanted)) {
            return false;
        }
        let going_cold = same(&profile, wanted, cold);
        if let Some((tried, at)) = self.last_attempt {
            // Going cold is never delayed, but is not repeated faster than the polls.
            let wait = if going_cold {
                if same(&profile, tried, wanted) {
                    self.timing.poll_s
                } else {
                    0.0
                }
            } else {
                self.timing.min_interval_s
            };
            if now - at < wait {
                return false;
            }
        }
        self.last_attempt = Some((wanted, now));
        let result = self.timed_apply(wanted, &profile).await;
        let mut s = self.driver.status.lock().unwrap_or_else(|e| e.into_inner());
        s.commands_sent += 1;
        s.last_command_at_s = Some(now);
        match result {
            Ok(()) => {
                tracing::info!(device = %s.name, setting = ?wanted, "device setting changed");
                true
            }
            Err(DeviceError::Busy(msg)) => {
                tracing::info!(device = %s.name, %msg, "device busy; setting waits");
                s.state = DeviceState::Calibrating;
                s.reason = Some(msg);
                false
            }
            Err(e) => {
                tracing::warn!(device = %s.name, error = %e, setting = ?wanted, "device refused a setting");
                s.reason = Some(e.to_string());
                false
            }
        }
    }

    async fn timed_apply(
        &mut self,
        setting: Setting,
        profile: &DeviceProfile,
    ) -> Result<(), DeviceError> {
        let t = self.timing.timeout_s;
        match tokio::time::timeout(real_seconds(t), self.protocol.apply(setting, profile)).await {
            Ok(r) => r,
            Err(_) => Err(DeviceError::Timeout(t)),
        }
    }
}

/// Kelvin above a device's chip limit at which the heater trips: below it the fleet only rests
/// the device (plans it cold) and the others carry the heat.
pub const CHIP_TRIP_MARGIN_KELVIN: f64 = 10.0;

/// A network timeout: real seconds, whatever the clock's speed (a device answers in real time).
fn real_seconds(t: f64) -> Duration {
    Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(3))
}

/// Whether two settings of `profile` are the same (power targets within 1 W or 1 %).
fn same(profile: &DeviceProfile, a: Setting, b: Setting) -> bool {
    match (a, b) {
        (Setting::Watts(x), Setting::Watts(y)) => {
            let (x, y) = (
                profile.watts_of(Setting::Watts(x)),
                profile.watts_of(Setting::Watts(y)),
            );
            (x - y).abs() <= 1.0f64.max(0.01 * x.abs().max(y.abs()))
        }
        _ => a == b,
    }
}
