//! The `hearth` command: the daemon (`serve`) and its tools.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

use cli::{
    bench, config, control, devices, emulate, gpu, jobs, market, mine, pool, serve, simulate, token,
};

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
    Serve(serve::ServeArgs),
    /// The daemon's status (room, budget, split, mining, GPU, trips).
    Status(control::StatusArgs),
    /// Set the setpoint (a manual override), or return to the schedule.
    Setpoint(control::SetpointArgs),
    /// The mining fleet (state, power, setting, temperatures), or `probe ADDR` to identify a device.
    Devices(devices::DevicesArgs),
    /// Pin the workload mix, or leave it to hearth.
    Mix {
        #[command(subcommand)]
        action: control::MixAction,
    },
    /// API tokens in the data dir: add, list, revoke.
    Token {
        #[command(subcommand)]
        action: token::TokenAction,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Show or check the configuration.
    Config {
        #[command(subcommand)]
        action: config::ConfigAction,
    },
    /// Compare hearth's controller with a bang-bang thermostat in simulated time.
    Simulate(simulate::SimulateArgs),
    /// Bitcoin tools.
    Mine {
        #[command(subcommand)]
        action: mine::MineAction,
    },
    /// Run the local Stratum V1 pool on its own (the daemon also runs it in-process).
    Pool(pool::PoolArgs),
    /// The GPU: adapter information, and running one kernel locally.
    Gpu {
        #[command(subcommand)]
        action: gpu::GpuAction,
    },
    /// Leased jobs on the running daemon: submit, list, get, cancel, watch, result.
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// The compute marketplace, as a tenant: submit, status, result, devices.
    Market {
        #[command(subcommand)]
        action: market::MarketAction,
    },
    /// Emulate a miner (avalon, axeos, braiins) on a local port, to try hearth without hardware.
    Emulate(emulate::EmulateArgs),
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        action: bench::BenchAction,
    },
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
        Command::Serve(args) => serve::run(args),
        Command::Status(args) => control::status(args),
        Command::Setpoint(args) => control::setpoint(args),
        Command::Mix { action } => control::mix(action),
        Command::Devices(args) => devices::run(args),
        Command::Token { action } => token::run(action),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hearth", &mut std::io::stdout());
            Ok(())
        }
        Command::Config { action } => config::run(action),
        Command::Simulate(args) => simulate::run(&args),
        Command::Mine { action } => mine::run(action),
        Command::Bench { action } => bench::run(action),
        Command::Pool(args) => pool::run(args),
        Command::Gpu { action } => gpu::run(action),
        Command::Jobs { action } => jobs::run(action),
        Command::Market { action } => market::run(action),
        Command::Emulate(args) => emulate::run(args),
    }
}
