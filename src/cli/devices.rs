//! `hearth devices`: the mining fleet as the daemon sees it, and `devices probe ADDR`, which
//! identifies a device by speaking each API to it.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;

use hearth::api::pb;
use hearth::devices::config::DeviceKind;

use super::client::{grpc, rt, Conn};

/// `hearth devices` options.
#[derive(clap::Args)]
pub struct DevicesArgs {
    #[command(subcommand)]
    action: Option<DevicesAction>,
    #[command(flatten)]
    conn: Conn,
}

/// `hearth devices …`.
#[derive(Subcommand)]
enum DevicesAction {
    /// Identify the device at ADDR (host or host:port) by its management API.
    Probe {
        /// host or host:port; without a port, each kind's default port.
        addr: String,
        /// Try only this kind: avalon, axeos or braiins.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<DeviceKind>,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_kind(s: &str) -> Result<DeviceKind, String> {
    match s {
        "avalon" => Ok(DeviceKind::Avalon),
        "axeos" => Ok(DeviceKind::Axeos),
        "braiins" => Ok(DeviceKind::Braiins),
        _ => Err(format!("{s:?}: give avalon, axeos or braiins")),
    }
}

/// `hearth devices [probe ADDR]`.
pub fn run(DevicesArgs { action, conn }: DevicesArgs) -> Result<()> {
    match action {
        None => list(conn),
        Some(DevicesAction::Probe {
            addr,
            kind,
            timeout,
            json,
        }) => probe(&addr, kind, timeout, json),
    }
}

fn list(conn: Conn) -> Result<()> {
    rt()?.block_on(async move {
        let s = conn
            .control()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await
            .map_err(grpc)?
            .into_inner();
        if conn.json {
            let all: Vec<_> = s.devices.iter().map(device_json).collect();
            println!("{}", serde_json::Value::Array(all));
            return Ok(());
        }
        if s.devices.is_empty() {
            println!("no mining devices (mining is disabled)");
            return Ok(());
        }
        println!(
            "{:<22} {:<8} {:<22} {:<22} {:<11} {:>14} {:<18} {:>10} {:>10}",
            "NAME", "KIND", "MODEL", "ADDRESS", "STATE", "POWER", "SETTING", "TEMP", "HASHRATE"
        );
        for d in &s.devices {
            println!("{}", device_line(d));
            if !d.reason.is_empty() {
                println!("{:<22} ↳ {}", "", d.reason);
            }
        }
        Ok(())
    })
}

/// One device as a table row.
pub fn device_line(d: &pb::Device) -> String {
    let power = d.watts.map_or("-".into(), |w| {
        format!(
            "{w:.0} W {}",
            if d.power_source == "measured" {
                "meas"
            } else {
                "model"
            }
        )
    });
    let setting = if d.commanded.is_empty() || d.commanded == d.setting {
        d.setting.clone()
    } else {
        format!("{} → {}", d.setting, d.commanded)
    };
    let temp = d
        .temperatures
        .iter()
        .map(|t| t.celsius)
        .reduce(f64::max)
        .map_or("-".into(), |c| format!("{c:.1} °C"));
    let state = match d.telemetry_age_seconds {
        Some(age) if d.state == "unreachable" => format!("{} {age:.0}s", d.state),
        _ => d.state.clone(),
    };
    format!(
        "{:<22} {:<8} {:<22} {:<22} {:<11} {:>14} {:<18} {:>10} {:>10}",
        d.name,
        d.kind,
        d.model,
        if d.address.is_empty() {
            "-"
        } else {
            &d.address
        },
        state,
        power,
        setting,
        temp,
        hashrate(d.hashes_per_second)
    )
}

/// H/s in the largest unit that keeps it readable.
fn hashrate(h: f64) -> String {
    let units = [(1e12, "TH/s"), (1e9, "GH/s"), (1e6, "MH/s"), (1e3, "kH/s")];
    units
        .iter()
        .find(|(u, _)| h >= *u)
        .map_or(format!("{h:.0} H/s"), |(u, n)| format!("{:.2} {n}", h / u))
}

/// One device as JSON.
pub fn device_json(d: &pb::Device) -> serde_json::Value {
    serde_json::json!({
        "name": d.name, "kind": d.kind, "model": d.model, "address": d.address,
        "state": d.state, "reason": d.reason, "watts": d.watts, "power_source": d.power_source,
        "setting": d.setting, "commanded": d.commanded,
        "temperatures": d.temperatures.iter().map(|t| serde_json::json!({"sensor": t.sensor, "celsius": t.celsius})).collect::<Vec<_>>(),
        "chip_limit_celsius": d.chip_limit_celsius, "hashes_per_second": d.hashes_per_second,
        "shares_accepted": d.shares_accepted, "shares_rejected": d.shares_rejected,
        "telemetry_age_seconds": d.telemetry_age_seconds, "commands_sent": d.commands_sent,
        "energy_kwh": d.energy_kwh,
    })
}

fn probe(addr: &str, kind: Option<DeviceKind>, timeout: f64, json: bool) -> Result<()> {
    if !(timeout.is_finite() && timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(timeout);
    let kinds = match kind {
        Some(k) => vec![k],
        None => vec![DeviceKind::Avalon, DeviceKind::Axeos, DeviceKind::Braiins],
    };
    rt()?.block_on(async move {
        let mut tried = Vec::new();
        for k in kinds {
            match hearth::devices::probe(k, addr, timeout).await {
                Ok(id) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"kind": id.kind, "model": id.model,
                                "firmware": id.firmware, "summary": id.summary})
                        );
                    } else {
                        println!("{} {} (firmware {})", id.kind, id.model, id.firmware);
                        println!("  {}", id.summary);
                    }
                    return Ok(());
                }
                Err(e) => tried.push(format!("{}: {e}", k.as_str())),
            }
        }
        bail!(
            "no known device API answered at {addr} ({})",
            tried.join("; ")
        )
    })
}
