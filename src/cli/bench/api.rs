//! `hearth bench api`: durable job submits per second over gRPC, against the same load of
//! `grpc.health.v1` Check calls measured in the same run.
//!
//! The daemon runs as a child process (`hearth serve` on a fresh data dir, mining and GPU off
//! so that nothing but the API and the store uses the CPU), so its memory is its own. Each
//! client has its own connection and keeps one call in flight. After the submits, the daemon
//! is killed with SIGKILL and the store is opened to check that every acknowledged job is there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use hearth::api::auth::OWNER_TOKEN_FILE;
use hearth::api::pb;
use hearth::jobs::{JobState, JobStore, ListFilter, StoreLimits, SyncMode};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::free_port;

/// `hearth bench api` options.
#[derive(clap::Args)]
pub struct ApiBenchArgs {
    /// Concurrent clients, each on its own connection with one call in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// Calls of each kind (submits, and health checks for the baseline).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    jobs: u32,
    /// The store's sync mode: normal (survives kill -9) or full (fsync; survives power loss).
    #[arg(long, default_value = "normal")]
    sync: SyncMode,
    /// The daemon's `--max-in-flight`.
    #[arg(long, default_value_t = hearth::api::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: u32,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// One kind of call under load.
#[derive(Debug, Serialize)]
pub struct Load {
    /// Calls answered OK.
    pub calls: u64,
    /// Calls answered RESOURCE_EXHAUSTED (retried after a short backoff).
    pub rejected: u64,
    /// Wall seconds from the first call to the last answer.
    pub seconds: f64,
    /// OK calls per second.
    pub per_second: f64,
    /// Median latency of OK calls, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of OK calls, ms.
    pub p99_ms: f64,
    /// Slowest OK call, ms.
    pub max_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Clients.
    pub clients: u32,
    /// The store's sync mode.
    pub sync: SyncMode,
    /// The daemon's in-flight cap.
    pub max_in_flight: u32,
    /// `grpc.health.v1.Health/Check`, the baseline.
    pub health: Load,
    /// `hearth.v1.Jobs/SubmitJob` with a small inline matmul.
    pub submit: Load,
    /// submits/s ÷ health checks/s.
    pub ratio: f64,
    /// The daemon's resident memory before the load, MiB.
    pub rss_idle_mib: f64,
    /// The daemon's peak resident memory over the run (VmHWM), MiB.
    pub rss_peak_mib: f64,
    /// Acknowledged submits found QUEUED in the store after the daemon was SIGKILLed.
    pub found_after_kill: u64,
}

/// Kills the daemon and removes the scratch dir however the bench ends.
struct Scratch {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A field of `/proc/PID/status` in MiB (`VmRSS`, `VmHWM`).
fn proc_mib(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Starts `hearth serve` on a fresh data dir and waits until it answers health checks.
async fn start_daemon(scratch: &mut Scratch, args: &ApiBenchArgs) -> Result<(String, String)> {
    let data = scratch.dir.join("data");
    std::fs::create_dir_all(&data)?;
    let sync = args.sync.as_str();
    let cfg = scratch.dir.join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mining]\nenabled = false\n[gpu]\nenabled = false\n\
             [jobs]\nsync = \"{sync}\"\n[jobs.limits]\nmax_jobs_per_tenant = {}\n",
            u64::from(args.jobs) + 1
        ),
    )?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(scratch.dir.join("serve.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &addr, "--metrics-listen"])
        .arg(format!("127.0.0.1:{}", free_port()?))
        .args(["--max-in-flight", &args.max_in_flight.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting hearth serve")?;
    scratch.child = Some(child);
    let url = format!("http://{addr}");
    let t0 = Instant::now();
    loop {
        if let Some(c) = &mut scratch.child {
            if let Some(status) = c.try_wait()? {
                let log =
                    std::fs::read_to_string(scratch.dir.join("serve.log")).unwrap_or_default();
                bail!("hearth serve exited ({status}):\n{log}");
            }
        }
        if let Ok(ch) = Endpoint::from_shared(url.clone())?.connect().await {
            let ok = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok();
            if ok && data.join(OWNER_TOKEN_FILE).exists() {
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("hearth serve did not answer within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = std::fs::read_to_string(data.join(OWNER_TOKEN_FILE))?;
    Ok((url, format!("Bearer {}", token.trim())))
}

/// A small matmul (4×4 by 4×4) owned by `tenant`.
fn small_job(tenant: String) -> pb::JobSpec {
    let m: Vec<u8> = (0..16u32)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let tensor = || pb::TensorInput {
        source: Some(pb::tensor_input::Source::Inline(pb::Tensor {
            shape: vec![4, 4],
            data: m.clone(),
        })),
    };
    pb::JobSpec {
        kernel: Some(pb::Kernel {
            kind: Some(pb::kernel::Kind::Matmul(pb::MatmulKernel {})),
        }),
        inputs: vec![tensor(), tensor()],
        lease: Some(pb::Lease {
            tenant,
            price_per_gpu_second: 0.001,
            deadline: None,
            priority: 0,
        }),
    }
}

/// Which call a load phase makes.
#[derive(Clone, Copy)]
enum Call {
    Health,
    Submit,
}

/// Runs `n` calls of one kind from every client, one in flight per client.
async fn load(channels: &[Channel], auth: &str, n: u64, call: Call) -> Result<(Load, u64)> {
    let next = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(channels.len());
    for (c, ch) in channels.iter().enumerate() {
        let (next, rejected, failed) = (next.clone(), rejected.clone(), failed.clone());
        let ch = ch.clone();
        let auth: tonic::metadata::MetadataValue<_> = auth.parse()?;
        let tenant = format!("bench-{c}");
        tasks.push(tokio::spawn(async move {
            let mut health = HealthClient::new(ch.clone());
            let mut jobs = pb::jobs_client::JobsClient::new(ch);
            let mut lat = Vec::new();
            let mut backoff = 1u64;
            while !failed.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < n {
                loop {
                    let t = Instant::now();
                    let r = match call {
                        Call::Health => health
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .map(|_| ()),
                        Call::Submit => {
                            let mut req = Request::new(pb::SubmitJobRequest {
                                job: Some(small_job(tenant.clone())),
                            });
                            req.metadata_mut().insert("authorization", auth.clone());
                            jobs.submit_job(req).await.map(|_| ())
                        }
                    };
                    match r {
                        Ok(()) => {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                            backoff = 1;
                            break;
                        }
                        Err(s) if s.code() == Code::ResourceExhausted => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                            // Back off like a well-behaved client, with jitter by client.
                            let ms = backoff + (c as u64 % 7);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            backoff = (backoff * 2).min(50);
                        }
                        Err(s) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(s);
                        }
                    }
                }
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    for t in tasks {
        all.extend(t.await.context("client task")?.context("a call failed")?);
    }
    let seconds = t0.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let calls = all.len() as u64;
    Ok((
        Load {
            calls,
            rejected: rejected.load(Ordering::Relaxed),
            seconds,
            per_second: calls as f64 / seconds,
            p50_ms: percentile(&all, 0.50),
            p99_ms: percentile(&all, 0.99),
            max_ms: all.last().copied().unwrap_or(0.0),
        },
        calls,
    ))
}

/// Connects `n` clients, each on its own connection.
async fn connect(url: &str, n: u32) -> Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(
            Endpoint::from_shared(url.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .context("connecting a client")?,
        );
    }
    Ok(out)
}

/// Samples the daemon's RSS while `busy` is set; returns the largest sample, MiB.
fn sample_rss(pid: u32, busy: Arc<AtomicBool>, peak: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        while busy.load(Ordering::Relaxed) {
            if let Some(m) = proc_mib(pid, "VmRSS:") {
                peak.fetch_max((m * 1024.0) as usize, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Counts acknowledged jobs in the store after SIGKILL.
fn count_queued(data: &Path) -> Result<u64> {
    let store = JobStore::open(data, StoreLimits::default())?;
    let mut n = 0u64;
    let mut token = None;
    loop {
        let (page, next) = store.list(
            ListFilter {
                tenant: None,
                state: Some(JobState::Queued),
            },
            1000,
            token,
        )?;
        n += page.len() as u64;
        match next {
            Some(t) => token = Some(t),
            None => return Ok(n),
        }
    }
}

/// Runs the bench and prints its report.
pub fn run(args: ApiBenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("hearth-bench-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut scratch = Scratch { dir, child: None };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let report = rt.block_on(async {
        let (url, auth) = start_daemon(&mut scratch, &args).await?;
        let pid = scratch.child.as_ref().map(Child::id).unwrap_or(0);
        let channels = connect(&url, args.clients).await?;
        // Warm up both paths (connections, the store's caches) outside the measurement.
        let warm = u64::from(args.clients).max(200);
        load(&channels, &auth, warm, Call::Health).await?;
        let rss_idle_mib = proc_mib(pid, "VmRSS:").unwrap_or(0.0);
        let busy = Arc::new(AtomicBool::new(true));
        let peak = Arc::new(AtomicUsize::new(0));
        sample_rss(pid, busy.clone(), peak.clone());
        let n = u64::from(args.jobs);
        let (health, _) = load(&channels, &auth, n, Call::Health).await?;
        let (submit, acknowledged) = load(&channels, &auth, n, Call::Submit).await?;
        busy.store(false, Ordering::Relaxed);
        let hwm = proc_mib(pid, "VmHWM:").unwrap_or(0.0);
        let rss_peak_mib = hwm.max(peak.load(Ordering::Relaxed) as f64 / 1024.0);
        drop(channels);
        // SIGKILL: no shutdown, no checkpoint, no flush.
        if let Some(c) = &mut scratch.child {
            c.kill()?;
            c.wait()?;
        }
        scratch.child = None;
        let found_after_kill = count_queued(&scratch.dir.join("data"))?;
        if found_after_kill != acknowledged {
            bail!(
                "{acknowledged} submits were acknowledged but {found_after_kill} jobs are in \
                 the store after kill -9"
            );
        }
        anyhow::Ok(Report {
            clients: args.clients,
            sync: args.sync,
            max_in_flight: args.max_in_flight,
            ratio: submit.per_second / health.per_second,
            health,
            submit,
            rss_idle_mib,
            rss_peak_mib,
            found_after_kill,
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let r = &report;
    println!(
        "{} clients (one connection each, one call in flight), sync = {}, max in flight {}",
        r.clients,
        r.sync.as_str(),
        r.max_in_flight
    );
    println!(
        "  {:<28} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "call", "calls/s", "p50 ms", "p99 ms", "max ms", "rejected"
    );
    for (name, l) in [
        ("grpc.health.v1 Check (base)", &r.health),
        ("SubmitJob (durable)", &r.submit),
    ] {
        println!(
            "  {:<28} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9}",
            name, l.per_second, l.p50_ms, l.p99_ms, l.max_ms, l.rejected
        );
    }
    println!("  submit / health = {:.3}", r.ratio);
    println!(
        "  daemon RSS: {:.1} MiB idle, {:.1} MiB peak",
        r.rss_idle_mib, r.rss_peak_mib
    );
    println!(
        "  after kill -9: all {} acknowledged jobs are in the store",
        r.found_after_kill
    );
    Ok(())
}
