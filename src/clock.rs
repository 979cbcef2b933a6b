//! The daemon's clock: seconds since local midnight of the start day, optionally running faster
//! than real time for a simulated room. It reads tokio's clock, so tests can pause and advance it.

use chrono::{Datelike, Local, Timelike};
use std::time::Duration;
use tokio::time::Instant;

/// Maps tokio's monotonic clock onto schedule time.
#[derive(Debug, Clone)]
pub struct Clock {
    start: Instant,
    start_offset_s: f64,
    speed: f64,
    epoch_weekday: u8,
}

impl Clock {
    /// A clock that starts at the current local time of day, running `speed` times real time.
    pub fn local(speed: f64) -> Self {
        let now = Local::now();
        let offset =
            f64::from(now.num_seconds_from_midnight()) + f64::from(now.nanosecond()) * 1e-9;
        Self::starting_at(offset, now.weekday().num_days_from_monday() as u8, speed)
    }

    /// A clock that starts at `offset_s` seconds after midnight of a day with weekday
    /// `epoch_weekday` (0 = Monday).
    pub fn starting_at(offset_s: f64, epoch_weekday: u8, speed: f64) -> Self {
        Self {
            start: Instant::now(),
            start_offset_s: offset_s,
            speed,
            epoch_weekday: epoch_weekday % 7,
        }
    }

    /// Now, seconds since the epoch (midnight of the start day).
    pub fn now_s(&self) -> f64 {
        self.start_offset_s + self.speed * self.start.elapsed().as_secs_f64()
    }

    /// Weekday of the epoch, 0 = Monday.
    pub fn epoch_weekday(&self) -> u8 {
        self.epoch_weekday
    }

    /// Simulated seconds per real second.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The schedule seconds a `real` duration spans.
    pub fn schedule_seconds(&self, real: Duration) -> f64 {
        real.as_secs_f64() * self.speed
    }

    /// The real time that `clock_s` clock seconds take: zero for negative (or NaN) input,
    /// [`Duration::MAX`] for an infinite or unrepresentable one.
    pub fn real(&self, clock_s: f64) -> Duration {
        let secs = clock_s / self.speed;
        if secs.is_nan() || secs <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// Formats clock seconds as `day N HH:MM:SS`.
pub fn format_clock(t_s: f64) -> String {
    let day = (t_s / 86_400.0).floor();
    let tod = t_s - day * 86_400.0;
    let (h, m, s) = (
        (tod / 3600.0) as u32,
        ((tod % 3600.0) / 60.0) as u32,
        (tod % 60.0) as u32,
    );
    format!("day {} {h:02}:{m:02}:{s:02}", day as i64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_durations_saturate_instead_of_panicking() {
        let c = Clock::starting_at(0.0, 0, 10.0);
        assert_eq!(c.real(20.0), Duration::from_secs(2));
        assert_eq!(c.real(-5.0), Duration::ZERO);
        assert_eq!(c.real(f64::NAN), Duration::ZERO);
        assert_eq!(c.real(f64::INFINITY), Duration::MAX);
        assert_eq!(c.real(1e300), Duration::MAX);
    }

    #[test]
    fn clock_format_names_day_and_time() {
        assert_eq!(format_clock(86_400.0 + 3661.0), "day 2 01:01:01");
    }
}
