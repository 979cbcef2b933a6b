//! The smart-plug heater (`heater.resistive.kind = "mqtt_switch"`) on a real mosquitto: a test
//! client plays a Tasmota plug (commands on `cmnd/heater/POWER`, state on `stat/heater/POWER`,
//! power in `tele/heater/SENSOR` as `{"ENERGY":{"Power":…}}`). The plug follows its duty over
//! the window within its minimum on and off times, counts as drawing until it confirms off after
//! the broker comes back, and is switched off at once by a trip in the daemon.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{spawn_at_noon, wait_for};
use common::mqtt::Mosquitto;
use hearth::clock::Clock;
use hearth::config::{Config, ResistiveConfig, ResistiveKind, SourceConfig};
use hearth::devices::plug::{self, MqttPlug};
use hearth::home::config::MqttConfig;
use hearth::home::session::Link;
use hearth::sched::workload::{Source, Workload};
use hearth::thermal::safety::{ChipReading, TripKind};
use rumqttc::{Event, Packet, QoS};
use tokio::sync::watch;

const WATTS: f64 = 1000.0;
/// What the element really draws when on, as the plug measures it.
const MEASURED: f64 = 980.0;

/// The `[mqtt]` section for `broker`, reconnecting fast.
fn mqtt(broker: &Mosquitto) -> MqttConfig {
    MqttConfig {
        url: broker.url(),
        client_id: Some("hearth-test".into()),
        keepalive_seconds: 5,
        reconnect_min_seconds: 0.1,
        reconnect_max_seconds: 0.5,
        ..MqttConfig::default()
    }
}

/// A Tasmota plug's keys: 60 s window, 10 s minimum on and off.
fn switch_config() -> ResistiveConfig {
    ResistiveConfig {
        max_watts: WATTS,
        kind: ResistiveKind::MqttSwitch,
        command_topic: "cmnd/heater/POWER".into(),
        state_topic: Some("stat/heater/POWER".into()),
        power_topic: Some("tele/heater/SENSOR".into()),
        power_field: Some("ENERGY.Power".into()),
        window_seconds: 60.0,
        min_on_seconds: 10.0,
        min_off_seconds: 10.0,
        ..ResistiveConfig::default()
    }
}

/// The commands the test plug took: (schedule seconds, on).
type Commands = Arc<Mutex<Vec<(f64, bool)>>>;

/// Plays the plug on `broker`: each ON/OFF on its command topic is recorded (on `clock`),
/// answered on its state topic and followed by its power. It reconnects when the broker
/// comes back.
fn play_plug(broker: &Mosquitto, clock: Clock) -> Commands {
    let commands: Commands = Arc::default();
    let (client, mut events) = broker.client("test-plug");
    let log = commands.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe("cmnd/heater/POWER", QoS::AtLeastOnce)
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let on = match &p.payload[..] {
                        b"ON" => true,
                        b"OFF" => false,
                        other => panic!("the plug got {other:?}"),
                    };
                    log.lock().unwrap().push((clock.now_s(), on));
                    let state = if on { "ON" } else { "OFF" };
                    let power = if on { MEASURED } else { 0.0 };
                    client
                        .try_publish("stat/heater/POWER", QoS::AtLeastOnce, false, state)
                        .unwrap();
                    let sensor = format!(r#"{{"Time":"x","ENERGY":{{"Power":{power}}}}}"#);
                    client
                        .try_publish("tele/heater/SENSOR", QoS::AtLeastOnce, false, sensor)
                        .unwrap();
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    commands
}

/// The plug driver on `broker`, on `clock`, stepping every 50 ms of real time.
fn start_plug(
    broker: &Mosquitto,
    clock: &Clock,
) -> (
    Arc<MqttPlug>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let mut link = Link::for_role(&mqtt(broker), "plug").unwrap();
    link.tick = Some(Duration::from_millis(50));
    let (stop, shutdown) = watch::channel(false);
    let (plug, task) = plug::start(&switch_config(), link, clock.clone(), shutdown);
    (plug, stop, tokio::spawn(task))
}

/// Waits up to `secs` real seconds for `f`.
async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The switches in `cmds` (repeats of the same command dropped).
fn switches(cmds: &[(f64, bool)]) -> Vec<(f64, bool)> {
    let mut out: Vec<(f64, bool)> = Vec::new();
    for &(t, on) in cmds {
        if out.last().is_none_or(|&(_, last)| last != on) {
            out.push((t, on));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plug_follows_its_duty_within_min_on_and_off_times() {
    let broker = Mosquitto::start();
    // 20× real time: a 60 s window takes 3 s.
    let clock = Clock::starting_at(0.0, 0, 20.0);
    let cmds = play_plug(&broker, clock.clone());
    let (plug, stop, task) = start_plug(&broker, &clock);
    // 40 %: 24 s on, 36 s off in each 60 s window.
    plug.set_target(400.0, Duration::from_secs(3600));
    wait_until(20, "five switches after the first window", || {
        switches(&cmds.lock().unwrap()).len() >= 8
    })
    .await;
    // A sample while on: the measured power, once the plug has reported it.
    wait_until(10, "the measured power while on", || {
        plug.actual_watts() == (MEASURED, Source::Measured)
    })
    .await;
    wait_until(10, "measured 0 W once off", || {
        plug.actual_watts() == (0.0, Source::Measured)
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let s = switches(&cmds.lock().unwrap());
    assert!(!s[0].1, "the first word to the plug is off: {s:?}");
    // Once the plug has confirmed off, each on run is 24 s and each off run 36 s (± a 1 s step
    // and the broker's latency), so no run is shorter than the 10 s minimum. (The last run
    // was cut short by the shutdown, which switches off at once.)
    let runs: Vec<(f64, bool)> = s.windows(2).map(|p| (p[1].0 - p[0].0, p[0].1)).collect();
    assert!(runs.len() >= 6, "{runs:?}");
    for &(d, on) in &runs[1..runs.len() - 1] {
        let want = if on { 24.0 } else { 36.0 };
        assert!((d - want).abs() <= 2.0, "run of {d:.1} s on={on}: {runs:?}");
    }
    assert!(!s.last().unwrap().1, "off at shutdown: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_broker_leaves_the_plug_counted_on_until_it_confirms_off() {
    let mut broker = Mosquitto::start();
    let clock = Clock::starting_at(0.0, 0, 20.0);
    let cmds = play_plug(&broker, clock.clone());
    let (plug, stop, task) = start_plug(&broker, &clock);
    // Before anything is known the element counts as drawing.
    assert_eq!(plug.actual_watts(), (WATTS, Source::Modelled));
    plug.set_target(WATTS, Duration::from_secs(3600));
    wait_until(10, "the plug on, measured", || {
        plug.actual_watts() == (MEASURED, Source::Measured)
    })
    .await;
    broker.kill();
    wait_until(5, "the plug counted as drawing its full power", || {
        plug.actual_watts() == (WATTS, Source::Modelled)
    })
    .await;
    let before = cmds.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(plug.actual_watts(), (WATTS, Source::Modelled));
    broker.restart();
    // Until the plug has taken the off command (and then said so), it counts as drawing.
    let t0 = std::time::Instant::now();
    loop {
        let off_taken = cmds.lock().unwrap().len() > before;
        if off_taken {
            break;
        }
        assert_eq!(plug.actual_watts(), (WATTS, Source::Modelled));
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no command after reconnection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until(10, "control resumes: the plug on again", || {
        cmds.lock().unwrap()[before..].iter().any(|&(_, on)| on)
    })
    .await;
    let after: Vec<(f64, bool)> = cmds.lock().unwrap()[before..].to_vec();
    assert!(
        !after[0].1,
        "the first command after reconnection is off: {after:?}"
    );
    wait_until(10, "measured again", || {
        plug.actual_watts() == (MEASURED, Source::Measured)
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_heats_through_the_plug_and_a_trip_switches_it_off_at_once() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.mining.enabled = false;
    cfg.gpu.enabled = false;
    cfg.simulation.speed = 20.0;
    cfg.simulation.initial_celsius = 15.0;
    cfg.jobs.data_dir = Some(dir.path().to_path_buf());
    cfg.heater.max_watts = WATTS;
    cfg.heater.resistive = switch_config();
    // A long minimum on time: the trip must not wait for it.
    cfg.heater.resistive.min_on_seconds = 40.0;
    cfg.mqtt = Some(mqtt(&broker));
    assert!(matches!(cfg.sensors.room, SourceConfig::Simulated { .. }));
    cfg.validate().unwrap();
    let d = spawn_at_noon(cfg).await;
    let cmds = play_plug(&broker, d.clock.clone());
    // A cold room: the budget is the whole heater, the plug on.
    let on = wait_for(&d, "the plug heating", |s| {
        s.sched.actual.resistive == MEASURED && s.budget_watts > 0.0
    })
    .await;
    assert!(on.trips.is_empty(), "{:?}", on.trips);
    let on_at = cmds.lock().unwrap().iter().rev().find(|c| c.1).unwrap().0;
    d.chips.report(ChipReading {
        chip: "asic0".into(),
        celsius: 96.0,
        limit_celsius: 90.0,
        at_s: None,
    });
    wait_until(10, "the plug commanded off", || {
        cmds.lock().unwrap().last().is_some_and(|&(_, on)| !on)
    })
    .await;
    let off_at = cmds.lock().unwrap().last().unwrap().0;
    assert!(
        off_at - on_at < 20.0,
        "off {:.1} s after switching on: a trip does not wait for the 40 s minimum on time",
        off_at - on_at
    );
    let s = wait_for(&d, "the plug confirmed off", |s| {
        s.sched.actual.resistive == 0.0
    })
    .await;
    assert!(s
        .trips
        .iter()
        .any(|t| t.kind == TripKind::ChipOverTemperature));
    assert_eq!(s.budget_watts, 0.0);
    d.shutdown().await;
}
