//! The `hearth` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn hearth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

#[test]
fn serve_logs_budget_and_room_and_stops_cleanly_on_sigterm() {
    let mut child = hearth()
        .args(["serve", "--sim-speed", "50"])
        .env("HEARTH_CONTROL__LOG_EVERY_TICKS", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut ticks = 0;
    let mut seen = Vec::new();
    // Read log lines until a few ticks with a room reading have been logged.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("tick") && line.contains("budget_watts") && line.contains("room_celsius=")
        {
            if !line.contains("room_celsius=-") {
                ticks += 1;
            }
            if ticks >= 3 {
                break;
            }
        }
        assert!(seen.len() < 100, "no tick lines: {seen:#?}");
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}; log {rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("heat budget 0 W")),
        "{rest:#?}"
    );
}

#[test]
fn print_default_is_a_valid_config() {
    let out = hearth().args(["config", "print-default"]).output().unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = hearth()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn invalid_config_fails_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, "[heater]\nmax_watts = 10.0\nidle_watts = 50.0\n").unwrap();
    let out = hearth()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("heater.max_watts"), "{err}");
    let out = hearth()
        .args(["config", "check"])
        .env("HEARTH_THERMOSTAT__PRESETS__COMFORT", "31")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("thermostat.presets.comfort"), "{err}");
}

#[test]
fn simulate_prints_json_kpis_for_both_controllers_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("run.png");
    let out = hearth()
        .args([
            "simulate", "--hours", "24", "--json", "--set", "seed=3", "--plot",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hearth", "bang-bang"]);
    assert_eq!(v["scenario"]["hours"], 24.0);
    assert_eq!(v["scenario"]["seed"], 3);
    for c in v["controllers"].as_array().unwrap() {
        assert!(c["kpis"]["energy_kwh"].as_f64().unwrap() > 0.0);
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn simulate_rejects_bad_parameters_clearly() {
    let out = hearth().args(["simulate", "--r=-1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--r"));
    let out = hearth()
        .args(["simulate", "--set", "room.bogus=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = hearth()
        .args(["simulate", "--plot", "x.gif"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}
