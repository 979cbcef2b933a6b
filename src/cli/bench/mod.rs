//! `hearth bench`: performance measurements, one module per bench.

use anyhow::Result;
use clap::Subcommand;

mod api;
mod fleet;
mod gpu;
mod hash;
mod market;
mod mining;

/// `hearth bench` subcommands.
#[derive(Subcommand)]
pub enum BenchAction {
    /// Durable SubmitJob calls per second over gRPC against a child daemon, with p50/p99
    /// latency, against the same load of grpc.health.v1 Check calls as the baseline.
    Api(api::ApiBenchArgs),
    /// The marketplace on loopback: tiny jobs matched and completed per second with N
    /// simulated heaters, offer-to-start p50/p99, and redelivery after a heater dies.
    Market(market::MarketBenchArgs),
    /// How closely a fleet of emulated miners follows the heat budget in a simulated room,
    /// beside the software ASIC in the same run (RMS and worst error, settle time, commands).
    Fleet(fleet::FleetBenchArgs),
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

/// Runs a `hearth bench` subcommand.
pub fn run(action: BenchAction) -> Result<()> {
    match action {
        BenchAction::Api(args) => api::run(args),
        BenchAction::Market(args) => market::run(args),
        BenchAction::Fleet(args) => fleet::run(args),
        BenchAction::Gpu {
            sizes,
            adapter,
            json,
        } => gpu::run(sizes, adapter, json),
        BenchAction::Hash {
            threads,
            seconds,
            json,
        } => hash::run(threads, seconds, json),
        BenchAction::Stratum {
            minutes,
            chips,
            json,
        } => mining::stratum(minutes, chips, json),
        BenchAction::Asic {
            repeats,
            chips,
            json,
        } => mining::asic(repeats, chips, json),
    }
}

/// A loopback port free right now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
