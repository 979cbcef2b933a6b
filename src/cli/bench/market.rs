//! `hearth bench market`: the marketplace's matching rate and latencies on loopback.
//!
//! It starts a real `nats-server -js` (one, or a 3-node cluster with `--cluster`) on free
//! loopback ports, then N simulated heaters as tasks in this process. Each heater is the real
//! market device task ([`hearth::market::device`]) with its own key, connection and handle on
//! the shared durable consumer; only its compute is a stand-in: tiny jobs run on the CPU
//! reference kernels instead of a GPU. Every heater's room wants heat.
//!
//! Three phases:
//! 1. **throughput**: `--jobs` tiny jobs offered at once; jobs matched (accepted) and completed
//!    per second, from the first offer to the last completion event;
//! 2. **offer-to-start**: `--probes` jobs offered one at a time at `--probe-rate`, each timed
//!    from the offer to its `accepted` event (p50, p99);
//! 3. **redelivery**: one heater takes a job that never finishes and is then killed (its task
//!    aborted); the time from the kill until another heater accepts the job, against the ack
//!    wait.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;

use hearth::gpu::job::{Checkpoint, GpuJob, JobError, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::reference;
use hearth::gpu::runner::{JobHandle, JobOutcome, JobOutput, JobProgress};
use hearth::gpu::tensor::digest;
use hearth::jobs::{JobSpec, Lease};
use hearth::market::client::MarketClient;
use hearth::market::device::{self, Compute, Demand, DeviceConfig, DeviceHandle};
use hearth::market::receipt::DeviceKey;
use hearth::market::wire::{Event, EventKind};
use hearth::market::{new_job_id, LayoutConfig, MarketOffer};

use super::free_port;

/// `hearth bench market` options.
#[derive(clap::Args)]
pub struct MarketBenchArgs {
    /// Simulated heaters (tasks in this process, each with its own connection and consumer
    /// handle).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2000))]
    heaters: u32,
    /// Tiny jobs in the throughput phase.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    jobs: u32,
    /// Jobs timed one at a time in the offer-to-start phase.
    #[arg(long, default_value_t = 300)]
    probes: u32,
    /// Offers per second in the offer-to-start phase.
    #[arg(long, default_value_t = 100.0)]
    probe_rate: f64,
    /// The shared consumer's ack wait (redelivery after a heater dies takes this long), s.
    #[arg(long, default_value_t = 2.0)]
    ack_wait: f64,
    /// Run against a 3-node cluster (streams with 3 replicas) instead of one server.
    #[arg(long)]
    cluster: bool,
    /// Use this NATS server (URL list) instead of starting one.
    #[arg(long, value_name = "URL", conflicts_with = "cluster")]
    url: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What the bench measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `single` or `cluster-3`.
    pub nats: String,
    /// Heaters.
    pub heaters: u32,
    /// Jobs in the throughput phase.
    pub jobs: u32,
    /// Jobs accepted per second.
    pub matched_per_second: f64,
    /// Jobs completed (receipt published, offer acked) per second.
    pub completed_per_second: f64,
    /// Seconds from the first offer to the last completion.
    pub seconds: f64,
    /// Offer-to-start latency, ms.
    pub offer_to_start_p50_ms: f64,
    /// Offer-to-start latency, ms.
    pub offer_to_start_p99_ms: f64,
    /// Probes timed.
    pub probes: u32,
    /// Time from a heater's death to the job's acceptance elsewhere, s.
    pub redelivery_seconds: f64,
    /// The ack wait in force, s.
    pub ack_wait_seconds: f64,
}

/// Tiny jobs on the CPU reference kernels: the heaters' stand-in compute.
struct CpuCompute {
    next: AtomicU64,
    /// Jobs that never finish (the redelivery phase): their outcome senders, by run id.
    hang: bool,
    held: Mutex<HashMap<u64, HeldRun>>,
}

type HeldRun = (
    oneshot::Sender<JobOutcome>,
    watch::Sender<JobProgress>,
    watch::Sender<Option<Arc<Checkpoint>>>,
);

impl CpuCompute {
    fn new(hang: bool) -> Self {
        Self {
            next: AtomicU64::new(1),
            hang,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, id: u64) -> Option<HeldRun> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }
}

impl Compute for CpuCompute {
    fn adapter(&self) -> String {
        "cpu reference (bench)".into()
    }

    fn start(&self, job: GpuJob, _cp: Option<Checkpoint>) -> Result<JobHandle, JobError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let outputs = reference::expected(&job).ok_or_else(|| JobError::Invalid {
            field: "kernel".into(),
            msg: "no CPU reference for this kernel".into(),
        })?;
        let progress = JobProgress {
            done: 1,
            units: 1,
            chunks: 1,
            ..JobProgress::default()
        };
        let (ptx, prx) = watch::channel(progress);
        let (otx, orx) = oneshot::channel();
        let (ctx, crx) = watch::channel(None);
        if self.hang {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, (otx, ptx, ctx));
        } else {
            let secs = t0.elapsed().as_secs_f64();
            let _ = otx.send(JobOutcome::Succeeded(JobOutput {
                digest: digest(&outputs),
                outputs,
                gpu_seconds: secs,
                chunks: 1,
                joules: 0.0,
            }));
        }
        Ok(JobHandle {
            id,
            progress: prx,
            outcome: orx,
            checkpoint: crx,
        })
    }

    fn preempt(&self, id: u64) {
        if let Some((o, _, _)) = self.take(id) {
            let _ = o.send(JobOutcome::Preempted(Checkpoint {
                done: 0,
                state: Vec::new(),
            }));
        }
    }

    fn cancel(&self, id: u64) {
        if let Some((o, _, _)) = self.take(id) {
            let _ = o.send(JobOutcome::Failed(JobError::Cancelled));
        }
    }
}

/// The NATS servers the bench started, killed on drop.
struct Servers {
    children: Vec<Child>,
    dirs: Vec<std::path::PathBuf>,
    url: String,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn start_servers(cluster: bool) -> Result<Servers> {
    let bin = if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    };
    let n = if cluster { 3 } else { 1 };
    let ports: Vec<(u16, u16)> = (0..n)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_>>()?;
    let routes = ports
        .iter()
        .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut s = Servers {
        children: Vec::new(),
        dirs: Vec::new(),
        url: ports
            .iter()
            .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    for (i, (p, c)) in ports.iter().enumerate() {
        let dir =
            std::env::temp_dir().join(format!("hearth-bench-market-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new(bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &p.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            cmd.args(["-n", &format!("n{i}"), "--cluster_name", "bench"])
                .args(["--cluster", &format!("nats://127.0.0.1:{c}")])
                .args(["--routes", &routes]);
        }
        s.children.push(
            cmd.spawn()
                .with_context(|| format!("starting {bin} (apt-get install nats-server)"))?,
        );
        s.dirs.push(dir);
    }
    Ok(s)
}

/// Opens the market, retrying while a fresh server or cluster comes up.
async fn open_client(url: &str, layout: &LayoutConfig) -> Result<MarketClient> {
    let t0 = Instant::now();
    loop {
        match MarketClient::connect(url, None, layout).await {
            Ok(c) => return Ok(c),
            Err(e) if t0.elapsed() < Duration::from_secs(60) => {
                tracing::debug!(error = %e, "market not ready");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("the market did not come up"),
        }
    }
}

fn tiny_offer(deadline: u64) -> MarketOffer {
    let kernel = KernelSpec::Elementwise {
        op: ElementwiseOp::Add,
    };
    let inputs = reference::synthetic_inputs(&kernel, &[16], 1).unwrap_or_default();
    MarketOffer {
        job_id: new_job_id(),
        replica: 0,
        stored_inputs: None,
        spec: JobSpec {
            job: GpuJob { kernel, inputs },
            lease: Lease {
                tenant: "bench".into(),
                price_per_gpu_second: 0.01,
                deadline_unix_s: None,
                priority: 0,
            },
        },
        price_per_gpu_second: 0.01,
        deadline_unix_s: deadline,
        redundancy: 1,
    }
}

/// Event arrival times by job, from a plain subscription to every job's events.
#[derive(Default)]
struct Seen {
    accepted: HashMap<String, (Instant, String)>,
    completed: HashMap<String, Instant>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn wait_for(
    seen: &Arc<Mutex<Seen>>,
    limit: Duration,
    what: &str,
    f: impl Fn(&Seen) -> bool,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if f(&seen.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs the bench.
pub fn run(args: MarketBenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "nats {}: {} heaters, {} tiny jobs in {:.2} s",
            report.nats, report.heaters, report.jobs, report.seconds
        );
        println!(
            "  matched   {:>9.0} jobs/s\n  completed {:>9.0} jobs/s (goal >= 1000 with 100 heaters)",
            report.matched_per_second, report.completed_per_second
        );
        println!(
            "  offer-to-start p50 {:.2} ms, p99 {:.2} ms over {} probes (goal p99 < 100 ms)",
            report.offer_to_start_p50_ms, report.offer_to_start_p99_ms, report.probes
        );
        println!(
            "  redelivery after a heater died: {:.2} s (ack wait {:.1} s)",
            report.redelivery_seconds, report.ack_wait_seconds
        );
    }
    Ok(())
}

async fn bench(args: &MarketBenchArgs) -> Result<Report> {
    let servers = match &args.url {
        Some(_) => None,
        None => Some(start_servers(args.cluster)?),
    };
    let url = match (&args.url, &servers) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url.clone(),
        (None, None) => bail!("no server"),
    };
    let replicas = if args.cluster { 3 } else { 1 };
    let layout = LayoutConfig {
        replicas,
        ..LayoutConfig::default()
    };
    let client = open_client(&url, &layout).await?;
    let ack_wait = Duration::from_secs_f64(args.ack_wait.max(0.1));
    // The shared consumer is made here, so that its ack wait is the bench's.
    hearth::market::ensure_consumer(&client.layout().jobs, ack_wait).await?;

    // Every job's events, as they arrive.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let nc = hearth::market::conn::connect(&url, None, "hearth bench events")
        .await?
        .client();
    let mut sub = nc
        .subscribe(hearth::market::EVENTS_SUBJECTS)
        .await
        .context("subscribing to events")?;
    let s2 = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let now = Instant::now();
            let Ok(ev) = serde_json::from_slice::<Event>(&m.payload) else {
                continue;
            };
            let mut s = s2.lock().unwrap_or_else(|e| e.into_inner());
            match ev.kind {
                EventKind::Accepted { device, .. } => {
                    s.accepted.insert(ev.job_id, (now, device));
                }
                EventKind::Completed { .. } => {
                    s.completed.insert(ev.job_id, now);
                }
                _ => {}
            }
        }
    });

    // The heaters: real device tasks, every room wanting heat.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cfg = DeviceConfig {
        layout: layout.clone(),
        ack_wait,
        heartbeat: Duration::from_secs(5),
        fetch_wait: Duration::from_millis(500),
        ..DeviceConfig::new(url.clone())
    };
    let mut heaters: Vec<(DeviceHandle, watch::Sender<Demand>)> = Vec::new();
    let compute: Arc<dyn Compute> = Arc::new(CpuCompute::new(false));
    for _ in 0..args.heaters {
        let (tx, rx) = watch::channel(Demand {
            spare_gpu_watts: 300.0,
        });
        let h = device::spawn(
            cfg.clone(),
            DeviceKey::generate(),
            compute.clone(),
            rx,
            shutdown_rx.clone(),
        );
        heaters.push((h, tx));
    }
    // Wait until every heater has joined.
    let t0 = Instant::now();
    while heaters.iter().any(|(h, _)| !h.status.borrow().connected) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("heaters did not join the market within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = hearth::market::wire::now_unix_ms() / 1000 + 3600;

    // Phase 1: throughput.
    let offers: Vec<MarketOffer> = (0..args.jobs).map(|_| tiny_offer(deadline)).collect();
    let ids: Vec<String> = offers.iter().map(|o| o.job_id.clone()).collect();
    let start = Instant::now();
    let js = client.jetstream().clone();
    let mut acks = Vec::with_capacity(offers.len());
    for o in &offers {
        let body = serde_json::to_vec(o)?;
        acks.push(js.publish(o.subject(), body.into()).await?);
    }
    for a in acks {
        a.await.context("storing an offer")?;
    }
    let n = ids.len();
    wait_for(&seen, Duration::from_secs(600), "every completion", |s| {
        s.completed.len() >= n
    })
    .await?;
    let (matched_at, completed_at) = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = |xs: Vec<Instant>| xs.into_iter().max().unwrap_or(start);
        (
            last(
                ids.iter()
                    .filter_map(|i| s.accepted.get(i).map(|a| a.0))
                    .collect(),
            ),
            last(
                ids.iter()
                    .filter_map(|i| s.completed.get(i).copied())
                    .collect(),
            ),
        )
    };
    let seconds = completed_at.duration_since(start).as_secs_f64();
    let matched_per_second = n as f64 / matched_at.duration_since(start).as_secs_f64();
    let completed_per_second = n as f64 / seconds;

    // Phase 2: offer-to-start, one offer at a time.
    let gap = Duration::from_secs_f64(1.0 / args.probe_rate.max(0.1));
    let mut lat = Vec::new();
    for _ in 0..args.probes {
        let o = tiny_offer(deadline);
        let id = o.job_id.clone();
        let body = serde_json::to_vec(&o)?;
        let t = Instant::now();
        js.publish(o.subject(), body.into()).await?.await?;
        let id2 = id.clone();
        wait_for(
            &seen,
            Duration::from_secs(30),
            "a probe's start",
            move |s| s.accepted.contains_key(&id2),
        )
        .await?;
        let at = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted
            .get(&id)
            .map(|a| a.0)
            .unwrap_or(t);
        lat.push(at.duration_since(t).as_secs_f64() * 1e3);
        tokio::time::sleep(gap.saturating_sub(t.elapsed())).await;
    }
    lat.sort_by(f64::total_cmp);

    // Phase 3: a heater takes a job that hangs, then dies; another heater gets it.
    for (_, d) in &heaters {
        d.send_replace(Demand::default());
    }
    // Let the pulls already out expire, so that only the victim takes the next offer.
    tokio::time::sleep(cfg.fetch_wait + Duration::from_millis(200)).await;
    let (tx, rx) = watch::channel(Demand {
        spare_gpu_watts: 300.0,
    });
    let victim = device::spawn(
        cfg.clone(),
        DeviceKey::generate(),
        Arc::new(CpuCompute::new(true)),
        rx,
        shutdown_rx.clone(),
    );
    let o = tiny_offer(deadline);
    let id = o.job_id.clone();
    client.offer(o).await?;
    let id2 = id.clone();
    wait_for(
        &seen,
        Duration::from_secs(30),
        "the victim's start",
        move |s| s.accepted.contains_key(&id2),
    )
    .await?;
    let first = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accepted
        .get(&id)
        .map(|a| a.1.clone())
        .unwrap_or_default();
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .accepted
        .remove(&id);
    victim.abort();
    drop(tx);
    let killed = Instant::now();
    for (_, d) in &heaters {
        d.send_replace(Demand {
            spare_gpu_watts: 300.0,
        });
    }
    let id2 = id.clone();
    wait_for(
        &seen,
        ack_wait * 4 + Duration::from_secs(30),
        "the redelivery",
        move |s| s.accepted.get(&id2).is_some_and(|a| a.1 != first),
    )
    .await?;
    let redelivered = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accepted
        .get(&id)
        .map_or(killed, |a| a.0);
    let redelivery_seconds = redelivered.duration_since(killed).as_secs_f64();

    let _ = shutdown_tx.send(true);
    for (h, _) in heaters {
        h.join().await;
    }
    watcher.abort();
    drop(servers);
    Ok(Report {
        nats: if args.cluster {
            "cluster-3".into()
        } else {
            "single".into()
        },
        heaters: args.heaters,
        jobs: args.jobs,
        matched_per_second,
        completed_per_second,
        seconds,
        offer_to_start_p50_ms: percentile(&lat, 0.5),
        offer_to_start_p99_ms: percentile(&lat, 0.99),
        probes: args.probes,
        redelivery_seconds,
        ack_wait_seconds: ack_wait.as_secs_f64(),
    })
}
