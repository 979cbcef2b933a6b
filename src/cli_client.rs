//! The owner's CLI over the daemon's gRPC API: `status`, `setpoint`, `mix`, the connection the
//! `jobs` commands share, and `token` (which works on the data dir's token file).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use hearth::api::auth::{Role, TokenStore, OWNER_TOKEN_FILE};
use hearth::api::pb;
use hearth::config::JobsConfig;

/// How to reach the daemon.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The daemon's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "HEARTH_ADDR")]
    addr: String,
    /// The bearer token's file (default: the data dir's owner.token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The daemon's data dir, where the owner token is (default: the XDG data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an `https://` address.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// A channel that sends the bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A Jobs client over an authenticated channel.
pub type JobsClient = pb::jobs_client::JobsClient<Authed>;

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

fn data_dir(d: &Option<PathBuf>) -> Result<PathBuf> {
    Ok(match d {
        Some(d) => d.clone(),
        None => JobsConfig::default().resolved_data_dir()?,
    })
}

impl Conn {
    async fn channel(&self) -> Result<(Channel, Bearer)> {
        let path = match &self.token_file {
            Some(p) => p.clone(),
            None => data_dir(&self.data_dir)?.join(OWNER_TOKEN_FILE),
        };
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the token from {} (give --token-file, or start `hearth serve` once to create it)",
                path.display()
            )
        })?;
        let value = format!("Bearer {}", token.trim())
            .parse()
            .context("the token file holds characters a header cannot carry")?;
        let mut ep = Endpoint::from_shared(self.addr.clone())
            .with_context(|| format!("--addr {:?} is not a URL", self.addr))?;
        if self.addr.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &self.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(tls)?;
        }
        let ch = ep.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the hearth daemon at {} ({e}); start it with `hearth serve`",
                self.addr
            )
        })?;
        Ok((ch, Bearer(value)))
    }

    /// A Control client.
    pub async fn control(&self) -> Result<pb::control_client::ControlClient<Authed>> {
        let (ch, b) = self.channel().await?;
        Ok(pb::control_client::ControlClient::with_interceptor(ch, b))
    }

    /// A Jobs client.
    pub async fn jobs(&self) -> Result<JobsClient> {
        let (ch, b) = self.channel().await?;
        Ok(pb::jobs_client::JobsClient::with_interceptor(ch, b))
    }
}

/// `hearth mix`.
#[derive(Subcommand)]
pub enum MixAction {
    /// Pin the split, in percent of the budget.
    Pin {
        /// Percent for hashing.
        #[arg(long)]
        asic: f64,
        /// Percent for AI jobs.
        #[arg(long)]
        gpu: f64,
        /// Keep the split even when one side has nothing to do.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Let hearth choose: deadlines first, then the work worth more per joule.
    Auto {
        #[command(flatten)]
        conn: Conn,
    },
}

/// `hearth token`.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token; it is printed once.
    Add {
        /// owner, tenant or viewer.
        #[arg(long)]
        role: Role,
        /// The tenant a tenant token acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List tokens (ids and roles; never the tokens).
    List {
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (or a unique prefix of at least 4 characters).
    Revoke {
        /// The token's id.
        id: String,
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// A single-threaded runtime for one command.
pub fn rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// A gRPC status as a one-line error: its code and message.
pub fn grpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), one_line(e.message()))
}

/// A message on one line: its non-blank lines, trimmed, joined by "; ".
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_status(s: &pb::Status, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(&status_json(s))?);
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or("-".into(), |c| format!("{c:.2}"));
    println!(
        "room {} °C  setpoint {:.1} °C{}  outdoor {} °C  budget {:.0} W  unmet {:.0} W",
        opt(s.room_celsius),
        s.setpoint_celsius,
        if s.override_active { " (override)" } else { "" },
        opt(s.outdoor_celsius),
        s.budget_watts,
        s.unmet_watts
    );
    for p in &s.power {
        println!(
            "  {:<10} target {:>6.0} W  actual {:>6.0} W ({})  energy {:.1} kJ",
            p.workload,
            p.target_watts,
            p.actual_watts,
            p.source,
            p.energy_joules / 1e3
        );
    }
    if let Some(m) = &s.mining {
        println!(
            "  mining: {} {}  {:.2} MH/s  shares {} accepted, {} rejected, {} stale  kernel {}",
            m.pool,
            if m.connected { "up" } else { "down" },
            m.hashes_per_second / 1e6,
            m.shares_accepted,
            m.shares_rejected,
            m.shares_stale,
            m.hash_kernel
        );
    }
    if let Some(g) = &s.gpu {
        if g.unavailable_reason.is_empty() {
            println!(
                "  gpu: {} ({})  utilisation {:.0} %  {}  live jobs {}",
                g.adapter,
                if g.software { "software" } else { "hardware" },
                100.0 * g.utilisation,
                if g.running_job.is_empty() {
                    "idle"
                } else {
                    &g.running_job
                },
                s.live_jobs
            );
        } else {
            println!("  gpu: unavailable ({})", g.unavailable_reason);
        }
    }
    for t in &s.trips {
        println!("  TRIP {}: {}", t.reason, t.detail);
    }
    Ok(())
}

fn mix_json(m: &Option<pb::Mix>) -> serde_json::Value {
    match m.as_ref().and_then(|m| m.policy.as_ref()) {
        Some(pb::mix::Policy::Pinned(p)) => serde_json::json!({
            "mode": "pinned", "asic_percent": p.asic_percent,
            "gpu_percent": p.gpu_percent, "strict": p.strict
        }),
        Some(pb::mix::Policy::Auto(_)) => serde_json::json!({ "mode": "auto" }),
        None => serde_json::Value::Null,
    }
}

fn status_json(s: &pb::Status) -> serde_json::Value {
    serde_json::json!({
        "tick": s.tick,
        "room_celsius": s.room_celsius,
        "outdoor_celsius": s.outdoor_celsius,
        "setpoint_celsius": s.setpoint_celsius,
        "override_active": s.override_active,
        "budget_watts": s.budget_watts,
        "unmet_watts": s.unmet_watts,
        "power": s.power.iter().map(|p| serde_json::json!({
            "workload": p.workload, "target_watts": p.target_watts,
            "actual_watts": p.actual_watts, "source": p.source, "energy_joules": p.energy_joules,
        })).collect::<Vec<_>>(),
        "trips": s.trips.iter().map(|t| serde_json::json!({"reason": t.reason, "detail": t.detail})).collect::<Vec<_>>(),
        "mix": mix_json(&s.mix),
        "mining": s.mining.as_ref().map(|m| serde_json::json!({
            "pool": m.pool, "connected": m.connected, "hashes_per_second": m.hashes_per_second,
            "shares_accepted": m.shares_accepted, "shares_rejected": m.shares_rejected,
            "shares_stale": m.shares_stale, "earned": m.earned, "hash_kernel": m.hash_kernel,
        })),
        "gpu": s.gpu.as_ref().map(|g| serde_json::json!({
            "adapter": g.adapter, "software": g.software, "utilisation": g.utilisation,
            "unavailable_reason": g.unavailable_reason, "running_job": g.running_job,
        })),
        "live_jobs": s.live_jobs,
    })
}

/// `hearth status [--watch]`.
pub fn status(conn: Conn, watch: bool) -> Result<()> {
    rt()?.block_on(async move {
        let mut c = conn.control().await?;
        if !watch {
            let s = c
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(grpc)?
                .into_inner();
            return print_status(&s, conn.json);
        }
        let mut stream = c
            .watch_status(pb::WatchStatusRequest {})
            .await
            .map_err(grpc)?
            .into_inner();
        while let Some(s) = stream.message().await.map_err(grpc)? {
            print_status(&s, conn.json)?;
        }
        Ok(())
    })
}

/// `hearth setpoint C [--hold-minutes M] | --clear`.
pub fn setpoint(conn: Conn, celsius: Option<f64>, hold_minutes: f64, clear: bool) -> Result<()> {
    if celsius.is_none() && !clear {
        bail!("give a setpoint in °C, or --clear to return to the schedule");
    }
    rt()?.block_on(async move {
        let r = conn
            .control()
            .await?
            .set_setpoint(pb::SetSetpointRequest {
                celsius: celsius.unwrap_or(0.0),
                hold_minutes,
                clear,
            })
            .await
            .map_err(grpc)?
            .into_inner();
        if conn.json {
            println!(
                "{}",
                serde_json::json!({ "setpoint_celsius": r.setpoint_celsius })
            );
        } else {
            println!("setpoint {:.1} °C", r.setpoint_celsius);
        }
        Ok(())
    })
}

/// `hearth mix pin|auto`.
pub fn mix(action: MixAction) -> Result<()> {
    let (conn, policy) = match action {
        MixAction::Pin {
            asic,
            gpu,
            strict,
            conn,
        } => (
            conn,
            pb::mix::Policy::Pinned(pb::PinnedMix {
                asic_percent: asic,
                gpu_percent: gpu,
                strict,
            }),
        ),
        MixAction::Auto { conn } => (conn, pb::mix::Policy::Auto(pb::AutoMix {})),
    };
    rt()?.block_on(async move {
        let m = conn
            .control()
            .await?
            .set_mix(pb::SetMixRequest {
                mix: Some(pb::Mix {
                    policy: Some(policy),
                }),
            })
            .await
            .map_err(grpc)?
            .into_inner();
        let j = mix_json(&Some(m));
        if conn.json {
            println!("{j}");
        } else {
            println!("mix {j}");
        }
        Ok(())
    })
}

/// `hearth token add|list|revoke`.
pub fn token(action: TokenAction) -> Result<()> {
    match action {
        TokenAction::Add {
            role,
            tenant,
            data_dir: d,
        } => {
            let dir = data_dir(&d)?;
            std::fs::create_dir_all(&dir)?;
            let (token, e) = TokenStore::new(&dir).add(role, tenant)?;
            println!("{token}");
            eprintln!(
                "token {} ({:?}{}) added; it is shown only this once",
                e.id,
                e.role,
                e.tenant
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        TokenAction::List { data_dir: d, json } => {
            let list = TokenStore::new(&data_dir(&d)?).list()?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|e| serde_json::json!({"id": e.id, "role": e.role, "tenant": e.tenant, "created_unix_s": e.created_unix_s}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for e in list {
                    println!(
                        "{}  {:<7}  {}",
                        e.id,
                        format!("{:?}", e.role).to_lowercase(),
                        e.tenant.unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        TokenAction::Revoke { id, data_dir: d } => {
            if TokenStore::new(&data_dir(&d)?).revoke(&id)? {
                println!("token {id} revoked");
                Ok(())
            } else {
                bail!("no token with id {id}")
            }
        }
    }
}
