//! The sensor side: the simulated room (when configured), the pollers and the MQTT subscriber
//! that publish the latest room and outdoor readings for the control loop.

use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::tasks::Tasks;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, SourceConfig};
use crate::home::sensors::MqttSensor;
use crate::home::session::Link;
use crate::ops::DaemonError;
use crate::sched::scheduler::Workloads;
use crate::thermal::room::{ua_factor_at, Room};
use crate::thermal::sensor::{
    FileSource, FixedSource, Reading, RoomTruth, SensorError, SensorNoise, SimulatedPoint,
    SimulatedSource, TemperatureSource,
};

/// The latest readings, and where pushed room readings go.
pub(super) struct Sensors {
    /// The simulated room's truth, when the room is simulated.
    pub(super) truth_rx: Option<watch::Receiver<RoomTruth>>,
    /// Where an external thermostat's readings go (`sensors.room.kind = "pushed"`).
    pub(super) room_push: Option<Arc<watch::Sender<Option<Reading>>>>,
    /// The latest room reading.
    pub(super) room_rx: watch::Receiver<Option<Reading>>,
    /// The latest outdoor reading.
    pub(super) outdoor_rx: watch::Receiver<Option<Reading>>,
}

/// Starts the simulated room (heated by `workloads`) if configured, the sensor pollers, and the
/// MQTT subscriber if a sensor is on the broker.
pub(super) fn start(
    cfg: &Config,
    workloads: &Workloads,
    tasks: &mut Tasks,
) -> Result<Sensors, DaemonError> {
    let truth_rx = simulate_room(cfg, workloads, tasks);
    let seed = cfg.simulation.seed;
    let truth = truth_rx.as_ref();
    let mut from_mqtt = Vec::new();
    let (room_push, room_rx) = match &cfg.sensors.room {
        SourceConfig::Pushed => {
            let (tx, rx) = watch::channel(None);
            (Some(Arc::new(tx)), rx)
        }
        SourceConfig::Mqtt { topic, field } => {
            (None, on_mqtt("room", topic, field, &mut from_mqtt))
        }
        room => (None, poll(room, truth, SimulatedPoint::Room, seed, tasks)),
    };
    let outdoor_rx = match &cfg.sensors.outdoor {
        SourceConfig::Mqtt { topic, field } => on_mqtt("outdoor", topic, field, &mut from_mqtt),
        outdoor => poll(outdoor, truth, SimulatedPoint::Outdoor, seed + 1, tasks),
    };
    if !from_mqtt.is_empty() {
        subscribe(cfg, from_mqtt, tasks)?;
    }
    Ok(Sensors {
        truth_rx,
        room_push,
        room_rx,
        outdoor_rx,
    })
}

/// A sensor on the broker: adds it to `list` and returns its latest reading.
fn on_mqtt(
    name: &'static str,
    topic: &str,
    field: &Option<String>,
    list: &mut Vec<MqttSensor>,
) -> watch::Receiver<Option<Reading>> {
    let (tx, rx) = watch::channel(None);
    list.push(MqttSensor {
        name,
        topic: topic.to_string(),
        field: field.clone(),
        readings: tx,
    });
    rx
}

/// Starts the MQTT subscriber of `sensors`, on a client of its own.
fn subscribe(cfg: &Config, sensors: Vec<MqttSensor>, tasks: &mut Tasks) -> Result<(), DaemonError> {
    let link = mqtt_link(cfg, "sensors")?;
    let task =
        crate::home::sensors::run(link, sensors, tasks.clock.clone(), tasks.shutdown.clone());
    tasks.spawn(task);
    Ok(())
}

/// A link of its own to the `[mqtt]` broker for `role`; an error names the key.
pub(super) fn mqtt_link(cfg: &Config, role: &str) -> Result<Link, DaemonError> {
    let invalid = |msg: String| {
        DaemonError::Config(ConfigError::Invalid {
            key: "mqtt".into(),
            msg,
        })
    };
    let mqtt = cfg
        .mqtt
        .as_ref()
        .ok_or_else(|| invalid(format!("the {role} need the [mqtt] broker")))?;
    Link::for_role(mqtt, role).map_err(|e| invalid(e.to_string()))
}

/// Starts the simulated room, if the config uses one, and returns its truth.
fn simulate_room(
    cfg: &Config,
    workloads: &Workloads,
    tasks: &mut Tasks,
) -> Option<watch::Receiver<RoomTruth>> {
    if !cfg.uses_simulated_room() {
        return None;
    }
    let sim = &cfg.simulation;
    let now = tasks.clock.now_s();
    let outdoor = sim.outdoor.celsius_at(now);
    let (truth_tx, truth_rx) = watch::channel(RoomTruth {
        room_celsius: sim.initial_celsius,
        outdoor_celsius: outdoor,
        at_s: now,
    });
    let room = Room::new(sim.room.clone(), sim.initial_celsius);
    let task = room_task(
        room,
        cfg.clone(),
        tasks.clock.clone(),
        workloads.clone(),
        truth_tx,
        tasks.shutdown.clone(),
    );
    tasks.spawn(task);
    Some(truth_rx)
}

/// Starts a poller of the source `src_cfg` describes (none for a pushed or MQTT source, or a
/// simulated one without a simulated room) and returns its latest reading.
fn poll(
    src_cfg: &SourceConfig,
    truth: Option<&watch::Receiver<RoomTruth>>,
    point: SimulatedPoint,
    seed: u64,
    tasks: &mut Tasks,
) -> watch::Receiver<Option<Reading>> {
    let (tx, rx) = watch::channel(None);
    if let Some(src) = source_for(src_cfg, truth, seed, point) {
        let shared: SharedSource = Arc::new(Mutex::new(src));
        let task = sensor_task(
            shared,
            tasks.clock.clone(),
            tasks.tick,
            tx,
            tasks.shutdown.clone(),
        );
        tasks.spawn(task);
    }
    rx
}

/// A source shared with the blocking pool.
type SharedSource = Arc<Mutex<Box<dyn TemperatureSource>>>;

/// The source a sensor config describes; `None` for a simulated source without a simulated room.
fn source_for(
    cfg: &SourceConfig,
    truth: Option<&watch::Receiver<RoomTruth>>,
    seed: u64,
    point: SimulatedPoint,
) -> Option<Box<dyn TemperatureSource>> {
    match cfg {
        SourceConfig::Simulated {
            noise_celsius,
            quantum_celsius,
        } => {
            let truth = truth?.clone();
            let noise = SensorNoise::new(*noise_celsius, *quantum_celsius, seed);
            Some(Box::new(SimulatedSource::new(truth, point, noise)))
        }
        SourceConfig::File { path, unit } => Some(Box::new(FileSource::new(path.clone(), *unit))),
        SourceConfig::Fixed { celsius } => Some(Box::new(FixedSource(*celsius))),
        SourceConfig::Pushed | SourceConfig::Mqtt { .. } => None,
    }
}

/// The power the workloads report, W: the heat going into the room.
fn heat_watts(w: &Workloads) -> f64 {
    [&w.asic, &w.gpu, &w.resistive]
        .into_iter()
        .flatten()
        .map(|x| x.actual_watts().0)
        .sum()
}

/// Advances the simulated room with the heat the workloads report, and publishes its truth.
async fn room_task(
    mut room: Room,
    cfg: Config,
    clock: Clock,
    workloads: Workloads,
    truth_tx: watch::Sender<RoomTruth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sim = cfg.simulation;
    let mut interval = tokio::time::interval(clock.real(cfg.control.tick_seconds));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = clock.now_s();
    let mut last_watts = heat_watts(&workloads);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now_s();
        // Every watt drawn ends up in the room: the heat over the interval is the mean of what
        // the workloads reported at its ends.
        let watts = heat_watts(&workloads);
        room.step(
            now - last,
            0.5 * (watts + last_watts),
            sim.outdoor.celsius_at(last),
            ua_factor_at(&sim.disturbances, last),
        );
        last = now;
        last_watts = watts;
        truth_tx.send_replace(RoomTruth {
            room_celsius: room.air_celsius(),
            outdoor_celsius: sim.outdoor.celsius_at(now),
            at_s: now,
        });
    }
}

/// Polls one source off the control loop's path and publishes its latest reading.
async fn sensor_task(
    source: SharedSource,
    clock: Clock,
    period: std::time::Duration,
    tx: watch::Sender<Option<Reading>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = source.lock().map(|s| s.name()).unwrap_or_default();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now_s();
        let src = source.clone();
        let read = tokio::task::spawn_blocking(move || match src.lock() {
            Ok(mut s) => s.read(now),
            Err(_) => Err(SensorError::NoData),
        })
        .await;
        match read {
            Ok(Ok(r)) => {
                if failing {
                    tracing::info!(sensor = %name, "sensor readings are back");
                    failing = false;
                }
                tx.send_replace(Some(r));
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(sensor = %name, error = %e, "sensor read failed; keeping the last reading, which will go stale");
                    failing = true;
                }
            }
            Err(e) => tracing::error!(sensor = %name, error = %e, "sensor read task failed"),
        }
    }
}
