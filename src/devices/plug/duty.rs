//! Time proportioning of an on/off element: a power target becomes a duty, and the duty an on
//! time at the start of each window, within the relay's minimum on and off times. Pure: every
//! input is a time in schedule seconds ([`crate::clock::Clock::now_s`]), so tests script hours
//! of switching in microseconds.

/// The window and the relay-wear limits, schedule seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DutyTiming {
    /// The time-proportioning window: the duty is the on share of each window.
    pub window_s: f64,
    /// Once on, the relay stays on at least this long (unless it must fail cold).
    pub min_on_s: f64,
    /// Once off, the relay stays off at least this long.
    pub min_off_s: f64,
}

impl DutyTiming {
    /// The on time of one window at `duty` (0–1), rounded to what the minimum times allow: an
    /// on time shorter than the minimum on time becomes that minimum or nothing, whichever is
    /// nearer, and an off time shorter than the minimum off time becomes that minimum or
    /// nothing (always on) the same way.
    pub fn on_seconds(&self, duty: f64) -> f64 {
        let w = self.window_s;
        let mut on = clamp_duty(duty) * w;
        if on < self.min_on_s {
            on = if 2.0 * on >= self.min_on_s {
                self.min_on_s
            } else {
                0.0
            };
        }
        let off = w - on;
        if off > 0.0 && off < self.min_off_s {
            on = if 2.0 * off >= self.min_off_s {
                w - self.min_off_s
            } else {
                w
            };
        }
        on.clamp(0.0, w)
    }
}

/// A duty from any number: NaN and negatives are 0, above 1 is 1.
fn clamp_duty(duty: f64) -> f64 {
    if duty.is_nan() {
        0.0
    } else {
        duty.clamp(0.0, 1.0)
    }
}

/// Decides, step by step, whether the relay is on: on for the window's on time from the start
/// of each window, never switched again before its minimum on or off time has passed, and off at
/// once (whatever the minimum on time) when the duty is 0 or [`Self::force_off`] says so.
#[derive(Debug, Clone)]
pub struct TimeProportioning {
    timing: DutyTiming,
    /// Start of the current window; `None` while off for want of heat (a new window starts
    /// when heat is asked again).
    window_start_s: Option<f64>,
    on: bool,
    /// When the relay last changed state; `None` if never.
    switched_at_s: Option<f64>,
}

impl TimeProportioning {
    /// Off, with no window started.
    pub fn new(timing: DutyTiming) -> Self {
        Self {
            timing,
            window_start_s: None,
            on: false,
            switched_at_s: None,
        }
    }

    /// Whether the relay should be on now.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The relay state for `duty` (0–1) at `now_s`.
    pub fn step(&mut self, now_s: f64, duty: f64) -> bool {
        let duty = clamp_duty(duty);
        if duty <= 0.0 {
            self.force_off(now_s);
            return false;
        }
        let w = self.timing.window_s;
        let start = match self.window_start_s {
            Some(s) if now_s >= s && now_s - s < w => s,
            // Windows follow each other; after a gap of more than one, start afresh.
            Some(s) if now_s >= s && now_s - s < 2.0 * w => s + w,
            _ => now_s,
        };
        self.window_start_s = Some(start);
        let want = now_s - start < self.timing.on_seconds(duty);
        let held = self.switched_at_s.map_or(f64::INFINITY, |t| now_s - t);
        let next = match (self.on, want) {
            (on, want) if on == want => on,
            // On, wants off: only after the minimum on time.
            (true, false) => held < self.timing.min_on_s,
            // Off, wants on: only after the minimum off time.
            (false, true) => held >= self.timing.min_off_s,
            _ => self.on,
        };
        self.set(now_s, next);
        next
    }

    /// Off now, whatever the minimum on time (a zero target, an expired deadline, a trip, a lost
    /// broker); the minimum off time counts from now.
    pub fn force_off(&mut self, now_s: f64) {
        self.set(now_s, false);
        self.window_start_s = None;
    }

    fn set(&mut self, now_s: f64, on: bool) {
        if on != self.on {
            self.on = on;
            self.switched_at_s = Some(now_s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: DutyTiming = DutyTiming {
        window_s: 600.0,
        min_on_s: 120.0,
        min_off_s: 120.0,
    };

    /// Steps `tp` once a second from `from_s` for `seconds` at `duty`; returns the on seconds
    /// and the switch times.
    fn run(tp: &mut TimeProportioning, from_s: f64, seconds: u32, duty: f64) -> (u32, Vec<f64>) {
        let mut on_s = 0;
        let mut switches = Vec::new();
        let mut was = tp.is_on();
        for i in 0..seconds {
            let t = from_s + f64::from(i);
            let on = tp.step(t, duty);
            if on != was {
                switches.push(t);
                was = on;
            }
            on_s += u32::from(on);
        }
        (on_s, switches)
    }

    /// The lengths of the on and off runs between `switches`.
    fn runs(switches: &[f64]) -> Vec<f64> {
        switches.windows(2).map(|p| p[1] - p[0]).collect()
    }

    #[test]
    fn on_time_rounds_to_what_the_relay_allows() {
        assert_eq!(TIMING.on_seconds(0.5), 300.0);
        assert_eq!(TIMING.on_seconds(0.15), 120.0, "90 s rounds up to min on");
        assert_eq!(TIMING.on_seconds(0.05), 0.0, "30 s rounds down to nothing");
        assert_eq!(
            TIMING.on_seconds(0.85),
            480.0,
            "90 s off rounds up to min off"
        );
        assert_eq!(
            TIMING.on_seconds(0.95),
            600.0,
            "30 s off rounds to always on"
        );
        assert_eq!(TIMING.on_seconds(f64::NAN), 0.0);
        assert_eq!(TIMING.on_seconds(7.0), 600.0);
        assert_eq!(TIMING.on_seconds(-1.0), 0.0);
    }

    #[test]
    fn follows_the_duty_over_each_window() {
        let mut tp = TimeProportioning::new(TIMING);
        let (on, switches) = run(&mut tp, 1000.0, 3 * 600, 0.4);
        assert_eq!(on, 3 * 240, "40 % of each of three windows");
        assert_eq!(switches[0], 1000.0, "on at once when heat is asked");
        // On 240 s, off 360 s, on 240 s...
        assert_eq!(runs(&switches), vec![240.0, 360.0, 240.0, 360.0, 240.0]);
    }

    #[test]
    fn minimum_on_and_off_times_hold_when_the_duty_changes() {
        let mut tp = TimeProportioning::new(TIMING);
        // On at 50 %, then 30 s later the duty drops to 5 % (30 s, rounded to nothing): min on
        // keeps it on 120 s.
        let (_, s1) = run(&mut tp, 0.0, 30, 0.5);
        assert_eq!(s1, vec![0.0]);
        let (_, s2) = run(&mut tp, 30.0, 570, 0.05);
        assert_eq!(s2, vec![120.0], "off only after the minimum on time");
        // Off at 120 s: the duty jumps to 100 % at 150 s; min off holds it off until 240 s.
        let mut tp = TimeProportioning::new(TIMING);
        run(&mut tp, 0.0, 150, 0.2);
        let (_, s3) = run(&mut tp, 150.0, 300, 1.0);
        assert_eq!(s3, vec![240.0], "on only after the minimum off time");
        // Over a long run at any duty, no on or off run is shorter than its minimum.
        for duty in [0.01, 0.12, 0.21, 0.5, 0.79, 0.83, 0.99] {
            let mut tp = TimeProportioning::new(TIMING);
            let (_, s) = run(&mut tp, 0.0, 6000, duty);
            assert!(
                runs(&s).iter().all(|&r| r >= 120.0),
                "duty {duty}: runs {:?}",
                runs(&s)
            );
        }
    }

    #[test]
    fn zero_duty_switches_off_at_once_and_min_off_counts_from_there() {
        let mut tp = TimeProportioning::new(TIMING);
        assert!(tp.step(0.0, 0.5));
        assert!(!tp.step(10.0, 0.0), "a zero target is off at once");
        assert!(!tp.step(20.0, 0.5), "min off holds");
        assert!(tp.step(130.0, 0.5), "then a new window starts on");
        tp.force_off(140.0);
        assert!(!tp.is_on());
        assert!(!tp.step(259.0, 1.0));
        assert!(tp.step(260.0, 1.0));
    }
}
