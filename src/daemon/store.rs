//! Opening the job store at start-up, with what it keeps across restarts: accounts and mix.

use std::sync::Arc;

use crate::config::Config;
use crate::jobs::executor;
use crate::jobs::{JobStore, StoreError};
use crate::ops::{DaemonError, MIX_SETTING};
use crate::sched::accounting::Accounts;
use crate::sched::allocator::Mix;

/// Opens the job store in the configured data dir (on the blocking pool), re-queues jobs a
/// crash left RUNNING, and loads the stored accounts and mix.
pub(super) async fn open(cfg: &Config) -> Result<(Arc<JobStore>, Accounts, Mix), DaemonError> {
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
        tracing::info!(data_dir = %dir.display(), live_jobs = requeued.len(), "job store open");
        Ok((Arc::new(store), accounts, mix))
    })
    .await
    .map_err(|_| DaemonError::Stopped)?
}
