//! The market glue: joins the compute market with the GPU when configured, and prices market
//! work for the scheduler. The control loop writes the demand and reads the status.

use std::sync::Arc;
use tokio::sync::watch;

use super::tasks::Tasks;
use crate::config::Config;
use crate::gpu::runner::GpuRunner;
use crate::market::device::{self, Compute, Demand, MarketStatus};
use crate::market::receipt::DeviceKey;
use crate::ops::DaemonError;

/// The market task's demand input and its status.
pub(super) type MarketLink = (watch::Sender<Demand>, watch::Receiver<MarketStatus>);

/// Joins the market, if configured and the GPU is up: a supervised task takes offers while the
/// control loop reports spare GPU watts.
pub(super) fn join(
    cfg: &Config,
    gpu: Option<&Arc<GpuRunner>>,
    tasks: &mut Tasks,
) -> Result<Option<MarketLink>, DaemonError> {
    match (gpu, cfg.market.enabled) {
        (Some(runner), true) => {
            let key_path = cfg.market.key_path(&cfg.jobs.resolved_data_dir()?);
            let key = DeviceKey::load_or_create(&key_path)
                .map_err(|e| DaemonError::Market(e.to_string()))?;
            tracing::info!(device = %key.device_id(), url = %cfg.market.url, "joining the market");
            let (demand_tx, demand_rx) = watch::channel(Demand::default());
            let compute: Arc<dyn Compute> = runner.clone();
            let handle = device::spawn(
                cfg.market.device(),
                key,
                compute,
                demand_rx,
                tasks.shutdown.clone(),
            );
            let status = handle.status.clone();
            tasks.spawn(handle.join());
            Ok(Some((demand_tx, status)))
        }
        (None, true) => {
            tracing::error!("the market needs the GPU, which is unavailable; not joining");
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// What a joule of market work is worth to the scheduler (the price floor at the GPU's full
/// power), when on a market.
pub(super) fn value_per_joule(cfg: &Config, joined: bool) -> Option<f64> {
    joined.then(|| cfg.market.price_floor / cfg.gpu.runner.max_watts.max(1.0))
}
