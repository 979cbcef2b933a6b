//! The mining fleet as a [`Workload`] of the scheduler, and the shares mining reports to it.

use std::time::Duration;

use super::asic::PowerSource;
use super::engine::MiningStatus;
use super::fleet::Fleet;
use crate::sched::allocator::Envelope;
use crate::sched::scheduler::AcceptedShares;
use crate::sched::workload::{Source, Workload};

impl Workload for Fleet {
    fn name(&self) -> &'static str {
        "asic"
    }

    /// From the fleet's floor (devices that cannot stop) to all devices at full power; a device
    /// runs at its levels or range only, and follows within its settle time.
    fn envelope(&self) -> Envelope {
        Fleet::envelope(self)
    }

    fn has_work(&self) -> bool {
        self.devices().iter().any(|d| d.has_work())
    }

    /// The sum of what the devices report (measured only if every device measures).
    fn actual_watts(&self) -> (f64, Source) {
        let (mut watts, mut source) = (0.0, Source::Measured);
        for d in self.devices() {
            let s = d.status();
            watts += s.watts.unwrap_or(0.0);
            if s.power_source == PowerSource::Modelled {
                source = Source::Modelled;
            }
        }
        (watts, source)
    }

    fn expected_watts(&self, target: f64) -> f64 {
        Fleet::expected_watts(self, target)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        Fleet::set_target(self, watts, self.clock_seconds(valid_for));
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
