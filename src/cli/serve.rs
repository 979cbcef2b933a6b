//! `hearth serve`: the daemon, its API, its metrics and (with `[mqtt]`) the home link, until
//! SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing_subscriber::EnvFilter;

use hearth::clock::Clock;
use hearth::config::Config;

/// `hearth serve` options.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML config file (defaults apply to what it leaves out).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run simulated time N times faster than real time (simulated room only).
    #[arg(long, value_name = "N")]
    sim_speed: Option<f64>,
    /// Where jobs, checkpoints, results, tokens and the owner's settings live
    /// (default: `$XDG_DATA_HOME/hearth`, else `~/.local/share/hearth`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs the daemon until a signal stops it.
pub fn run(a: ServeArgs) -> Result<()> {
    serve(a.config.as_deref(), a.sim_speed, a.data_dir, a.api)
}

/// Logs to stderr, filtered by `HEARTH_LOG` (default `info`).
pub(crate) fn init_logging() {
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// The API's listen options of `hearth serve`.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: std::net::SocketAddr,
    /// TLS certificate (PEM) for the gRPC API.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain text on a non-loopback address.
    #[arg(long)]
    insecure: bool,
    /// Calls served at once; more get RESOURCE_EXHAUSTED (bounds memory under load).
    #[arg(long, default_value_t = hearth::api::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// The Prometheus endpoint (default: `telemetry.metrics_listen`, 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn serve(
    config: Option<&Path>,
    sim_speed: Option<f64>,
    data_dir: Option<PathBuf>,
    api: ApiArgs,
) -> Result<()> {
    init_logging();
    let mut cfg = Config::load(config, std::env::vars())?;
    if data_dir.is_some() {
        cfg.jobs.data_dir = data_dir;
        cfg.validate().context("--data-dir")?;
    }
    if let Some(m) = api.metrics_listen {
        cfg.telemetry.metrics_listen = m;
        cfg.validate().context("--metrics-listen")?;
    }
    if let Some(speed) = sim_speed {
        if !cfg.uses_simulated_room() {
            bail!("--sim-speed needs a simulated room, but no sensor is `kind = \"simulated\"`");
        }
        cfg.simulation.speed = speed;
        cfg.validate().context("--sim-speed")?;
    }
    let speed = if cfg.uses_simulated_room() {
        cfg.simulation.speed
    } else {
        1.0
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        tracing::info!(
            config = config
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into()),
            room = if cfg.uses_simulated_room() {
                "simulated"
            } else {
                "sensor"
            },
            speed,
            max_watts = cfg.heater.max_watts,
            "hearth starting"
        );
        let data_dir = cfg.jobs.resolved_data_dir()?;
        let max_upload = cfg.gpu.runner.limits.max_job_bytes as usize;
        let metrics_listen = cfg.telemetry.metrics_listen;
        let home_setup = home_setup(&cfg, &data_dir).await?;
        let daemon = hearth::daemon::spawn(cfg, Clock::local(speed)).await?;
        // The home link runs beside the daemon: a broker that is down only delays it.
        let home = match home_setup.map(|s| hearth::home::spawn(s, daemon.client())) {
            Some(Err(e)) => {
                daemon.shutdown().await;
                return Err(e.into());
            }
            Some(Ok(h)) => Some(h),
            None => None,
        };
        let (api_stop, api_stop_rx) = tokio::sync::watch::channel(false);
        // Metrics are for operators; a heater without them still heats.
        match hearth::telemetry::install(metrics_listen) {
            Ok(()) => {
                tracing::info!(addr = %metrics_listen, "Prometheus metrics at /metrics");
                tokio::spawn(hearth::telemetry::run(
                    daemon.status.clone(),
                    daemon.store.clone(),
                    api_stop_rx.clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "metrics are not served"),
        }
        let api = hearth::api::serve(
            daemon.client(),
            hearth::api::ApiConfig {
                listen: api.listen,
                tls: api.tls_cert.zip(api.tls_key),
                insecure: api.insecure,
                data_dir,
                max_upload_bytes: max_upload,
                max_total_upload_bytes: max_upload.saturating_mul(2),
                max_in_flight: api.max_in_flight as usize,
            },
            api_stop_rx,
        )
        .await;
        let api = match api {
            Ok(a) => a,
            Err(e) => {
                if let Some(h) = home {
                    h.shutdown().await;
                }
                daemon.shutdown().await;
                return Err(e.into());
            }
        };
        wait_for_signal().await?;
        // Say `offline` to the home, stop taking calls, then checkpoint the running job, drain
        // the pool and stop.
        tracing::info!("shutting down");
        if let Some(h) = home {
            h.shutdown().await;
        }
        let _ = api_stop.send(true);
        api.join().await;
        daemon.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The MQTT home link's setup when `[mqtt]` is configured: its device id is the market device
/// key's (created on first use), so the heater keeps its topics and Home Assistant entities.
async fn home_setup(cfg: &Config, data_dir: &Path) -> Result<Option<hearth::home::HomeSetup>> {
    let Some(mqtt) = cfg.mqtt.clone() else {
        return Ok(None);
    };
    let path = cfg.market.key_path(data_dir);
    let key = tokio::task::spawn_blocking(move || {
        hearth::market::receipt::DeviceKey::load_or_create(&path)
    })
    .await
    .context("reading the device key")?
    .context("the device key (it names the heater on MQTT)")?;
    Ok(Some(hearth::home::HomeSetup::new(
        mqtt,
        &key.device_id(),
        cfg.thermostat.presets.clone(),
    )))
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
