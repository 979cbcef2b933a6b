//! `hearth simulate`: hearth's controller against a bang-bang thermostat in simulated time, or
//! (`--workloads`) four mix policies, printed as a table or JSON and optionally plotted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use hearth::config::{apply_assignments, from_table_with_defaults};
use hearth::sim::{plot, split_plot, PolicyRun, RunResult, Scenario, WorkloadRuns};

/// `hearth simulate` options.
#[derive(clap::Args)]
pub struct SimulateArgs {
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
    let mut scenario: Scenario = from_table_with_defaults(table).context("scenario")?;
    scenario.outdoor.load(&base)?;
    scenario.compile_schedule()?;
    Ok(scenario)
}

/// Runs `hearth simulate`.
pub fn run(args: &SimulateArgs) -> Result<()> {
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
