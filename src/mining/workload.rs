//! The mining engine as a [`Workload`] of the scheduler, and the shares it reports to it.

use std::time::Duration;

use super::asic::PowerSource;
use super::engine::{MiningEngine, MiningStatus};
use crate::sched::allocator::Envelope;
use crate::sched::scheduler::AcceptedShares;
use crate::sched::workload::{Source, Workload};

impl Workload for MiningEngine {
    fn name(&self) -> &'static str {
        "asic"
    }

    /// An ASIC string is off or running: it draws at least its idle power once on, and cannot
    /// run between 0 and that. It follows a new rate within its response time (the software
    /// ASIC: one slice).
    fn envelope(&self) -> Envelope {
        let c = self.asic.power_range();
        Envelope {
            min_watts: c.idle_watts,
            max_watts: c.max_watts,
            below_min: false,
            ramp_watts_per_second: (c.max_watts - c.idle_watts) / c.response_seconds,
        }
    }

    fn has_work(&self) -> bool {
        self.client.work().borrow().is_some()
    }

    fn actual_watts(&self) -> (f64, Source) {
        let s = self.asic.stats();
        let source = match s.power_source {
            PowerSource::Modelled => Source::Modelled,
            PowerSource::Measured => Source::Measured,
        };
        (s.power_watts, source)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        self.follow(watts, valid_for);
    }
}

impl From<&MiningStatus> for AcceptedShares {
    fn from(m: &MiningStatus) -> Self {
        AcceptedShares {
            count: m.shares.accepted,
            work: m.shares.accepted_work,
        }
    }
}
