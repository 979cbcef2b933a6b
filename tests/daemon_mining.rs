//! The daemon mining end to end, in real time: the control loop's heat budget drives the
//! software ASIC, which mines against the in-process local pool; the status snapshot reports it.

use hearth::clock::Clock;
use hearth::config::Config;
use hearth::daemon::spawn;
use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::reference::synthetic_inputs;
use hearth::jobs::{JobSpec, Lease};
use hearth::status::{GpuState, Status};
use hearth::thermal::safety::ChipReading;
use std::time::Duration;

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.control.tick_seconds = 0.1;
    // Cold room: the budget is high whatever the schedule says.
    cfg.simulation.initial_celsius = 15.0;
    cfg.mining.asic.chips = 1;
    cfg.mining.local_pool.initial_difficulty = 2e-4;
    cfg.jobs.data_dir = Some(tempfile::tempdir().unwrap().keep());
    cfg
}

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Status>,
    what: &str,
    f: impl Fn(&Status) -> bool,
) -> Status {
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mines_against_the_embedded_pool_and_fails_cold_on_a_trip() {
    let d = spawn(config(), Clock::starting_at(12.0 * 3600.0, 0, 1.0))
        .await
        .unwrap();
    let mut rx = d.status.clone();
    let s = wait_for(&mut rx, "3 accepted shares", |s| {
        s.mining.as_ref().is_some_and(|m| m.shares.accepted >= 3)
    })
    .await;
    let m = s.mining.unwrap();
    assert!(m.connected);
    assert!(m.pool.unwrap().starts_with("stratum+tcp://127.0.0.1:"));
    assert!(m.hashes_per_second > 0.0);
    // The kernel was measured fastest among those this CPU has, not forced.
    assert!(!m.kernel_forced);
    assert_eq!(m.kernel, hearth::mining::sha256d::Kernel::best());
    assert!(m.kernel.is_supported());
    assert!(
        m.power_watts > 20.0 && m.power_watts <= 400.0,
        "{}",
        m.power_watts
    );
    assert!(m.target_watts <= s.budget_watts + 1e-9);
    // The GPU (lavapipe in CI) is open and shown as software; with no job it gets nothing.
    assert!(
        matches!(&s.gpu, Some(GpuState::Ready(g)) if g.adapter.software && g.target_watts == 0.0),
        "{:?}",
        s.gpu
    );
    // A queued job gets what the ASIC leaves.
    let kernel = KernelSpec::MlpTrain {
        lr: 0.1,
        batch: 32,
        epochs: 2000,
    };
    let inputs = synthetic_inputs(&kernel, &[1024, 16, 32, 4], 1).unwrap();
    let id = d
        .submit(JobSpec {
            job: GpuJob { kernel, inputs },
            lease: Lease {
                tenant: "t1".into(),
                price_per_gpu_second: 0.01,
                deadline_unix_s: None,
                priority: 0,
            },
        })
        .await
        .unwrap();
    let s = wait_for(
        &mut rx,
        "a GPU target",
        |s| matches!(&s.gpu, Some(GpuState::Ready(g)) if g.target_watts > 0.0),
    )
    .await;
    let Some(GpuState::Ready(g)) = &s.gpu else {
        unreachable!()
    };
    assert!(g.adapter.software, "{:?}", g.adapter);
    assert!(g.target_watts <= s.budget_watts + 1e-9);
    let s = wait_for(&mut rx, "the job on the GPU", |s| {
        s.sched.queue.running.is_some_and(|r| r.job == id.0)
    })
    .await;
    assert!(s.sched.allocation.total() <= s.budget_watts + 1e-9);

    // The ASIC reports its own (modelled, cool) chips into the safety hook.
    assert!(d
        .chips
        .snapshot()
        .iter()
        .any(|c| c.chip == "asic0" && c.celsius < c.limit_celsius));
    // Another engine's chip overheats: the budget and the board go to 0 W.
    d.chips.report(ChipReading {
        chip: "gpu0".into(),
        celsius: 99.0,
        limit_celsius: 90.0,
        at_s: None,
    });
    let s = wait_for(&mut rx, "every workload off", |s| {
        s.budget_watts == 0.0
            && s.mining.as_ref().is_some_and(|m| m.power_watts == 0.0)
            && matches!(&s.gpu, Some(GpuState::Ready(g)) if g.target_watts == 0.0)
            && s.sched.actual.total == 0.0
    })
    .await;
    assert!(!s.trips.is_empty());
    assert_eq!(s.sched.allocation.total(), 0.0);
    d.shutdown().await;
}
