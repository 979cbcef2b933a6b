//! Power targets with a dead-man deadline.
//!
//! The control loop publishes a [`PowerTarget`] every tick; each carries the time until which it is
//! valid. An engine reads it through a [`DeadMan`], which yields 0 W once the deadline has passed,
//! so that a stalled control loop leaves every engine cold within a bounded number of ticks.

use serde::Serialize;
use tokio::sync::watch;

/// A power target as published by the control loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowerTarget {
    /// The power to draw, W.
    pub watts: f64,
    /// When it was issued, seconds since the epoch.
    pub issued_at_s: f64,
    /// After this time the target is void and the engine must drop to 0 W.
    pub valid_until_s: f64,
}

impl PowerTarget {
    /// A target of 0 W that is never void (the state before the first tick and after shutdown).
    pub fn zero() -> Self {
        Self {
            watts: 0.0,
            issued_at_s: f64::NEG_INFINITY,
            valid_until_s: f64::INFINITY,
        }
    }

    /// The power to draw at `now_s`: the target while valid, 0 W after its deadline.
    pub fn watts_at(&self, now_s: f64) -> f64 {
        if now_s <= self.valid_until_s {
            self.watts
        } else {
            0.0
        }
    }
}

/// An engine's view of its target: fails cold when the targets stop coming.
#[derive(Debug, Clone)]
pub struct DeadMan {
    rx: watch::Receiver<PowerTarget>,
}

impl DeadMan {
    /// Watches the targets published on `rx`.
    pub fn new(rx: watch::Receiver<PowerTarget>) -> Self {
        Self { rx }
    }

    /// The power to draw now: the latest target if still valid, else 0 W.
    pub fn watts_at(&self, now_s: f64) -> f64 {
        self.rx.borrow().watts_at(now_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_expires_to_zero_after_its_deadline() {
        let (tx, rx) = watch::channel(PowerTarget::zero());
        let dm = DeadMan::new(rx);
        tx.send_replace(PowerTarget {
            watts: 800.0,
            issued_at_s: 10.0,
            valid_until_s: 13.0,
        });
        assert_eq!(dm.watts_at(12.9), 800.0);
        assert_eq!(dm.watts_at(13.0), 800.0);
        assert_eq!(dm.watts_at(13.1), 0.0);
    }
}
