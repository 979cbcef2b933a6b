//! The mining engine: connects the ASIC to the Stratum client. Jobs flow client → ASIC as
//! [`Work`]; found shares flow ASIC → client. Neither side knows the other.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use super::asic::{AsicBackend, AsicError, FoundShare, PowerSource, RateCommand};
use super::sha256d::Kernel;
use super::stratum::client::{ClientConfig, ClientError, ShareCounters, StratumClient};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ASIC config is invalid.
    #[error(transparent)]
    Asic(#[from] AsicError),
    /// The client config is invalid.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A running mining engine.
pub struct MiningEngine {
    /// The ASIC (for rate commands and stats).
    pub asic: Arc<dyn AsicBackend>,
    /// The pool client (for status).
    pub client: StratumClient,
    work_task: JoinHandle<()>,
}

impl MiningEngine {
    /// Starts the client and wires it to a started ASIC, whose found shares arrive on `found`.
    pub fn start(
        asic: Arc<dyn AsicBackend>,
        found: std::sync::mpsc::Receiver<FoundShare>,
        client_cfg: ClientConfig,
    ) -> Result<Self, EngineError> {
        let client = StratumClient::start(client_cfg)?;
        // Found shares: the ASIC's chip threads → the client's task.
        let shares = client.share_sender();
        std::thread::Builder::new()
            .name("asic-shares".into())
            .spawn(move || {
                for share in found {
                    if shares.send(share).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| AsicError::Invalid {
                key: "chips",
                msg: format!("cannot start the share thread: {e}"),
            })?;
        // New work: the client → the ASIC, at once (clean_jobs drops the old work).
        let mut work = client.work();
        let a = asic.clone();
        let work_task = tokio::spawn(async move {
            while work.changed().await.is_ok() {
                let w = work.borrow_and_update().clone();
                a.set_work(w);
            }
        });
        Ok(Self {
            asic,
            client,
            work_task,
        })
    }

    /// Runs the board at the power target (`watts`, clamped to its envelope) until `valid_for`
    /// from now; without a fresh call by then it switches off (the dead-man timer).
    pub fn follow(&self, watts: f64, valid_for: Duration) -> f64 {
        let range = self.asic.power_range();
        let target = watts.clamp(0.0, range.max_watts);
        let rate = range.rate_for_watts(target);
        // An unbounded deadline (a target that never expires) cannot overflow the clock.
        self.asic.set_rate(RateCommand {
            rate,
            valid_until: Instant::now().checked_add(valid_for),
        });
        if rate > 0.0 {
            target
        } else {
            0.0
        }
    }

    /// Pool, hashrate, share accounting and power, for the status snapshot.
    pub fn status(&self, target_watts: f64) -> MiningStatus {
        let a = self.asic.stats();
        let c = self.client.status();
        MiningStatus {
            pool: c.pool,
            connected: c.connected,
            difficulty: c.difficulty,
            hashes_per_second: a.hashes_per_second,
            shares: c.shares,
            kernel: a.kernel,
            kernel_forced: a.kernel_forced,
            target_watts,
            power_watts: a.power_watts,
            power_source: a.power_source,
        }
    }

    /// Stops the client and the work relay; the ASIC stops when the last handle drops.
    pub async fn shutdown(self) {
        self.work_task.abort();
        self.client.shutdown().await;
    }
}

/// The mining part of the status snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiningStatus {
    /// The pool in use.
    pub pool: Option<String>,
    /// Whether a pool session is up.
    pub connected: bool,
    /// Current share difficulty.
    pub difficulty: f64,
    /// Measured hashrate, H/s.
    pub hashes_per_second: f64,
    /// Share accounting.
    pub shares: ShareCounters,
    /// The scan kernel in use.
    pub kernel: Kernel,
    /// Whether the configuration forced it (else it was measured fastest at start-up).
    pub kernel_forced: bool,
    /// Power the board was asked for, W.
    pub target_watts: f64,
    /// Power the board draws, W.
    pub power_watts: f64,
    /// How `power_watts` was obtained.
    pub power_source: PowerSource,
}
