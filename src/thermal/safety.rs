//! The safety supervisor. A heater must fail cold: each trip forces the heat budget to 0 W, latches
//! with a reason, and clears only after its condition has been gone for the whole clear-down period.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::sensor::Reading;

/// Safety limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// A room reading older than this trips the heater, seconds.
    pub sensor_stale_after_seconds: f64,
    /// A room above this trips the heater, °C.
    pub room_max_celsius: f64,
    /// A trip clears only after its condition has been gone this long, seconds.
    pub clear_down_seconds: f64,
    /// An engine that sees no fresh target for this many ticks drops to 0 W; a control loop that
    /// falls this many ticks behind trips.
    pub deadman_ticks: u32,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            sensor_stale_after_seconds: 30.0,
            room_max_celsius: 27.0,
            clear_down_seconds: 300.0,
            deadman_ticks: 3,
        }
    }
}

/// What tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    /// The room reading is missing or older than `sensor_stale_after_seconds`.
    SensorStale,
    /// The room is above `room_max_celsius`.
    RoomOverTemperature,
    /// A chip is above its own limit.
    ChipOverTemperature,
    /// The control loop fell behind by `deadman_ticks` ticks.
    LoopStall,
}

impl TripKind {
    /// Every kind, for metrics and status.
    pub const ALL: [TripKind; 4] = [
        TripKind::SensorStale,
        TripKind::RoomOverTemperature,
        TripKind::ChipOverTemperature,
        TripKind::LoopStall,
    ];

    /// The snake_case name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TripKind::SensorStale => "sensor_stale",
            TripKind::RoomOverTemperature => "room_over_temperature",
            TripKind::ChipOverTemperature => "chip_over_temperature",
            TripKind::LoopStall => "loop_stall",
        }
    }
}

/// A latched trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    /// What tripped.
    pub kind: TripKind,
    /// Why, in words, as first seen.
    pub reason: String,
    /// When it latched, seconds since the epoch.
    pub since_s: f64,
    /// Since when its condition has been gone, if it has.
    pub clearing_since_s: Option<f64>,
}

/// One chip's temperature as reported by an engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChipReading {
    /// Chip id, e.g. `asic0` or `gpu0`.
    pub chip: String,
    /// Its temperature, °C.
    pub celsius: f64,
    /// The temperature it must stay below, °C.
    pub limit_celsius: f64,
    /// When it was read (schedule seconds), for readings polled from a device; `None` for a
    /// model reported continuously in-process. A stale hot reading still trips: it is no
    /// evidence that the chip has cooled.
    pub at_s: Option<f64>,
}

/// Where engines report chip temperatures; the supervisor reads the latest of each.
#[derive(Debug, Clone, Default)]
pub struct ChipTemperatures {
    latest: Arc<Mutex<BTreeMap<String, ChipReading>>>,
}

impl ChipTemperatures {
    /// Records the latest temperature of a chip.
    pub fn report(&self, reading: ChipReading) {
        let mut map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(reading.chip.clone(), reading);
    }

    /// The latest reading of every chip.
    pub fn snapshot(&self) -> Vec<ChipReading> {
        let map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

/// What the supervisor sees on one tick.
#[derive(Debug, Clone)]
pub struct SafetyInputs {
    /// Now, seconds since the epoch.
    pub now_s: f64,
    /// The latest room reading, if any ever arrived.
    pub room: Option<Reading>,
    /// Latest chip temperatures.
    pub chips: Vec<ChipReading>,
    /// Time since the previous tick, seconds.
    pub since_last_tick_s: f64,
    /// The configured tick, seconds.
    pub tick_s: f64,
}

/// The supervisor's verdict for one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// True while any trip is latched: the budget must be 0 W.
    pub tripped: bool,
    /// The latched trips.
    pub trips: Vec<Trip>,
}

/// Latches trips and clears them after their clear-down period.
#[derive(Debug, Clone)]
pub struct Supervisor {
    cfg: SafetyConfig,
    latched: BTreeMap<TripKind, Trip>,
    /// When the first tick was evaluated: a sensor gets `sensor_stale_after` to deliver its first
    /// reading before its absence trips (the budget is 0 W meanwhile, as there is nothing to
    /// control on).
    started_at_s: Option<f64>,
}

impl Supervisor {
    /// A supervisor with the given limits and no trips.
    pub fn new(cfg: SafetyConfig) -> Self {
        Self {
            cfg,
            latched: BTreeMap::new(),
            started_at_s: None,
        }
    }

    /// The conditions present now, with reasons.
    fn conditions(&mut self, inp: &SafetyInputs) -> Vec<(TripKind, String)> {
        let mut found = Vec::new();
        let started = *self.started_at_s.get_or_insert(inp.now_s);
        match inp.room {
            None if inp.now_s - started <= self.cfg.sensor_stale_after_seconds => {}
            None => found.push((
                TripKind::SensorStale,
                format!(
                    "no room reading in the {} s since start",
                    self.cfg.sensor_stale_after_seconds
                ),
            )),
            Some(r) => {
                let age = inp.now_s - r.at_s;
                if age > self.cfg.sensor_stale_after_seconds {
                    found.push((
                        TripKind::SensorStale,
                        format!(
                            "room reading is {age:.1} s old (limit {} s)",
                            self.cfg.sensor_stale_after_seconds
                        ),
                    ));
                } else if r.celsius > self.cfg.room_max_celsius {
                    found.push((
                        TripKind::RoomOverTemperature,
                        format!(
                            "room at {:.2} °C is above {} °C",
                            r.celsius, self.cfg.room_max_celsius
                        ),
                    ));
                }
            }
        }
        if let Some(hot) = inp.chips.iter().find(|c| c.celsius > c.limit_celsius) {
            found.push((
                TripKind::ChipOverTemperature,
                format!(
                    "chip {} at {:.1} °C is above its limit {} °C{}",
                    hot.chip,
                    hot.celsius,
                    hot.limit_celsius,
                    hot.at_s.map_or(String::new(), |at| format!(
                        " (read {:.0} s ago)",
                        (inp.now_s - at).max(0.0)
                    ))
                ),
            ));
        }
        let allowed = f64::from(self.cfg.deadman_ticks) * inp.tick_s;
        if inp.since_last_tick_s > allowed {
            found.push((
                TripKind::LoopStall,
                format!(
                    "control loop stalled for {:.1} s (limit {allowed} s)",
                    inp.since_last_tick_s
                ),
            ));
        }
        found
    }

    /// Evaluates one tick: latches new trips and clears those whose clear-down has passed.
    pub fn evaluate(&mut self, inp: &SafetyInputs) -> Verdict {
        let present = self.conditions(inp);
        for (kind, reason) in &present {
            match self.latched.get_mut(kind) {
                Some(trip) => trip.clearing_since_s = None,
                None => {
                    tracing::warn!(trip = kind.as_str(), %reason, "safety trip: heat budget forced to 0 W");
                    self.latched.insert(
                        *kind,
                        Trip {
                            kind: *kind,
                            reason: reason.clone(),
                            since_s: inp.now_s,
                            clearing_since_s: None,
                        },
                    );
                }
            }
        }
        let clear_down = self.cfg.clear_down_seconds;
        self.latched.retain(|kind, trip| {
            if present.iter().any(|(k, _)| k == kind) {
                return true;
            }
            let since = *trip.clearing_since_s.get_or_insert(inp.now_s);
            let keep = inp.now_s - since < clear_down;
            if !keep {
                tracing::info!(trip = kind.as_str(), "safety trip cleared after clear-down");
            }
            keep
        });
        Verdict {
            tripped: !self.latched.is_empty(),
            trips: self.latched.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(now: f64, room: Option<Reading>) -> SafetyInputs {
        SafetyInputs {
            now_s: now,
            room,
            chips: vec![],
            since_last_tick_s: 1.0,
            tick_s: 1.0,
        }
    }

    fn reading(celsius: f64, at_s: f64) -> Option<Reading> {
        Some(Reading { celsius, at_s })
    }

    /// Runs ticks 0..n with a reading produced per tick, returning the verdicts.
    fn run(sup: &mut Supervisor, n: u32, f: impl Fn(f64) -> SafetyInputs) -> Vec<Verdict> {
        (0..n).map(|k| sup.evaluate(&f(f64::from(k)))).collect()
    }

    #[test]
    fn fresh_reading_in_range_does_not_trip() {
        let mut s = Supervisor::new(SafetyConfig::default());
        let v = run(&mut s, 100, |t| inputs(t, reading(21.0, t)));
        assert!(v.iter().all(|v| !v.tripped));
    }

    #[test]
    fn missing_sensor_trips_once_the_start_grace_is_over() {
        let cfg = SafetyConfig::default();
        let mut s = Supervisor::new(cfg.clone());
        let v = run(&mut s, 100, |t| inputs(t, None));
        let first = v.iter().position(|v| v.tripped).unwrap() as f64;
        assert_eq!(first, cfg.sensor_stale_after_seconds + 1.0);
        assert_eq!(v[first as usize].trips[0].kind, TripKind::SensorStale);
    }

    #[test]
    fn stale_sensor_trips_within_one_tick_and_latches_through_clear_down() {
        let cfg = SafetyConfig::default();
        let mut s = Supervisor::new(cfg.clone());
        // The sensor stops updating at t = 100.
        let at = |t: f64| if t <= 100.0 { t } else { 100.0 };
        let v = run(&mut s, 1000, |t| inputs(t, reading(21.0, at(t))));
        let first = v.iter().position(|v| v.tripped).unwrap() as f64;
        assert_eq!(first, 100.0 + cfg.sensor_stale_after_seconds + 1.0);
        assert!(v[first as usize..].iter().all(|v| v.tripped));
        // It comes back at t = 1000: the trip holds for the clear-down period, then clears.
        let mut cleared_at = None;
        for k in 1000..2000 {
            let t = f64::from(k);
            if !s.evaluate(&inputs(t, reading(21.0, t))).tripped {
                cleared_at = Some(t);
                break;
            }
        }
        assert_eq!(cleared_at, Some(1000.0 + cfg.clear_down_seconds));
    }

    #[test]
    fn room_over_max_trips_and_a_brief_dip_does_not_clear_it() {
        let mut s = Supervisor::new(SafetyConfig::default());
        let v = s.evaluate(&inputs(0.0, reading(27.2, 0.0)));
        assert!(v.tripped);
        assert_eq!(v.trips[0].kind, TripKind::RoomOverTemperature);
        assert!(v.trips[0].reason.contains("27.20"));
        // Below the limit for 200 s, back above once, then below: clear-down restarts.
        for k in 1..200 {
            assert!(
                s.evaluate(&inputs(f64::from(k), reading(26.0, f64::from(k))))
                    .tripped
            );
        }
        assert!(s.evaluate(&inputs(200.0, reading(27.5, 200.0))).tripped);
        for k in 201..500 {
            assert!(
                s.evaluate(&inputs(f64::from(k), reading(26.0, f64::from(k))))
                    .tripped
            );
        }
        assert!(!s.evaluate(&inputs(501.0, reading(26.0, 501.0))).tripped);
    }

    #[test]
    fn hot_chip_trips_through_the_reporting_hook() {
        let chips = ChipTemperatures::default();
        let reporter = chips.clone();
        let mut s = Supervisor::new(SafetyConfig::default());
        reporter.report(ChipReading {
            chip: "asic0".into(),
            celsius: 70.0,
            limit_celsius: 85.0,
            at_s: None,
        });
        let mut inp = inputs(0.0, reading(21.0, 0.0));
        inp.chips = chips.snapshot();
        assert!(!s.evaluate(&inp).tripped);
        reporter.report(ChipReading {
            chip: "asic0".into(),
            celsius: 91.0,
            limit_celsius: 85.0,
            at_s: Some(0.0),
        });
        inp.now_s = 1.0;
        inp.room = reading(21.0, 1.0);
        inp.chips = chips.snapshot();
        let v = s.evaluate(&inp);
        assert!(v.tripped);
        assert_eq!(v.trips[0].kind, TripKind::ChipOverTemperature);
        assert!(v.trips[0].reason.contains("asic0"));
        assert!(
            v.trips[0].reason.contains("read 1 s ago"),
            "{}",
            v.trips[0].reason
        );
    }

    #[test]
    fn stalled_loop_trips() {
        let mut s = Supervisor::new(SafetyConfig::default());
        let mut inp = inputs(10.0, reading(21.0, 10.0));
        inp.since_last_tick_s = 3.5;
        let v = s.evaluate(&inp);
        assert!(v.tripped);
        assert_eq!(v.trips[0].kind, TripKind::LoopStall);
    }
}
