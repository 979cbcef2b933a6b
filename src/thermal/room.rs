//! RC room model (1R1C, optionally 2R2C with wall mass), outdoor profiles and disturbances.
//!
//! The model is `C·dT/dt = P_heat − UA·(T − T_out)` for the air node. With a wall node the air also
//! exchanges heat with a wall of capacity `C_w`, which in turn loses heat to outdoors.

use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

use super::time::{seconds_of_day, DAY_SECONDS};

/// Thermal parameters of a room (the air node, plus an optional wall node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomParams {
    /// Heat loss coefficient from the air to outdoors, W/K (1/R).
    pub ua_watts_per_kelvin: f64,
    /// Heat capacity of the air node, J/K.
    pub capacity_joules_per_kelvin: f64,
    /// Optional wall mass, which turns the model into 2R2C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<WallParams>,
}

/// The wall node of a 2R2C model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallParams {
    /// Heat capacity of the wall, J/K.
    pub capacity_joules_per_kelvin: f64,
    /// Conductance between air and wall, W/K.
    pub air_wall_watts_per_kelvin: f64,
    /// Conductance between wall and outdoors, W/K.
    pub wall_outdoor_watts_per_kelvin: f64,
}

impl Default for RoomParams {
    /// The reference room: R = 0.03 K/W, C = 3e6 J/K.
    fn default() -> Self {
        Self::from_rc(0.03, 3e6)
    }
}

impl RoomParams {
    /// A 1R1C room from resistance (K/W) and capacity (J/K).
    pub fn from_rc(r_kelvin_per_watt: f64, capacity_joules_per_kelvin: f64) -> Self {
        Self {
            ua_watts_per_kelvin: 1.0 / r_kelvin_per_watt,
            capacity_joules_per_kelvin,
            wall: None,
        }
    }

    /// Time constant `C/UA` of the air node, seconds.
    pub fn time_constant_seconds(&self) -> f64 {
        self.capacity_joules_per_kelvin / self.ua_watts_per_kelvin
    }
}

/// The state of a simulated room: air temperature and (for 2R2C) wall temperature.
#[derive(Debug, Clone)]
pub struct Room {
    params: RoomParams,
    air_celsius: f64,
    wall_celsius: f64,
}

impl Room {
    /// A room whose air and wall start at `celsius`.
    pub fn new(params: RoomParams, celsius: f64) -> Self {
        Self {
            params,
            air_celsius: celsius,
            wall_celsius: celsius,
        }
    }

    /// The air temperature, °C.
    pub fn air_celsius(&self) -> f64 {
        self.air_celsius
    }

    /// The room's parameters.
    pub fn params(&self) -> &RoomParams {
        &self.params
    }

    /// Advances the room by `dt_s` seconds with constant heat input and outdoor temperature.
    ///
    /// `ua_factor` multiplies the air-to-outdoor loss (an open window is a factor above one).
    /// The 1R1C case is integrated exactly; the 2R2C case with RK4 in steps of at most 60 s.
    pub fn step(&mut self, dt_s: f64, heat_watts: f64, outdoor_celsius: f64, ua_factor: f64) {
        if dt_s <= 0.0 {
            return;
        }
        let ua = self.params.ua_watts_per_kelvin * ua_factor;
        let c = self.params.capacity_joules_per_kelvin;
        match self.params.wall.clone() {
            None => {
                let t_eq = outdoor_celsius + heat_watts / ua;
                let decay = (-dt_s * ua / c).exp();
                self.air_celsius = t_eq + (self.air_celsius - t_eq) * decay;
            }
            Some(w) => {
                let steps = (dt_s / 60.0).ceil().max(1.0);
                let h = dt_s / steps;
                let deriv = |ta: f64, tw: f64| {
                    let q_aw = w.air_wall_watts_per_kelvin * (ta - tw);
                    let dta = (heat_watts - ua * (ta - outdoor_celsius) - q_aw) / c;
                    let dtw = (q_aw - w.wall_outdoor_watts_per_kelvin * (tw - outdoor_celsius))
                        / w.capacity_joules_per_kelvin;
                    (dta, dtw)
                };
                for _ in 0..steps as usize {
                    let (ta, tw) = (self.air_celsius, self.wall_celsius);
                    let k1 = deriv(ta, tw);
                    let k2 = deriv(ta + 0.5 * h * k1.0, tw + 0.5 * h * k1.1);
                    let k3 = deriv(ta + 0.5 * h * k2.0, tw + 0.5 * h * k2.1);
                    let k4 = deriv(ta + h * k3.0, tw + h * k3.1);
                    self.air_celsius = ta + h / 6.0 * (k1.0 + 2.0 * k2.0 + 2.0 * k3.0 + k4.0);
                    self.wall_celsius = tw + h / 6.0 * (k1.1 + 2.0 * k2.1 + 2.0 * k3.1 + k4.1);
                }
            }
        }
    }
}

/// Errors from loading an outdoor profile.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// The CSV file could not be read.
    #[error("cannot read outdoor profile {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of the CSV file is not `hours,celsius`.
    #[error("outdoor profile {path} line {line}: {msg}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

/// Outdoor temperature over time, in seconds since midnight of the first day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutdoorProfile {
    /// A daily sine: `mean − amplitude·cos(2π(h − coldest_hour)/24)`.
    Sine {
        /// Daily mean, °C.
        mean_celsius: f64,
        /// Half the daily swing, K.
        amplitude_kelvin: f64,
        /// Hour of day (0–24) at which it is coldest.
        coldest_hour: f64,
    },
    /// Points `(hours since start, °C)` from a CSV file, linearly interpolated and held at the ends.
    Csv {
        /// The CSV file: lines of `hours,celsius`; a non-numeric first line is a header.
        path: String,
        /// The points, loaded from `path` by [`OutdoorProfile::load`].
        #[serde(skip)]
        points: Vec<(f64, f64)>,
    },
}

impl Default for OutdoorProfile {
    fn default() -> Self {
        OutdoorProfile::Sine {
            mean_celsius: 5.0,
            amplitude_kelvin: 5.0,
            coldest_hour: 5.0,
        }
    }
}

impl OutdoorProfile {
    /// Reads the CSV points of a CSV profile; a no-op for a sine.
    pub fn load(&mut self, base_dir: &Path) -> Result<(), ProfileError> {
        let OutdoorProfile::Csv { path, points } = self else {
            return Ok(());
        };
        let full = base_dir.join(&*path);
        let text = std::fs::read_to_string(&full).map_err(|source| ProfileError::Io {
            path: full.display().to_string(),
            source,
        })?;
        *points = parse_profile_csv(&text).map_err(|(line, msg)| ProfileError::Parse {
            path: full.display().to_string(),
            line,
            msg,
        })?;
        Ok(())
    }

    /// Outdoor temperature at `t_s` seconds since midnight of the first day, °C.
    pub fn celsius_at(&self, t_s: f64) -> f64 {
        match self {
            OutdoorProfile::Sine {
                mean_celsius,
                amplitude_kelvin,
                coldest_hour,
            } => {
                let hours = t_s / 3600.0;
                mean_celsius
                    - amplitude_kelvin
                        * (2.0 * std::f64::consts::PI * (hours - coldest_hour) / 24.0).cos()
            }
            OutdoorProfile::Csv { points, .. } => interpolate(points, t_s / 3600.0),
        }
    }
}

fn parse_profile_csv(text: &str) -> Result<Vec<(f64, f64)>, (usize, String)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split(',').map(str::trim);
        let (a, b) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
        match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(h), Ok(c)) if h.is_finite() && c.is_finite() => {
                if points.last().is_some_and(|&(ph, _)| h <= ph) {
                    return Err((i + 1, format!("hours must increase, got {h}")));
                }
                points.push((h, c));
            }
            _ if points.is_empty() && i == 0 => continue, // header line
            _ => return Err((i + 1, format!("expected `hours,celsius`, got {line:?}"))),
        }
    }
    if points.is_empty() {
        return Err((0, "no data points".into()));
    }
    Ok(points)
}

fn interpolate(points: &[(f64, f64)], x: f64) -> f64 {
    match points.iter().position(|&(px, _)| px >= x) {
        None => points.last().map_or(f64::NAN, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let (x0, y0) = points[i - 1];
            let (x1, y1) = points[i];
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        }
    }
}

/// A temporary change of the room's heat loss, such as an open window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disturbance {
    /// Day of the run it happens on, 1-based.
    pub day: u32,
    /// Local time it starts, `HH:MM`.
    pub at: String,
    /// How long it lasts, minutes.
    pub duration_minutes: f64,
    /// Factor applied to UA while it lasts (4 = window open).
    pub ua_factor: f64,
}

impl Disturbance {
    /// Start and end, in seconds since midnight of the first day; `None` if `at` is not `HH:MM`.
    pub fn window_seconds(&self) -> Option<(f64, f64)> {
        let tod = seconds_of_day(&self.at)?;
        let start = f64::from(self.day.max(1) - 1) * DAY_SECONDS + tod;
        Some((start, start + self.duration_minutes * 60.0))
    }
}

/// The UA factor in force at `t_s` (product of all active disturbances).
pub fn ua_factor_at(disturbances: &[Disturbance], t_s: f64) -> f64 {
    disturbances
        .iter()
        .filter_map(|d| d.window_seconds().map(|w| (w, d.ua_factor)))
        .filter(|&((a, b), _)| t_s >= a && t_s < b)
        .map(|(_, f)| f)
        .product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_response_matches_analytic_solution() {
        // R = 0.03 K/W, C = 3e6 J/K, 1200 W from 10 °C with 0 °C outside.
        let params = RoomParams::from_rc(0.03, 3e6);
        let tau = params.time_constant_seconds();
        let mut room = Room::new(params, 10.0);
        let t_ss = 0.0 + 1200.0 * 0.03;
        for k in 1..=3600 * 12 {
            room.step(1.0, 1200.0, 0.0, 1.0);
            if k % 3600 == 0 {
                let t = f64::from(k);
                let analytic = t_ss + (10.0 - t_ss) * (-t / tau).exp();
                assert!(
                    (room.air_celsius() - analytic).abs() < 1e-9,
                    "t={t}: model {} vs analytic {analytic}",
                    room.air_celsius()
                );
            }
        }
    }

    #[test]
    fn two_node_model_reaches_series_steady_state() {
        let params = RoomParams {
            ua_watts_per_kelvin: 20.0,
            capacity_joules_per_kelvin: 1e6,
            wall: Some(WallParams {
                capacity_joules_per_kelvin: 2e7,
                air_wall_watts_per_kelvin: 200.0,
                wall_outdoor_watts_per_kelvin: 20.0,
            }),
        };
        let mut room = Room::new(params, 0.0);
        for _ in 0..200 {
            room.step(86_400.0, 1000.0, 0.0, 1.0);
        }
        // Steady state: UA_total = 20 + (200·20)/(200+20).
        let ua_total = 20.0 + 200.0 * 20.0 / 220.0;
        assert!((room.air_celsius() - 1000.0 / ua_total).abs() < 1e-3);
    }

    #[test]
    fn sine_profile_is_coldest_at_coldest_hour() {
        let p = OutdoorProfile::default();
        assert!((p.celsius_at(5.0 * 3600.0) - 0.0).abs() < 1e-12);
        assert!((p.celsius_at(17.0 * 3600.0) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn csv_profile_interpolates_and_rejects_garbage() {
        let pts = parse_profile_csv("hours,celsius\n0,0\n2,10\n").unwrap();
        assert_eq!(interpolate(&pts, 1.0), 5.0);
        assert_eq!(interpolate(&pts, 5.0), 10.0);
        assert_eq!(interpolate(&pts, -1.0), 0.0);
        assert!(parse_profile_csv("0,0\n0,1\n").is_err());
        assert!(parse_profile_csv("0,0\nx,y\n").is_err());
    }

    #[test]
    fn window_multiplies_ua_only_while_open() {
        let d = vec![Disturbance {
            day: 2,
            at: "10:00".into(),
            duration_minutes: 30.0,
            ua_factor: 4.0,
        }];
        assert_eq!(ua_factor_at(&d, DAY_SECONDS + 10.0 * 3600.0 - 1.0), 1.0);
        assert_eq!(ua_factor_at(&d, DAY_SECONDS + 10.0 * 3600.0 + 60.0), 4.0);
        assert_eq!(ua_factor_at(&d, DAY_SECONDS + 10.5 * 3600.0), 1.0);
    }
}
