//! Hardware (and its simulations) behind the engines' seams.
//!
//! Each device kind lives in its own module here and implements one small trait that an engine
//! or the scheduler owns: a hashing board implements [`crate::mining::asic::AsicBackend`], a
//! switched load implements [`crate::sched::workload::Workload`]. The engines never name a
//! device; the daemon's wiring builds the device the config describes ([`start_asic`]) and hands
//! it to its engine. Adding a device kind touches this folder and the config's kind enum only.
//! Only a device's own module knows its wire format (CGMiner API, AxeOS REST, gRPC, MQTT).
//!
//! - [`software_asic`]: threads that compute real SHA-256d, with a power and chip model;
//! - [`resistive`]: the resistive element, a load that draws exactly its target;
//! - [`plug`]: a resistive element behind a smart plug on MQTT, time-proportioned.

pub mod avalon;
pub mod axeos;
pub mod braiins;
pub mod config;
pub mod driver;
pub mod identity;
pub mod plug;
pub mod resistive;
pub mod software_asic;

use std::sync::mpsc;
use std::sync::Arc;

use crate::mining::asic::{AsicBackend, AsicError, FoundShare};
use crate::mining::engine::{EngineError, MiningEngine};
use crate::mining::fleet::device::MinerDevice;
use crate::mining::stratum::client::ClientConfig;
use crate::thermal::safety::ChipTemperatures;
use software_asic::{AsicConfig, SoftwareAsic};

/// What every device driver is given when it starts: the daemon's clock (schedule seconds, which
/// may run faster than real time), where chip temperatures go, and the shutdown signal that ends
/// its polling task.
#[derive(Clone)]
pub struct DeviceContext {
    /// The daemon's clock.
    pub clock: crate::clock::Clock,
    /// Where the device's chip temperatures go (the chip over-temperature trip reads them).
    pub chips: ChipTemperatures,
    /// Becomes `true` when the daemon stops.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Starts the ASIC `cfg` describes; its found shares arrive on the receiver and its chip
/// temperatures go to `temperatures`.
pub fn start_asic(
    cfg: AsicConfig,
    temperatures: Option<ChipTemperatures>,
) -> Result<(Arc<dyn AsicBackend>, mpsc::Receiver<FoundShare>), AsicError> {
    let (asic, found) = SoftwareAsic::start(cfg, temperatures)?;
    Ok((Arc::new(asic), found))
}

/// Starts the driver of a networked device (`kind` other than `software`, which the daemon
/// builds from its mining engine); its task runs until `ctx.shutdown`.
pub fn start_device(
    cfg: &config::DeviceConfig,
    ctx: DeviceContext,
) -> Result<Arc<dyn MinerDevice>, String> {
    match cfg.kind {
        config::DeviceKind::Software => Err("the software ASIC is started with its engine".into()),
        config::DeviceKind::Avalon => Ok(avalon::start(cfg, ctx)),
        config::DeviceKind::Axeos => Ok(axeos::start(cfg, ctx)),
        config::DeviceKind::Braiins => Ok(braiins::start(cfg, ctx)),
    }
}

/// Identifies the device of `kind` at `addr` (`host` or `host:port`) through its API.
pub async fn probe(
    kind: config::DeviceKind,
    addr: &str,
    timeout: std::time::Duration,
) -> Result<identity::Identity, driver::DeviceError> {
    let host_port = config::DeviceConfig::new(kind, Some(addr)).host_port();
    match kind {
        config::DeviceKind::Avalon => avalon::probe(&host_port, timeout).await,
        config::DeviceKind::Axeos => axeos::probe(&host_port, timeout).await,
        config::DeviceKind::Braiins => braiins::probe(&host_port, timeout).await,
        config::DeviceKind::Software => Err(driver::DeviceError::Unsupported(
            "the software ASIC has no address to probe".into(),
        )),
    }
}

/// Starts the ASIC `asic` describes and a mining engine that feeds it from the pools in `client`.
pub fn start_mining(
    asic: AsicConfig,
    client: ClientConfig,
    temperatures: Option<ChipTemperatures>,
) -> Result<MiningEngine, EngineError> {
    let (asic, found) = start_asic(asic, temperatures)?;
    MiningEngine::start(asic, found, client)
}
