//! The mining engine: connects the ASIC to the Stratum client. Jobs flow client → ASIC as
//! [`Work`]; found shares flow ASIC → client. Neither side knows the other.

use std::sync::Arc;
use tokio::task::JoinHandle;

use super::asic::{AsicBackend, AsicConfig, AsicError, SoftwareAsic};
use super::stratum::client::{ClientConfig, ClientError, StratumClient};
use crate::thermal::safety::ChipTemperatures;

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
    pub asic: Arc<SoftwareAsic>,
    /// The pool client (for status).
    pub client: StratumClient,
    work_task: JoinHandle<()>,
}

impl MiningEngine {
    /// Starts the ASIC and the client and wires them together.
    pub fn start(
        asic_cfg: AsicConfig,
        client_cfg: ClientConfig,
        temperatures: Option<ChipTemperatures>,
    ) -> Result<Self, EngineError> {
        let client = StratumClient::start(client_cfg)?;
        let (asic, found) = SoftwareAsic::start(asic_cfg, temperatures)?;
        let asic = Arc::new(asic);
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

    /// Stops the client and the work relay; the ASIC stops when the last handle drops.
    pub async fn shutdown(self) {
        self.work_task.abort();
        self.client.shutdown().await;
    }
}
