//! The Prometheus exporter end to end: a real daemon (simulated room at 30× speed, the software
//! ASIC mining against the local pool, no GPU), the exporter installed on a free port and fed by
//! `telemetry::run`, scraped with a plain HTTP/1.1 GET and checked against the status snapshots.
//!
//! The exporter's recorder is process-global, so this binary has a single test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth::config::Config;
use hearth::daemon::DaemonHandle;
use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobSpec, JobState, Lease};
use hearth::status::Status;
use hearth::telemetry::{self, TelemetryError, METRICS, WORKLOADS};
use hearth::thermal::safety::{ChipReading, TripKind};
use tokio::net::TcpStream;

mod common;
use common::bin::free_port;
use common::daemon::{spawn_at_noon, wait_for};
use common::prom::{scrape, Scrape};

/// Cold room: a steady, saturated budget; mining on, no GPU.
fn config(dir: &std::path::Path) -> Config {
    let mut cfg = common::daemon::config(dir);
    cfg.gpu.enabled = false;
    cfg
}

/// Scrapes until `f` holds.
async fn scrape_until(port: u16, what: &str, f: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(port).await;
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            s.values
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps every status snapshot the daemon publishes, by tick.
fn collect(d: &DaemonHandle) -> Arc<Mutex<BTreeMap<u64, Status>>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let (mut rx, out) = (d.status.clone(), seen.clone());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().clone();
            out.lock().unwrap().insert(s.tick, s);
        }
    });
    seen
}

fn job() -> JobSpec {
    let t = || Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    JobSpec {
        job: GpuJob {
            kernel: KernelSpec::Elementwise {
                op: ElementwiseOp::Add,
            },
            inputs: vec![t(), t()],
        },
        lease: Lease {
            tenant: "t1".into(),
            price_per_gpu_second: 0.01,
            deadline_unix_s: None,
            priority: 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_match_the_status_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    telemetry::install(([127, 0, 0, 1], port).into()).unwrap();
    // A second install fails clearly, and leaves nothing listening on its address.
    let other = free_port();
    let again = telemetry::install(([127, 0, 0, 1], other).into());
    assert!(
        matches!(again, Err(TelemetryError::AlreadyInstalled)),
        "{again:?}"
    );
    assert!(TcpStream::connect(("127.0.0.1", other)).await.is_err());

    let d = spawn_at_noon(config(dir.path())).await;
    let statuses = collect(&d);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let exporter = tokio::spawn(telemetry::run(d.status.clone(), d.store.clone(), stop_rx));
    let queued = d.submit(job()).await.unwrap();

    wait_for(
        &d,
        "an accepted share, a hashrate and a room reading",
        |s| {
            s.room_celsius.is_some()
                && s.outdoor_celsius.is_some()
                && s.mining
                    .as_ref()
                    .is_some_and(|m| m.shares.accepted >= 1 && m.hashes_per_second > 0.0)
        },
    )
    .await;
    let before = d.status.borrow().clone();
    let m = scrape_until(port, "the queued job and the snapshot's shares", |m| {
        m.values.get("hearth_jobs{state=\"QUEUED\"}") == Some(&1.0)
            && m.values.get("hearth_control_ticks_total") > Some(&(before.tick as f64))
    })
    .await;

    // Every family has its HELP and TYPE lines (rejections by code appear with the first
    // rejected share only, market jobs on a heater that joined a market only).
    for def in METRICS
        .iter()
        .filter(|d| d.name != telemetry::SHARES_REJECTED_TOTAL)
        .filter(|d| d.name != telemetry::MARKET_JOBS_TOTAL)
    {
        assert!(m.help.contains_key(def.name), "no HELP for {}", def.name);
        assert_eq!(
            m.types.get(def.name).map(String::as_str),
            Some(def.kind.as_str()),
            "{}",
            def.name
        );
    }

    // The gauges come from one snapshot: the one of the tick the scrape reports, or a
    // neighbour (a scrape can fall between two updates).
    let tick = m.get("hearth_control_ticks_total") as u64 - 1;
    let near: Vec<Status> = {
        let seen = statuses.lock().unwrap();
        seen.range(tick.saturating_sub(2)..=tick + 2)
            .map(|(_, s)| s.clone())
            .collect()
    };
    assert!(!near.is_empty(), "tick {tick} not seen");
    let matches = |name: &str, f: &dyn Fn(&Status) -> f64| {
        let v = m.get(name);
        assert!(
            near.iter().any(|s| f(s) == v),
            "{name} = {v}, snapshots near tick {tick} have {:?}",
            near.iter().map(f).collect::<Vec<_>>()
        );
    };
    matches("hearth_setpoint_celsius", &|s| s.setpoint_celsius);
    matches("hearth_heat_budget_watts", &|s| s.budget_watts);
    matches("hearth_unmet_watts", &|s| s.sched.allocation.unmet_watts);
    matches("hearth_room_temperature_celsius", &|s| {
        s.room_celsius.unwrap_or(f64::NAN)
    });
    matches("hearth_outdoor_temperature_celsius", &|s| {
        s.outdoor_celsius.unwrap_or(f64::NAN)
    });
    matches("hearth_power_watts{workload=\"asic\"}", &|s| {
        s.sched.actual.asic
    });
    matches("hearth_power_target_watts{workload=\"asic\"}", &|s| {
        s.sched.allocation.asic_watts
    });
    matches("hearth_hashrate_hashes_per_second", &|s| {
        s.mining.as_ref().map_or(0.0, |m| m.hashes_per_second)
    });
    matches("hearth_shares_total{result=\"accepted\"}", &|s| {
        s.mining.as_ref().map_or(0.0, |m| m.shares.accepted as f64)
    });
    matches("hearth_energy_joules_total{workload=\"asic\"}", &|s| {
        s.sched.accounts.mining.joules.floor()
    });
    assert!(m.get("hearth_heat_budget_watts") > 0.0);
    assert!(m.get("hearth_hashrate_hashes_per_second") > 0.0);
    assert_eq!(m.get("hearth_pool_connected"), 1.0);
    // Counters only rise: at least what the snapshot before the scrape had.
    let shares = before.mining.as_ref().unwrap().shares.accepted as f64;
    assert!(m.get("hearth_shares_total{result=\"accepted\"}") >= shares);
    assert!(m.get("hearth_shares_total{result=\"accepted\"}") >= 1.0);
    assert!(
        m.get("hearth_energy_joules_total{workload=\"asic\"}")
            >= before.sched.accounts.mining.joules.floor()
    );

    // Every label value is there.
    for (name, label) in [
        ("hearth_power_watts", "workload"),
        ("hearth_power_target_watts", "workload"),
        ("hearth_energy_joules_total", "workload"),
    ] {
        let got = m.by_label(name, label);
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            WORKLOADS
        );
    }
    assert_eq!(
        m.by_label("hearth_earnings_total", "workload")
            .keys()
            .collect::<Vec<_>>(),
        ["asic", "gpu"]
    );
    assert_eq!(m.get("hearth_power_watts{workload=\"gpu\"}"), 0.0);
    assert_eq!(m.get("hearth_gpu_utilisation_ratio"), 0.0);
    for r in ["accepted", "rejected", "stale"] {
        m.get(&format!("hearth_shares_total{{result=\"{r}\"}}"));
    }
    let jobs = m.by_label("hearth_jobs", "state");
    assert_eq!(jobs.len(), JobState::ALL.len());
    for st in JobState::ALL {
        let want = if st == JobState::Queued { 1.0 } else { 0.0 };
        assert_eq!(jobs[st.as_str()], want, "{st}");
    }
    assert!(d
        .store
        .get(queued)
        .is_ok_and(|j| j.state == JobState::Queued));
    for k in TripKind::ALL {
        assert_eq!(
            m.get(&format!("hearth_safety_trips{{reason=\"{}\"}}", k.as_str())),
            0.0
        );
        assert_eq!(
            m.get(&format!(
                "hearth_safety_trips_total{{reason=\"{}\"}}",
                k.as_str()
            )),
            0.0
        );
    }
    // The tick histogram: real buckets, every observation a tick's compute time.
    let count = m.get("hearth_control_tick_duration_seconds_count");
    assert!(count >= 1.0);
    assert!(m.get("hearth_control_tick_duration_seconds_sum") > 0.0);
    assert_eq!(
        m.get("hearth_control_tick_duration_seconds_bucket{le=\"+Inf\"}"),
        count
    );

    // A chip overheats: one trip latched and counted, the budget goes to 0 W.
    d.chips.report(ChipReading {
        chip: "gpu0".into(),
        celsius: 99.0,
        limit_celsius: 90.0,
        at_s: None,
    });
    let m = scrape_until(port, "the chip trip", |m| {
        m.values
            .get("hearth_safety_trips{reason=\"chip_over_temperature\"}")
            == Some(&1.0)
            && m.values.get("hearth_heat_budget_watts") == Some(&0.0)
    })
    .await;
    assert_eq!(
        m.get("hearth_safety_trips_total{reason=\"chip_over_temperature\"}"),
        1.0
    );
    assert_eq!(m.get("hearth_safety_trips{reason=\"loop_stall\"}"), 0.0);
    assert!(d
        .status
        .borrow()
        .trips
        .iter()
        .any(|t| t.kind == TripKind::ChipOverTemperature));

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), exporter)
        .await
        .expect("telemetry::run stops on shutdown")
        .unwrap();
    d.shutdown().await;
}
