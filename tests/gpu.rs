//! The GPU engine end to end on the real adapter (lavapipe in CI): every catalog kernel against
//! its CPU reference through the runner, training that learns, preemption and device loss that
//! resume bit-identically, pacing that follows a power step, and the limits on hostile jobs.
//! A missing adapter fails these tests; it never skips them.

use std::sync::Mutex;
use std::time::Duration;

use hearth::gpu::device::{AdapterChoice, Gpu};
use hearth::gpu::job::{GpuJob, JobError, JobLimits, KernelSpec};
use hearth::gpu::kernels::{ElementwiseOp, TrainShape};
use hearth::gpu::reference as cpu;
use hearth::gpu::runner::{GpuRunner, JobOutcome, JobOutput, RunnerConfig};
use hearth::gpu::tensor::Tensor;
use rand::{Rng, SeedableRng};

/// Lavapipe runs on the same 2 cores as the tests: one runner at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn runner(cfg: RunnerConfig) -> GpuRunner {
    let gpu = Gpu::open(&AdapterChoice::Auto).expect("a GPU adapter (CI installs lavapipe)");
    let r = GpuRunner::start(gpu, cfg).unwrap();
    r.set_target(1e9, Duration::from_secs(3600));
    r
}

fn rand_tensor(rng: &mut rand::rngs::StdRng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-scale..scale)).collect(),
    )
    .unwrap()
}

fn run(r: &GpuRunner, job: GpuJob) -> Result<JobOutput, JobError> {
    let h = r.submit(job, None)?;
    match h.outcome.blocking_recv().unwrap() {
        JobOutcome::Succeeded(o) => Ok(o),
        JobOutcome::Failed(e) => Err(e),
        JobOutcome::Preempted(_) => panic!("not preempted"),
    }
}

fn assert_close(got: &[f32], want: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: gpu {g} vs cpu {w}"
        );
    }
}

#[test]
fn every_catalog_kernel_matches_its_cpu_reference_on_odd_sizes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = runner(RunnerConfig::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // matmul: tuned kernels must handle any M, N, K; 64/100×96×36 take the vec4 path.
    for (m, k, n) in [
        (1, 1, 1),
        (3, 7, 5),
        (17, 9, 33),
        (127, 65, 129),
        (64, 64, 64),
        (100, 36, 96),
        (200, 3, 2),
    ] {
        let a = rand_tensor(&mut rng, &[m, k], 1.0);
        let b = rand_tensor(&mut rng, &[k, n], 1.0);
        let out = run(
            &r,
            GpuJob {
                kernel: KernelSpec::Matmul,
                inputs: vec![a.clone(), b.clone()],
            },
        )
        .unwrap();
        let want = cpu::matmul(&a.data, &b.data, m, k, n);
        // f32 sums in a different order: error grows with K.
        assert_close(
            &out.outputs[0].data,
            &want,
            1e-5 * k as f32,
            0.0,
            &format!("matmul {m}x{k}x{n}"),
        );
        assert_eq!(out.outputs[0].shape, vec![m, n]);
    }
    for n in [1, 3, 257, 1000] {
        let a = rand_tensor(&mut rng, &[n], 4.0);
        let b = rand_tensor(&mut rng, &[n], 4.0);
        for (op, want) in [
            (ElementwiseOp::Add, cpu::add(&a.data, &b.data)),
            (ElementwiseOp::Mul, cpu::mul(&a.data, &b.data)),
            (ElementwiseOp::Relu, cpu::relu(&a.data)),
            (ElementwiseOp::Gelu, cpu::gelu(&a.data)),
        ] {
            let inputs = if op.binary() {
                vec![a.clone(), b.clone()]
            } else {
                vec![a.clone()]
            };
            let out = run(
                &r,
                GpuJob {
                    kernel: KernelSpec::Elementwise { op },
                    inputs,
                },
            )
            .unwrap();
            assert_close(
                &out.outputs[0].data,
                &want,
                1e-5,
                1e-5,
                &format!("{op:?} {n}"),
            );
        }
    }
    for (rows, cols, scale) in [(1, 1, 1.0), (5, 3, 80.0), (3, 4097, 10.0), (70, 1000, 1.0)] {
        let x = rand_tensor(&mut rng, &[rows, cols], scale);
        let out = run(
            &r,
            GpuJob {
                kernel: KernelSpec::Softmax,
                inputs: vec![x.clone()],
            },
        )
        .unwrap();
        let want = cpu::softmax(&x.data, rows, cols);
        assert_close(
            &out.outputs[0].data,
            &want,
            1e-7,
            1e-5,
            &format!("softmax {rows}x{cols}"),
        );
    }
    let (b, d, hd, c) = (37, 13, 21, 5);
    let w = cpu::init_weights(d, hd, c, 3);
    let x = rand_tensor(&mut rng, &[b, d], 2.0);
    let inputs = vec![
        x.clone(),
        Tensor::new(vec![d, hd], w.w1.clone()).unwrap(),
        Tensor::new(vec![hd], w.b1.clone()).unwrap(),
        Tensor::new(vec![hd, c], w.w2.clone()).unwrap(),
        Tensor::new(vec![c], w.b2.clone()).unwrap(),
    ];
    let out = run(
        &r,
        GpuJob {
            kernel: KernelSpec::MlpInfer,
            inputs,
        },
    )
    .unwrap();
    assert_close(
        &out.outputs[0].data,
        &cpu::mlp_infer(&x.data, &w, b, d, hd, c),
        1e-6,
        1e-4,
        "mlp_infer",
    );
}

/// `n` samples of three Gaussian blobs in 2-D (σ = 1.2); class = i mod 3.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor) {
    let centers = [(0.0f32, 3.0f32), (-2.6, -1.5), (2.6, -1.5)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, 1.2).unwrap();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let (cx, cy) = centers[i % 3];
        x.push(cx + rng.sample(normal));
        x.push(cy + rng.sample(normal));
        y.push((i % 3) as f32);
    }
    (
        Tensor::new(vec![n, 2], x).unwrap(),
        Tensor::new(vec![n], y).unwrap(),
    )
}

fn train_job(n: usize, epochs: u32) -> GpuJob {
    let (x, y) = blobs(n, 11);
    let (d, hd, c) = (2, 16, 3);
    let w = cpu::init_weights(d, hd, c, 5);
    GpuJob {
        kernel: KernelSpec::MlpTrain {
            lr: 0.1,
            batch: 32,
            epochs,
        },
        inputs: vec![
            x,
            y,
            Tensor::new(vec![d, hd], w.w1).unwrap(),
            Tensor::new(vec![hd], w.b1).unwrap(),
            Tensor::new(vec![hd, c], w.w2).unwrap(),
            Tensor::new(vec![c], w.b2).unwrap(),
        ],
    }
}

#[test]
fn mlp_train_learns_and_tracks_the_cpu_reference() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = runner(RunnerConfig::default());
    let job = train_job(600, 20);
    let out = run(&r, job.clone()).unwrap();
    let loss = &out.outputs[4].data;
    assert_eq!(loss.len(), 20);
    assert!(loss[19] < 0.5 * loss[0], "loss did not fall: {loss:?}");
    // The same algorithm on the CPU, summing in the same order.
    let shape = TrainShape {
        n: 600,
        d: 2,
        hd: 16,
        c: 3,
        batch: 32,
        epochs: 20,
    };
    let mut w = cpu::MlpWeights {
        w1: job.inputs[2].data.clone(),
        b1: job.inputs[3].data.clone(),
        w2: job.inputs[4].data.clone(),
        b2: job.inputs[5].data.clone(),
    };
    let labels: Vec<u32> = job.inputs[1].data.iter().map(|&l| l as u32).collect();
    let mut cpu_loss = vec![0.0; 20];
    cpu::mlp_train(
        &job.inputs[0].data,
        &labels,
        &mut w,
        &shape,
        0.1,
        0,
        shape.total_steps() as u32,
        &mut cpu_loss,
    );
    assert_close(loss, &cpu_loss, 1e-4, 1e-3, "loss per epoch");
    assert_close(&out.outputs[0].data, &w.w1, 1e-3, 1e-3, "trained w1");
    // Accuracy of the trained weights, by a GPU inference job.
    let mut inputs = vec![job.inputs[0].clone()];
    inputs.extend(out.outputs[..4].iter().cloned());
    let probs = run(
        &r,
        GpuJob {
            kernel: KernelSpec::MlpInfer,
            inputs,
        },
    )
    .unwrap()
    .outputs
    .remove(0);
    let correct = (0..600)
        .filter(|&i| {
            let row = &probs.data[3 * i..3 * i + 3];
            let best = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as f32 == job.inputs[1].data[i]
        })
        .count();
    assert!(correct as f64 / 600.0 > 0.9, "accuracy {correct}/600");
}

#[test]
fn preempted_and_device_lost_jobs_resume_to_the_identical_digest() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = RunnerConfig {
        checkpoint_every_seconds: 0.02,
        chunk_ms: 5.0,
        ..RunnerConfig::default()
    };
    let r = runner(cfg);
    let job = train_job(2000, 40);
    let whole = run(&r, job.clone()).unwrap();
    assert!(
        whole.chunks > 3,
        "the job must span several chunks: {}",
        whole.chunks
    );

    // Preempt part-way, then resume from the host checkpoint.
    let h = r.submit(job.clone(), None).unwrap();
    let units = h.progress.borrow().units;
    while h.progress.borrow().done < units / 3 {
        std::thread::sleep(Duration::from_millis(2));
    }
    r.preempt(h.id);
    let cp = match h.outcome.blocking_recv().unwrap() {
        JobOutcome::Preempted(cp) => cp,
        other => panic!("expected preemption, got {other:?}"),
    };
    assert!(
        cp.done > 0 && cp.done < units,
        "checkpoint at {} of {units}",
        cp.done
    );
    let resumed = r.submit(job.clone(), Some(cp)).unwrap();
    let JobOutcome::Succeeded(out) = resumed.outcome.blocking_recv().unwrap() else {
        panic!("resume failed")
    };
    assert_eq!(out.digest, whole.digest);

    // Lose the device part-way: the runner reopens it and resumes from the last checkpoint.
    let mut h = r.submit(job, None).unwrap();
    while h.progress.borrow().done < units / 2 {
        std::thread::sleep(Duration::from_millis(2));
    }
    r.lose_device();
    let JobOutcome::Succeeded(out) = h.outcome.blocking_recv().unwrap() else {
        panic!("the job did not survive the device loss")
    };
    assert_eq!(out.digest, whole.digest);
    assert_eq!(h.progress.borrow_and_update().recoveries, 1);
    assert_eq!(r.status().device_resets, 1);
}

/// Busy fraction over `window` of wall time, from the runner's own busy counter.
fn duty_over(r: &GpuRunner, window: Duration) -> f64 {
    let b0 = r.status().busy_seconds;
    let t0 = std::time::Instant::now();
    std::thread::sleep(window);
    let b1 = r.status().busy_seconds;
    (b1 - b0) / t0.elapsed().as_secs_f64()
}

#[test]
fn pacing_follows_a_power_step_and_the_dead_man_pauses() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = RunnerConfig::default();
    let (idle, max) = (cfg.idle_watts, cfg.max_watts);
    let r = runner(cfg);
    let h = r.submit(train_job(3000, 100_000), None).unwrap();
    for u in [0.5, 0.2, 0.8] {
        r.set_target(idle + u * (max - idle), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300));
        let d = duty_over(&r, Duration::from_millis(1500));
        assert!(
            (d - u).abs() < 0.1,
            "duty {d:.3} for target utilisation {u}"
        );
    }
    // The target lapses: the runner must stop within a chunk.
    r.set_target(max, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(200));
    let before = h.progress.borrow().done;
    assert!(duty_over(&r, Duration::from_millis(300)) == 0.0);
    assert_eq!(h.progress.borrow().done, before);
    assert!(r.status().target_expired);
    r.cancel(h.id);
}

#[test]
fn pause_resume_and_cancel_act_between_chunks() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = runner(RunnerConfig {
        chunk_ms: 5.0,
        ..RunnerConfig::default()
    });
    let mut h = r.submit(train_job(2000, 200), None).unwrap();
    while h.progress.borrow().chunks < 2 {
        std::thread::sleep(Duration::from_millis(2));
    }
    r.pause(h.id);
    while !h.progress.borrow_and_update().paused {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    let at = h.progress.borrow().done;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.progress.borrow().done, at, "a paused job advanced");
    r.resume(h.id);
    while h.progress.borrow().done == at {
        std::thread::sleep(Duration::from_millis(2));
    }
    r.cancel(h.id);
    assert_eq!(
        h.outcome.blocking_recv().unwrap(),
        JobOutcome::Failed(JobError::Cancelled)
    );
}

fn custom(wgsl: &str, workgroups: [u32; 3], inputs: Vec<Tensor>, outputs: Vec<usize>) -> GpuJob {
    GpuJob {
        kernel: KernelSpec::Custom {
            wgsl: wgsl.into(),
            entry_point: "main".into(),
            workgroups,
            outputs,
        },
        inputs,
    }
}

const HEADER: &str = "struct Chunk { start: u32, end: u32, pad: vec2<u32> }
@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
";

#[test]
fn custom_shaders_run_and_hostile_ones_are_rejected_or_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = JobLimits {
        max_loop_iterations: 1000,
        ..JobLimits::default()
    };
    let r = runner(RunnerConfig {
        limits,
        chunk_ms: 5.0,
        ..RunnerConfig::default()
    });
    let x = Tensor::new(vec![256], (0..256).map(|i| i as f32).collect()).unwrap();
    // A good one: y = 2x, chunked along x.
    let double = format!(
        "{HEADER}@compute @workgroup_size(64) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {{
            let i = (chunk.start + wg.x) * 64u + l;
            y[i] = 2.0 * x[i];
        }}"
    );
    let out = run(
        &r,
        custom(&double, [4, 1, 1], vec![x.clone()], vec![256, 1]),
    )
    .unwrap();
    assert_eq!(
        out.outputs[0].data,
        x.data.iter().map(|v| 2.0 * v).collect::<Vec<_>>()
    );

    // Out-of-bounds writes are clamped or dropped: they never reach the neighbour buffer.
    let oob = format!(
        "{HEADER}@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) l: u32) {{
            y[l + 1000000u] = 7.0;
            z[0] = 1.0;
        }}"
    );
    let out = run(&r, custom(&oob, [1, 1, 1], vec![x.clone()], vec![4, 4])).unwrap();
    assert_eq!(out.outputs[1].data, vec![1.0, 0.0, 0.0, 0.0]);
    assert!(out.outputs[0].data.iter().all(|&v| v == 0.0 || v == 7.0));

    // An endless loop is cut at the iteration budget; the loop counts prove the bound.
    let endless = format!(
        "{HEADER}@compute @workgroup_size(1) fn main() {{
            var n = 0.0;
            loop {{ n = n + 1.0; }}
            y[0] = n;
        }}"
    );
    let out = run(&r, custom(&endless, [1, 1, 1], vec![x.clone()], vec![1, 1])).unwrap();
    assert_eq!(out.outputs[0].data[0], 1000.0);

    // Rejections, each naming what is wrong.
    let err = |job: GpuJob| {
        r.submit(job, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = err(custom(
        &double,
        [u32::MAX, 65535, 65535],
        vec![x.clone()],
        vec![1, 1],
    ));
    assert!(e.contains("max_workgroups"), "{e}");
    // Each x-slice is one chunk at least: its invocations are capped too.
    let e = err(custom(&double, [1, 2000, 1], vec![x.clone()], vec![1, 1]));
    assert!(e.contains("max_invocations_per_slice"), "{e}");
    // Refused at submission, before anything is queued.
    let e = err(custom("fn main( {", [1, 1, 1], vec![x.clone()], vec![1, 1]));
    assert!(e.contains("kernel.wgsl") && e.contains("wgsl:1:"), "{e}");
    let e = err(custom(&double, [1, 1, 1], vec![x.clone()], vec![1]));
    assert!(e.contains("kernel.wgsl") && e.contains("bindings"), "{e}");
    let renamed = double.replace("fn main", "fn other");
    let e = err(custom(&renamed, [1, 1, 1], vec![x.clone()], vec![1, 1]));
    assert!(e.contains("kernel.entry_point"), "{e}");
}

#[test]
fn limits_refuse_oversized_jobs_and_stop_runaway_ones() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = JobLimits {
        max_job_bytes: 1 << 20,
        max_chunks: 3,
        ..JobLimits::default()
    };
    let r = runner(RunnerConfig {
        limits,
        chunk_ms: 2.0,
        ..RunnerConfig::default()
    });
    // An unbounded deadline is clamped, not an overflow.
    r.set_target(1e9, Duration::MAX);
    let big = Tensor::new(vec![512, 512], vec![0.5; 512 * 512]).unwrap();
    let e = r
        .submit(
            GpuJob {
                kernel: KernelSpec::Matmul,
                inputs: vec![big.clone(), big],
            },
            None,
        )
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            JobError::Limit {
                limit: "max_job_bytes",
                ..
            }
        ),
        "{e}"
    );
    let e = run(&r, train_job(2000, 100)).unwrap_err();
    assert!(
        matches!(
            e,
            JobError::Limit {
                limit: "max_chunks",
                ..
            }
        ),
        "{e}"
    );
    let limits = JobLimits {
        max_gpu_seconds: 1e-4,
        ..JobLimits::default()
    };
    let r2 = runner(RunnerConfig {
        limits,
        ..RunnerConfig::default()
    });
    let e = run(&r2, train_job(2000, 100)).unwrap_err();
    assert!(
        matches!(
            e,
            JobError::Limit {
                limit: "max_gpu_seconds",
                ..
            }
        ),
        "{e}"
    );
    drop(r2);
    // Shape errors name the input.
    let a = Tensor::new(vec![2, 3], vec![1.0; 6]).unwrap();
    let e = r
        .submit(
            GpuJob {
                kernel: KernelSpec::Matmul,
                inputs: vec![a.clone(), a],
            },
            None,
        )
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("inputs[1]:"), "{e}");
}

#[test]
fn the_runner_is_a_workload_with_a_duty_cycled_envelope() {
    use hearth::sched::workload::Workload;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = runner(RunnerConfig::default());
    let env = r.envelope();
    assert!(!env.below_min && env.min_watts == 30.0 && env.max_watts == 250.0);
    assert!(!r.has_work());
    let h = r.submit(train_job(3000, 100_000), None).unwrap();
    Workload::set_target(&r, 250.0, Duration::from_secs(60));
    let t0 = std::time::Instant::now();
    while !(r.has_work() && r.actual_watts().0 > 100.0) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never ran: {:?}",
            r.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Through the trait, a zero target rests the device.
    Workload::set_target(&r, 0.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(duty_over(&r, Duration::from_millis(300)), 0.0);
    // A second later it is power-gated: no budget, no heat.
    let t0 = std::time::Instant::now();
    while r.actual_watts().0 != 0.0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", r.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    r.cancel(h.id);
}
