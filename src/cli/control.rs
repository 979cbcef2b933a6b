//! The owner's control commands over the daemon's gRPC API: `status`, `setpoint` and `mix`.

use anyhow::{bail, Result};
use clap::Subcommand;

use hearth::api::pb;

use super::client::{grpc, rt, Conn};

/// `hearth status` options.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// One snapshot per tick until interrupted.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `hearth setpoint` options.
#[derive(clap::Args)]
pub struct SetpointArgs {
    /// °C (5–30).
    celsius: Option<f64>,
    /// Hold it this long; 0 = until the next scheduled change.
    #[arg(long, default_value_t = 0.0)]
    hold_minutes: f64,
    /// Return to the schedule.
    #[arg(long, conflicts_with = "celsius")]
    clear: bool,
    #[command(flatten)]
    conn: Conn,
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
    if s.devices.len() > 1 || s.devices.iter().any(|d| d.kind != "software") {
        for d in &s.devices {
            println!("  device {}", super::devices::device_line(d).trim_end());
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
        "devices": s.devices.iter().map(super::devices::device_json).collect::<Vec<_>>(),
    })
}

/// `hearth status [--watch]`.
pub fn status(StatusArgs { watch, conn }: StatusArgs) -> Result<()> {
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
pub fn setpoint(
    SetpointArgs {
        celsius,
        hold_minutes,
        clear,
        conn,
    }: SetpointArgs,
) -> Result<()> {
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
