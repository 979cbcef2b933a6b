//! The thermostat's KPI goals on the reference scenario and across a sweep of rooms.

use hearth::sim::Scenario;

#[test]
fn default_scenario_meets_the_comfort_goals() {
    let [hearth, baseline] = Scenario::default().run_both().unwrap();
    let (h, b) = (hearth.kpis, baseline.kpis);
    println!("hearth   {h:?}\nbaseline {b:?}");
    assert!(h.rms_error_celsius <= 0.1, "rms {}", h.rms_error_celsius);
    assert!(h.max_overshoot_celsius <= 0.3, "overshoot {}", h.max_overshoot_celsius);
    assert!(
        h.discomfort_kelvin_hours <= 0.25 * b.discomfort_kelvin_hours,
        "discomfort {} vs baseline {}",
        h.discomfort_kelvin_hours,
        b.discomfort_kelvin_hours
    );
}
