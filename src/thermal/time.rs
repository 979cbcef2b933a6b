//! Time of day: the day's length and `HH:MM` parsing, shared by the room model and the schedule.

/// Seconds in a day.
pub const DAY_SECONDS: f64 = 86_400.0;

/// Parses `HH:MM` (up to `24:00`) into seconds after midnight; `None` if it is not a time.
pub fn seconds_of_day(s: &str) -> Option<f64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(f64::from(h * 3600 + m * 60))
}
