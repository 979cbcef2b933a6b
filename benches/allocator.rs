//! Cost of one allocator tick under the automatic policy with every workload present.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use hearth::sched::allocator::{Allocator, Envelope, Hysteresis, Inputs, Mix};

fn allocator_tick(c: &mut Criterion) {
    let env = |min, max, below| Envelope {
        min_watts: min,
        max_watts: max,
        below_min: below,
        ramp_watts_per_second: 200.0,
    };
    let mut a = Allocator::new(Hysteresis::default());
    let mut t = 0.0f64;
    c.bench_function("allocator tick (auto, ASIC + GPU + element)", |b| {
        b.iter(|| {
            t += 1.0;
            let i = Inputs {
                budget_watts: 600.0 + 400.0 * (t * 0.01).sin(),
                asic: env(100.0, 400.0, false),
                asic_has_work: true,
                gpu: env(30.0, 250.0, true),
                gpu_has_work: true,
                resistive: Some(env(0.0, 1000.0, true)),
                gpu_deadline_watts: 50.0,
                asic_value_per_joule: 1.0,
                gpu_value_per_joule: 1.0 + 0.1 * (t * 0.003).sin(),
            };
            black_box(a.tick(t, Mix::Auto, black_box(&i)))
        })
    });
}

criterion_group!(benches, allocator_tick);
criterion_main!(benches);
