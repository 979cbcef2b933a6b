//! Setpoint schedule: daily and weekly programs, presets (comfort, eco, away) and manual overrides.
//!
//! Time is seconds since local midnight of the first day (the *epoch*); the epoch's weekday maps
//! those seconds onto the calendar.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

use super::time::{seconds_of_day, DAY_SECONDS};

/// Lowest setpoint a user may set, °C.
pub const MIN_SETPOINT_CELSIUS: f64 = 5.0;
/// Highest setpoint a user may set, °C.
pub const MAX_SETPOINT_CELSIUS: f64 = 30.0;

/// A schedule that cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    /// A time of day is not `HH:MM`.
    #[error("{0:?} is not a time of day HH:MM (00:00–24:00)")]
    BadTime(String),
    /// A day list is not understood.
    #[error("{0:?} is not a day list: use e.g. \"mon-fri\", \"sat,sun\" or \"all\"")]
    BadDays(String),
    /// A program names a preset that does not exist.
    #[error("unknown preset {0:?}")]
    UnknownPreset(String),
    /// A program gives both or neither of `preset` and `celsius`.
    #[error("give exactly one of `preset` and `celsius`")]
    Target,
    /// A setpoint is outside the allowed range.
    #[error("setpoint {0} °C is outside {MIN_SETPOINT_CELSIUS}–{MAX_SETPOINT_CELSIUS} °C")]
    Range(f64),
    /// A program is invalid.
    #[error("program[{0}]: {1}")]
    Program(usize, Box<ScheduleError>),
}

/// One program: a setpoint on some days between two times (wrapping past midnight if `to <= from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Days it starts on: "all", "mon-fri", "sat,sun", "tue" …
    #[serde(default = "all_days")]
    pub days: String,
    /// Start time, `HH:MM`.
    pub from: String,
    /// End time, `HH:MM`; at or before `from` means the next day.
    pub to: String,
    /// Preset to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Setpoint to hold, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celsius: Option<f64>,
}

fn all_days() -> String {
    "all".into()
}

/// The schedule as configured: presets, the preset held outside programs, and programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Named setpoints, °C.
    pub presets: BTreeMap<String, f64>,
    /// The preset held when no program is active.
    pub default_preset: String,
    /// Programs; where two overlap, the first listed wins.
    #[serde(default, rename = "program")]
    pub programs: Vec<Program>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            presets: BTreeMap::from([
                ("comfort".into(), 21.0),
                ("eco".into(), 18.0),
                ("away".into(), 15.0),
            ]),
            default_preset: "eco".into(),
            programs: vec![Program {
                days: all_days(),
                from: "06:00".into(),
                to: "22:00".into(),
                preset: Some("comfort".into()),
                celsius: None,
            }],
        }
    }
}

/// Checks that a setpoint is within the allowed range.
pub fn check_setpoint(celsius: f64) -> Result<f64, ScheduleError> {
    if (MIN_SETPOINT_CELSIUS..=MAX_SETPOINT_CELSIUS).contains(&celsius) {
        Ok(celsius)
    } else {
        Err(ScheduleError::Range(celsius))
    }
}

/// Parses `HH:MM` into seconds after midnight.
pub fn parse_time_of_day(s: &str) -> Result<f64, ScheduleError> {
    seconds_of_day(s).ok_or_else(|| ScheduleError::BadTime(s.to_string()))
}

fn day_index(name: &str) -> Option<u8> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let n = name.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .position(|d| n.len() >= 3 && d.starts_with(&n[..3]))
        .map(|i| i as u8)
}

/// Parses a day list into a 7-bit mask (bit 0 = Monday).
pub fn parse_days(s: &str) -> Result<u8, ScheduleError> {
    let bad = || ScheduleError::BadDays(s.to_string());
    let t = s.trim().to_ascii_lowercase();
    if t == "all" || t == "daily" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for part in t.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day_index(part).ok_or_else(bad)?,
        }
    }
    Ok(mask)
}

#[derive(Debug, Clone)]
struct CompiledProgram {
    days: u8,
    from_s: f64,
    len_s: f64,
    celsius: f64,
}

/// A compiled schedule that answers "what is the setpoint at t" and "when does it change next".
#[derive(Debug, Clone)]
pub struct Schedule {
    programs: Vec<CompiledProgram>,
    default_celsius: f64,
    presets: BTreeMap<String, f64>,
    /// Weekday of the epoch, 0 = Monday.
    epoch_weekday: u8,
}

/// The next setpoint change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NextSetpoint {
    /// When it happens, seconds since the epoch.
    pub at_s: f64,
    /// The setpoint from then on, °C.
    pub celsius: f64,
}

/// What the thermostat must hold now and what comes next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetpointPlan {
    /// The setpoint in force now, °C.
    pub celsius: f64,
    /// The next change within the look-ahead, if any.
    pub next: Option<NextSetpoint>,
}

impl Schedule {
    /// Compiles a schedule; `epoch_weekday` is the weekday of day one (0 = Monday).
    pub fn new(cfg: &ScheduleConfig, epoch_weekday: u8) -> Result<Self, ScheduleError> {
        for &c in cfg.presets.values() {
            check_setpoint(c)?;
        }
        let default_celsius = *cfg
            .presets
            .get(&cfg.default_preset)
            .ok_or_else(|| ScheduleError::UnknownPreset(cfg.default_preset.clone()))?;
        let programs = cfg
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| Self::compile(cfg, p).map_err(|e| ScheduleError::Program(i, Box::new(e))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            programs,
            default_celsius,
            presets: cfg.presets.clone(),
            epoch_weekday: epoch_weekday % 7,
        })
    }

    fn compile(cfg: &ScheduleConfig, p: &Program) -> Result<CompiledProgram, ScheduleError> {
        let celsius = match (&p.preset, p.celsius) {
            (Some(name), None) => *cfg
                .presets
                .get(name)
                .ok_or_else(|| ScheduleError::UnknownPreset(name.clone()))?,
            (None, Some(c)) => check_setpoint(c)?,
            _ => return Err(ScheduleError::Target),
        };
        let from_s = parse_time_of_day(&p.from)?;
        let to_s = parse_time_of_day(&p.to)?;
        let len_s = if to_s > from_s {
            to_s - from_s
        } else {
            to_s + DAY_SECONDS - from_s
        };
        Ok(CompiledProgram {
            days: parse_days(&p.days)?,
            from_s,
            len_s,
            celsius,
        })
    }

    /// The setpoint of a named preset.
    pub fn preset(&self, name: &str) -> Option<f64> {
        self.presets.get(name).copied()
    }

    /// The scheduled setpoint at `t_s`.
    pub fn setpoint_at(&self, t_s: f64) -> f64 {
        let day = (t_s / DAY_SECONDS).floor();
        for p in &self.programs {
            // A program may have started today or (wrapping) yesterday.
            for back in [0.0, 1.0] {
                let d = day - back;
                let weekday = ((d as i64 + i64::from(self.epoch_weekday)).rem_euclid(7)) as u8;
                if p.days & (1 << weekday) == 0 {
                    continue;
                }
                let start = d * DAY_SECONDS + p.from_s;
                if t_s >= start && t_s < start + p.len_s {
                    return p.celsius;
                }
            }
        }
        self.default_celsius
    }

    /// The first time after `t_s` (within `horizon_s`) at which the setpoint changes.
    pub fn next_change(&self, t_s: f64, horizon_s: f64) -> Option<NextSetpoint> {
        let now = self.setpoint_at(t_s);
        let day = (t_s / DAY_SECONDS).floor();
        let mut edges: Vec<f64> = Vec::new();
        let days = (horizon_s / DAY_SECONDS).ceil() as i64 + 1;
        for p in &self.programs {
            for k in -1..=days {
                let start = (day + k as f64) * DAY_SECONDS + p.from_s;
                edges.extend([start, start + p.len_s]);
            }
        }
        edges.retain(|&e| e > t_s && e <= t_s + horizon_s);
        edges.sort_by(f64::total_cmp);
        edges
            .into_iter()
            .map(|e| NextSetpoint {
                at_s: e,
                celsius: self.setpoint_at(e),
            })
            .find(|n| n.celsius != now)
    }
}

/// A manual override of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Override {
    /// Setpoint to hold, °C.
    pub celsius: f64,
    /// Until when, seconds since the epoch; `None` holds until cleared.
    pub until_s: Option<f64>,
}

/// The thermostat's setpoint source: the schedule, possibly overridden by hand.
#[derive(Debug, Clone)]
pub struct Setpoints {
    schedule: Schedule,
    manual: Option<Override>,
}

/// How far ahead the planner looks for the next setpoint change, seconds.
pub const LOOKAHEAD_SECONDS: f64 = 2.0 * DAY_SECONDS;

impl Setpoints {
    /// Setpoints that follow `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            manual: None,
        }
    }

    /// The compiled schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Sets (or with `None` clears) the manual override.
    pub fn set_override(&mut self, manual: Option<Override>) -> Result<(), ScheduleError> {
        if let Some(o) = manual {
            check_setpoint(o.celsius)?;
        }
        self.manual = manual;
        Ok(())
    }

    /// The override in force at `t_s`, dropping an expired one.
    pub fn active_override(&mut self, t_s: f64) -> Option<Override> {
        if let Some(Override {
            until_s: Some(until),
            ..
        }) = self.manual
        {
            if t_s >= until {
                self.manual = None;
            }
        }
        self.manual
    }

    /// The setpoint now and the next change, with any override applied.
    pub fn plan(&mut self, t_s: f64) -> SetpointPlan {
        match self.active_override(t_s) {
            Some(Override { celsius, until_s }) => SetpointPlan {
                celsius,
                next: until_s.map(|at_s| NextSetpoint {
                    at_s,
                    celsius: self.schedule.setpoint_at(at_s),
                }),
            },
            None => SetpointPlan {
                celsius: self.schedule.setpoint_at(t_s),
                next: self.schedule.next_change(t_s, LOOKAHEAD_SECONDS),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: f64 = 3600.0;

    #[test]
    fn default_schedule_is_21_by_day_and_18_by_night() {
        let s = Schedule::new(&ScheduleConfig::default(), 0).unwrap();
        assert_eq!(s.setpoint_at(5.9 * H), 18.0);
        assert_eq!(s.setpoint_at(6.0 * H), 21.0);
        assert_eq!(s.setpoint_at(21.99 * H), 21.0);
        assert_eq!(s.setpoint_at(22.0 * H), 18.0);
        let n = s.next_change(23.0 * H, LOOKAHEAD_SECONDS).unwrap();
        assert_eq!((n.at_s, n.celsius), (30.0 * H, 21.0));
    }

    #[test]
    fn weekly_programs_and_wrapping() {
        let cfg = ScheduleConfig {
            programs: vec![
                Program {
                    days: "sat,sun".into(),
                    from: "08:00".into(),
                    to: "23:00".into(),
                    preset: Some("comfort".into()),
                    celsius: None,
                },
                Program {
                    days: "mon-fri".into(),
                    from: "22:00".into(),
                    to: "02:00".into(),
                    preset: None,
                    celsius: Some(20.0),
                },
            ],
            ..ScheduleConfig::default()
        };
        // Epoch is a Friday (4).
        let s = Schedule::new(&cfg, 4).unwrap();
        assert_eq!(s.setpoint_at(23.0 * H), 20.0); // Friday night program
        assert_eq!(s.setpoint_at(25.0 * H), 20.0); // wraps past midnight into Saturday
        assert_eq!(s.setpoint_at(26.0 * H), 18.0);
        assert_eq!(s.setpoint_at(24.0 * H + 9.0 * H), 21.0); // Saturday daytime
        let n = s.next_change(26.0 * H, LOOKAHEAD_SECONDS).unwrap();
        assert_eq!((n.at_s, n.celsius), (32.0 * H, 21.0));
    }

    #[test]
    fn override_holds_then_hands_back() {
        let s = Schedule::new(&ScheduleConfig::default(), 0).unwrap();
        let mut sp = Setpoints::new(s);
        sp.set_override(Some(Override {
            celsius: 23.0,
            until_s: Some(12.0 * H),
        }))
        .unwrap();
        let p = sp.plan(10.0 * H);
        assert_eq!(p.celsius, 23.0);
        assert_eq!(p.next.unwrap().celsius, 21.0);
        assert_eq!(sp.plan(12.0 * H).celsius, 21.0);
        assert!(sp
            .set_override(Some(Override {
                celsius: 31.0,
                until_s: None
            }))
            .is_err());
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            parse_time_of_day("25:00"),
            Err(ScheduleError::BadTime("25:00".into()))
        );
        assert!(parse_days("funday").is_err());
        assert_eq!(parse_days("fri-mon").unwrap(), 0b111_0001);
    }
}
