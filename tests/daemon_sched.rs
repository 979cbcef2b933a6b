//! The scheduler in the real daemon: the simulated room is heated only by what the workloads
//! draw (software ASIC mining against the embedded pool, a queued job on lavapipe, the resistive
//! element), and the daemon holds the setpoint while the sum of actual power follows the budget.

use std::time::Duration;

use hearth::config::Config;
use hearth::daemon::DaemonHandle;
use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::reference::synthetic_inputs;
use hearth::jobs::{JobId, JobSpec, JobState, Lease};
use hearth::sched::allocator::Mix;

mod common;
use common::daemon::{spawn_at_noon, wait_for};

/// 30× real time (the room settles within the test, the engines run in real time), the room at
/// the setpoint.
fn config(dir: &std::path::Path) -> Config {
    let mut cfg = common::daemon::config(dir);
    cfg.simulation.initial_celsius = 21.0;
    cfg
}

fn long_job(price: f64) -> JobSpec {
    let kernel = KernelSpec::MlpTrain {
        lr: 0.05,
        batch: 32,
        epochs: 100_000,
    };
    let inputs = synthetic_inputs(&kernel, &[1024, 16, 32, 4], 1).unwrap();
    JobSpec {
        job: GpuJob { kernel, inputs },
        lease: Lease {
            tenant: "tenant-a".into(),
            price_per_gpu_second: price,
            deadline_unix_s: None,
            priority: 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_the_setpoint_while_mining_and_running_a_job_and_power_follows_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let max = cfg.heater.max_watts;
    let d = spawn_at_noon(cfg).await;
    let id = d.submit(long_job(0.01)).await.unwrap();
    wait_for(&d, "the job on the GPU and a pool job", |s| {
        s.sched.queue.running.is_some_and(|r| r.job == id.0)
            && s.mining.as_ref().is_some_and(|m| m.connected)
    })
    .await;

    // Sample every tick for 25 simulated minutes after 5 minutes of settling.
    let mut rx = d.status.clone();
    let start = rx.borrow().at_s;
    let (mut n, mut sq, mut worst_room, mut last_tick) = (0u32, 0.0f64, 0.0f64, 0u64);
    // Steady state: the budget and the split have not moved for a minute (simulated). The
    // engines run in real time, so at 30× a one-second response spans 30 ticks.
    let (mut n_steady, mut sq_steady) = (0u32, 0.0f64);
    let mut history: std::collections::VecDeque<(f64, f64, f64, f64)> = Default::default();
    let (mut asic_w, mut gpu_w) = (0.0f64, 0.0f64);
    loop {
        tokio::time::timeout(Duration::from_secs(30), rx.changed())
            .await
            .expect("a status per tick")
            .unwrap();
        let s = rx.borrow_and_update().clone();
        if s.tick == last_tick {
            continue;
        }
        last_tick = s.tick;
        let t = s.at_s - start;
        // Invariants on every tick.
        let a = s.sched.allocation;
        assert!(
            a.total() <= s.budget_watts + 1e-6,
            "{a:?} over {}",
            s.budget_watts
        );
        assert!(s.trips.is_empty(), "{:?}", s.trips);
        if t < 300.0 {
            continue;
        }
        if t > 1800.0 {
            break;
        }
        let err = (s.sched.actual.total - s.budget_watts) / max;
        history.push_back((t, s.budget_watts, a.asic_watts, a.gpu_watts));
        while history.front().is_some_and(|h| h.0 < t - 60.0) {
            history.pop_front();
        }
        let steady = history.front().is_some_and(|h| h.0 <= t - 59.0)
            && history.iter().all(|h| {
                (h.1 - s.budget_watts).abs() <= 0.01 * max
                    && (h.2 - a.asic_watts).abs() <= 0.01 * max
                    && (h.3 - a.gpu_watts).abs() <= 0.01 * max
            });
        if steady {
            sq_steady += err * err;
            n_steady += 1;
        }
        sq += err * err;
        n += 1;
        asic_w += s.sched.actual.asic;
        gpu_w += s.sched.actual.gpu;
        let room = s.simulated_room_celsius.unwrap();
        worst_room = worst_room.max((room - s.setpoint_celsius).abs());
    }
    let rms = (sq / f64::from(n)).sqrt();
    let rms_steady = (sq_steady / f64::from(n_steady.max(1))).sqrt();
    let (asic_w, gpu_w) = (asic_w / f64::from(n), gpu_w / f64::from(n));
    eprintln!(
        "budget adherence, RMS (actual - budget)/max_power: {:.2} % over all {n} ticks, \
         {:.2} % over the {n_steady} steady-state ticks; worst room error {worst_room:.3} K; \
         mean ASIC {asic_w:.0} W, GPU {gpu_w:.0} W",
        100.0 * rms,
        100.0 * rms_steady
    );
    assert!(worst_room < 0.5, "room off the setpoint by {worst_room} K");
    assert!(n_steady > n / 4, "only {n_steady} of {n} ticks steady");
    assert!(
        rms_steady < 0.02,
        "steady-state RMS budget error {rms_steady}"
    );
    // Both compute workloads took part in the heat.
    assert!(asic_w > 50.0 && gpu_w > 50.0, "{asic_w} {gpu_w}");

    // The accounts grow and name the job.
    let s = d.status.borrow().clone();
    let acc = &s.sched.accounts;
    assert!(acc.mining.joules > 0.0);
    let job = &acc.jobs[&id.0];
    assert!(job.joules > 0.0 && job.gpu_seconds > 0.0, "{job:?}");
    assert!(
        (job.earned - job.gpu_seconds * 0.01).abs() < 1e-9,
        "{job:?}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_is_kept_across_restarts_and_a_deadline_job_preempts_and_a_stopped_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A cold room: the budget is well above what the ASIC takes.
    cfg.simulation.initial_celsius = 15.0;
    cfg.gpu.runner.checkpoint_every_seconds = 0.2;
    let d = spawn_at_noon(cfg.clone()).await;

    // Invalid mixes are refused and name the field.
    let e = d
        .set_mix(Mix::Pinned {
            asic: 0.3,
            gpu: 0.6,
            strict: false,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("gpu:"), "{e}");
    // A strict 100:0 pin: the GPU gets nothing even with a job queued.
    let pin = Mix::Pinned {
        asic: 1.0,
        gpu: 0.0,
        strict: true,
    };
    d.set_mix(pin).await.unwrap();
    let slow = d.submit(long_job(0.001)).await.unwrap();
    let s = wait_for(&d, "the job started under the pin", |s| {
        s.sched.mix == Some(pin) && s.sched.queue.running.is_some()
    })
    .await;
    assert_eq!(s.sched.allocation.gpu_watts, 0.0);
    // Back to automatic: a job with a deadline arrives and takes the GPU from the running one.
    d.set_mix(Mix::Auto).await.unwrap();
    wait_for(&d, "GPU power", |s| s.sched.allocation.gpu_watts > 0.0).await;
    let store = d.store.clone();
    wait_until(|| store.checkpoint(slow).unwrap().is_some_and(|c| c.done > 0)).await;
    let mut urgent = long_job(0.002);
    urgent.job = GpuJob {
        kernel: KernelSpec::Matmul,
        inputs: synthetic_inputs(&KernelSpec::Matmul, &[128, 128, 128], 2).unwrap(),
    };
    urgent.lease.deadline_unix_s = Some(unix_now() + 3600.0);
    let urgent = d.submit(urgent).await.unwrap();
    wait_until(|| store.get(urgent).unwrap().state == JobState::Succeeded).await;
    let slow_reasons = reasons(&d, slow);
    assert!(
        slow_reasons
            .iter()
            .any(|r| r.starts_with(&format!("preempted by job {urgent}"))),
        "{slow_reasons:?}"
    );
    // The preempted job comes back from its checkpoint.
    wait_until(|| store.get(slow).unwrap().state == JobState::Running).await;
    assert!(
        reasons(&d, slow)
            .iter()
            .any(|r| r.starts_with("resumed from its checkpoint at unit")),
        "{:?}",
        reasons(&d, slow)
    );
    // A graceful stop pauses the running job with its checkpoint ...
    d.set_mix(pin).await.unwrap();
    d.shutdown().await;
    let (store_state, cp) = {
        let s = hearth::jobs::JobStore::open(dir.path(), Default::default()).unwrap();
        (s.get(slow).unwrap().state, s.checkpoint(slow).unwrap())
    };
    assert_eq!(store_state, JobState::Paused);
    assert!(cp.is_some());
    // ... and the next start resumes it, under the mix the owner set last.
    let d = spawn_at_noon(cfg).await;
    let s = wait_for(&d, "the job back on the GPU", |s| {
        s.sched.queue.running.is_some_and(|r| r.job == slow.0)
    })
    .await;
    assert_eq!(s.sched.mix, Some(pin));
    d.shutdown().await;
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn reasons(d: &DaemonHandle, id: JobId) -> Vec<String> {
    d.store
        .transitions(id)
        .unwrap()
        .into_iter()
        .map(|t| t.reason)
        .collect()
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
