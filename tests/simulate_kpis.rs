//! The thermostat's KPI goals on the reference scenario and across a sweep of rooms.

use hearth::sim::Scenario;

#[test]
fn default_scenario_meets_the_comfort_goals() {
    let [hearth, baseline] = Scenario::default().run_both().unwrap();
    let (h, b) = (hearth.kpis, baseline.kpis);
    println!("hearth   {h:?}\nbaseline {b:?}");
    assert!(h.rms_error_celsius <= 0.1, "rms {}", h.rms_error_celsius);
    assert!(
        h.max_overshoot_celsius <= 0.3,
        "overshoot {}",
        h.max_overshoot_celsius
    );
    assert!(
        h.discomfort_kelvin_hours <= 0.25 * b.discomfort_kelvin_hours,
        "discomfort {} vs baseline {}",
        h.discomfort_kelvin_hours,
        b.discomfort_kelvin_hours
    );
}

/// Rooms from small and leaky to large and tight, heaters from 400 W to 1500 W: every room whose
/// heater can hold the day setpoint at the coldest outdoor temperature. A warm-up day comes first:
/// a 1e7 J/K room needs more than a day to climb from the 18 °C start, whatever the controller.
fn sweep(window: bool) -> Vec<Scenario> {
    let mut out = Vec::new();
    for c in [1e6, 3e6, 1e7] {
        for ua in [20.0, 40.0, 60.0, 100.0] {
            for pmax in [400.0, 800.0, 1200.0, 1500.0] {
                let coldest = 0.0; // the default profile: 5 ± 5 °C
                if pmax < ua * (21.0 - coldest) {
                    continue;
                }
                let mut s = Scenario {
                    warmup_hours: 24.0,
                    max_power_watts: pmax,
                    ..Scenario::default()
                };
                s.room.ua_watts_per_kelvin = ua;
                s.room.capacity_joules_per_kelvin = c;
                if !window {
                    s.disturbances.clear();
                }
                out.push(s);
            }
        }
    }
    out
}

fn tag(s: &Scenario) -> String {
    format!(
        "C={:.0e} UA={} P={}",
        s.room.capacity_joules_per_kelvin, s.room.ua_watts_per_kelvin, s.max_power_watts
    )
}

#[test]
fn sweep_of_rooms_meets_the_goals_without_retuning() {
    let mut failures = Vec::new();
    for s in sweep(false) {
        let [h, b] = s.run_both().unwrap();
        let (h, b) = (h.kpis, b.kpis);
        println!(
            "{:28} rms {:.3} over {:.3} disc {:.3} (base {:.2}) energy {:.1} (base {:.1})",
            tag(&s),
            h.rms_error_celsius,
            h.max_overshoot_celsius,
            h.discomfort_kelvin_hours,
            b.discomfort_kelvin_hours,
            h.energy_kwh,
            b.energy_kwh
        );
        if h.rms_error_celsius > 0.1
            || h.max_overshoot_celsius > 0.3
            || h.discomfort_kelvin_hours > 0.25 * b.discomfort_kelvin_hours
        {
            failures.push(tag(&s));
        }
    }
    assert!(failures.is_empty(), "goals missed for {failures:?}");
}

/// With the window opened (UA × 4 for 30 min) a small leaky room drops several kelvin whatever
/// the controller does, so the absolute RMS goal is physics there. What control owns: no
/// overshoot after the window closes, less discomfort than the baseline, and the RMS goal in
/// every room whose heater can out-heat the open window. (The baseline's RMS is no yardstick
/// here: it often enters its hold period only after the window has closed.)
#[test]
fn sweep_with_window_recovers_without_overshoot() {
    let mut failures = Vec::new();
    for s in sweep(true) {
        let [h, b] = s.run_both().unwrap();
        let (h, b) = (h.kpis, b.kpis);
        println!(
            "{:28} rms {:.3} (base {:.3}) over {:.3} disc {:.3} (base {:.2})",
            tag(&s),
            h.rms_error_celsius,
            b.rms_error_celsius,
            h.max_overshoot_celsius,
            h.discomfort_kelvin_hours,
            b.discomfort_kelvin_hours,
        );
        // Outdoor temperature at 10:00 on the default profile.
        let outdoor = s.outdoor.celsius_at(10.0 * 3600.0);
        let holds_open_window =
            s.max_power_watts >= 4.0 * s.room.ua_watts_per_kelvin * (21.0 - outdoor);
        if h.max_overshoot_celsius > 0.3
            || h.discomfort_kelvin_hours > b.discomfort_kelvin_hours
            || (holds_open_window && h.rms_error_celsius > 0.1)
        {
            failures.push(tag(&s));
        }
    }
    assert!(failures.is_empty(), "goals missed for {failures:?}");
}

/// UA and C learned online: from a prior off by 2× either way, after two days of learning the
/// goals hold as with the true model.
#[test]
fn online_estimation_from_a_wrong_prior_meets_the_goals() {
    for factor in [0.5, 2.0] {
        let s = Scenario {
            warmup_hours: 48.0,
            estimate_from_prior_factor: Some(factor),
            ..Scenario::default()
        };
        let [h, b] = s.run_both().unwrap();
        let (h, b) = (h.kpis, b.kpis);
        assert!(
            h.rms_error_celsius <= 0.1,
            "×{factor}: rms {}",
            h.rms_error_celsius
        );
        assert!(
            h.max_overshoot_celsius <= 0.3,
            "×{factor}: {}",
            h.max_overshoot_celsius
        );
        assert!(
            h.discomfort_kelvin_hours <= 0.25 * b.discomfort_kelvin_hours,
            "×{factor}: discomfort {} vs {}",
            h.discomfort_kelvin_hours,
            b.discomfort_kelvin_hours
        );
    }
}
