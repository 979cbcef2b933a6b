//! The resistive element (`[heater.resistive]`): a simulated load behind the [`Workload`] seam;
//! the smart plug of [`crate::devices::plug`] implements the same trait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sched::allocator::Envelope;
use crate::sched::workload::{Source, Workload};

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

/// The envelope of a resistive element of `max_watts`, simulated or switched: anything from 0 to
/// its maximum, at once.
pub fn envelope(max_watts: f64) -> Envelope {
    Envelope {
        min_watts: 0.0,
        max_watts,
        below_min: true,
        ramp_watts_per_second: f64::INFINITY,
    }
}

impl Workload for ResistiveElement {
    fn name(&self) -> &'static str {
        "resistive"
    }

    fn envelope(&self) -> Envelope {
        envelope(self.max_watts)
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
