//! The daemon's task set: what every task shares, and the handles joined at shutdown.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// What every task the daemon spawns shares: the clock, the real-time tick, the shutdown
/// signal; and the tasks to join at shutdown.
pub(super) struct Tasks {
    pub(super) clock: Clock,
    pub(super) tick: Duration,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) handles: Vec<JoinHandle<()>>,
}

impl Tasks {
    /// Spawns `task`, to be joined at shutdown.
    pub(super) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.handles.push(tokio::spawn(task));
    }
}
