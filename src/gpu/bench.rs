//! `hearth bench gpu`: matmul GFLOP/s of the tuned and the naive kernel with a CPU sgemm baseline
//! (`matrixmultiply`) measured in the same run, the throttle response of the runner, and
//! `mlp_train` throughput.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::device::{AdapterChoice, Gpu};
use super::job::{encode_matmul, GpuJob, JobError, KernelSpec};
use super::kernels::{Catalog, MatmulParams, MatmulVariant};
use super::runner::{GpuRunner, JobOutcome, RunnerConfig};
use super::tensor::Tensor;

/// One matmul size.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulFigure {
    /// M = N = K.
    pub size: usize,
    /// The tuned variant used on this adapter.
    pub variant: MatmulVariant,
    /// Tuned kernel, GFLOP/s.
    pub tuned_gflops: f64,
    /// Naive kernel, GFLOP/s.
    pub naive_gflops: f64,
    /// Rows of the naive run (it runs a row subset at large sizes; its rate does not depend on it).
    pub naive_rows: usize,
    /// `matrixmultiply::sgemm` on one CPU thread, GFLOP/s.
    pub cpu_gflops: f64,
}

/// The throttle response to one power step.
#[derive(Debug, Clone, Serialize)]
pub struct StepFigure {
    /// Utilisation before.
    pub from: f64,
    /// Utilisation after.
    pub to: f64,
    /// Seconds from the new target to the start of the first chunk from which the per-chunk
    /// duty holds within ±0.05 (for 5 chunks at least).
    pub response_s: Option<f64>,
    /// The first cycles after the step (`at` relative to the step).
    pub cycles: Vec<super::runner::Cycle>,
}

/// Everything `hearth bench gpu` measures.
#[derive(Debug, Clone, Serialize)]
pub struct GpuBench {
    /// The adapter.
    pub adapter: String,
    /// Whether it is a software adapter.
    pub software: bool,
    /// Matmul figures per size.
    pub matmul: Vec<MatmulFigure>,
    /// Power steps.
    pub steps: Vec<StepFigure>,
    /// `mlp_train` samples per second at full duty (N 4096, D 64, H 128, C 10, batch 64).
    pub mlp_train_samples_per_s: f64,
    /// Chunk busy time during the power steps, ms: median.
    pub chunk_ms_p50: f64,
    /// Chunk busy time during the power steps, ms: the longest.
    pub chunk_ms_max: f64,
}

fn random(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Median seconds of `reps` runs of `f` after one warm-up.
fn median_time(reps: usize, mut f: impl FnMut() -> Result<(), JobError>) -> Result<f64, JobError> {
    f()?;
    let mut t = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn matmul_rate(
    gpu: &Gpu,
    cat: &Catalog,
    v: MatmulVariant,
    n: usize,
    rows: usize,
    reps: usize,
) -> Result<f64, JobError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let a = gpu.storage(&random(&mut rng, n * n));
    let b = gpu.storage(&random(&mut rng, n * n));
    let c = gpu.zeros(n * n);
    let kernel = cat
        .matmul(v)
        .ok_or_else(|| JobError::Kernel(super::kernels::KernelError::NoEntry(format!("{v:?}"))))?;
    let p = MatmulParams {
        m: n as u32,
        n: n as u32,
        k: n as u32,
        row_start: 0,
        row_end: rows as u32,
        pad: [0; 3],
    };
    let t = median_time(reps, || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        encode_matmul(gpu, kernel, v, &mut enc, &[&a, &b, &c], p)?;
        Ok(gpu.run(enc)?)
    })?;
    Ok(2.0 * (rows * n * n) as f64 / t / 1e9)
}

fn cpu_sgemm_rate(n: usize) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let a = random(&mut rng, n * n);
    let b = random(&mut rng, n * n);
    let mut c = vec![0.0f32; n * n];
    let reps = if n <= 512 { 5 } else { 1 };
    let mut best = f64::MAX;
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        // SAFETY: a, b and c are n×n row-major buffers of exactly n·n elements, with the
        // strides given (row stride n, column stride 1); c does not alias a or b.
        unsafe {
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                a.as_ptr(),
                n as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// A training job big enough to keep the device busy through the power steps.
fn long_train_job(n: usize, epochs: u32) -> GpuJob {
    let (d, hd, c) = (64, 128, 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let w = super::reference::init_weights(d, hd, c, 4);
    let t = |shape: Vec<usize>, data: Vec<f32>| Tensor { shape, data };
    GpuJob {
        kernel: KernelSpec::MlpTrain {
            lr: 0.01,
            batch: 64,
            epochs,
        },
        inputs: vec![
            t(vec![n, d], random(&mut rng, n * d)),
            t(vec![n], (0..n).map(|i| (i % c) as f32).collect()),
            t(vec![d, hd], w.w1),
            t(vec![hd], w.b1),
            t(vec![hd, c], w.w2),
            t(vec![c], w.b2),
        ],
    }
}

/// Runs every GPU figure on the adapter `choice` selects.
pub fn run(choice: &AdapterChoice, sizes: &[usize]) -> Result<GpuBench, JobError> {
    let gpu = Gpu::open(choice)?;
    let cat = Catalog::new(&gpu)?;
    let mut matmul = Vec::new();
    for &n in sizes {
        let v = cat.tuned_matmul(n as u32, n as u32);
        let reps = if n <= 512 { 7 } else { 3 };
        let tuned = matmul_rate(&gpu, &cat, v, n, n, reps)?;
        // The naive kernel takes minutes at 2048 on a CPU adapter: time a row block instead.
        let naive_rows = n.min(256);
        let naive = matmul_rate(&gpu, &cat, MatmulVariant::Naive, n, naive_rows, 1)?;
        let cpu = cpu_sgemm_rate(n);
        tracing::info!(n, tuned, naive, cpu, "matmul");
        matmul.push(MatmulFigure {
            size: n,
            variant: v,
            tuned_gflops: tuned,
            naive_gflops: naive,
            naive_rows,
            cpu_gflops: cpu,
        });
    }
    let summary = gpu.summary.clone();
    drop(cat);
    let runner = GpuRunner::start(gpu, RunnerConfig::default())?;
    let cfg = runner.config().clone();
    let watts = |u: f64| cfg.idle_watts + u * (cfg.max_watts - cfg.idle_watts);

    // Throughput at full duty.
    runner.set_target(cfg.max_watts, Duration::from_secs(3600));
    let n = 4096;
    let h = runner.submit(long_train_job(n, 3), None)?;
    let samples_per_s = match h.outcome.blocking_recv() {
        Ok(JobOutcome::Succeeded(o)) => 3.0 * n as f64 / o.gpu_seconds,
        Ok(JobOutcome::Failed(e)) => return Err(e),
        _ => 0.0,
    };

    // Power steps against a long job; the response is read off the runner's cycle log.
    let h = runner.submit(long_train_job(n, 100_000), None)?;
    let plan = [(1.0, 0.3), (0.3, 0.8), (0.8, 0.1), (0.1, 0.6), (0.6, 1.0)];
    let mut steps = Vec::new();
    runner.set_target(watts(1.0), Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(500));
    for (from, to) in plan {
        let at = runner.seconds_since_start();
        runner.set_target(watts(to), Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(1500));
        let cycles = runner.cycles();
        steps.push(StepFigure {
            from,
            to,
            response_s: response(&cycles, at, to),
            cycles: cycles
                .iter()
                .filter(|c| c.at >= at - 0.1)
                .take(10)
                .map(|c| super::runner::Cycle {
                    at: c.at - at,
                    ..*c
                })
                .collect(),
        });
    }
    runner.cancel(h.id);
    let mut busy: Vec<f64> = runner
        .cycles()
        .iter()
        .skip(10)
        .map(|c| c.busy * 1000.0)
        .collect();
    busy.sort_by(f64::total_cmp);
    Ok(GpuBench {
        chunk_ms_p50: busy.get(busy.len() / 2).copied().unwrap_or(0.0),
        chunk_ms_max: busy.last().copied().unwrap_or(0.0),
        adapter: summary.name,
        software: summary.software,
        matmul,
        steps,
        mlp_train_samples_per_s: samples_per_s,
    })
}

/// Seconds from `at` to the start of the first chunk from which the per-chunk duty (busy over
/// busy plus the idle after it) holds within ±0.05 of `u` for five chunks in a row.
fn response(cycles: &[super::runner::Cycle], at: f64, u: f64) -> Option<f64> {
    let after: Vec<_> = cycles.iter().filter(|c| c.at >= at).collect();
    let duty = |i: usize| -> Option<f64> {
        let c = after.get(i)?;
        let next = after.get(i + 1)?;
        Some(c.busy / (c.busy + next.idle))
    };
    (0..after.len()).find_map(|k| {
        let ok = (k..k + 5).all(|i| duty(i).is_some_and(|d| (d - u).abs() <= 0.05));
        // From the start of chunk k on, every cycle runs at the new duty.
        ok.then(|| after[k].at - at)
    })
}
