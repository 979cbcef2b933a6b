//! The home link end to end against a real broker: Debian's `mosquitto` on a free loopback
//! port, an in-process daemon (simulated room at 30×, the software ASIC, no GPU) and a
//! Home-Assistant-like client that reads the discovery configs, drives the entities through
//! their command topics and watches their state topics. Also `hearth serve` with `[mqtt]`:
//! `online`, `offline` on a clean stop, and the last will when it is killed.
//!
//! Figures (printed with `eprintln!`): command-to-state latency through the broker (p50/p99
//! over 50 setpoints) and messages per minute at steady state and after a broker restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use hearth::home::config::MqttConfig;
use hearth::home::{HomeHandle, HomeSetup};
use hearth::sched::allocator::Mix;

mod common;
use common::bin::{free_addr, wait_listening};
use common::daemon::{spawn_at_noon, wait_for};
use common::mqtt::{Mosquitto, Recorder, Seen};
use common::serve::{serve, sigterm, wait_exit, Daemon};

const DEV: &str = "test-heater";
const BASE: &str = "hearth/test-heater";
/// One config per entity: the climate, 12 sensors, the select, the number, the binary sensor.
const ENTITIES: usize = 16;

fn mqtt(url: String) -> MqttConfig {
    MqttConfig {
        url,
        reconnect_min_seconds: 0.1,
        reconnect_max_seconds: 0.5,
        ..MqttConfig::default()
    }
}

fn topic(rel: &str) -> String {
    format!("{BASE}/{rel}")
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not a list"))
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

/// Checks one discovery config the way Home Assistant's MQTT integration reads it: the keys it
/// knows for the platform, the device block, and units and classes it accepts.
fn check_config(topic: &str, v: &Value) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(parts.len(), 5, "{topic}");
    assert_eq!(
        (parts[0], parts[2], parts[4]),
        ("homeassistant", DEV, "config")
    );
    let component = parts[1];
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{topic}: not an object"));
    let common = [
        "name",
        "unique_id",
        "device",
        "availability_topic",
        "payload_available",
        "payload_not_available",
        "origin",
        "qos",
    ];
    let own: &[&str] = match component {
        "climate" => &[
            "modes",
            "mode_command_topic",
            "mode_state_topic",
            "temperature_command_topic",
            "temperature_state_topic",
            "current_temperature_topic",
            "action_topic",
            "preset_modes",
            "preset_mode_command_topic",
            "preset_mode_state_topic",
            "min_temp",
            "max_temp",
            "temp_step",
            "precision",
            "temperature_unit",
            "optimistic",
        ],
        "sensor" => &[
            "state_topic",
            "unit_of_measurement",
            "device_class",
            "state_class",
            "suggested_display_precision",
        ],
        "select" => &["command_topic", "state_topic", "options", "optimistic"],
        "number" => &[
            "command_topic",
            "state_topic",
            "min",
            "max",
            "step",
            "unit_of_measurement",
            "mode",
            "optimistic",
        ],
        "binary_sensor" => &[
            "state_topic",
            "json_attributes_topic",
            "device_class",
            "payload_on",
            "payload_off",
        ],
        other => panic!("{topic}: unexpected component {other}"),
    };
    for k in obj.keys() {
        assert!(
            common.contains(&k.as_str()) || own.contains(&k.as_str()),
            "{topic}: {component} has no key {k:?}"
        );
    }
    let uid = v["unique_id"].as_str().unwrap();
    assert!(uid.starts_with("hearth_test-heater_"), "{uid}");
    let dev = &v["device"];
    assert_eq!(strs(&dev["identifiers"]), ["hearth_test-heater"]);
    for k in ["name", "model", "manufacturer", "sw_version"] {
        assert!(
            dev[k].as_str().is_some_and(|s| !s.is_empty()),
            "{topic}: device.{k}"
        );
    }
    assert_eq!(v["availability_topic"], topic_of("availability"));
    for (k, t) in obj {
        if k.ends_with("_topic") {
            let t = t.as_str().unwrap();
            assert!(
                t.starts_with(BASE) && !t.contains(['+', '#']),
                "{topic}: {k} = {t}"
            );
            assert_eq!(
                k.ends_with("command_topic"),
                t.ends_with("/set"),
                "{topic}: {k} = {t}"
            );
        }
    }
    match component {
        "climate" => {
            for m in strs(&v["modes"]) {
                assert!([
                    "off",
                    "heat",
                    "cool",
                    "auto",
                    "dry",
                    "fan_only",
                    "heat_cool"
                ]
                .contains(&m));
            }
            assert_eq!(strs(&v["modes"]), ["off", "heat"]);
            let presets = strs(&v["preset_modes"]);
            assert!(!presets.contains(&"none"), "HA refuses a preset named none");
            assert_eq!(presets, ["away", "comfort", "eco"]);
            assert!(obj.contains_key("preset_mode_command_topic"));
            assert_eq!(
                (v["min_temp"].as_f64(), v["max_temp"].as_f64()),
                (Some(5.0), Some(30.0))
            );
            assert!([0.1, 0.5, 1.0].contains(&v["precision"].as_f64().unwrap()));
            assert!(v["temp_step"].as_f64().unwrap() > 0.0);
            assert!(["C", "F"].contains(&v["temperature_unit"].as_str().unwrap()));
        }
        "sensor" => {
            let unit = v["unit_of_measurement"].as_str();
            let class = v["state_class"].as_str().unwrap();
            assert!(["measurement", "total", "total_increasing"].contains(&class));
            match v["device_class"].as_str() {
                Some("power") => {
                    assert!(["W", "kW"].contains(&unit.unwrap()));
                    assert_eq!(class, "measurement");
                }
                Some("energy") => {
                    assert!(["Wh", "kWh", "MWh"].contains(&unit.unwrap()));
                    assert!(["total", "total_increasing"].contains(&class));
                }
                Some("temperature") => {
                    assert!(["°C", "°F"].contains(&unit.unwrap()));
                    assert_eq!(class, "measurement");
                }
                Some(other) => panic!("{topic}: unexpected device class {other}"),
                None => {}
            }
        }
        "select" => assert_eq!(
            strs(&v["options"]),
            ["auto", "mining only", "AI only", "pinned"]
        ),
        "number" => {
            assert!(v["min"].as_f64().unwrap() < v["max"].as_f64().unwrap());
            assert!(v["step"].as_f64().unwrap() > 0.0);
            assert!(["auto", "box", "slider"].contains(&v["mode"].as_str().unwrap()));
            assert_eq!(v["unit_of_measurement"], "%");
        }
        "binary_sensor" => {
            assert_eq!(v["device_class"], "problem");
            assert!(obj.contains_key("json_attributes_topic"));
        }
        _ => unreachable!(),
    }
}

fn topic_of(rel: &str) -> Value {
    Value::String(topic(rel))
}

/// Waits until the recorder has seen every discovery config from index `from` on; returns them.
async fn configs_since(ha: &Recorder, from: usize) -> BTreeMap<String, Value> {
    let t0 = Instant::now();
    loop {
        let cfgs: BTreeMap<String, Value> = ha
            .since(from)
            .into_iter()
            .filter(|m| m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config"))
            .map(|m| {
                let v = serde_json::from_str(&m.payload)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", m.topic, m.payload));
                (m.topic, v)
            })
            .collect();
        if cfgs.len() >= ENTITIES {
            return cfgs;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {} configs",
            cfgs.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `payload` on command topic `rel` + `/set` and waits for `state` on the state topic
/// `rel`; returns how long that took.
async fn command(ha: &Recorder, rel: &str, payload: &str, state: &str) -> Duration {
    let n = ha.count();
    let t0 = Instant::now();
    ha.publish(&topic(&format!("{rel}/set")), payload, false)
        .await;
    let want = topic(rel);
    let seen = ha
        .wait_for(
            n,
            &format!("{rel} = {state} after {payload}"),
            |m: &Seen| m.topic == want && m.payload == state,
        )
        .await;
    seen.at.duration_since(t0)
}

/// Messages hearth sent (its topics and discovery; not the test's commands) from index `from`
/// on, per minute over `window`.
fn per_minute(ha: &Recorder, from: usize, window: Duration) -> f64 {
    let mine = ha
        .since(from)
        .iter()
        .filter(|m| {
            (m.topic.starts_with(BASE) || m.topic.starts_with("homeassistant/"))
                && !m.topic.ends_with("/set")
                && m.topic != "homeassistant/status"
        })
        .count();
    mine as f64 * 60.0 / window.as_secs_f64()
}

async fn stats_until(home: &HomeHandle, what: &str, f: impl Fn(&hearth::home::HomeStats) -> bool) {
    let t0 = Instant::now();
    while !f(&home.stats()) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{what}: {:?}",
            home.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_sees_and_drives_the_heater() {
    let mut broker = Mosquitto::start();
    let ha = Recorder::start(&broker, "ha", &["homeassistant/#", "hearth/#"]);
    ha.ready(1).await;
    // A command left retained on the broker before the daemon starts must not be replayed.
    ha.publish(&topic("climate/target/set"), "29.5", true).await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::daemon::config(dir.path());
    cfg.gpu.enabled = false;
    let presets = cfg.thermostat.presets.clone();
    let d = spawn_at_noon(cfg).await;
    wait_for(&d, "a heat budget", |s| s.budget_watts > 0.0).await;
    let home =
        hearth::home::spawn(HomeSetup::new(mqtt(broker.url()), DEV, presets), d.client()).unwrap();

    // Discovery: every entity, valid for Home Assistant, unique ids.
    let cfgs = configs_since(&ha, 0).await;
    assert_eq!(cfgs.len(), ENTITIES, "{:?}", cfgs.keys());
    let mut ids = BTreeSet::new();
    for (t, v) in &cfgs {
        check_config(t, v);
        assert!(
            ids.insert(v["unique_id"].as_str().unwrap().to_string()),
            "{t}"
        );
    }
    ha.wait_for(0, "online", |m| {
        m.topic == topic("availability") && m.payload == "online"
    })
    .await;
    // Every sensor state is a number, as a sensor with a state class must be.
    ha.wait_for(0, "the power state", |m| {
        m.topic == topic("sensor/power_total")
    })
    .await;
    for v in cfgs.values().filter(|v| v.get("state_class").is_some()) {
        let t = v["state_topic"].as_str().unwrap();
        let seen = ha.wait_for(0, t, |m| m.topic == t).await;
        assert!(
            seen.payload.parse::<f64>().is_ok(),
            "{t} = {}",
            seen.payload
        );
    }

    // The stale retained setpoint was ignored: the schedule's 21 °C holds.
    stats_until(&home, "the stale command", |s| {
        s.stale_commands_ignored >= 1
    })
    .await;
    ha.wait_for(0, "the target", |m| {
        m.topic == topic("climate/target") && m.payload == "21.0"
    })
    .await;
    assert!(!d.status.borrow().override_active);
    assert_eq!(
        ha.latest(&topic("climate/preset")).as_deref(),
        Some("comfort")
    );

    // Home Assistant restarts: the configs come again.
    let n = ha.count();
    ha.publish("homeassistant/status", "online", false).await;
    let again = configs_since(&ha, n).await;
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        cfgs.keys().collect::<Vec<_>>()
    );

    // A setpoint reaches the controller and comes back.
    command(&ha, "climate/target", "23.5", "23.5").await;
    wait_for(&d, "the setpoint", |s| s.setpoint_celsius == 23.5).await;
    // Out of range: refused, and the real value said again.
    let refused = home.stats().commands_refused;
    command(&ha, "climate/target", "35", "23.5").await;
    assert_eq!(home.stats().commands_refused, refused + 1);
    assert_eq!(d.status.borrow().setpoint_celsius, 23.5);
    command(&ha, "climate/target", "warm", "23.5").await;
    // Presets: eco is 18 °C; none hands back to the schedule.
    command(&ha, "climate/preset", "eco", "eco").await;
    wait_for(&d, "eco", |s| s.setpoint_celsius == 18.0).await;
    command(&ha, "climate/preset", "none", "comfort").await;
    wait_for(&d, "the schedule", |s| {
        !s.override_active && s.setpoint_celsius == 21.0
    })
    .await;
    command(&ha, "climate/preset", "tropical", "comfort").await;

    // The mix and the GPU share.
    command(&ha, "mix", "mining only", "mining only").await;
    let mining_only = Mix::Pinned {
        asic: 1.0,
        gpu: 0.0,
        strict: true,
    };
    wait_for(&d, "mining only", |s| s.sched.mix == Some(mining_only)).await;
    let n = ha.count();
    command(&ha, "gpu_share", "30", "30").await;
    ha.wait_for(n, "mix pinned", |m| {
        m.topic == topic("mix") && m.payload == "pinned"
    })
    .await;
    command(&ha, "gpu_share", "150", "30").await;
    command(&ha, "mix", "auto", "auto").await;
    command(&ha, "mix", "pinned", "pinned").await;
    assert_eq!(ha.latest(&topic("gpu_share")).as_deref(), Some("30"));
    wait_for(
        &d,
        "the 30 % pin",
        |s| matches!(s.sched.mix, Some(Mix::Pinned { gpu, .. }) if (gpu - 0.3).abs() < 1e-9),
    )
    .await;

    // Mode off: a 0 W budget, shown as off; heat brings the thermostat back.
    command(&ha, "climate/mode", "off", "off").await;
    wait_for(&d, "0 W", |s| s.heating_off && s.budget_watts == 0.0).await;
    ha.wait_for(0, "action off", |m| {
        m.topic == topic("climate/action") && m.payload == "off"
    })
    .await;
    let n = ha.count();
    command(&ha, "climate/mode", "heat", "heat").await;
    wait_for(&d, "heat again", |s| !s.heating_off && s.budget_watts > 0.0).await;
    ha.wait_for(n, "action heating", |m| {
        m.topic == topic("climate/action") && m.payload == "heating"
    })
    .await;

    // Latency: 50 setpoints through the broker, each until its state comes back.
    let mut lat: Vec<Duration> = Vec::new();
    for i in 0..50 {
        let v = if i % 2 == 0 { "22.0" } else { "22.5" };
        lat.push(command(&ha, "climate/target", v, v).await);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "home: command-to-state latency over {} setpoints: p50 {:.1} ms, p99 {:.1} ms (tick {:.0} ms real)",
        lat.len(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        1e3 / 30.0
    );
    assert!(p(0.99) < Duration::from_secs(2), "{lat:?}");

    // Steady state.
    let window = Duration::from_secs(30);
    let n = ha.count();
    tokio::time::sleep(window).await;
    let steady = per_minute(&ha, n, window);
    eprintln!("home: {steady:.0} messages/min at steady state (room at 30x)");

    // The broker dies: control goes on; it comes back: everything is announced again.
    broker.kill();
    let tick = d.status.borrow().tick;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = d.status.borrow().clone();
    assert!(s.tick >= tick + 60, "control stalled: {tick} -> {}", s.tick);
    assert!(s.budget_watts > 0.0 && s.trips.is_empty(), "{s:?}");
    let n = ha.count();
    broker.restart();
    let restarted = Instant::now();
    ha.ready(2).await;
    let again = configs_since(&ha, n).await;
    assert_eq!(again.len(), ENTITIES);
    ha.wait_for(n, "online again", |m| {
        m.topic == topic("availability") && m.payload == "online"
    })
    .await;
    assert!(home.stats().link.connections >= 2);
    let reconnected = restarted.elapsed();
    let burst = per_minute(&ha, n, Duration::from_secs(60));
    command(&ha, "climate/target", "20.5", "20.5").await;
    wait_for(&d, "20.5", |s| s.setpoint_celsius == 20.5).await;
    tokio::time::sleep(window.saturating_sub(restarted.elapsed())).await;
    let after = per_minute(&ha, n, restarted.elapsed());
    eprintln!(
        "home: broker restart: re-announced in {:.0} ms ({burst:.0} messages: configs, availability, state), {after:.0} messages/min over the first {:.0} s",
        reconnected.as_secs_f64() * 1e3,
        restarted.elapsed().as_secs_f64()
    );

    // A clean stop says offline.
    let n = ha.count();
    home.shutdown().await;
    ha.wait_for(n, "offline", |m| {
        m.topic == topic("availability") && m.payload == "offline"
    })
    .await;
    d.shutdown().await;
}

/// `hearth serve` with `[mqtt]` (from the environment): `online` under its device id, `offline`
/// on SIGTERM, and `offline` from the broker (the last will) when it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_serve_says_online_offline_and_its_will() {
    let broker = Mosquitto::start();
    let ha = Recorder::start(&broker, "ha", &["hearth/+/availability", "homeassistant/#"]);
    ha.ready(1).await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let start = || {
        let mut cmd = serve("30", &listen, dir.path(), &free_addr());
        cmd.env("HEARTH_MQTT__URL", broker.url())
            .env("HEARTH_MQTT__RECONNECT_MIN_SECONDS", "0.1")
            .env("HEARTH_GPU__ENABLED", "false");
        Daemon(cmd.spawn().unwrap())
    };
    let is = |payload: &'static str| {
        move |m: &Seen| m.topic.ends_with("/availability") && m.payload == payload
    };

    let mut d = start();
    let online = ha.wait_for(0, "online", is("online")).await;
    let device = online
        .topic
        .strip_prefix("hearth/")
        .and_then(|t| t.strip_suffix("/availability"))
        .unwrap()
        .to_string();
    assert!(device.starts_with("dev-"), "{device}");
    ha.wait_for(0, "the climate config", |m| {
        m.topic == format!("homeassistant/climate/{device}/thermostat/config")
    })
    .await;
    // SIGTERM is handled once the API is up.
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    tokio::task::block_in_place(|| wait_listening(port, "hearth serve's API"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = ha.count();
    sigterm(&d.0);
    let code = tokio::task::block_in_place(|| wait_exit(&mut d.0, "hearth serve did not stop"));
    assert!(code.success(), "{code:?}");
    let off = ha.wait_for(n, "offline on SIGTERM", is("offline")).await;
    assert_eq!(off.topic, online.topic);

    // Killed: the broker says it, from the last will; same device id as before.
    let n = ha.count();
    let mut d = start();
    let again = ha.wait_for(n, "online again", is("online")).await;
    assert_eq!(again.topic, online.topic);
    let n = ha.count();
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    let will = ha.wait_for(n, "the last will", is("offline")).await;
    assert_eq!(will.topic, online.topic);
    // Retained: Home Assistant starting later still sees the heater offline.
    let late = Recorder::start(&broker, "ha-late", &["hearth/+/availability"]);
    let kept = late.wait_for(0, "the retained will", is("offline")).await;
    assert!(kept.retain && kept.topic == online.topic, "{kept:?}");
}

/// `mqtts://` to a broker with its own CA: trusted through `mqtt.tls_ca`, the link connects; with
/// the Mozilla roots only, it never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_trusts_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("broker.crt"), dir.path().join("broker.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let broker = Mosquitto::start_tls(&cert, &key);

    let mut cfg = common::daemon::config(dir.path());
    cfg.gpu.enabled = false;
    cfg.mining.enabled = false;
    let presets = cfg.thermostat.presets.clone();
    let d = spawn_at_noon(cfg).await;
    let url = format!("mqtts://localhost:{}", broker.port);
    let with_ca = MqttConfig {
        tls_ca: Some(cert.clone()),
        ..mqtt(url.clone())
    };
    let trusted = hearth::home::spawn(
        HomeSetup::new(with_ca, "tls-heater", presets.clone()),
        d.client(),
    )
    .unwrap();
    let untrusted = hearth::home::spawn(
        HomeSetup::new(mqtt(url), "other-heater", presets),
        d.client(),
    )
    .unwrap();
    stats_until(&trusted, "a TLS connection", |s| s.link.connections >= 1).await;
    stats_until(&trusted, "the announcement", |s| s.announcements >= 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        untrusted.stats().link.connections,
        0,
        "{:?}",
        untrusted.stats()
    );
    trusted.shutdown().await;
    untrusted.shutdown().await;
    d.shutdown().await;
}
