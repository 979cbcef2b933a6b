//! `hearth emulate KIND`: one device emulator on a local port, until SIGINT or SIGTERM. It prints
//! one line, `listening on ADDR (KIND: description)`, for people and scripts.

use anyhow::{Context, Result};

use super::serve::{init_logging, wait_for_signal};
use hearth::emulate::{self, EmulatorKind, EmulatorOptions};

/// `hearth emulate` options.
#[derive(clap::Args)]
pub struct EmulateArgs {
    /// avalon (CGMiner API), axeos (Bitaxe REST) or braiins (Braiins OS+ gRPC).
    kind: String,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Model: avalon nano3s|nano3|mini3, axeos gamma|supra|ultra, braiins s19jpro|s9.
    #[arg(long)]
    model: Option<String>,
    /// Device seconds per real second (ramps and calibration run this much faster).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Ambient air temperature, °C.
    #[arg(long, default_value_t = 21.0)]
    ambient: f64,
    /// Firmware version to claim (axeos: v2.13.0 has no pause/resume; default v2.14.0).
    #[arg(long)]
    firmware: Option<String>,
    /// Braiins OS+ login user.
    #[arg(long, default_value = "root")]
    username: String,
    /// Braiins OS+ login password (default empty).
    #[arg(long, default_value = "")]
    password: String,
}

/// Runs the emulator.
pub fn run(args: EmulateArgs) -> Result<()> {
    init_logging();
    let kind: EmulatorKind = args.kind.parse()?;
    anyhow::ensure!(
        args.speed.is_finite() && args.speed > 0.0,
        "--speed must be a positive number, not {}",
        args.speed
    );
    let description = match kind {
        EmulatorKind::Avalon => emulate::avalon::describe(args.model.as_deref())?,
        EmulatorKind::Axeos => emulate::axeos::describe(args.model.as_deref())?,
        EmulatorKind::Braiins => emulate::braiins::describe(args.model.as_deref())?,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let opts = EmulatorOptions {
            model: args.model,
            ambient_celsius: args.ambient,
            username: args.username,
            password: args.password,
            firmware: args.firmware,
            ..EmulatorOptions::new(hearth::clock::Clock::local(args.speed))
        };
        let handle = emulate::start(kind, args.listen, opts).await?;
        // One line: the address first, for scripts (`awk '{print $3}'`).
        println!("listening on {} ({kind}: {description})", handle.addr());
        wait_for_signal().await?;
        handle.shutdown().await;
        Ok(())
    })
}
