//! `hearth bench fleet`: how closely a fleet of emulated miners (two Avalon Nano 3S, one
//! Bitaxe, on loopback) follows the heat budget in the daemon's simulated room, beside the
//! software ASIC in the same room and schedule, measured in the same run.
//!
//! Each scenario runs the real daemon in this process for `--hours` of schedule time at
//! `--speed`: an hour holding 21 °C, then a setpoint step to 22 °C (a budget step). The room
//! receives what the workloads report, so the figures are the fleet's measured power against
//! the budget the controller asked for.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use hearth::clock::Clock;
use hearth::config::Config;
use hearth::devices::config::{DeviceConfig, DeviceKind};
use hearth::emulate::{self, EmulatorHandle, EmulatorKind, EmulatorOptions};
use hearth::thermal::schedule::Override;

use crate::cli::client::rt;

/// `hearth bench fleet` options.
#[derive(clap::Args)]
pub struct FleetBenchArgs {
    /// Schedule hours per scenario (the setpoint steps up at half time).
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Schedule seconds per real second.
    #[arg(long, default_value_t = 100.0)]
    speed: f64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// What runs in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    /// The software ASIC alone (the baseline).
    SoftwareAsic,
    /// Two Avalon Nano 3S and a Bitaxe, nothing else.
    Fleet,
    /// The same fleet with a 300 W resistive element that covers its steps and ramps.
    FleetAndElement,
}

/// One scenario's figures.
#[derive(Debug, Serialize)]
struct Figures {
    scenario: Scenario,
    /// Ticks sampled.
    ticks: usize,
    /// Mean heat budget, W.
    mean_budget_watts: f64,
    /// RMS of (Σ measured − budget), W, after the first 10 minutes.
    rms_error_watts: f64,
    /// Worst |Σ measured − budget|, W, after the first 10 minutes.
    worst_error_watts: f64,
    /// The RMS error as a fraction of the mean budget.
    rms_error_ratio: f64,
    /// Schedule seconds from the setpoint step until Σ measured stays within 15 W (or 5 %) of
    /// the budget for 5 minutes; `None` if it never does.
    settle_seconds: Option<f64>,
    /// Room temperature range over the hour before the step, °C.
    room_before_step: (f64, f64),
    /// Setting changes sent per device per hour, by device name.
    commands_per_device_hour: Vec<(String, f64)>,
}

/// `hearth bench fleet`.
pub fn run(args: FleetBenchArgs) -> Result<()> {
    anyhow::ensure!(
        args.hours.is_finite() && args.hours >= 0.5,
        "--hours must be at least 0.5"
    );
    anyhow::ensure!(
        args.speed.is_finite() && (1.0..=1000.0).contains(&args.speed),
        "--speed must be within 1–1000"
    );
    let rt = rt()?;
    let mut all = Vec::new();
    for s in [
        Scenario::SoftwareAsic,
        Scenario::Fleet,
        Scenario::FleetAndElement,
    ] {
        let f = rt.block_on(scenario(s, args.hours, args.speed))?;
        if !args.json {
            print(&f, all.first());
        }
        all.push(f);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

fn print(f: &Figures, baseline: Option<&Figures>) {
    let ratio = baseline
        .filter(|b| b.rms_error_watts > 0.0)
        .map_or(String::new(), |b| {
            format!(
                "  ({:.2}× the software ASIC's)",
                f.rms_error_watts / b.rms_error_watts
            )
        });
    println!(
        "{:?}: RMS |Σ measured − budget| {:.1} W ({:.2} % of {:.0} W), worst {:.1} W{ratio}",
        f.scenario,
        f.rms_error_watts,
        100.0 * f.rms_error_ratio,
        f.mean_budget_watts,
        f.worst_error_watts
    );
    println!(
        "  step to 22 °C settled in {}; room before the step {:.2}–{:.2} °C; {} ticks",
        f.settle_seconds
            .map_or("never".into(), |s| format!("{s:.0} s")),
        f.room_before_step.0,
        f.room_before_step.1,
        f.ticks
    );
    for (name, n) in &f.commands_per_device_hour {
        println!("  {name}: {n:.1} commands per hour");
    }
}

/// The bench's daemon: the small room of the fleet tests, and a one-chip software ASIC that can
/// draw the whole 300 W budget.
fn config(data_dir: &std::path::Path, speed: f64) -> Config {
    let mut cfg = Config::default();
    emulate::small_room(&mut cfg, speed);
    cfg.mining.asic.chips = 1;
    cfg.mining.asic.max_watts = 320.0;
    cfg.jobs.data_dir = Some(data_dir.to_path_buf());
    cfg
}

async fn scenario(s: Scenario, hours: f64, speed: f64) -> Result<Figures> {
    let dir = std::env::temp_dir().join(format!("hearth-bench-fleet-{}-{s:?}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let clock = || Clock::starting_at(12.0 * 3600.0, 0, speed);
    let mut cfg = config(&dir, speed);
    let mut emulators: Vec<EmulatorHandle> = Vec::new();
    if s != Scenario::SoftwareAsic {
        for kind in [
            EmulatorKind::Avalon,
            EmulatorKind::Avalon,
            EmulatorKind::Axeos,
        ] {
            let e = emulate::start(
                kind,
                ([127, 0, 0, 1], 0).into(),
                EmulatorOptions::new(clock()),
            )
            .await?;
            let k = match kind {
                EmulatorKind::Avalon => DeviceKind::Avalon,
                _ => DeviceKind::Axeos,
            };
            cfg.mining
                .devices
                .push(DeviceConfig::new(k, Some(&e.addr().to_string())));
            emulators.push(e);
        }
    }
    if s == Scenario::FleetAndElement {
        cfg.heater.resistive.max_watts = 300.0;
    }
    cfg.validate()?;
    let d = hearth::daemon::spawn(cfg, clock()).await?;
    let mut rx = d.status.clone();
    rx.changed().await?;
    let start = rx.borrow_and_update().at_s;
    let (step_at, end) = (start + hours * 1800.0, start + hours * 3600.0);
    let mut stepped = false;
    let mut samples: Vec<(f64, f64, f64, f64)> = Vec::new();
    let last = loop {
        tokio::time::timeout(Duration::from_secs(60), rx.changed())
            .await
            .context("the control loop stopped ticking")??;
        let st = rx.borrow_and_update().clone();
        let p = &st.sched.actual;
        samples.push((
            st.at_s,
            st.budget_watts,
            p.asic + p.resistive,
            st.simulated_room_celsius.unwrap_or(f64::NAN),
        ));
        if !stepped && st.at_s >= step_at {
            stepped = true;
            d.set_override(Some(Override {
                celsius: 22.0,
                until_s: None,
            }))
            .await?;
        }
        if st.at_s >= end {
            break st;
        }
    };
    d.shutdown().await;
    for e in emulators {
        e.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    let counted: Vec<_> = samples.iter().filter(|x| x.0 >= start + 600.0).collect();
    let n = counted.len().max(1) as f64;
    let mean_budget = counted.iter().map(|x| x.1).sum::<f64>() / n;
    let sq = counted.iter().map(|x| (x.2 - x.1).powi(2)).sum::<f64>() / n;
    let worst = counted
        .iter()
        .map(|x| (x.2 - x.1).abs())
        .fold(0.0, f64::max);
    let within = |x: &(f64, f64, f64, f64)| (x.2 - x.1).abs() <= 15.0f64.max(0.05 * x.1);
    let after: Vec<_> = samples.iter().filter(|x| x.0 >= step_at).collect();
    let settle_seconds = after.iter().enumerate().find_map(|(i, x)| {
        let hold = after[i..].iter().take_while(|y| y.0 <= x.0 + 300.0);
        let ok =
            hold.clone().all(|y| within(y)) && after.last().is_some_and(|l| l.0 >= x.0 + 300.0);
        ok.then_some(x.0 - step_at)
    });
    let before: Vec<f64> = samples
        .iter()
        .filter(|x| x.0 >= step_at - 3600.0f64.min(hours * 1800.0) && x.0 < step_at)
        .map(|x| x.3)
        .collect();
    let room_before_step = (
        before.iter().copied().fold(f64::INFINITY, f64::min),
        before.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let commands_per_device_hour = last
        .fleet
        .iter()
        .flat_map(|f| &f.devices)
        .filter(|d| d.status.kind != "software")
        .map(|d| (d.status.name.clone(), d.status.commands_sent as f64 / hours))
        .collect();
    Ok(Figures {
        scenario: s,
        ticks: samples.len(),
        mean_budget_watts: mean_budget,
        rms_error_watts: sq.sqrt(),
        worst_error_watts: worst,
        rms_error_ratio: if mean_budget > 0.0 {
            sq.sqrt() / mean_budget
        } else {
            0.0
        },
        settle_seconds,
        room_before_step,
        commands_per_device_hour,
    })
}
