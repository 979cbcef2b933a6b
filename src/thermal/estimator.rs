//! The controller's room model: UA and C, configured or estimated online.
//!
//! Online estimation fits the heat balance `C·dT/dt = P − UA·(T − T_out)` by recursive least
//! squares on 15-minute window averages (single readings are far too noisy: a tick moves the room
//! by about 1e-4 K against 0.05 K of sensor noise). The estimate replaces the configured prior only
//! after enough windows, and stays within a plausible band around it.

use serde::{Deserialize, Serialize};

/// UA and C of a room as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomModel {
    /// Heat loss coefficient, W/K.
    pub ua_watts_per_kelvin: f64,
    /// Heat capacity, J/K.
    pub capacity_joules_per_kelvin: f64,
}

impl RoomModel {
    /// `C/UA`, seconds.
    pub fn time_constant_seconds(&self) -> f64 {
        self.capacity_joules_per_kelvin / self.ua_watts_per_kelvin
    }

    /// Seconds to heat from `from` to `to` at constant `power_watts` with constant outdoor
    /// temperature; infinite if that power cannot get there.
    pub fn seconds_to_heat(&self, from: f64, to: f64, power_watts: f64, outdoor: f64) -> f64 {
        if from >= to {
            return 0.0;
        }
        let t_eq = outdoor + power_watts / self.ua_watts_per_kelvin;
        if t_eq <= to {
            return f64::INFINITY;
        }
        self.time_constant_seconds() * ((t_eq - from) / (t_eq - to)).ln()
    }
}

impl RoomModel {
    /// The constant power that heats from `from` to `to` in `seconds` with constant outdoor
    /// temperature; infinite if no time is left.
    pub fn power_to_heat_within(&self, from: f64, to: f64, seconds: f64, outdoor: f64) -> f64 {
        if from >= to {
            return self.ua_watts_per_kelvin * (to - outdoor);
        }
        if seconds <= 0.0 {
            return f64::INFINITY;
        }
        let x = (seconds / self.time_constant_seconds()).exp();
        let t_eq = (to * x - from) / (x - 1.0);
        self.ua_watts_per_kelvin * (t_eq - outdoor)
    }
}

/// Length of one averaging window, seconds.
const WINDOW_SECONDS: f64 = 900.0;
/// Windows needed before the estimate is used.
const MIN_WINDOWS: u32 = 48;
/// RLS forgetting factor per window.
const FORGETTING: f64 = 0.998;
/// The estimate stays within this factor of the prior.
const PLAUSIBLE_FACTOR: f64 = 5.0;

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    seconds: f64,
    room: f64,
    outdoor: f64,
    joules: f64,
}

impl Window {
    fn add(&mut self, dt: f64, room: f64, outdoor: f64, watts: f64) {
        self.seconds += dt;
        self.room += room * dt;
        self.outdoor += outdoor * dt;
        self.joules += watts * dt;
    }

    /// Means: (room, outdoor, power).
    fn means(&self) -> (f64, f64, f64) {
        (
            self.room / self.seconds,
            self.outdoor / self.seconds,
            self.joules / self.seconds,
        )
    }
}

/// Supplies the room model: the configured prior, refined online if enabled.
#[derive(Debug, Clone)]
pub struct ModelEstimator {
    prior: RoomModel,
    online: bool,
    current: Window,
    previous: Option<(f64, f64, f64)>,
    /// θ = [1000/C, 10·UA/C] and its covariance.
    theta: [f64; 2],
    cov: [[f64; 2]; 2],
    windows: u32,
}

impl ModelEstimator {
    /// A model that stays at `model`.
    pub fn fixed(model: RoomModel) -> Self {
        Self::new(model, false)
    }

    /// A model that starts at `prior` and, if `online`, learns from observations.
    pub fn new(prior: RoomModel, online: bool) -> Self {
        let c = prior.capacity_joules_per_kelvin;
        Self {
            prior,
            online,
            current: Window::default(),
            previous: None,
            theta: [1000.0 / c, 10.0 * prior.ua_watts_per_kelvin / c],
            cov: [[1e-6, 0.0], [0.0, 1e-6]],
            windows: 0,
        }
    }

    /// Whether the model in use comes from online estimation.
    pub fn is_estimated(&self) -> bool {
        self.online && self.windows >= MIN_WINDOWS
    }

    /// The model to plan and tune with.
    pub fn model(&self) -> RoomModel {
        if !self.is_estimated() || self.theta[0] <= 0.0 || self.theta[1] <= 0.0 {
            return self.prior;
        }
        let c = 1000.0 / self.theta[0];
        let ua = self.theta[1] * c / 10.0;
        let clamp = |v: f64, p: f64| v.clamp(p / PLAUSIBLE_FACTOR, p * PLAUSIBLE_FACTOR);
        RoomModel {
            ua_watts_per_kelvin: clamp(ua, self.prior.ua_watts_per_kelvin),
            capacity_joules_per_kelvin: clamp(c, self.prior.capacity_joules_per_kelvin),
        }
    }

    /// Drops the window in progress (the heat applied in it is not known).
    pub fn discard_window(&mut self) {
        self.current = Window::default();
        self.previous = None;
    }

    /// Records `dt` seconds of room and outdoor temperature under `watts` of heat.
    pub fn observe(&mut self, dt: f64, room: f64, outdoor: f64, watts: f64) {
        if !(self.online && room.is_finite() && outdoor.is_finite() && watts.is_finite()) {
            return;
        }
        self.current.add(dt, room, outdoor, watts);
        if self.current.seconds < WINDOW_SECONDS {
            return;
        }
        let now = self.current.means();
        let span = self.current.seconds;
        self.current = Window::default();
        if let Some(prev) = self.previous.replace(now) {
            // Slope between window centres against the mean drive of the two windows.
            let y = (now.0 - prev.0) / span;
            let phi = [
                0.5 * (now.2 + prev.2) / 1000.0,
                -0.5 * ((now.0 - now.1) + (prev.0 - prev.1)) / 10.0,
            ];
            self.rls_update(phi, y);
        }
    }

    fn rls_update(&mut self, phi: [f64; 2], y: f64) {
        let p = self.cov;
        let p_phi = [
            p[0][0] * phi[0] + p[0][1] * phi[1],
            p[1][0] * phi[0] + p[1][1] * phi[1],
        ];
        // Measurement noise variance of y in θ's units keeps the gain sane.
        let noise = 1e-12;
        let denom = FORGETTING * noise + phi[0] * p_phi[0] + phi[1] * p_phi[1];
        let k = [p_phi[0] / denom, p_phi[1] / denom];
        let err = y - (phi[0] * self.theta[0] + phi[1] * self.theta[1]);
        self.theta[0] += k[0] * err;
        self.theta[1] += k[1] * err;
        for (i, row) in self.cov.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = (p[i][j] - k[i] * p_phi[j]) / FORGETTING;
            }
        }
        self.windows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermal::room::{OutdoorProfile, Room, RoomParams};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn seconds_to_heat_matches_exponential_rise() {
        let m = RoomModel {
            ua_watts_per_kelvin: 33.3,
            capacity_joules_per_kelvin: 3e6,
        };
        let s = m.seconds_to_heat(18.0, 21.0, 960.0, 2.0);
        let mut room = Room::new(RoomParams::from_rc(1.0 / 33.3, 3e6), 18.0);
        room.step(s, 960.0, 2.0, 1.0);
        assert!((room.air_celsius() - 21.0).abs() < 1e-9);
        assert!(m.seconds_to_heat(18.0, 21.0, 100.0, 2.0).is_infinite());
        let p = m.power_to_heat_within(18.0, 21.0, s, 2.0);
        assert!((p - 960.0).abs() < 1e-6, "{p}");
    }

    #[test]
    fn online_estimate_converges_from_a_wrong_prior() {
        let truth = RoomParams::from_rc(1.0 / 50.0, 5e6);
        let mut est = ModelEstimator::new(
            RoomModel {
                ua_watts_per_kelvin: 25.0,
                capacity_joules_per_kelvin: 2e6,
            },
            true,
        );
        let mut room = Room::new(truth, 18.0);
        let outdoor = OutdoorProfile::default();
        let mut rng = StdRng::seed_from_u64(7);
        for k in 0..(4 * 86_400) {
            let t = f64::from(k);
            // A day/night programme gives the excitation a thermostat sees anyway.
            let hour = (t / 3600.0) % 24.0;
            let watts = if (6.0..22.0).contains(&hour) {
                1400.0
            } else {
                300.0
            };
            let reading = room.air_celsius() + rng.random_range(-0.08..0.08);
            est.observe(1.0, reading, outdoor.celsius_at(t), watts);
            room.step(1.0, watts, outdoor.celsius_at(t), 1.0);
        }
        assert!(est.is_estimated());
        let m = est.model();
        assert!((m.ua_watts_per_kelvin / 50.0 - 1.0).abs() < 0.1, "{m:?}");
        assert!(
            (m.capacity_joules_per_kelvin / 5e6 - 1.0).abs() < 0.15,
            "{m:?}"
        );
    }
}
