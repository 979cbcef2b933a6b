//! Device emulators: a Canaan Avalon (CGMiner API), a Bitaxe (AxeOS REST) and a Braiins OS+ miner
//! (public gRPC API), each serving its protocol on a real socket, quirks included, over a power
//! and temperature model. `hearth emulate` runs one for users without hardware; tests use them as
//! real peers and drive faults through the [`EmulatorHandle`].
//!
//! The emulators are written from the public protocol descriptions, apart from the drivers in
//! `src/devices/`: neither side imports the other, so a shared misunderstanding cannot pass both.
//! Every time in the model is a schedule second of the [`Clock`] the emulator is given, so a run
//! at `--speed 60` calibrates and ramps 60 times faster. The model is computed lazily from the
//! time of each request: no timers run.

pub mod avalon;
pub mod axeos;
pub mod bos_proto;
pub mod braiins;
mod cgminer;
mod model;
mod net;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// The emulated device kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    /// A Canaan Avalon Nano 3 / Nano 3S / Mini 3 on its CGMiner API (TCP, default port 4028).
    Avalon,
    /// A Bitaxe on AxeOS (ESP-Miner) REST (HTTP, default port 80).
    Axeos,
    /// A Braiins OS+ miner on its public gRPC API (default port 50051).
    Braiins,
}

impl EmulatorKind {
    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EmulatorKind::Avalon => "avalon",
            EmulatorKind::Axeos => "axeos",
            EmulatorKind::Braiins => "braiins",
        }
    }
}

impl fmt::Display for EmulatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EmulatorKind {
    type Err = EmulateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "avalon" => Ok(EmulatorKind::Avalon),
            "axeos" | "bitaxe" => Ok(EmulatorKind::Axeos),
            "braiins" => Ok(EmulatorKind::Braiins),
            other => Err(EmulateError::UnknownKind(other.to_string())),
        }
    }
}

/// How an emulator is set up.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The model (`nano3s`, `nano3`, `mini3`; `gamma`, `supra`, `ultra`; `s19jpro`, `s9`);
    /// `None` for the kind's default (`nano3s`, `gamma`, `s19jpro`).
    pub model: Option<String>,
    /// The clock the model runs on (schedule seconds).
    pub clock: Clock,
    /// Air temperature around the device, °C.
    pub ambient_celsius: f64,
    /// Braiins OS+ login user (default `root`).
    pub username: String,
    /// Braiins OS+ login password (default empty, as a fresh Braiins OS+ install has it).
    pub password: String,
    /// Firmware version to claim: AxeOS `v2.13.0` has no pause/resume (404), `v2.14.0`+ has;
    /// `None` for the kind's default (AxeOS `v2.14.0`).
    pub firmware: Option<String>,
}

impl EmulatorOptions {
    /// Defaults (the kind's default model, 21 °C, `root` with an empty password) on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            model: None,
            clock,
            ambient_celsius: 21.0,
            username: "root".into(),
            password: String::new(),
            firmware: None,
        }
    }
}

/// A misbehaviour to inject; it applies to every connection accepted after it is set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Close each connection at once, before reading anything.
    Refuse,
    /// Answer with bytes that are not the protocol.
    Garbage,
    /// Cut the reply short (Avalon: after `"id":0`, the firmware's truncation marker).
    Truncated,
    /// Wait this many real seconds before answering.
    Slow(f64),
    /// Answer every HTTP request with this status (AxeOS; other kinds ignore it).
    HttpStatus(u16),
    /// Answer with megabytes and no terminator.
    Oversized,
}

/// One control command the emulator received.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    /// Schedule time it arrived (`clock.now_s()`).
    pub at_s: f64,
    /// What it asked, in the protocol's words (`ascset|0,workmode,set,2`, `PATCH /api/system
    /// {"frequency":400}`, `SetPowerTarget 2500 W`).
    pub command: String,
    /// Whether the device accepted it.
    pub accepted: bool,
    /// The device's answer or the reason it refused.
    pub detail: String,
}

/// What the device is doing now.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorState {
    /// Which protocol it speaks.
    pub kind: EmulatorKind,
    /// Its model key (`nano3s`, `gamma`, …).
    pub model: String,
    /// The discrete level it is set to (Avalon work mode), if it has levels.
    pub level: Option<usize>,
    /// The level or setting as the owner names it (`high`, `490 MHz / 1200 mV`, `3250 W`).
    pub setting: String,
    /// The wall power it is heading to, W.
    pub target_watts: f64,
    /// The wall power it draws now, W.
    pub wall_watts: f64,
    /// Hottest chip, °C.
    pub chip_celsius: f64,
    /// Board / voltage regulator temperature, °C.
    pub board_celsius: f64,
    /// Ambient air, °C.
    pub ambient_celsius: f64,
    /// Hashrate now, GH/s.
    pub hashrate_ghs: f64,
    /// Calibrating after a mode change (Avalon) or tuning towards a target (Braiins).
    pub calibrating: bool,
    /// Mining paused (or soft-off) on request.
    pub paused: bool,
    /// In the device's own over-temperature protection.
    pub overheated: bool,
    /// Settings writes to flash so far (AxeOS: each accepted PATCH, and the overheat
    /// protection's own write).
    pub flash_writes: u64,
    /// Schedule time of this snapshot.
    pub at_s: f64,
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// Not a kind this build emulates.
    #[error("unknown emulator kind {0:?} (avalon, axeos or braiins)")]
    UnknownKind(String),
    /// Not a model of this kind.
    #[error("unknown {kind} model {model:?} (known: {known})")]
    UnknownModel {
        /// The kind.
        kind: EmulatorKind,
        /// The model asked for.
        model: String,
        /// The models this kind knows.
        known: String,
    },
    /// A firmware version that does not parse.
    #[error("bad firmware version {0:?} (expected like v2.14.0)")]
    BadFirmware(String),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a kind's device model offers the handle.
pub(crate) trait Emulated: Send + Sync {
    /// The state now.
    fn snapshot(&self) -> EmulatorState;
    /// Adds (or removes) the heat of a failed fan, so the device's own protection trips.
    fn set_overheat(&self, on: bool);
    /// Sets the ambient air temperature.
    fn set_ambient_celsius(&self, c: f64);
}

/// A device model behind its lock, with the shared state; every access first advances the
/// model to the clock's now.
pub(crate) struct Live<D> {
    /// Clock, fault and command log.
    pub shared: Arc<Shared>,
    dev: Mutex<D>,
}

impl<D: model::Device> Live<D> {
    /// Wraps a device model.
    pub fn new(shared: Arc<Shared>, dev: D) -> Self {
        Self {
            shared,
            dev: Mutex::new(dev),
        }
    }

    /// Runs `f` on the device advanced to now.
    pub fn with<R>(&self, f: impl FnOnce(&mut D, f64) -> R) -> R {
        let now = self.shared.clock.now_s();
        let mut d = lock(&self.dev);
        model::sync(&mut *d, now);
        f(&mut d, now)
    }
}

impl<D: model::Device> Emulated for Live<D> {
    fn snapshot(&self) -> EmulatorState {
        self.with(|d, now| d.state(now))
    }

    fn set_overheat(&self, on: bool) {
        self.with(|d, _| {
            let heat = if on { d.overheat_heat_c() } else { 0.0 };
            d.physics().set_extra_heat(heat);
        });
    }

    fn set_ambient_celsius(&self, c: f64) {
        self.with(|d, _| d.physics().set_ambient(c));
    }
}

/// How many command records are kept; older ones are dropped first.
const MAX_RECORDS: usize = 10_000;

/// The state every kind shares with its handle: the clock, the fault and the command log.
pub(crate) struct Shared {
    /// The model's clock.
    pub clock: Clock,
    fault: Mutex<Fault>,
    commands: Mutex<VecDeque<CommandRecord>>,
}

impl Shared {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            fault: Mutex::new(Fault::None),
            commands: Mutex::new(VecDeque::new()),
        }
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *lock(&self.fault)
    }

    /// Logs a control command.
    pub fn record(&self, command: impl Into<String>, accepted: bool, detail: impl Into<String>) {
        let rec = CommandRecord {
            at_s: self.clock.now_s(),
            command: command.into(),
            accepted,
            detail: detail.into(),
        };
        tracing::debug!(command = %rec.command, accepted, detail = %rec.detail, "emulator command");
        let mut log = lock(&self.commands);
        if log.len() >= MAX_RECORDS {
            log.pop_front();
        }
        log.push_back(rec);
    }
}

/// Locks a mutex, taking the data even if a panicking holder poisoned it (the model stays
/// consistent: every update is a few assignments).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running emulator. Dropping it stops it too, without waiting.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    device: Arc<dyn Emulated>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Injects a fault into every connection from now on ([`Fault::None`] to stop).
    pub fn set_fault(&self, f: Fault) {
        *lock(&self.shared.fault) = f;
    }

    /// Drives the device into its own over-temperature protection (as a failed fan would), or
    /// removes that extra heat. A latched protection (AxeOS `overheat_mode`) stays until cleared
    /// through the device's API, as on the real firmware.
    pub fn set_overheat(&self, on: bool) {
        self.device.set_overheat(on);
    }

    /// Sets the ambient air temperature, °C.
    pub fn set_ambient_celsius(&self, c: f64) {
        self.device.set_ambient_celsius(c);
    }

    /// Every control command received so far (the latest 10,000).
    pub fn commands(&self) -> Vec<CommandRecord> {
        lock(&self.shared.commands).iter().cloned().collect()
    }

    /// The device's state now.
    pub fn snapshot(&self) -> EmulatorState {
        self.device.snapshot()
    }

    /// Stops listening and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts an emulator of `kind` on `listen`.
pub async fn start(
    kind: EmulatorKind,
    listen: SocketAddr,
    opts: EmulatorOptions,
) -> Result<EmulatorHandle, EmulateError> {
    let shared = Arc::new(Shared::new(opts.clock.clone()));
    // Build the device first so a bad model or firmware fails before anything listens.
    let server: net::Server = match kind {
        EmulatorKind::Avalon => avalon::build(&opts, shared.clone())?,
        EmulatorKind::Axeos => axeos::build(&opts, shared.clone())?,
        EmulatorKind::Braiins => braiins::build(&opts, shared.clone())?,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EmulateError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EmulateError::Bind {
        addr: listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let device = server.device.clone();
    let task = tokio::spawn(net::accept_loop(listener, shared.clone(), server, stop_rx));
    tracing::info!(%kind, %addr, "emulator listening");
    Ok(EmulatorHandle {
        addr,
        shared,
        device,
        stop,
        task,
    })
}

/// Finds `key` (or the first entry, the default) in a model table.
pub(crate) fn pick_model<'a, T>(
    kind: EmulatorKind,
    table: &'a [T],
    key_of: impl Fn(&T) -> &'static str,
    want: Option<&str>,
) -> Result<&'a T, EmulateError> {
    let Some(want) = want else {
        return table.first().ok_or_else(|| EmulateError::UnknownModel {
            kind,
            model: String::new(),
            known: String::new(),
        });
    };
    let want = want.to_ascii_lowercase().replace([' ', '-', '_'], "");
    table
        .iter()
        .find(|m| key_of(m) == want)
        .ok_or_else(|| EmulateError::UnknownModel {
            kind,
            model: want.clone(),
            known: table.iter().map(&key_of).collect::<Vec<_>>().join(", "),
        })
}

/// The small, well-insulated simulated room that `hearth bench fleet` and the fleet tests heat
/// with emulated miners: about 240 W holds 21 °C against a steady 1 °C outdoors (UA 12 W/K,
/// C 3e5 J/K, starting at 20.5 °C); the controller is told the room, the heat budget is at most
/// 300 W (what two Nano 3S and a Bitaxe can draw), no GPU and no element.
pub fn small_room(cfg: &mut crate::config::Config, speed: f64) {
    use crate::thermal::room::{OutdoorProfile, RoomParams};
    cfg.simulation.speed = speed;
    cfg.simulation.initial_celsius = 20.5;
    cfg.simulation.room = RoomParams {
        ua_watts_per_kelvin: 12.0,
        capacity_joules_per_kelvin: 3e5,
        wall: None,
    };
    cfg.simulation.outdoor = OutdoorProfile::Sine {
        mean_celsius: 1.0,
        amplitude_kelvin: 0.0,
        coldest_hour: 5.0,
    };
    cfg.model.ua_watts_per_kelvin = 12.0;
    cfg.model.capacity_joules_per_kelvin = 3e5;
    cfg.heater.max_watts = 300.0;
    cfg.heater.resistive.max_watts = 0.0;
    cfg.gpu.enabled = false;
}
