//! Workloads behind one trait (the scheduler's port): each reports its power envelope, whether
//! it has work and its actual power, and takes a power target with a deadline. The engines
//! implement it in their own modules (`mining::workload`, `gpu::workload`, the devices in
//! `devices/`); the scheduler knows none of them.

use std::time::Duration;

use serde::Serialize;

use super::allocator::Envelope;

/// Where a power figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A power model.
    Modelled,
    /// A meter.
    Measured,
}

/// A consumer of the heat budget.
pub trait Workload: Send + Sync {
    /// Its name in logs and the status.
    fn name(&self) -> &'static str;
    /// Its power envelope now.
    fn envelope(&self) -> Envelope;
    /// Whether it has anything to do.
    fn has_work(&self) -> bool;
    /// Its power now, W, and where the figure comes from.
    fn actual_watts(&self) -> (f64, Source);
    /// The power it will draw over the next tick if given `target`, W: the target itself for a
    /// workload that follows at once; a slow or stepped one (a miner fleet) says what it will
    /// really draw, so that the others can cover the difference.
    fn expected_watts(&self, target: f64) -> f64 {
        target
    }
    /// Runs at `watts` (0 = off) until `valid_for` has passed, then switches off by itself.
    fn set_target(&self, watts: f64, valid_for: Duration);
}
