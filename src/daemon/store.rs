//! Opening the job store at start-up, with what it keeps across restarts: accounts, mix and
//! whether heating is switched on.

use std::sync::Arc;

use crate::config::Config;
use crate::jobs::executor;
use crate::jobs::{JobStore, StoreError};
use crate::ops::{DaemonError, HEATING_SETTING, MIX_SETTING};
use crate::sched::accounting::Accounts;
use crate::sched::allocator::Mix;

/// What the store keeps for the control loop across restarts.
pub(super) struct Kept {
    /// Energy and earnings so far.
    pub(super) accounts: Accounts,
    /// The owner's mix.
    pub(super) mix: Mix,
    /// Whether heating is switched on.
    pub(super) heating: bool,
}

/// Opens the job store in the configured data dir (on the blocking pool), re-queues jobs a
/// crash left RUNNING, and loads the stored accounts, mix and heating switch.
pub(super) async fn open(cfg: &Config) -> Result<(Arc<JobStore>, Kept), DaemonError> {
    let dir = cfg.jobs.resolved_data_dir()?;
    let limits = cfg.jobs.limits.clone();
    let sync = cfg.jobs.sync;
    let default_mix = cfg.sched.mix;
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let store = JobStore::open_with(&dir, limits, sync)?;
        let requeued = store.recover()?;
        let accounts = executor::load_accounts(&store)?;
        let mix = match store.setting(MIX_SETTING)? {
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored mix unreadable; using the configured one");
                default_mix
            }),
            None => default_mix,
        };
        // Anything but a stored `false` heats: a heater never stays cold by accident.
        let heating = store.setting(HEATING_SETTING)?.as_deref() != Some("false");
        tracing::info!(data_dir = %dir.display(), live_jobs = requeued.len(), heating, "job store open");
        Ok((
            Arc::new(store),
            Kept {
                accounts,
                mix,
                heating,
            },
        ))
    })
    .await
    .map_err(|_| DaemonError::Stopped)?
}
