//! The room temperature from MQTT (`sensors.room.kind = "mqtt"`) on a real mosquitto, driving
//! the in-process daemon: the room itself stays simulated (the outdoor sensor reads it), and a
//! test client plays a zigbee2mqtt thermometer in that room, publishing what the simulated room
//! is at. The readings drive the thermostat; when they stop the stale-sensor trip fires; bad
//! payloads are refused and the reading goes stale; a retained reading is not taken.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{spawn_at_noon, wait_for};
use common::mqtt::Mosquitto;
use hearth::config::{Config, SourceConfig};
use hearth::home::config::MqttConfig;
use hearth::status::Status;
use hearth::thermal::room::RoomParams;
use hearth::thermal::safety::TripKind;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::Notify;

const TOPIC: &str = "zigbee2mqtt/living_room";

/// A zigbee2mqtt thermometer's message.
fn z2m(celsius: f64) -> String {
    format!(
        r#"{{"battery":97,"humidity":48.5,"linkquality":132,"temperature":{celsius:.2},"voltage":2995}}"#
    )
}

fn stale(s: &Status) -> bool {
    s.trips.iter().any(|t| t.kind == TripKind::SensorStale)
}

/// Publishes `payload` on the thermometer's topic.
async fn publish(client: &AsyncClient, payload: impl Into<Vec<u8>>, retain: bool) {
    client
        .publish(TOPIC, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_thermometer_drives_the_thermostat_and_its_silence_trips() {
    let broker = Mosquitto::start();
    let (thermometer, mut events) = broker.client("test-thermometer");
    let acked = Arc::new(Notify::new());
    tokio::spawn({
        let acked = acked.clone();
        async move {
            while let Ok(ev) = events.poll().await {
                if let Event::Incoming(Packet::PubAck(_)) = ev {
                    acked.notify_one();
                }
            }
        }
    });
    // A retained reading from before the daemon started: of unknown age, never taken.
    publish(&thermometer, z2m(18.0), true).await;
    acked.notified().await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.mining.enabled = false;
    cfg.gpu.enabled = false;
    cfg.heater.resistive.max_watts = cfg.heater.max_watts;
    cfg.jobs.data_dir = Some(dir.path().to_path_buf());
    cfg.simulation.speed = 30.0;
    cfg.simulation.initial_celsius = 17.0;
    // A light room (a tenth of the reference capacity), known to the controller, with a quick
    // closed loop: it warms visibly in seconds.
    cfg.simulation.room = RoomParams::from_rc(0.03, 3e5);
    cfg.model.capacity_joules_per_kelvin = 3e5;
    cfg.controller.closed_loop_seconds = 300.0;
    cfg.safety.clear_down_seconds = 30.0;
    cfg.sensors.room = SourceConfig::Mqtt {
        topic: TOPIC.into(),
        field: Some("temperature".into()),
    };
    cfg.mqtt = Some(MqttConfig {
        url: broker.url(),
        client_id: Some("hearth-sensors-test".into()),
        reconnect_min_seconds: 0.1,
        reconnect_max_seconds: 0.5,
        ..MqttConfig::default()
    });
    assert!(cfg.uses_simulated_room(), "the room itself stays simulated");
    cfg.validate().unwrap();
    let stale_after = cfg.safety.sensor_stale_after_seconds;
    let d = spawn_at_noon(cfg).await;

    // No fresh reading: the retained one is not taken, and the sensor trips as stale.
    let s = wait_for(&d, "the stale trip without readings", stale).await;
    assert_eq!(s.room_celsius, None, "the retained reading was taken");
    assert_eq!(s.budget_watts, 0.0);

    // The thermometer reads the simulated room: once the trip clears, the thermostat heats
    // (17 °C against 21 °C), and the room warms with the heat.
    let status = d.status.clone();
    let feeding = tokio::spawn({
        let thermometer = thermometer.clone();
        async move {
            loop {
                let truth = status.borrow().simulated_room_celsius;
                if let Some(c) = truth {
                    publish(&thermometer, z2m(c), false).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let heating = wait_for(&d, "heating on the MQTT reading", |s| {
        !stale(s) && s.budget_watts > 0.0 && s.room_celsius.is_some()
    })
    .await;
    let start = heating.simulated_room_celsius.unwrap();
    let warmer = wait_for(&d, "the room warming by 0.5 K", |s| {
        s.simulated_room_celsius.unwrap() > start + 0.5
    })
    .await;
    let read = warmer.room_celsius.unwrap();
    assert!(
        (read - warmer.simulated_room_celsius.unwrap()).abs() < 0.3,
        "the reading follows the room: {warmer:?}"
    );
    assert!(warmer.room_reading_age_s.unwrap() < 10.0);
    feeding.abort();

    // A warm reading (24 °C against 21 °C) takes the budget to 0 without a trip: the reading
    // drives the controller.
    let warm = tokio::spawn({
        let thermometer = thermometer.clone();
        async move {
            loop {
                publish(&thermometer, z2m(24.0), false).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let s = wait_for(&d, "no heat at 24 °C", |s| {
        s.room_celsius == Some(24.0) && s.budget_watts == 0.0
    })
    .await;
    assert!(s.trips.is_empty(), "{:?}", s.trips);
    warm.abort();

    // Bad payloads only: each is refused, so the reading ages and the sensor trips as stale.
    let big = format!(r#"{{"temperature":21.0,"pad":"{}"}}"#, "x".repeat(8000));
    let bad: Vec<Vec<u8>> = vec![
        b"warm".to_vec(),
        br#"{"temperature":"NaN"}"#.to_vec(),
        br#"{"temperature":1000}"#.to_vec(),
        br#"{"temperature":-80}"#.to_vec(),
        br#"{"humidity":40}"#.to_vec(),
        b"21.0".to_vec(),
        big.into_bytes(),
    ];
    let junk = tokio::spawn({
        let thermometer = thermometer.clone();
        async move {
            loop {
                for p in &bad {
                    publish(&thermometer, p.clone(), false).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let s = wait_for(&d, "the stale trip under bad payloads", stale).await;
    assert_eq!(
        s.room_celsius,
        Some(24.0),
        "only the last good reading is kept"
    );
    assert!(s.room_reading_age_s.unwrap() > stale_after);
    assert_eq!(s.budget_watts, 0.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = d.status.borrow().clone();
    assert!(stale(&s) && s.room_celsius == Some(24.0), "{s:?}");
    junk.abort();

    // A good reading is taken again at once.
    publish(&thermometer, z2m(20.5), false).await;
    let s = wait_for(&d, "a fresh reading", |s| s.room_celsius == Some(20.5)).await;
    assert!(s.room_reading_age_s.unwrap() < 10.0);
    d.shutdown().await;
}
