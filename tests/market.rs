//! The marketplace end to end: real `nats-server -js` processes (one, or a 3-node cluster), real
//! `hearth serve` daemons with simulated rooms and lavapipe GPUs, and the `hearth market` CLI.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use hearth::market::client::MarketClient;
use hearth::market::receipt::DeviceKey;
use hearth::market::wire::{self, Event, EventKind};
use hearth::market::{LayoutConfig, MarketOffer};

mod common;
use common::bin::{free_addr, hearth, ok};
use common::nats::NatsServer;
use common::prom;
use common::reference_digest;
use common::serve::serve;

/// A `hearth serve` on the market, killed when the test ends.
struct Heater {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: String,
    metrics: String,
}

impl Drop for Heater {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A room at 15 °C wants heat; one at 28 °C (setpoint 21) wants none.
const COLD: f64 = 15.0;
const WARM: f64 = 28.0;

impl Heater {
    fn start(url: &str, room_celsius: f64, replicas: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let mut h = Self {
            child: None,
            dir,
            addr,
            metrics: free_addr(),
        };
        h.spawn(url, room_celsius, replicas);
        h
    }

    fn spawn(&mut self, url: &str, room_celsius: f64, replicas: usize) {
        let child = serve("20", &self.addr, self.dir.path(), &self.metrics)
            .env(
                "HEARTH_SIMULATION__INITIAL_CELSIUS",
                room_celsius.to_string(),
            )
            .env("HEARTH_MINING__ENABLED", "false")
            .env("HEARTH_GPU__ADAPTER", "software")
            .env("HEARTH_GPU__RUNNER__CHECKPOINT_EVERY_SECONDS", "0.2")
            // Under 2 MB per job: the oversized offer below must be refused.
            .env("HEARTH_GPU__RUNNER__LIMITS__MAX_JOB_BYTES", "2000000")
            .env("HEARTH_MARKET__ENABLED", "true")
            .env("HEARTH_MARKET__URL", url)
            .env("HEARTH_MARKET__REPLICAS", replicas.to_string())
            .env("HEARTH_MARKET__ACK_WAIT_SECONDS", "3")
            .env("HEARTH_MARKET__HEARTBEAT_SECONDS", "0.5")
            .env("HEARTH_MARKET__DEVICE_TTL_SECONDS", "3")
            .env("HEARTH_MARKET__PREEMPT_AFTER_SECONDS", "0.5")
            .env("HEARTH_LOG", "info")
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The device id, once the daemon has created its key.
    async fn device_id(&self) -> String {
        let path = self.dir.path().join("market-device.key");
        let t0 = Instant::now();
        while !path.exists() {
            assert!(t0.elapsed() < Duration::from_secs(60), "no device key");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        DeviceKey::load_or_create(&path).unwrap().device_id()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A Prometheus scrape of the daemon: the body.
    fn scrape(&self) -> String {
        self.try_scrape().unwrap()
    }

    /// A scrape, or why there is none (the daemon is not listening yet, or no more).
    fn try_scrape(&self) -> std::io::Result<String> {
        prom::body(&self.metrics)
    }

    /// Polls the scrape until metric `name` satisfies `want`; returns that scrape.
    fn wait_metric(&self, name: &str, want: impl Fn(f64) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(m) = self.try_scrape() {
                if prom::value(&m, name).is_some_and(&want) {
                    return m;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} never as wanted: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Runs a `hearth` owner command against this daemon.
    fn owner(&self, args: &[&str]) -> Output {
        hearth()
            .args(args)
            .args(["--addr", &format!("http://{}", self.addr), "--data-dir"])
            .arg(self.dir.path())
            .output()
            .unwrap()
    }
}

/// `hearth market ARGS --url URL`, run to the end (off the async runtime's threads).
async fn market(url: &str, args: &[&str]) -> Output {
    let mut cmd = hearth();
    cmd.arg("market").args(args).args(["--url", url]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Submits with the CLI; returns the job id.
async fn submit(url: &str, args: &[&str]) -> String {
    let out = market(url, &[&["submit"], args].concat()).await;
    ok(&out).trim().to_string()
}

async fn client(url: &str, replicas: usize) -> MarketClient {
    let js = NatsServer::jetstream(url).await;
    MarketClient::open(
        js,
        &LayoutConfig {
            replicas,
            device_ttl: Duration::from_secs(3),
            ..LayoutConfig::default()
        },
    )
    .await
    .unwrap()
}

/// Waits until `f` holds for the job's events.
async fn until(
    c: &MarketClient,
    job: &str,
    what: &str,
    limit: Duration,
    f: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let t0 = Instant::now();
    loop {
        // A cluster that is electing a new leader answers with errors for a while.
        let evs = match c.events(job).await {
            Ok(evs) => evs,
            Err(e) => {
                assert!(t0.elapsed() < limit, "events of job {job}: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if f(&evs) {
            return evs;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out waiting for {what} of job {job}; events: {evs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a copy of the job has completed.
async fn until_completed(c: &MarketClient, job: &str, limit: Duration) -> Vec<Event> {
    until(c, job, "completion", limit, |e| !completed(e).is_empty()).await
}

/// A server, two cold heaters, and a long job that one of them took and checkpointed.
struct LongJob {
    a: Heater,
    b: Heater,
    ida: String,
    idb: String,
    c: MarketClient,
    job: String,
    /// The heater that took it.
    first: String,
    _server: NatsServer,
}

async fn long_job_on_two_heaters() -> LongJob {
    let server = NatsServer::start();
    let url = server.url.clone();
    let a = Heater::start(&url, COLD, 1);
    let b = Heater::start(&url, COLD, 1);
    let (ida, idb) = (a.device_id().await, b.device_id().await);
    let c = client(&url, 1).await;
    let job = submit(&url, &LONG).await;
    let evs = until(
        &c,
        &job,
        "a stored checkpoint",
        Duration::from_secs(120),
        has_checkpoint,
    )
    .await;
    let first = accepted_by(&evs).remove(0);
    LongJob {
        a,
        b,
        ida,
        idb,
        c,
        job,
        first,
        _server: server,
    }
}

fn completed(evs: &[Event]) -> Vec<&wire::Event> {
    evs.iter()
        .filter(|e| matches!(e.kind, EventKind::Completed { .. }))
        .collect()
}

fn receipt_devices(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Completed { receipt } => Some(receipt.receipt.device_id.clone()),
            _ => None,
        })
        .collect()
}

fn accepted_by(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Accepted { device, .. } => Some(device.clone()),
            _ => None,
        })
        .collect()
}

fn has_checkpoint(evs: &[Event]) -> bool {
    evs.iter()
        .any(|e| matches!(e.kind, EventKind::Progress { done, .. } if done > 0))
}

/// A long job (many checkpoints) and a short one.
const LONG: [&str; 6] = [
    "mlp_train",
    "--size",
    "4096,32,64,4",
    "--epochs",
    "40",
    "--price=0.01",
];
const SHORT: [&str; 4] = ["matmul", "--size", "64,64,64", "--price=0.01"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_warm_demand_takes_work_redundancy_agrees_and_tampering_is_caught() {
    let server = NatsServer::start();
    let url = server.url.clone();
    let a = Heater::start(&url, COLD, 1);
    let b = Heater::start(&url, COLD, 1);
    let warm = Heater::start(&url, WARM, 1);
    let (ida, idb, idw) = (
        a.device_id().await,
        b.device_id().await,
        warm.device_id().await,
    );
    let c = client(&url, 1).await;

    // All three register; the warm room has no spare heat.
    let t0 = Instant::now();
    loop {
        let devs = c.devices().await.unwrap();
        if devs.len() == 3 && devs.iter().filter(|d| d.spare_watts > 0.0).count() == 2 {
            let w = devs.iter().find(|d| d.device_id == idw).unwrap();
            assert_eq!(w.spare_watts, 0.0);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "devices: {devs:#?}\n{}",
            warm.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = ok(&market(&url, &["devices"]).await);
    for id in [&ida, &idb, &idw] {
        assert!(listed.contains(id.as_str()), "{listed}");
    }

    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(submit(&url, &SHORT).await);
    }
    let red = submit(&url, &[&SHORT[..], &["--redundancy", "2"]].concat()).await;
    let mut devices_used = std::collections::BTreeSet::new();
    for j in &jobs {
        let evs = until_completed(&c, j, Duration::from_secs(90)).await;
        devices_used.extend(receipt_devices(&evs));
        for d in accepted_by(&evs) {
            assert_ne!(d, idw, "the warm heater took job {j}");
        }
    }
    assert!(!devices_used.contains(&idw));
    // Operators see it in the metrics: connected, and the warm heater has no headroom.
    let done = |h: &Heater| {
        let m = h.scrape();
        assert!(m.contains("hearth_market_connected 1"), "{m}");
        prom::value(&m, "hearth_market_jobs_total{outcome=\"completed\"}").map_or(0, |n| n as u64)
    };
    // The scrape follows the status snapshot, a tick or so behind the last completion.
    let t0 = Instant::now();
    while done(&a) + done(&b) < 6 {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", a.scrape());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done(&warm), 0);
    assert!(warm.scrape().contains("hearth_market_headroom_watts 0"));
    let evs = until(&c, &red, "two receipts", Duration::from_secs(90), |e| {
        completed(e).len() >= 2
    })
    .await;
    let mut two = receipt_devices(&evs);
    two.sort();
    two.dedup();
    assert_eq!(two.len(), 2, "redundancy 2 ran on {two:?}");
    assert!(!two.contains(&idw));

    // The CLI verifies both receipts and that the digests agree.
    let out_dir = tempfile::tempdir().unwrap();
    let text = ok(&market(
        &url,
        &["result", &red, "--out", out_dir.path().to_str().unwrap()],
    )
    .await);
    assert!(text.contains("2 devices agree"), "{text}");
    assert_eq!(text.matches("verified: device").count(), 2, "{text}");
    let want = reference_digest(&SHORT[..3]);
    assert!(text.contains(&want), "want digest {want}: {text}");
    assert!(out_dir.path().join("output.npy").exists());
    let status = ok(&market(&url, &["status", &red]).await);
    for e in ["offered", "accepted", "completed"] {
        assert!(status.contains(e), "{status}");
    }

    // A tampered result: the digest no longer matches the receipt.
    let job = &jobs[0];
    let evs = c.events(job).await.unwrap();
    let dev = receipt_devices(&evs).remove(0);
    let name = wire::result_object(job, &dev);
    let good = wire::get_blob(&c.layout().blobs, &name)
        .await
        .unwrap()
        .unwrap();
    let mut t = wire::unpack(&good).unwrap();
    t[0].data[0] += 1.0;
    wire::put_blob(&c.layout().blobs, &name, &wire::pack(&t))
        .await
        .unwrap();
    let out = market(
        &url,
        &["result", job, "--out", out_dir.path().to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHA-256") && err.contains(&dev), "{err}");
    wire::put_blob(&c.layout().blobs, &name, &good)
        .await
        .unwrap();
    ok(&market(
        &url,
        &["result", job, "--out", out_dir.path().to_str().unwrap()],
    )
    .await);

    // A tampered receipt (more joules billed), republished as the device's latest.
    let mut r = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Completed { receipt } => Some(receipt.clone()),
            _ => None,
        })
        .unwrap();
    r.receipt.joules *= 10.0;
    hearth::market::conn::publish_event(c.jetstream(), job, EventKind::Completed { receipt: r })
        .await
        .unwrap();
    let out = market(
        &url,
        &["result", job, "--out", out_dir.path().to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature does not verify"), "{err}");

    // A different result under a valid signature from another key is caught too: redundancy
    // with a mismatching copy is reported loudly.
    let other = DeviceKey::generate();
    let name = wire::result_object(&red, &other.device_id());
    let mut t = wire::unpack(&good).unwrap();
    t[0].data[1] -= 1.0;
    wire::put_blob(&c.layout().blobs, &name, &wire::pack(&t))
        .await
        .unwrap();
    let forged = other.sign(hearth::market::receipt::Receipt {
        job_id: red.clone(),
        replica: 1,
        device_id: String::new(),
        public_key: String::new(),
        result_sha256: hearth::gpu::tensor::digest(&t),
        joules: 1.0,
        gpu_seconds: 0.1,
        units: 1,
        resumed_at: 0,
        finished_unix_ms: wire::now_unix_ms(),
    });
    hearth::market::conn::publish_event(
        c.jetstream(),
        &red,
        EventKind::Completed { receipt: forged },
    )
    .await
    .unwrap();
    let out = market(
        &url,
        &["result", &red, "--out", out_dir.path().to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MISMATCH"), "{err}");
    drop((a, b, warm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_heater_s_job_is_redelivered_and_resumed_from_its_checkpoint() {
    let LongJob {
        mut a,
        mut b,
        ida,
        idb,
        c,
        job,
        first,
        _server,
    } = long_job_on_two_heaters().await;
    let (victim, survivor) = if first == ida {
        (&mut a, idb.clone())
    } else {
        (&mut b, ida.clone())
    };
    victim.kill();
    let evs = until_completed(&c, &job, Duration::from_secs(180)).await;
    let resumed = evs.iter().find_map(|e| match &e.kind {
        EventKind::Accepted {
            device, resumed_at, ..
        } if *device == survivor => Some(*resumed_at),
        _ => None,
    });
    assert!(
        resumed.is_some_and(|r| r > 0),
        "the survivor did not resume from the checkpoint: {evs:#?}"
    );
    let receipt = match &completed(&evs)[0].kind {
        EventKind::Completed { receipt } => receipt.clone(),
        _ => unreachable!(),
    };
    assert_eq!(receipt.receipt.device_id, survivor);
    let want = reference_digest(&LONG[..5]);
    assert_eq!(receipt.receipt.result_sha256, want);
    let r = c.result(&job).await.unwrap();
    assert_eq!(hearth::gpu::tensor::digest(&r.outputs), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_warming_mid_job_gives_the_job_back_and_it_completes_elsewhere() {
    let LongJob {
        a,
        b,
        ida,
        c,
        job,
        first,
        _server,
        ..
    } = long_job_on_two_heaters().await;
    let warmed = if first == ida { &a } else { &b };
    // The owner turns the thermostat down: the 15 °C room is now warmer than wanted.
    ok(&warmed.owner(&["setpoint", "10"]));
    let evs = until_completed(&c, &job, Duration::from_secs(180)).await;
    let preempted = evs.iter().find_map(|e| match &e.kind {
        EventKind::Preempted { device, done, .. } => Some((device.clone(), *done)),
        _ => None,
    });
    let (by, done) = preempted.unwrap_or_else(|| panic!("no preemption: {evs:#?}"));
    assert_eq!(by, first);
    assert!(done > 0);
    let finisher = receipt_devices(&evs).remove(0);
    assert_ne!(finisher, first);
    assert_eq!(
        c.result(&job).await.unwrap().receipts[0]
            .receipt
            .result_sha256,
        reference_digest(&LONG[..5])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_terminated_with_a_reason_and_the_device_carries_on() {
    let server = NatsServer::start();
    let url = server.url.clone();
    let a = Heater::start(&url, COLD, 1);
    a.device_id().await;
    let c = client(&url, 1).await;

    let good: MarketOffer = {
        let id = submit(&url, &SHORT).await;
        until_completed(&c, &id, Duration::from_secs(90)).await;
        // A valid offer to mutate: rebuild one from the CLI's job.
        let spec = hearth::jobs::JobSpec {
            job: hearth::gpu::job::GpuJob {
                kernel: hearth::gpu::job::KernelSpec::Matmul,
                inputs: hearth::gpu::reference::synthetic_inputs(
                    &hearth::gpu::job::KernelSpec::Matmul,
                    &[8, 8, 8],
                    1,
                )
                .unwrap(),
            },
            lease: hearth::jobs::Lease {
                tenant: "t".into(),
                price_per_gpu_second: 0.01,
                deadline_unix_s: None,
                priority: 0,
            },
        };
        MarketOffer {
            job_id: String::new(),
            replica: 0,
            stored_inputs: None,
            spec,
            price_per_gpu_second: 0.01,
            deadline_unix_s: wire::now_unix_ms() / 1000 + 3600,
            redundancy: 1,
        }
    };
    let reason_of = |evs: &[Event]| {
        evs.iter().find_map(|e| match &e.kind {
            EventKind::Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    };
    let failed = |e: &[Event]| reason_of(e).is_some();

    // A past deadline.
    let mut o = good.clone();
    o.job_id = "past-deadline".into();
    o.deadline_unix_s = 1;
    c.offer(o).await.unwrap();
    // Invalid WGSL.
    let mut o = good.clone();
    o.job_id = "bad-wgsl".into();
    o.spec.job.kernel = hearth::gpu::job::KernelSpec::Custom {
        wgsl: "@compute fn main( {".into(),
        entry_point: "main".into(),
        workgroups: [1, 1, 1],
        outputs: vec![4],
    };
    o.spec.job.inputs.clear();
    c.offer(o).await.unwrap();
    // Tensors over this device's 2 MB job cap (3 MiB of inputs: they go via the object store).
    let big = hearth::gpu::reference::synthetic_inputs(
        &hearth::gpu::job::KernelSpec::Matmul,
        &[512, 768, 512],
        1,
    )
    .unwrap();
    let mut o = good.clone();
    o.spec.job.inputs = big;
    let oversized = c
        .submit(o.spec.clone(), 0.01, o.deadline_unix_s, 1)
        .await
        .unwrap();
    // An unknown kernel and plain garbage.
    let mut v = serde_json::to_value(&good).unwrap();
    v["job_id"] = "unknown-kernel".into();
    v["spec"]["job"]["kernel"] = serde_json::json!({"type": "fft"});
    c.offer_raw("fft", serde_json::to_vec(&v).unwrap())
        .await
        .unwrap();
    c.offer_raw("matmul", b"{not json".to_vec()).await.unwrap();

    for (job, want) in [
        ("past-deadline", "deadline_unix_s"),
        ("bad-wgsl", "wgsl"),
        (oversized.as_str(), "max_job_bytes"),
        ("unknown-kernel", "malformed offer"),
        ("malformed", "malformed offer"),
    ] {
        let evs = until(&c, job, "a failed event", Duration::from_secs(60), failed).await;
        let reason = reason_of(&evs).unwrap();
        assert!(
            reason.to_lowercase().contains(&want.to_lowercase()),
            "{job}: {reason}"
        );
    }
    // Nothing bad is left in the work queue, and the device still takes work.
    let id = submit(&url, &SHORT).await;
    until_completed(&c, &id, Duration::from_secs(90)).await;
    let mut jobs = c.layout().jobs.clone();
    assert_eq!(jobs.info().await.unwrap().state.messages, 0);
    assert!(!a.log().contains("panicked"), "{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_flowing_when_a_node_of_a_3_node_cluster_dies() {
    let mut nodes = NatsServer::cluster();
    let urls = nodes
        .iter()
        .map(|n| n.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    // Wait for the cluster to elect a meta leader: the layout with 3 replicas succeeds.
    let c = {
        let t0 = Instant::now();
        loop {
            let js = NatsServer::jetstream(&nodes[0].url).await;
            match MarketClient::open(
                js,
                &LayoutConfig {
                    replicas: 3,
                    device_ttl: Duration::from_secs(3),
                    ..LayoutConfig::default()
                },
            )
            .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(60), "cluster: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let a = Heater::start(&urls, COLD, 3);
    let b = Heater::start(&urls, COLD, 3);
    a.device_id().await;
    b.device_id().await;
    let mut before = Vec::new();
    for _ in 0..4 {
        before.push(submit(&urls, &[&SHORT[..], &["--replicas", "3"]].concat()).await);
    }
    until_completed(&c, &before[0], Duration::from_secs(90)).await;
    nodes[0].kill();
    let c = {
        let js = NatsServer::jetstream(&nodes[1].url).await;
        let t0 = Instant::now();
        loop {
            match MarketClient::open(
                js.clone(),
                &LayoutConfig {
                    replicas: 3,
                    device_ttl: Duration::from_secs(3),
                    ..LayoutConfig::default()
                },
            )
            .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(60),
                        "after the kill: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let rest = format!("{},{}", nodes[1].url, nodes[2].url);
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(submit(&rest, &[&SHORT[..], &["--replicas", "3"]].concat()).await);
    }
    for j in before.iter().chain(&after) {
        until_completed(&c, j, Duration::from_secs(120)).await;
    }
    let mut jobs = c.layout().jobs.clone();
    assert_eq!(jobs.info().await.unwrap().state.messages, 0);
    drop((a, b));
}

#[test]
fn bench_market_reports_rates_latencies_and_redelivery() {
    let out = hearth()
        .args(["bench", "market", "--heaters", "4", "--jobs", "60"])
        .args(["--probes", "10", "--ack-wait", "1", "--json"])
        .output()
        .unwrap();
    let text = ok(&out);
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["nats"], "single");
    assert_eq!(r["jobs"], 60);
    for k in [
        "matched_per_second",
        "completed_per_second",
        "offer_to_start_p50_ms",
        "offer_to_start_p99_ms",
    ] {
        assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {text}");
    }
    // Redelivery waits out the ack wait: it cannot come sooner.
    let redelivery = r["redelivery_seconds"].as_f64().unwrap();
    assert!(redelivery >= 0.9, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_outage_leaves_heating_alone_and_the_heater_rejoins() {
    let mut server = NatsServer::start();
    let url = server.url.clone();
    let a = Heater::start(&url, COLD, 1);
    let id = a.device_id().await;
    let connected = |want: f64| a.wait_metric("hearth_market_connected", |v| v == want);
    connected(1.0);
    server.kill();
    let before = connected(0.0);
    // The thermostat goes on: ticks advance and the cold room still gets its heat budget.
    std::thread::sleep(Duration::from_secs(2));
    let after = a.scrape();
    let ticks = |m: &str| prom::value(m, "hearth_control_ticks_total").unwrap();
    assert!(ticks(&after) > ticks(&before) + 10.0, "{after}");
    assert!(prom::value(&after, "hearth_heat_budget_watts").unwrap() > 0.0);
    assert!(a.log().contains("market session ended"), "{}", a.log());

    server.restart();
    connected(1.0);
    let c = client(&url, 1).await;
    let job = submit(&url, &SHORT).await;
    let evs = until_completed(&c, &job, Duration::from_secs(90)).await;
    assert_eq!(receipt_devices(&evs), vec![id]);
}

/// A heater that finished one copy of a redundant job and then restarts does not take the other
/// copy: its result object in the market's store remembers the copy across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_heater_does_not_run_a_second_copy_of_a_redundant_job() {
    let server = NatsServer::start();
    let url = server.url.clone();
    let mut a = Heater::start(&url, COLD, 1);
    let ida = a.device_id().await;
    let c = client(&url, 1).await;
    let job = submit(&url, &[&SHORT[..], &["--redundancy", "2"]].concat()).await;
    until_completed(&c, &job, Duration::from_secs(120)).await;

    a.kill();
    a.spawn(&url, COLD, 1);
    // Back on the market, it is offered the other copy and passes it on, again and again.
    const DECLINED: &str = "hearth_market_jobs_total{outcome=\"declined\"}";
    let m = a.wait_metric(DECLINED, |n| n >= 3.0);
    assert_eq!(
        prom::value(&m, "hearth_market_jobs_total{outcome=\"accepted\"}"),
        Some(0.0),
        "{m}"
    );

    // Another heater runs it.
    let b = Heater::start(&url, COLD, 1);
    let idb = b.device_id().await;
    let evs = until(&c, &job, "two receipts", Duration::from_secs(120), |e| {
        completed(e).len() >= 2
    })
    .await;
    let mut devices = receipt_devices(&evs);
    devices.sort();
    let mut want = vec![ida, idb];
    want.sort();
    assert_eq!(devices, want);
    let out_dir = tempfile::tempdir().unwrap();
    ok(&market(
        &url,
        &["result", &job, "--out", out_dir.path().to_str().unwrap()],
    )
    .await);
}
