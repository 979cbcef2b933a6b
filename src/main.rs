//! The `hearth` command: the daemon (`serve`) and its tools.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;

mod bench_api;
mod bench_market;
mod cli_client;
mod cli_jobs;
mod cli_market;

use hearth::clock::Clock;
use hearth::config::{apply_assignments, Config};
use hearth::mining::header::{decode_hex, display_hash, hash_difficulty, Target, HEADER_LEN};
use hearth::mining::sha256d::{self, Kernel, Prepared};
use hearth::sim::{plot, split_plot, PolicyRun, RunResult, Scenario, WorkloadRuns};

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
        /// Where jobs, checkpoints, results, tokens and the owner's settings live
        /// (default: `$XDG_DATA_HOME/hearth`, else `~/.local/share/hearth`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The daemon's status (room, budget, split, mining, GPU, trips).
    Status {
        /// One snapshot per tick until interrupted.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        conn: cli_client::Conn,
    },
    /// Set the setpoint (a manual override), or return to the schedule.
    Setpoint {
        /// °C (5–30).
        celsius: Option<f64>,
        /// Hold it this long; 0 = until the next scheduled change.
        #[arg(long, default_value_t = 0.0)]
        hold_minutes: f64,
        /// Return to the schedule.
        #[arg(long, conflicts_with = "celsius")]
        clear: bool,
        #[command(flatten)]
        conn: cli_client::Conn,
    },
    /// Pin the workload mix, or leave it to hearth.
    Mix {
        #[command(subcommand)]
        action: cli_client::MixAction,
    },
    /// API tokens in the data dir: add, list, revoke.
    Token {
        #[command(subcommand)]
        action: cli_client::TokenAction,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Show or check the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Compare hearth's controller with a bang-bang thermostat in simulated time.
    Simulate(SimulateArgs),
    /// Bitcoin tools.
    Mine {
        #[command(subcommand)]
        action: MineAction,
    },
    /// Run the local Stratum V1 pool on its own (the daemon also runs it in-process).
    Pool(PoolArgs),
    /// The GPU: adapter information, and running one kernel locally.
    Gpu {
        #[command(subcommand)]
        action: GpuAction,
    },
    /// Leased jobs on the running daemon: submit, list, get, cancel, watch, result.
    Jobs {
        #[command(subcommand)]
        action: cli_jobs::JobsAction,
    },
    /// The compute marketplace, as a tenant: submit, status, result, devices.
    Market {
        #[command(subcommand)]
        action: cli_market::MarketAction,
    },
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        action: BenchAction,
    },
}

#[derive(Subcommand)]
enum MineAction {
    /// Scan a nonce range of an 80-byte header for hashes that meet a target.
    Scan(ScanArgs),
}

#[derive(clap::Args)]
struct ScanArgs {
    /// The 80-byte block header, 160 hex digits (its nonce field is ignored).
    #[arg(long)]
    header: String,
    /// First nonce (decimal or 0x-hex).
    #[arg(long, default_value = "0", value_parser = parse_u32)]
    start: u32,
    /// Number of nonces (decimal or 0x-hex); default: up to 0xffffffff.
    #[arg(long, value_parser = parse_u64)]
    count: Option<u64>,
    /// Target as 64 hex digits, display (big-endian) order.
    #[arg(long, conflicts_with = "difficulty")]
    target: Option<String>,
    /// Share difficulty (difficulty 1 = 0x00000000FFFF0000…).
    #[arg(long, allow_negative_numbers = true)]
    difficulty: Option<f64>,
    /// Force a kernel (default: the fastest this CPU supports).
    #[arg(long, value_enum)]
    kernel: Option<Kernel>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchAction {
    /// Durable SubmitJob calls per second over gRPC against a child daemon, with p50/p99
    /// latency, against the same load of grpc.health.v1 Check calls as the baseline.
    Api(bench_api::ApiBenchArgs),
    /// The marketplace on loopback: tiny jobs matched and completed per second with N
    /// simulated heaters, offer-to-start p50/p99, and redelivery after a heater dies.
    Market(bench_market::MarketBenchArgs),
    /// Matmul GFLOP/s (tuned, naive, CPU sgemm), throttle response and mlp_train throughput.
    Gpu {
        /// Matrix sizes (M = N = K).
        #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
        sizes: Vec<usize>,
        /// Adapter selector (auto, software, name:SUBSTRING, backend:NAME).
        #[arg(long, default_value = "auto")]
        adapter: hearth::gpu::device::AdapterChoice,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// MH/s per thread of every scan kernel this CPU supports, beside the one-stream limit
    /// (serial `sha2` compressions, halved) measured in the same run.
    Hash {
        /// Threads per kernel.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds per kernel.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Mine against a local pool and compare the hashrate the pool measures from share
    /// difficulty with the hashrate the ASIC reports.
    Stratum {
        /// Minutes to measure (after 30 s for vardiff to settle).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Chips (threads).
        #[arg(long, default_value_t = 2)]
        chips: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// How fast the software ASIC follows rate steps (time until the new rate holds within 5 %).
    Asic {
        /// Rounds of four rate steps.
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Chips (threads).
        #[arg(long, default_value_t = 2)]
        chips: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|e| format!("{s:?} is not a number: {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_u64(s)?).map_err(|_| format!("{s} does not fit in 32 bits"))
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
    /// Draw room temperature, setpoint and power over time to FILE.svg or FILE.png (with
    /// `--workloads`: each policy's power split).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Spend hearth's budget on the ASIC, the GPU (leased jobs) and the resistive element, and
    /// compare four mix policies: revenue, energy, unmet heat, jobs and comfort.
    #[arg(long)]
    workloads: bool,
}

fn main() -> std::process::ExitCode {
    // Mesa's Vulkan loader complains on stderr when XDG_RUNTIME_DIR is unset (as under CI or
    // systemd services without a session). Point it at the temp dir before any thread starts.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    // Errors are one line, with their causes, whatever RUST_BACKTRACE says.
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            config,
            sim_speed,
            data_dir,
            api,
        } => serve(config.as_deref(), sim_speed, data_dir, api),
        Command::Status { watch, conn } => cli_client::status(conn, watch),
        Command::Setpoint {
            celsius,
            hold_minutes,
            clear,
            conn,
        } => cli_client::setpoint(conn, celsius, hold_minutes, clear),
        Command::Mix { action } => cli_client::mix(action),
        Command::Token { action } => cli_client::token(action),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hearth", &mut std::io::stdout());
            Ok(())
        }
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
        Command::Mine {
            action: MineAction::Scan(args),
        } => mine_scan(&args),
        Command::Bench { action } => bench(action),
        Command::Pool(args) => run_pool(args),
        Command::Gpu { action } => gpu_cmd(action),
        Command::Jobs { action } => cli_jobs::run(action),
        Command::Market { action } => cli_market::run(action),
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

/// The API's listen options of `hearth serve`.
#[derive(clap::Args)]
struct ApiArgs {
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
        let daemon = hearth::daemon::spawn(cfg, Clock::local(speed)).await?;
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
                daemon.shutdown().await;
                return Err(e.into());
            }
        };
        wait_for_signal().await?;
        // Stop taking calls first, then checkpoint the running job, drain the pool and stop.
        tracing::info!("shutting down");
        let _ = api_stop.send(true);
        api.join().await;
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
    if args.workloads {
        return simulate_workloads(args, &scenario);
    }
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
        // The workloads section only matters with --workloads; keep this output as it was.
        let mut scenario_json = serde_json::to_value(&scenario)?;
        if let Some(o) = scenario_json.as_object_mut() {
            o.remove("workloads");
        }
        let out = serde_json::json!({
            "scenario": scenario_json,
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

fn simulate_workloads(args: &SimulateArgs, scenario: &Scenario) -> Result<()> {
    let heat_only = scenario.run(&mut scenario.hearth_controller())?;
    let runs = scenario.run_workloads()?;
    if let Some(path) = &args.plot {
        let title = format!(
            "power split by policy: {} h, UA {:.1} W/K, C {:.1e} J/K, {} W",
            scenario.hours,
            scenario.room.ua_watts_per_kelvin,
            scenario.room.capacity_joules_per_kelvin,
            scenario.max_power_watts
        );
        let splits: Vec<_> = runs.policies.iter().map(|p| &p.split).collect();
        split_plot::plot_split(path, &title, &splits)?;
    }
    if args.json {
        let policies: Vec<_> = runs
            .policies
            .iter()
            .map(|p| {
                let t = &p.totals;
                serde_json::json!({
                    "name": p.policy.name,
                    "mix": p.policy.mix,
                    "revenue": {
                        "mining": t.mining_revenue,
                        "ai": t.ai_revenue,
                        "total": t.total_revenue,
                    },
                    "energy_kwh": {
                        "asic": t.asic_kwh,
                        "gpu": t.gpu_kwh,
                        "resistive": t.resistive_kwh,
                        "heat": p.run.kpis.energy_kwh,
                        "budget": t.budget_kwh,
                    },
                    "unmet_heat_kwh": t.unmet_heat_kwh,
                    "jobs_done": t.jobs_done,
                    "deadline_misses": t.deadline_misses,
                    "kpis": p.run.kpis,
                })
            })
            .collect();
        let out = serde_json::json!({
            "scenario": scenario,
            "leases_arrived": runs.leases_arrived,
            "heat_only": {"name": heat_only.trace.name, "kpis": heat_only.kpis},
            "policies": policies,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_workloads_table(scenario, &runs, &heat_only);
        if let Some(p) = &args.plot {
            println!("\nplot written to {}", p.display());
        }
    }
    Ok(())
}

fn print_workloads_table(s: &Scenario, runs: &WorkloadRuns, heat_only: &RunResult) {
    print_scenario_line(s);
    let w = &s.workloads;
    let resistive = if w.resistive.max_watts > 0.0 {
        format!("{} W", w.resistive.max_watts)
    } else {
        "none".into()
    };
    println!(
        "workloads: ASIC {}–{} W at {} J/TH, hashprice {}/TH/day ({:.4} per kWh); GPU {}–{} W; \
         resistive {resistive}; {} leases arrived after warm-up (seed {})",
        w.asic.min_watts,
        w.asic.max_watts,
        w.asic.j_per_th,
        w.asic.hashprice_per_th_day,
        w.asic.value_per_joule() * 3.6e6,
        w.gpu.idle_watts,
        w.gpu.max_watts,
        runs.leases_arrived,
        w.leases.seed
    );
    println!("hearth's budget split by the allocator; comfort on the true room temperature\n");
    print!("{:<30}", "");
    for p in &runs.policies {
        print!("{:>14}", p.policy.name);
    }
    println!("{:>14}", "heat only");
    let row = |name: &str, f: &dyn Fn(&PolicyRun) -> f64, reference: Option<f64>, prec: usize| {
        print!("{name:<30}");
        for p in &runs.policies {
            print!("{:>14.prec$}", f(p));
        }
        match reference {
            Some(r) => println!("{r:>14.prec$}"),
            None => println!("{:>14}", "–"),
        }
    };
    row("revenue: mining", &|p| p.totals.mining_revenue, None, 3);
    row("revenue: AI", &|p| p.totals.ai_revenue, None, 3);
    row("revenue: total", &|p| p.totals.total_revenue, None, 3);
    row("energy: ASIC (kWh)", &|p| p.totals.asic_kwh, None, 2);
    row("energy: GPU (kWh)", &|p| p.totals.gpu_kwh, None, 2);
    row(
        "energy: resistive (kWh)",
        &|p| p.totals.resistive_kwh,
        None,
        2,
    );
    let hk = &heat_only.kpis;
    row(
        "heat delivered (kWh)",
        &|p| p.run.kpis.energy_kwh,
        Some(hk.energy_kwh),
        2,
    );
    row("unmet heat (kWh)", &|p| p.totals.unmet_heat_kwh, None, 2);
    row("jobs done", &|p| p.totals.jobs_done as f64, None, 0);
    row(
        "deadline misses",
        &|p| p.totals.deadline_misses as f64,
        None,
        0,
    );
    row(
        "RMS error over holds (°C)",
        &|p| p.run.kpis.rms_error_celsius,
        Some(hk.rms_error_celsius),
        3,
    );
    row(
        "thermal discomfort (K·h)",
        &|p| p.run.kpis.discomfort_kelvin_hours,
        Some(hk.discomfort_kelvin_hours),
        3,
    );
    // RMS counts only hold periods: a room that never reaches its setpoint has none.
    row(
        "time in hold periods (h)",
        &|p| p.run.kpis.hold_hours,
        Some(hk.hold_hours),
        2,
    );
}

fn print_scenario_line(s: &Scenario) {
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
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

fn print_table(s: &Scenario, h: &RunResult, b: &RunResult) {
    print_scenario_line(s);
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

fn mine_scan(a: &ScanArgs) -> Result<()> {
    let bytes = decode_hex("--header", &a.header)?;
    let header: [u8; HEADER_LEN] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "--header: expected 80 bytes (160 hex digits), got {} bytes",
            bytes.len()
        )
    })?;
    let target = match (&a.target, a.difficulty) {
        (Some(t), _) => Target::from_hex(t).context("--target")?,
        (None, Some(d)) => Target::from_difficulty(d).context("--difficulty")?,
        (None, None) => {
            let nbits = u32::from_le_bytes([header[72], header[73], header[74], header[75]]);
            Target::from_nbits(nbits).context("the header's nbits")?
        }
    };
    let max = (1u64 << 32) - u64::from(a.start);
    let count = a.count.unwrap_or(max);
    if count > max {
        bail!(
            "--start {} + --count {count} runs past nonce 0xffffffff",
            a.start
        );
    }
    let kernel = a.kernel.unwrap_or_else(Kernel::best);
    let prepared = Prepared::new(&header);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads).max(1);
    let t0 = std::time::Instant::now();
    let mut found = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let first = u64::from(a.start) + i * chunk;
                let n = chunk.min((u64::from(a.start) + count).saturating_sub(first));
                s.spawn(move || -> Result<Vec<sha256d::Found>, sha256d::ScanError> {
                    let mut all = Vec::new();
                    let mut done = 0u64;
                    while done < n {
                        let step = (n - done).min(1 << 30) as u32;
                        all.extend(sha256d::scan(
                            kernel,
                            &prepared,
                            &target,
                            (first + done) as u32,
                            step,
                        )?);
                        done += u64::from(step);
                    }
                    Ok(all)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a scan thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()
    })?
    .concat();
    found.sort_by_key(|f| f.nonce);
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let out = serde_json::json!({
            "kernel": kernel.name(),
            "start": a.start,
            "count": count,
            "target": display_hash(&target.0.to_le_bytes()),
            "seconds": secs,
            "found": found.iter().map(|f| serde_json::json!({
                "nonce": format!("{:08x}", f.nonce),
                "nonce_decimal": f.nonce,
                "hash": display_hash(&f.hash),
                "difficulty": hash_difficulty(&f.hash),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "scanned {count} nonces from {:#010x} with {} in {secs:.2} s ({:.2} MH/s); target {}",
            a.start,
            kernel.name(),
            count as f64 / secs.max(1e-9) / 1e6,
            display_hash(&target.0.to_le_bytes())
        );
        if found.is_empty() {
            println!("no nonce meets the target");
        }
        for f in &found {
            println!(
                "nonce {:08x} ({})  hash {}  difficulty {:.3}",
                f.nonce,
                f.nonce,
                display_hash(&f.hash),
                hash_difficulty(&f.hash)
            );
        }
    }
    Ok(())
}

fn bench(action: BenchAction) -> Result<()> {
    match action {
        BenchAction::Api(args) => bench_api::run(args),
        BenchAction::Market(args) => bench_market::run(args),
        BenchAction::Gpu {
            sizes,
            adapter,
            json,
        } => {
            if sizes.is_empty() || sizes.iter().any(|&n| !(1..=8192).contains(&n)) {
                bail!("--sizes must be 1–8192");
            }
            let b = hearth::gpu::bench::run(&adapter, &sizes)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&b)?);
                return Ok(());
            }
            println!(
                "adapter: {} ({})\n",
                b.adapter,
                if b.software { "software" } else { "hardware" }
            );
            println!(
                "{:>6} {:<8} {:>13} {:>13} {:>10} {:>14} {:>12}",
                "size",
                "variant",
                "tuned GFLOP/s",
                "naive GFLOP/s",
                "× naive",
                "CPU sgemm (1t)",
                "× CPU"
            );
            for m in &b.matmul {
                println!(
                    "{:>6} {:<8} {:>13.2} {:>13.2} {:>10.1} {:>14.2} {:>12.2}",
                    m.size,
                    format!("{:?}", m.variant).to_lowercase(),
                    m.tuned_gflops,
                    m.naive_gflops,
                    m.tuned_gflops / m.naive_gflops,
                    m.cpu_gflops,
                    m.tuned_gflops / m.cpu_gflops
                );
            }
            println!("\n(naive at sizes over 256 times the first 256 rows; CPU sgemm is matrixmultiply on one thread)");
            println!(
                "\nthrottle response (new target → start of the first chunk from which the per-chunk duty holds within ±0.05, 5 chunks):"
            );
            for st in &b.steps {
                match st.response_s {
                    Some(t) => println!(
                        "  {:.0} % → {:.0} %: {:.0} ms",
                        st.from * 100.0,
                        st.to * 100.0,
                        t * 1000.0
                    ),
                    None => println!(
                        "  {:.0} % → {:.0} %: did not settle",
                        st.from * 100.0,
                        st.to * 100.0
                    ),
                }
            }
            println!(
                "\nmlp_train (N 4096, D 64, H 128, C 10, batch 64): {:.0} samples/s",
                b.mlp_train_samples_per_s
            );
            println!(
                "chunk busy time during the steps: median {:.1} ms, longest {:.1} ms",
                b.chunk_ms_p50, b.chunk_ms_max
            );
            Ok(())
        }
        BenchAction::Hash {
            threads,
            seconds,
            json,
        } => {
            if threads == 0 || threads > 1024 || !(seconds > 0.0 && seconds <= 3600.0) {
                bail!("--threads must be 1–1024 and --seconds in (0, 3600]");
            }
            let report = hearth::mining::bench::hash_bench(threads, seconds);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        BenchAction::Stratum {
            minutes,
            chips,
            json,
        } => {
            if !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
                bail!("--minutes must be in (0, 1440]");
            }
            let cfg = hearth::devices::software_asic::AsicConfig {
                chips,
                ..Default::default()
            };
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let r = rt
                .block_on(hearth::devices::software_asic::bench::hashrate_agreement(
                    cfg,
                    minutes * 60.0,
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "{chips} chips at full rate against the local pool for {:.0} s, {} accepted shares",
                r.seconds, r.shares
            );
            println!(
                "  pool, from accepted share difficulty: {:.2} MH/s",
                r.pool_hashes_per_second / 1e6
            );
            println!(
                "  ASIC, hashes computed:                {:.2} MH/s",
                r.asic_hashes_per_second / 1e6
            );
            println!(
                "  pool / ASIC = {:.3}; expected 1 ± {:.3} (1σ, Poisson over {} shares): {:.1}σ off",
                r.ratio,
                r.relative_sigma,
                r.shares,
                (r.ratio - 1.0).abs() / r.relative_sigma
            );
            Ok(())
        }
        BenchAction::Asic {
            repeats,
            chips,
            json,
        } => {
            let cfg = hearth::devices::software_asic::AsicConfig {
                chips,
                ..Default::default()
            };
            let r = hearth::devices::software_asic::bench::throttle_response(cfg, repeats.max(1))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "software ASIC throttle response, {chips} chips, {} rate steps (50 ms slices)",
                r.steps
            );
            println!("  set_rate → every chip running a slice at the new rate: p50 {:.2} ms, max {:.2} ms", r.p50_ms, r.max_ms);
            println!(
                "  first slice at the new rate: |duty − rate| mean {:.4}, max {:.4}; {} of {} steps within 5 %",
                r.mean_duty_error, r.max_duty_error, r.within_5_percent, r.steps
            );
            println!(
                "  new work (clean_jobs) → every chip hashing it: p50 {:.2} ms, max {:.2} ms",
                r.work_switch_p50_ms, r.work_switch_max_ms
            );
            Ok(())
        }
    }
}

/// `hearth pool` options.
#[derive(clap::Args)]
struct PoolArgs {
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

fn run_pool(args: PoolArgs) -> Result<()> {
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

#[derive(Subcommand)]
enum GpuAction {
    /// Print the adapter, its limits and features.
    Info {
        /// Adapter selector (auto, software, name:SUBSTRING, backend:NAME).
        #[arg(long, default_value = "auto")]
        adapter: hearth::gpu::device::AdapterChoice,
        /// Every adapter wgpu sees, not just the chosen one.
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run one kernel locally on `.npy` inputs, or on random inputs of `--size`.
    Run(Box<GpuRunArgs>),
}

/// `hearth gpu run` options.
#[derive(clap::Args)]
struct GpuRunArgs {
    /// The kernel and its inputs.
    #[command(flatten)]
    job: cli_jobs::JobArgs,
    /// Write the output here (.npy); with several outputs, NAME.0.npy, NAME.1.npy, ...
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Compare with the CPU reference and print the largest difference.
    #[arg(long)]
    check: bool,
    /// Adapter selector.
    #[arg(long, default_value = "auto")]
    adapter: hearth::gpu::device::AdapterChoice,
}

fn gpu_cmd(action: GpuAction) -> Result<()> {
    use hearth::gpu::device::{adapters, Gpu};
    match action {
        GpuAction::Info { adapter, all, json } => {
            if all {
                for a in adapters() {
                    let i = a.get_info();
                    println!(
                        "{} ({:?}, {:?}, {} {})",
                        i.name, i.backend, i.device_type, i.driver, i.driver_info
                    );
                }
                return Ok(());
            }
            let gpu = Gpu::open(&adapter)?;
            let s = &gpu.summary;
            if json {
                println!("{}", serde_json::to_string_pretty(s)?);
                return Ok(());
            }
            println!("adapter:        {}", s.name);
            println!("backend:        {}", s.backend);
            println!(
                "device type:    {} ({})",
                s.device_type,
                if s.software { "software" } else { "hardware" }
            );
            println!("driver:         {}", s.driver);
            println!(
                "max storage binding:   {} MiB",
                s.max_storage_buffer_binding_size >> 20
            );
            println!("max buffer:            {} MiB", s.max_buffer_size >> 20);
            println!(
                "workgroups per dim:    {}",
                s.max_compute_workgroups_per_dimension
            );
            println!(
                "invocations per group: {}",
                s.max_compute_invocations_per_workgroup
            );
            println!(
                "workgroup memory:      {} KiB",
                s.max_compute_workgroup_storage_size >> 10
            );
            println!(
                "storage buffers/stage: {}",
                s.max_storage_buffers_per_shader_stage
            );
            println!(
                "subgroups:             {} (min size {})",
                s.subgroups, s.subgroup_min_size
            );
            println!("features:              {}", s.features.join(", "));
            Ok(())
        }
        GpuAction::Run(args) => gpu_run(*args),
    }
}

fn gpu_run(a: GpuRunArgs) -> Result<()> {
    use hearth::gpu::runner::{GpuRunner, JobOutcome, RunnerConfig};
    let job = a.job.build()?;
    let want = if a.check {
        hearth::gpu::reference::expected(&job)
    } else {
        None
    };
    let gpu = hearth::gpu::device::Gpu::open(&a.adapter)?;
    let adapter = gpu.summary.name.clone();
    let runner = GpuRunner::start(gpu, RunnerConfig::default())?;
    runner.set_target(f64::MAX, std::time::Duration::from_secs(86_400));
    let train = job.kernel.name() == "mlp_train";
    let h = runner.submit(job, None)?;
    let out = match h.outcome.blocking_recv() {
        Ok(JobOutcome::Succeeded(o)) => o,
        Ok(JobOutcome::Failed(e)) => return Err(e.into()),
        Ok(JobOutcome::Preempted(_)) | Err(_) => bail!("the job did not finish"),
    };
    println!("adapter: {adapter}");
    println!("chunks: {}, GPU time: {:.3} s", out.chunks, out.gpu_seconds);
    for (i, t) in out.outputs.iter().enumerate() {
        println!("output {i}: shape {:?}", t.shape);
    }
    if train {
        if let Some(loss) = out.outputs.last() {
            let l: Vec<String> = loss.data.iter().map(|v| format!("{v:.4}")).collect();
            println!("loss per epoch: {}", l.join(" "));
        }
    }
    println!("sha256: {}", out.digest);
    if let Some(want) = want {
        let diff = out
            .outputs
            .iter()
            .zip(&want)
            .flat_map(|(g, w)| g.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()))
            .fold(0.0f32, f32::max);
        println!("largest difference from the CPU reference: {diff:e}");
    }
    if let Some(path) = &a.output {
        for p in cli_jobs::write_outputs(path, &out.outputs)? {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
