//! `hearth pool`: the local Stratum V1 pool on its own, until SIGINT or SIGTERM.

use anyhow::{Context, Result};

use super::serve::{init_logging, wait_for_signal};

/// `hearth pool` options.
#[derive(clap::Args)]
pub struct PoolArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3333")]
    listen: std::net::SocketAddr,
    /// Seconds between jobs.
    #[arg(long, default_value_t = 30.0)]
    job_interval: f64,
    /// Shares per minute vardiff aims at.
    #[arg(long, default_value_t = 10.0)]
    shares_per_minute: f64,
    /// Serve `stratum+ssl://` with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// Runs the pool.
pub fn run(args: PoolArgs) -> Result<()> {
    init_logging();
    let cfg = hearth::mining::stratum::pool::PoolConfig {
        job_interval_seconds: args.job_interval,
        target_shares_per_minute: args.shares_per_minute,
        ..Default::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(hearth::mining::stratum::transport::server_tls(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "ssl" } else { "tcp" };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let pool =
            hearth::mining::stratum::pool::LocalPool::start_with_tls(cfg, args.listen, tls).await?;
        println!("local pool on stratum+{scheme}://{}", pool.addr());
        wait_for_signal().await?;
        for (worker, w) in pool.stats() {
            tracing::info!(worker, accepted = w.accepted, work = w.accepted_work, rejected = ?w.rejected, "final worker stats");
        }
        pool.shutdown().await;
        Ok(())
    })
}
