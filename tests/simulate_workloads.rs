//! `hearth simulate --workloads`: four mix policies on the same room, weather and lease stream.

use serde_json::Value;

mod common;
use common::bin::{hearth, json_of, ok};

/// Runs `hearth simulate` with `args`, which must succeed and print JSON.
fn simulate_json(args: &[&str]) -> Value {
    json_of(hearth().arg("simulate").args(args))
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for k in path {
        v = &v[*k];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v}"))
}

/// One simulated day from Monday 00:00: night setback, morning pre-heat, day holds.
#[test]
fn four_policies_compare_revenue_energy_and_comfort() {
    let started = std::time::Instant::now();
    let v = simulate_json(&["--workloads", "--json", "--hours", "24"]);
    println!("ran in {:?}", started.elapsed());
    let policies = v["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pinned 50:50", "auto", "mining-only", "ai-only"]);
    let [pinned, auto, mining, ai] = &policies[..] else {
        panic!("four policies");
    };
    for p in policies {
        println!(
            "{:14} revenue {:.3} (mining {:.3}, AI {:.3}) unmet {:.2} kWh, jobs {} misses {}, rms {:.3} disc {:.3}",
            p["name"].as_str().unwrap(),
            f(p, &["revenue", "total"]),
            f(p, &["revenue", "mining"]),
            f(p, &["revenue", "ai"]),
            f(p, &["unmet_heat_kwh"]),
            p["jobs_done"],
            p["deadline_misses"],
            f(p, &["kpis", "rms_error_celsius"]),
            f(p, &["kpis", "discomfort_kelvin_hours"]),
        );
    }
    let leases = v["leases_arrived"].as_u64().unwrap();
    assert!(leases > 5, "{leases} leases in a day");

    // Mining only: the GPU never runs, so no AI revenue, no GPU energy, every job is missed.
    assert_eq!(f(mining, &["revenue", "ai"]), 0.0);
    assert_eq!(f(mining, &["energy_kwh", "gpu"]), 0.0);
    assert_eq!(mining["jobs_done"], 0);
    assert!(f(mining, &["revenue", "mining"]) > 0.0);
    // AI only: no hashing; with no job queued the GPU cannot heat, so more heat goes unmet.
    assert_eq!(f(ai, &["energy_kwh", "asic"]), 0.0);
    assert_eq!(f(ai, &["revenue", "mining"]), 0.0);
    assert!(f(ai, &["revenue", "ai"]) > 0.0);
    assert!(
        f(ai, &["unmet_heat_kwh"]) > f(pinned, &["unmet_heat_kwh"]) + 1.0,
        "ai-only {} vs pinned {}",
        f(ai, &["unmet_heat_kwh"]),
        f(pinned, &["unmet_heat_kwh"])
    );
    // Auto spends each joule where it is worth most: it earns at least as much as the others.
    let total = |p: &Value| f(p, &["revenue", "total"]);
    let tol = 0.01 * total(auto);
    assert!(total(auto) >= total(pinned) - tol, "auto vs pinned");
    assert!(total(auto) >= total(mining) - tol, "auto vs mining-only");
    // ... and, deadlines first, misses fewer than the deadline-blind 50:50 pin.
    assert!(auto["deadline_misses"].as_u64() <= pinned["deadline_misses"].as_u64());

    for p in policies {
        let name = p["name"].as_str().unwrap();
        let e = |k: &str| f(p, &["energy_kwh", k]);
        // The workloads' energies add up to the heat the room received, and with what went
        // unmet to the budget.
        let heat = f(p, &["kpis", "energy_kwh"]);
        assert_eq!(e("heat"), heat);
        assert!(
            (e("asic") + e("gpu") + e("resistive") - heat).abs() < 1e-6 * heat,
            "{name}"
        );
        assert!(
            (heat + f(p, &["unmet_heat_kwh"]) - e("budget")).abs() < 1e-6 * heat,
            "{name}"
        );
        assert!(f(p, &["unmet_heat_kwh"]) >= -1e-9, "{name}");
        assert_eq!(e("resistive"), 0.0, "{name}: no element fitted by default");
        let r = |k: &str| f(p, &["revenue", k]);
        assert!((r("mining") + r("ai") - r("total")).abs() < 1e-12, "{name}");
        let (done, missed) = (
            p["jobs_done"].as_u64().unwrap(),
            p["deadline_misses"].as_u64().unwrap(),
        );
        assert!(done <= leases && missed <= leases, "{name}");
    }

    // Comfort, on the true room temperature: the work-conserving policies stay close to the
    // heat-only run; the strict pins, which leave heat unmet, do not.
    let h = &v["heat_only"]["kpis"];
    let (h_rms, h_disc) = (
        f(h, &["rms_error_celsius"]),
        f(h, &["discomfort_kelvin_hours"]),
    );
    for p in [pinned, auto] {
        let rms = f(p, &["kpis", "rms_error_celsius"]);
        let disc = f(p, &["kpis", "discomfort_kelvin_hours"]);
        assert!(
            (rms - h_rms).abs() <= 0.02,
            "{}: rms {rms} vs {h_rms}",
            p["name"]
        );
        assert!(
            disc <= h_disc + 0.05,
            "{}: discomfort {disc} vs {h_disc}",
            p["name"]
        );
        assert!((f(p, &["kpis", "energy_kwh"]) - f(h, &["energy_kwh"])).abs() < 0.5);
    }
    for p in [mining, ai] {
        assert!(
            f(p, &["kpis", "discomfort_kelvin_hours"]) > h_disc + 1.0,
            "{}",
            p["name"]
        );
    }
}

#[test]
fn without_the_flag_the_output_is_unchanged_and_the_section_validates() {
    let v = simulate_json(&["--json", "--hours", "1"]);
    assert!(v["controllers"].is_array());
    assert!(v.get("policies").is_none());
    assert!(v["scenario"].get("workloads").is_none());

    let err = |args: &[&str]| {
        let out = hearth().arg("simulate").args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["--workloads", "--set", "workloads.gpu.idle_watts=600"]);
    assert!(e.contains("workloads.gpu.idle_watts"), "{e}");
    let e = err(&["--workloads", "--set", "workloads.asic.bogus=1"]);
    assert!(e.contains("bogus"), "{e}");
    let e = err(&["--set", "workloads.leases.slack=[0.5, 2]"]);
    assert!(e.contains("workloads.leases.slack"), "{e}");
}

#[test]
fn the_lease_stream_follows_its_seed() {
    let revenue = |seed: &str| {
        let v = simulate_json(&[
            "--workloads",
            "--json",
            "--hours",
            "6",
            "--set",
            &format!("workloads.leases.seed={seed}"),
        ]);
        (
            v["leases_arrived"].as_u64().unwrap(),
            f(&v["policies"][1], &["revenue", "ai"]),
        )
    };
    assert_eq!(revenue("1"), revenue("1"));
    assert_ne!(revenue("1"), revenue("2"));
}

#[test]
fn the_power_split_plots_to_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["svg", "png"] {
        let path = dir.path().join(format!("split.{ext}"));
        let out = hearth()
            .args(["simulate", "--workloads", "--hours", "6", "--plot"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = ok(&out);
        assert!(stdout.contains("unmet heat (kWh)"), "{stdout}");
        let bytes = std::fs::read(&path).unwrap();
        if ext == "png" {
            assert_eq!(&bytes[1..4], b"PNG");
        } else {
            let svg = String::from_utf8_lossy(&bytes);
            for name in ["pinned 50:50", "auto", "mining-only", "ai-only", "budget"] {
                assert!(svg.contains(name), "{name} missing from the SVG");
            }
        }
    }
}
