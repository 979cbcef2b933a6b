//! Comfort and cost KPIs, all computed on the true room temperature.
//!
//! - A **setback** is a scheduled period whose setpoint is lower than the one that follows it.
//!   Its comfort band is `[setpoint − 0.5, next setpoint + 0.5]`; elsewhere the band is
//!   `setpoint ± 0.5`.
//! - A **hold period** runs, outside setbacks, from the first time the room is within 0.2 K of
//!   the setpoint until the next setpoint change.

use serde::Serialize;

use super::Trace;
use crate::thermal::schedule::{Schedule, LOOKAHEAD_SECONDS};

/// Half-width of the comfort band, K.
pub const COMFORT_BAND_KELVIN: f64 = 0.5;
/// Distance to the setpoint that starts a hold period, K.
pub const HOLD_ENTRY_KELVIN: f64 = 0.2;

/// One controller's KPIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Kpis {
    /// RMS of (room − setpoint) over hold periods, K.
    pub rms_error_celsius: f64,
    /// Largest (room − setpoint) during hold periods, K (0 if never above).
    pub max_overshoot_celsius: f64,
    /// Time-integrated distance outside the comfort band, K·h.
    pub discomfort_kelvin_hours: f64,
    /// Heat delivered, kWh.
    pub energy_kwh: f64,
    /// Sum of |ΔP| between ticks, kW.
    pub actuator_travel_kw: f64,
    /// Total length of the hold periods, h.
    pub hold_hours: f64,
}

/// Computes the KPIs of a trace against the schedule it ran on, counting from `from_s` on.
pub fn compute(trace: &Trace, schedule: &Schedule, dt_s: f64, from_s: f64) -> Kpis {
    let mut k = Kpis::default();
    let mut sq_sum = 0.0;
    let mut hold_n = 0usize;
    let mut next = None;
    let mut holding = false;
    let mut last_power: Option<f64> = None;
    let first = trace.t_s.partition_point(|&t| t < from_s);
    for i in first..trace.t_s.len() {
        let t = trace.t_s[i];
        let room = trace.room_celsius[i];
        let sp = schedule.setpoint_at(t);
        if next.is_none_or(|n: crate::thermal::schedule::NextSetpoint| t >= n.at_s) {
            next = schedule.next_change(t, LOOKAHEAD_SECONDS);
            holding = false;
        }
        let setback = next.is_some_and(|n| n.celsius > sp);
        let (lo, hi) = match next {
            Some(n) if setback => (sp - COMFORT_BAND_KELVIN, n.celsius + COMFORT_BAND_KELVIN),
            _ => (sp - COMFORT_BAND_KELVIN, sp + COMFORT_BAND_KELVIN),
        };
        k.discomfort_kelvin_hours += (lo - room).max(room - hi).max(0.0) * dt_s / 3600.0;
        if !setback {
            holding |= (room - sp).abs() <= HOLD_ENTRY_KELVIN;
            if holding {
                let e = room - sp;
                sq_sum += e * e;
                hold_n += 1;
                k.max_overshoot_celsius = k.max_overshoot_celsius.max(e);
            }
        }
        let p = trace.power_watts[i];
        k.energy_kwh += p * dt_s / 3.6e6;
        if let Some(lp) = last_power {
            k.actuator_travel_kw += (p - lp).abs() / 1000.0;
        }
        last_power = Some(p);
    }
    if hold_n > 0 {
        k.rms_error_celsius = (sq_sum / hold_n as f64).sqrt();
    }
    k.hold_hours = hold_n as f64 * dt_s / 3600.0;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermal::schedule::ScheduleConfig;

    fn trace_of(f: impl Fn(f64) -> f64, hours: f64) -> Trace {
        let n = (hours * 3600.0) as usize;
        let t: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Trace {
            name: "x".into(),
            room_celsius: t.iter().map(|&t| f(t)).collect(),
            setpoint_celsius: vec![0.0; n],
            outdoor_celsius: vec![0.0; n],
            power_watts: vec![1000.0; n],
            t_s: t,
        }
    }

    #[test]
    fn perfect_tracking_scores_zero() {
        let s = Schedule::new(&ScheduleConfig::default(), 0).unwrap();
        let tr = trace_of(|t| s.setpoint_at(t), 24.0);
        let k = compute(&tr, &s, 1.0, 0.0);
        assert_eq!(k.rms_error_celsius, 0.0);
        assert_eq!(k.discomfort_kelvin_hours, 0.0);
        assert!((k.hold_hours - 16.0).abs() < 1e-9);
        assert!((k.energy_kwh - 24.0).abs() < 1e-9);
    }

    #[test]
    fn cold_morning_counts_as_discomfort_but_preheat_does_not() {
        let s = Schedule::new(&ScheduleConfig::default(), 0).unwrap();
        // Stays at 18 °C all day: 16 h, 2.5 K below the band = 40 K·h; never enters a hold.
        let k = compute(&trace_of(|_| 18.0, 24.0), &s, 1.0, 0.0);
        assert!((k.discomfort_kelvin_hours - 40.0).abs() < 1e-6);
        assert_eq!(k.hold_hours, 0.0);
        // Sits at 21 °C all night (pre-heated): inside the setback band, no discomfort.
        let k = compute(&trace_of(|_| 21.0, 24.0), &s, 1.0, 0.0);
        assert_eq!(k.discomfort_kelvin_hours, 0.0);
    }
}
