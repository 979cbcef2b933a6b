//! The GPU runner as a [`Workload`] of the scheduler.

use std::time::Duration;

use super::runner::GpuRunner;
use crate::sched::allocator::Envelope;
use crate::sched::workload::{Source, Workload};

impl Workload for GpuRunner {
    fn name(&self) -> &'static str {
        "gpu"
    }

    /// A duty-cycled GPU runs at any utilisation above its idle power, or is power-gated at
    /// 0 W; between the two it would draw idle power, so it cannot run there. It reaches a new
    /// duty within a chunk.
    fn envelope(&self) -> Envelope {
        let c = self.config();
        Envelope {
            min_watts: c.idle_watts,
            max_watts: c.max_watts,
            below_min: false,
            ramp_watts_per_second: (c.max_watts - c.idle_watts) / (c.chunk_ms / 1000.0),
        }
    }

    fn has_work(&self) -> bool {
        self.status().running.is_some()
    }

    fn actual_watts(&self) -> (f64, Source) {
        (self.status().watts, Source::Modelled)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        GpuRunner::set_target(self, watts, valid_for);
    }
}
