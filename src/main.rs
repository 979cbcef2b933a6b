//! The `hearth` command: the daemon (`serve`) and its tools.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;

use hearth::clock::Clock;
use hearth::config::{apply_assignments, Config};
use hearth::sim::{plot, RunResult, Scenario};

/// hearth: the control daemon of a compute heater.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. With no config: simulated room, defaults for everything else.
    Serve {
        /// TOML config file (defaults apply to what it leaves out).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run simulated time N times faster than real time (simulated room only).
        #[arg(long, value_name = "N")]
        sim_speed: Option<f64>,
    },
    /// Show or check the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Compare hearth's controller with a bang-bang thermostat in simulated time.
    Simulate(SimulateArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the built-in defaults as TOML.
    PrintDefault,
    /// Load a config (with HEARTH_* overrides), validate it and print the result.
    Check {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Scenario TOML (keys as in `--set`); defaults are the reference scenario.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Length of the run, hours.
    #[arg(long)]
    hours: Option<f64>,
    /// Room thermal resistance R, K/W (UA = 1/R).
    #[arg(long, value_name = "K_PER_W")]
    r: Option<f64>,
    /// Room heat capacity C, J/K.
    #[arg(long, value_name = "J_PER_K")]
    c: Option<f64>,
    /// Heater power, W.
    #[arg(long, value_name = "WATTS")]
    max_power: Option<f64>,
    /// Seed of the sensor noise.
    #[arg(long)]
    seed: Option<u64>,
    /// Override any scenario key, e.g. `--set sensor_noise_celsius=0.1 --set 'disturbances=[]'`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print machine-readable JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Draw room temperature, setpoint and power over time to FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, sim_speed } => serve(config.as_deref(), sim_speed),
        Command::Config { action } => match action {
            ConfigAction::PrintDefault => {
                print!("{}", Config::default_toml());
                Ok(())
            }
            ConfigAction::Check { config } => {
                let cfg = Config::load(config.as_deref(), std::env::vars())?;
                print!("{}", toml::to_string_pretty(&cfg)?);
                Ok(())
            }
        },
        Command::Simulate(args) => simulate(&args),
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn serve(config: Option<&Path>, sim_speed: Option<f64>) -> Result<()> {
    init_logging();
    let mut cfg = Config::load(config, std::env::vars())?;
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
        let daemon = hearth::daemon::spawn(cfg, Clock::local(speed))?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        daemon.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn load_scenario(args: &SimulateArgs) -> Result<Scenario> {
    let (mut table, base) = match &args.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading scenario {}", p.display()))?;
            let t: toml::Table = text
                .parse()
                .with_context(|| format!("scenario {}", p.display()))?;
            (t, p.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (toml::Table::new(), PathBuf::new()),
    };
    let mut sets = Vec::new();
    if let Some(h) = args.hours {
        sets.push(format!("hours={h}"));
    }
    if let Some(r) = args.r {
        if !(r.is_finite() && r > 0.0) {
            bail!("--r must be a positive resistance in K/W, got {r}");
        }
        sets.push(format!("room.ua_watts_per_kelvin={}", 1.0 / r));
    }
    if let Some(c) = args.c {
        sets.push(format!("room.capacity_joules_per_kelvin={c:e}"));
    }
    if let Some(p) = args.max_power {
        sets.push(format!("max_power_watts={p}"));
    }
    if let Some(s) = args.seed {
        sets.push(format!("seed={s}"));
    }
    sets.extend(args.sets.iter().cloned());
    apply_assignments(&mut table, &sets)?;
    let mut scenario: Scenario = toml::Value::Table(table).try_into().context("scenario")?;
    scenario.outdoor.load(&base)?;
    scenario.compile_schedule()?;
    Ok(scenario)
}

fn simulate(args: &SimulateArgs) -> Result<()> {
    let scenario = load_scenario(args)?;
    let [hearth, baseline] = scenario.run_both()?;
    if let Some(path) = &args.plot {
        let title = format!(
            "hearth vs bang-bang: {} h, UA {:.1} W/K, C {:.1e} J/K, {} W",
            scenario.hours,
            scenario.room.ua_watts_per_kelvin,
            scenario.room.capacity_joules_per_kelvin,
            scenario.max_power_watts
        );
        plot::plot(path, &title, &[&hearth.trace, &baseline.trace])?;
    }
    if args.json {
        let out = serde_json::json!({
            "scenario": scenario,
            "controllers": [
                {"name": hearth.trace.name, "kpis": hearth.kpis},
                {"name": baseline.trace.name, "kpis": baseline.kpis},
            ],
            "discomfort_ratio": ratio(hearth.kpis.discomfort_kelvin_hours, baseline.kpis.discomfort_kelvin_hours),
            "energy_ratio": ratio(hearth.kpis.energy_kwh, baseline.kpis.energy_kwh),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&scenario, &hearth, &baseline);
        if let Some(p) = &args.plot {
            println!("\nplot written to {}", p.display());
        }
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

fn print_table(s: &Scenario, h: &RunResult, b: &RunResult) {
    println!(
        "scenario: {} h (+{} h warm-up), UA {:.1} W/K (R {:.4} K/W), C {:.2e} J/K, heater {} W, seed {}",
        s.hours,
        s.warmup_hours,
        s.room.ua_watts_per_kelvin,
        1.0 / s.room.ua_watts_per_kelvin,
        s.room.capacity_joules_per_kelvin,
        s.max_power_watts,
        s.seed
    );
    println!("KPIs on the true room temperature\n");
    println!(
        "{:<34}{:>12}{:>12}{:>14}",
        "KPI", h.trace.name, b.trace.name, "hearth/base"
    );
    let row = |name: &str, x: f64, y: f64, prec: usize, show_ratio: bool| {
        let r = match ratio(x, y) {
            Some(r) if show_ratio => format!("{:.1} %", 100.0 * r),
            _ => String::new(),
        };
        println!("{name:<34}{x:>12.prec$}{y:>12.prec$}{r:>14}");
    };
    let (hk, bk) = (&h.kpis, &b.kpis);
    row(
        "RMS error over holds (°C)",
        hk.rms_error_celsius,
        bk.rms_error_celsius,
        3,
        true,
    );
    row(
        "max overshoot in holds (°C)",
        hk.max_overshoot_celsius,
        bk.max_overshoot_celsius,
        3,
        false,
    );
    row(
        "thermal discomfort (K·h)",
        hk.discomfort_kelvin_hours,
        bk.discomfort_kelvin_hours,
        3,
        true,
    );
    row("energy (kWh)", hk.energy_kwh, bk.energy_kwh, 2, true);
    row(
        "actuator travel Σ|ΔP| (kW)",
        hk.actuator_travel_kw,
        bk.actuator_travel_kw,
        1,
        true,
    );
    row(
        "time in hold periods (h)",
        hk.hold_hours,
        bk.hold_hours,
        2,
        false,
    );
}
