//! The daemon end to end: the real control loop, sensor pollers and simulated room on tokio.
//! Time is tokio's paused clock wherever the behaviour allows, so hours of room time run in
//! seconds and nothing sleeps for real.

use hearth::clock::Clock;
use hearth::config::{Config, SourceConfig};
use hearth::daemon::{spawn, DaemonHandle};
use hearth::power::DeadMan;
use hearth::status::Status;
use hearth::thermal::safety::{ChipReading, TripKind};
use hearth::thermal::schedule::Override;
use hearth::thermal::sensor::FileUnit;
use std::time::Duration;

/// The default config without mining: these tests run on tokio's paused clock, and the software
/// ASIC's threads live in real time (tests/daemon_mining.rs covers mining in the daemon).
fn base() -> Config {
    let mut cfg = Config::default();
    cfg.mining.enabled = false;
    // The GPU runs on real time and real threads; tests/daemon_mining.rs and tests/daemon_sched.rs cover it.
    cfg.gpu.enabled = false;
    // With neither, the resistive element is the whole heater.
    cfg.heater.resistive.max_watts = cfg.heater.max_watts;
    cfg.jobs.data_dir = Some(tempfile::tempdir().unwrap().keep());
    cfg
}

/// Monday noon: the default schedule holds 21 °C.
fn noon() -> Clock {
    Clock::starting_at(12.0 * 3600.0, 0, 1.0)
}

fn status(d: &DaemonHandle) -> Status {
    d.status.borrow().clone()
}

fn tripped(s: &Status, kind: TripKind) -> bool {
    s.trips.iter().any(|t| t.kind == kind)
}

/// The default config with a file room sensor and a fixed outdoor temperature.
fn file_sensor_config(path: &std::path::Path, unit: FileUnit) -> Config {
    let mut cfg = base();
    cfg.sensors.room = SourceConfig::File {
        path: path.to_path_buf(),
        unit,
    };
    cfg.sensors.outdoor = SourceConfig::Fixed { celsius: 5.0 };
    cfg
}

async fn advance(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn holds_the_setpoint_in_the_simulated_room() {
    let mut cfg = base();
    cfg.simulation.initial_celsius = 20.0;
    let d = spawn(cfg, noon()).await.unwrap();
    advance(4.0 * 3600.0).await;
    let s = status(&d);
    assert!(s.trips.is_empty(), "{:?}", s.trips);
    assert_eq!(s.setpoint_celsius, 21.0);
    let room = s.simulated_room_celsius.unwrap();
    assert!((room - 21.0).abs() < 0.15, "room {room}");
    assert!(s.budget_watts > 0.0 && s.budget_watts <= 1200.0);
    assert!(s.tick > 14_000, "ticks {}", s.tick);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["budget_watts"].is_number() && json["room_celsius"].is_number());
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn manual_override_raises_the_budget_and_then_expires() {
    let mut cfg = base();
    cfg.simulation.initial_celsius = 21.0;
    let d = spawn(cfg, noon()).await.unwrap();
    advance(600.0).await;
    let before = status(&d).budget_watts;
    let until = d.clock.now_s() + 1800.0;
    d.set_override(Some(Override {
        celsius: 24.0,
        until_s: Some(until),
    }))
    .await
    .unwrap();
    advance(60.0).await;
    let s = status(&d);
    assert!(s.override_active && s.setpoint_celsius == 24.0);
    assert!(s.budget_watts > before, "{} vs {before}", s.budget_watts);
    advance(1800.0).await;
    assert_eq!(status(&d).setpoint_celsius, 21.0);
    let err = d
        .set_override(Some(Override {
            celsius: 40.0,
            until_s: None,
        }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("40"), "{err}");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stale_sensor_forces_zero_within_one_tick_and_clears_after_clear_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("temp");
    std::fs::write(&path, "19000\n").unwrap();
    let cfg = file_sensor_config(&path, FileUnit::Millicelsius);
    let d = spawn(cfg.clone(), noon()).await.unwrap();
    advance(60.0).await;
    assert!(status(&d).budget_watts > 0.0);

    // The sensor disappears: after `sensor_stale_after` plus at most one tick, 0 W.
    std::fs::remove_file(&path).unwrap();
    advance(cfg.safety.sensor_stale_after_seconds + 2.0 * cfg.control.tick_seconds).await;
    let s = status(&d);
    assert!(tripped(&s, TripKind::SensorStale), "{:?}", s.trips);
    assert_eq!(s.budget_watts, 0.0);
    assert_eq!(d.target.borrow().watts, 0.0);

    // It returns: the trip holds for the clear-down period, then heating resumes.
    std::fs::write(&path, "19000\n").unwrap();
    advance(cfg.safety.clear_down_seconds - 30.0).await;
    assert_eq!(status(&d).budget_watts, 0.0);
    advance(60.0).await;
    let s = status(&d);
    assert!(s.trips.is_empty(), "{:?}", s.trips);
    assert!(s.budget_watts > 0.0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn garbage_in_the_sensor_file_goes_stale_not_hot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w1_slave");
    std::fs::write(&path, "aa : crc=57 NO\naa t=19000\n").unwrap();
    let cfg = file_sensor_config(&path, FileUnit::W1Slave);
    let d = spawn(cfg, noon()).await.unwrap();
    advance(120.0).await;
    let s = status(&d);
    assert!(tripped(&s, TripKind::SensorStale), "{:?}", s.trips);
    assert!(s.room_celsius.is_none());
    assert_eq!(s.budget_watts, 0.0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn room_over_its_maximum_forces_zero() {
    let mut cfg = base();
    cfg.simulation.initial_celsius = 27.6;
    let d = spawn(cfg, noon()).await.unwrap();
    advance(3.0).await;
    let s = status(&d);
    assert!(tripped(&s, TripKind::RoomOverTemperature), "{:?}", s.trips);
    assert_eq!(s.budget_watts, 0.0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn hot_chip_reported_by_an_engine_forces_zero() {
    let d = spawn(base(), noon()).await.unwrap();
    advance(30.0).await;
    assert!(status(&d).budget_watts > 0.0);
    d.chips.report(ChipReading {
        chip: "asic0".into(),
        celsius: 96.0,
        limit_celsius: 90.0,
        at_s: None,
    });
    advance(2.0).await;
    let s = status(&d);
    assert!(tripped(&s, TripKind::ChipOverTemperature), "{:?}", s.trips);
    assert_eq!(s.budget_watts, 0.0);
    d.shutdown().await;
}

/// A stall must be real: the runtime's only thread is blocked, so the control loop cannot tick.
/// Wall time is the stimulus here; nothing asserts on how long anything took.
#[tokio::test]
async fn stalled_control_loop_leaves_engines_cold_and_trips() {
    let mut cfg = base();
    cfg.control.tick_seconds = 0.02;
    cfg.safety.clear_down_seconds = 3600.0;
    let clock = noon();
    let d = spawn(cfg.clone(), clock.clone()).await.unwrap();
    d.set_override(Some(Override {
        celsius: 25.0,
        until_s: None,
    }))
    .await
    .unwrap();
    let engine = DeadMan::new(d.target.clone());
    let mut status_rx = d.status.clone();
    let heating = status_rx.wait_for(|s| s.budget_watts > 0.0);
    tokio::time::timeout(Duration::from_secs(60), heating)
        .await
        .expect("heating within a minute")
        .unwrap();
    assert!(engine.watts_at(clock.now_s()) > 0.0);

    // Block the runtime for 10 ticks: no target can be published.
    std::thread::sleep(Duration::from_secs_f64(10.0 * cfg.control.tick_seconds));
    assert_eq!(
        engine.watts_at(clock.now_s()),
        0.0,
        "dead-man must void the old target"
    );

    // When the loop runs again it sees its own stall, latches the trip and stays cold.
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        status_rx.wait_for(|s| !s.trips.is_empty()),
    )
    .await
    .expect("a trip after the stall")
    .unwrap()
    .clone();
    assert!(tripped(&s, TripKind::LoopStall), "{:?}", s.trips);
    assert_eq!(s.budget_watts, 0.0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_publishes_zero() {
    let d = spawn(base(), noon()).await.unwrap();
    advance(30.0).await;
    let target = d.target.clone();
    assert!(target.borrow().watts > 0.0);
    d.shutdown().await;
    assert_eq!(target.borrow().watts, 0.0);
}

/// Heating switched off holds the budget at 0 W whatever the room, is kept across a restart,
/// and switched on again the thermostat runs.
#[tokio::test(start_paused = true)]
async fn heating_off_holds_zero_watts_across_a_restart() {
    let mut cfg = base();
    cfg.simulation.initial_celsius = 15.0;
    let d = spawn(cfg.clone(), noon()).await.unwrap();
    advance(60.0).await;
    assert!(status(&d).budget_watts > 0.0);
    d.client().set_heating(false).await.unwrap();
    advance(5.0).await;
    let s = status(&d);
    assert!(s.heating_off && s.budget_watts == 0.0, "{s:?}");
    d.shutdown().await;

    let d = spawn(cfg, noon()).await.unwrap();
    advance(60.0).await;
    let s = status(&d);
    assert!(
        s.heating_off && s.budget_watts == 0.0 && s.trips.is_empty(),
        "{s:?}"
    );
    d.client().set_heating(true).await.unwrap();
    advance(5.0).await;
    let s = status(&d);
    assert!(!s.heating_off && s.budget_watts > 0.0, "{s:?}");
    d.shutdown().await;
}
