//! Workloads behind one trait: each reports its power envelope, whether it has work and its
//! actual power, and takes a power target with a deadline. The software ASIC, the GPU runner
//! and a resistive element implement it; real hardware will implement the same trait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::allocator::Envelope;
use crate::gpu::runner::GpuRunner;
use crate::mining::asic::AsicBackend;
use crate::mining::engine::MiningEngine;

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
    /// Runs at `watts` (0 = off) until `valid_for` has passed, then switches off by itself.
    fn set_target(&self, watts: f64, valid_for: Duration);
}

impl Workload for MiningEngine {
    fn name(&self) -> &'static str {
        "asic"
    }

    /// An ASIC string is off or running: it draws at least its idle power once on, and cannot
    /// run between 0 and that. The software ASIC follows a new rate within one slice.
    fn envelope(&self) -> Envelope {
        let c = self.asic.config();
        Envelope {
            min_watts: c.idle_watts,
            max_watts: c.max_watts,
            below_min: false,
            ramp_watts_per_second: (c.max_watts - c.idle_watts)
                / (c.slice_ms.max(1) as f64 / 1000.0),
        }
    }

    fn has_work(&self) -> bool {
        self.client.work().borrow().is_some()
    }

    fn actual_watts(&self) -> (f64, Source) {
        let s = self.asic.stats();
        let source = match s.power_source {
            crate::mining::asic::PowerSource::Modelled => Source::Modelled,
            crate::mining::asic::PowerSource::Measured => Source::Measured,
        };
        (s.power_watts, source)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        self.follow(watts, valid_for);
    }
}

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

/// A resistive element for boost heat (`[heater.resistive] max_w`): it draws exactly its
/// target, in any amount up to its maximum, until the target's deadline.
#[derive(Debug, Clone)]
pub struct ResistiveElement {
    max_watts: f64,
    target: Arc<Mutex<(f64, Option<Instant>)>>,
}

impl ResistiveElement {
    /// An element of `max_watts`.
    pub fn new(max_watts: f64) -> Self {
        Self {
            max_watts: max_watts.max(0.0),
            target: Arc::new(Mutex::new((0.0, None))),
        }
    }
}

impl Workload for ResistiveElement {
    fn name(&self) -> &'static str {
        "resistive"
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            min_watts: 0.0,
            max_watts: self.max_watts,
            below_min: true,
            ramp_watts_per_second: f64::INFINITY,
        }
    }

    fn has_work(&self) -> bool {
        true
    }

    fn actual_watts(&self) -> (f64, Source) {
        let t = *self.target.lock().unwrap_or_else(|e| e.into_inner());
        let on = t.1.is_some_and(|until| Instant::now() <= until);
        (if on { t.0 } else { 0.0 }, Source::Modelled)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        let now = Instant::now();
        let until = now.checked_add(valid_for);
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = (
            watts.clamp(0.0, self.max_watts),
            until.or(Some(now + Duration::from_secs(86_400))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_element_draws_its_target_until_the_deadline() {
        let e = ResistiveElement::new(1000.0);
        assert_eq!(e.actual_watts().0, 0.0);
        e.set_target(1500.0, Duration::from_secs(60));
        assert_eq!(e.actual_watts(), (1000.0, Source::Modelled));
        e.set_target(300.0, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            e.actual_watts().0,
            0.0,
            "past its deadline the element is off"
        );
        let env = e.envelope();
        assert!(env.allows(0.0) && env.allows(1.0) && env.allows(1000.0) && !env.allows(1000.5));
    }
}
