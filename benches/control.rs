//! Cost of one control tick: safety, schedule plan and controller, as the daemon runs them.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use hearth::thermal::controller::{ControlInput, Controller, ControllerConfig};
use hearth::thermal::estimator::{ModelEstimator, RoomModel};
use hearth::thermal::safety::{SafetyConfig, SafetyInputs, Supervisor};
use hearth::thermal::schedule::{Schedule, ScheduleConfig, Setpoints};
use hearth::thermal::sensor::Reading;

fn control_tick(c: &mut Criterion) {
    let model = RoomModel {
        ua_watts_per_kelvin: 33.3,
        capacity_joules_per_kelvin: 3e6,
    };
    let mut controller = Controller::new(
        ControllerConfig::default(),
        1200.0,
        ModelEstimator::new(model, true),
    );
    let mut supervisor = Supervisor::new(SafetyConfig::default());
    let schedule = Schedule::new(&ScheduleConfig::default(), 0).expect("default schedule");
    let mut setpoints = Setpoints::new(schedule);
    let mut t = 0.0f64;
    c.bench_function("control tick (safety + schedule + controller)", |b| {
        b.iter(|| {
            t += 1.0;
            let now = t % (7.0 * 86_400.0);
            let room = Some(Reading {
                celsius: 20.9 + 0.1 * (now * 0.01).sin(),
                at_s: now,
            });
            let verdict = supervisor.evaluate(&SafetyInputs {
                now_s: now,
                room,
                chips: Vec::new(),
                since_last_tick_s: 1.0,
                tick_s: 1.0,
            });
            let plan = setpoints.plan(now);
            let out = controller.step(&ControlInput {
                now_s: now,
                dt_s: 1.0,
                room_celsius: room.map_or(20.0, |r| r.celsius),
                outdoor_celsius: 5.0,
                plan,
            });
            black_box((verdict.tripped, out.budget_watts))
        })
    });
}

criterion_group!(benches, control_tick);
criterion_main!(benches);
