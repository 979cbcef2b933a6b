//! `hearth market ...`: a tenant's client of the compute marketplace (NATS JetStream): offer a
//! job, follow its events, fetch its verified result, list the devices.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use hearth::jobs::{JobSpec, Lease};
use hearth::market::client::MarketClient;
use hearth::market::wire::{Event, EventKind};
use hearth::market::{MarketConfig, MAX_REDUNDANCY};

use super::client::rt;
use super::jobs::{write_outputs, JobArgs};

/// How to reach the market.
#[derive(clap::Args, Clone)]
pub struct MarketConn {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "HEARTH_MARKET_URL"
    )]
    url: String,
    /// A NATS `.creds` file.
    #[arg(long, value_name = "FILE", env = "HEARTH_MARKET_CREDS")]
    creds: Option<PathBuf>,
    /// Copies of each stream when the layout is created (3 on a 3-node cluster).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Machine-readable output (JSON).
    #[arg(long)]
    json: bool,
}

impl MarketConn {
    async fn client(&self) -> Result<MarketClient> {
        let layout = MarketConfig {
            replicas: self.replicas,
            ..MarketConfig::default()
        }
        .layout();
        Ok(MarketClient::connect(&self.url, self.creds.as_deref(), &layout).await?)
    }
}

/// `hearth market` subcommands.
#[derive(Subcommand)]
pub enum MarketAction {
    /// Offer a job to the market's heaters; prints its id once the offer is stored.
    Submit {
        /// The kernel and its inputs (or --spec FILE).
        #[command(flatten)]
        job: Box<JobArgs>,
        /// Who pays (A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "tenant")]
        tenant: String,
        /// Price per GPU-second.
        #[arg(long, default_value_t = 0.001)]
        price: f64,
        /// Deadline, seconds from now.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        deadline_in: u64,
        /// Devices that must each run it (their digests are compared).
        #[arg(long, default_value_t = 1)]
        redundancy: u8,
        /// Wait for the job, printing its events, then fetch and verify the result into --out.
        #[arg(long)]
        wait: bool,
        /// With --wait: where to write the outputs.
        #[arg(long, value_name = "DIR", requires = "wait")]
        out: Option<PathBuf>,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[command(flatten)]
        conn: MarketConn,
    },
    /// A job's events: offered, accepted, progress, preempted, completed, failed.
    Status {
        /// The market job id.
        job: String,
        #[command(flatten)]
        conn: MarketConn,
    },
    /// Fetch a job's result, verify every receipt's signature and the result's SHA-256, and
    /// compare the devices' digests; write the outputs as .npy into DIR.
    Result {
        /// The market job id.
        job: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        conn: MarketConn,
    },
    /// The heaters on the market now.
    Devices {
        #[command(flatten)]
        conn: MarketConn,
    },
}

/// Runs a `hearth market` subcommand.
pub fn run(action: MarketAction) -> Result<()> {
    rt()?.block_on(async move {
        match action {
            MarketAction::Submit {
                job,
                tenant,
                price,
                deadline_in,
                redundancy,
                wait,
                out,
                timeout,
                conn,
            } => {
                if !(1..=MAX_REDUNDANCY).contains(&redundancy) {
                    bail!("--redundancy {redundancy}: must be in 1..={MAX_REDUNDANCY}");
                }
                let (gpu_job, file) = job.load()?;
                let spec = JobSpec {
                    job: gpu_job,
                    lease: Lease {
                        tenant: file.tenant.unwrap_or(tenant),
                        price_per_gpu_second: file.price.unwrap_or(price),
                        deadline_unix_s: None,
                        priority: file.priority.unwrap_or(0),
                    },
                };
                let deadline = hearth::market::wire::now_unix_ms() / 1000 + deadline_in;
                let client = conn.client().await?;
                let id = client
                    .submit(spec, price, deadline, redundancy)
                    .await
                    .context("offering the job")?;
                if conn.json && !wait {
                    println!("{}", serde_json::json!({ "job_id": id }));
                } else {
                    println!("{id}");
                }
                if wait {
                    let json = conn.json;
                    let events = client
                        .wait(&id, redundancy, Duration::from_secs(timeout), |e| {
                            if !json {
                                eprintln!("{}", event_line(e));
                            }
                        })
                        .await?;
                    if let Some(Event {
                        kind: EventKind::Failed { reason, .. },
                        ..
                    }) = events.last()
                    {
                        bail!("job {id} failed: {reason}");
                    }
                    if let Some(dir) = out {
                        write_result(&client, &id, &dir, json).await?;
                    }
                }
                Ok(())
            }
            MarketAction::Status { job, conn } => {
                let client = conn.client().await?;
                let events = client.events(&job).await?;
                if events.is_empty() {
                    bail!("no events for job {job}: unknown job, or its events expired");
                }
                for e in &events {
                    if conn.json {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        println!("{}", event_line(e));
                    }
                }
                Ok(())
            }
            MarketAction::Result { job, out, conn } => {
                let client = conn.client().await?;
                write_result(&client, &job, &out, conn.json).await
            }
            MarketAction::Devices { conn } => {
                let client = conn.client().await?;
                let devices = client.devices().await?;
                if conn.json {
                    println!("{}", serde_json::to_string(&devices)?);
                    return Ok(());
                }
                println!(
                    "{:<21} {:>8} {:>9}  {:<16} {:<24} kernels",
                    "DEVICE", "SPARE W", "FLOOR", "JOB", "ADAPTER"
                );
                for d in devices {
                    println!(
                        "{:<21} {:>8.0} {:>9.5}  {:<16} {:<24} {}",
                        d.device_id,
                        d.spare_watts,
                        d.price_floor,
                        d.job.as_deref().map_or("-", |j| &j[..j.len().min(16)]),
                        d.adapter.chars().take(24).collect::<String>(),
                        d.kernels.join(",")
                    );
                }
                Ok(())
            }
        }
    })
}

async fn write_result(client: &MarketClient, job: &str, dir: &PathBuf, json: bool) -> Result<()> {
    let r = client.result(job).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = write_outputs(&dir.join("output.npy"), &r.outputs)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "job_id": job,
                "files": files,
                "receipts": r.receipts,
            })
        );
        return Ok(());
    }
    for rc in &r.receipts {
        let x = &rc.receipt;
        println!(
            "verified: device {} signed sha256 {} ({:.3} GPU-s, {:.1} J, resumed at unit {} of {})",
            x.device_id, x.result_sha256, x.gpu_seconds, x.joules, x.resumed_at, x.units
        );
    }
    if r.receipts.len() > 1 {
        println!("{} devices agree", r.receipts.len());
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn event_line(e: &Event) -> String {
    let t = chrono::DateTime::from_timestamp_millis(e.at_unix_ms as i64)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let detail = match &e.kind {
        EventKind::Offered {
            kernel,
            redundancy,
            price_per_gpu_second,
            deadline_unix_s,
        } => format!(
            "{kernel}, {redundancy} device(s), {price_per_gpu_second}/GPU-s, deadline {deadline_unix_s}"
        ),
        EventKind::Accepted {
            device,
            replica,
            resumed_at,
        } => format!("{device} copy {replica}, from unit {resumed_at}"),
        EventKind::Progress {
            device,
            replica,
            done,
            units,
        } => format!("{device} copy {replica}: {done}/{units} units (checkpoint stored)"),
        EventKind::Preempted {
            device,
            replica,
            done,
            reason,
        } => format!("{device} copy {replica} at unit {done}: {reason}"),
        EventKind::Completed { receipt } => format!(
            "{} copy {}: sha256 {}",
            receipt.receipt.device_id, receipt.receipt.replica, receipt.receipt.result_sha256
        ),
        EventKind::Failed {
            device,
            replica,
            reason,
        } => format!("{device} copy {replica}: {reason}"),
    };
    format!("{t}  {:<9} {detail}", e.kind.name())
}
