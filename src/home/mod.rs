//! The home: the MQTT link to the broker Home Assistant uses. Only this module knows MQTT topics.
//!
//! - [`config`] holds the `[mqtt]` section and its broker URL;
//! - [`connect`] turns it into rumqttc options (credentials, TLS, bounds);
//! - [`error`] holds [`HomeError`];
//! - [`link`] is the connection task (reconnects, availability, bounded queues);
//! - [`topics`] makes every topic name;
//! - [`discovery`] makes Home Assistant's discovery configs;
//! - [`state`] makes state payloads from the status snapshot, published on change and refreshed;
//! - [`commands`] applies Home Assistant's commands through [`crate::ops::DaemonClient`].
//!
//! [`spawn`] runs it all in tasks of its own: an MQTT outage never reaches the control loop,
//! which publishes its status whether anyone reads it or not.
//!
//! Devices on the home's broker, each on a client of its own: [`sensors`] (room and outdoor
//! temperatures from MQTT) and [`session`] (the supervised client they and the smart plug use).

pub mod commands;
pub mod config;
pub mod connect;
pub mod discovery;
pub mod error;
pub mod link;
pub mod sensors;
pub mod session;
pub mod state;
pub mod topics;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ops::DaemonClient;
use commands::Commander;
use config::MqttConfig;
use discovery::Device;
pub use error::HomeError;
use link::{Backoff, Link, LinkStats, Message, Publisher};
use state::{Extras, GpuTotals, StatePublisher};
use topics::Topics;

/// What the home task needs besides the daemon.
#[derive(Debug, Clone)]
pub struct HomeSetup {
    /// The `[mqtt]` section.
    pub mqtt: MqttConfig,
    /// This heater's device id (default client id, base topic and node id).
    pub device_id: String,
    /// The thermostat's presets, °C by name.
    pub presets: BTreeMap<String, f64>,
    /// Shortest time between two state passes in steady state ([`state::MIN_INTERVAL`]).
    pub state_interval: Duration,
    /// Every state value is sent again this often ([`state::REFRESH`]).
    pub refresh: Duration,
}

impl HomeSetup {
    /// The setup for `mqtt`, `device_id` and `presets`, with the default intervals.
    pub fn new(mqtt: MqttConfig, device_id: &str, presets: BTreeMap<String, f64>) -> Self {
        Self {
            mqtt,
            device_id: device_id.to_string(),
            presets,
            state_interval: state::MIN_INTERVAL,
            refresh: state::REFRESH,
        }
    }
}

/// Counters of the home task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HomeStats {
    /// The link's.
    pub link: LinkStats,
    /// Commands applied.
    pub commands_applied: u64,
    /// Commands refused (bad value, out of range).
    pub commands_refused: u64,
    /// Retained commands ignored (they predate this connection).
    pub stale_commands_ignored: u64,
    /// Times the discovery configs were sent.
    pub announcements: u64,
}

/// The running home task.
pub struct HomeHandle {
    stats: watch::Receiver<HomeStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Link>,
    /// The topics in use.
    pub topics: Topics,
}

impl HomeHandle {
    /// The counters so far.
    pub fn stats(&self) -> HomeStats {
        *self.stats.borrow()
    }

    /// Stops: says `offline` (retained), then disconnects.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(link) => link.shutdown().await,
            Err(e) => tracing::warn!(error = %e, "home task failed"),
        }
    }
}

/// Starts the MQTT link and the home task for `daemon` (on the current tokio runtime).
pub fn spawn(setup: HomeSetup, daemon: DaemonClient) -> Result<HomeHandle, HomeError> {
    let m = &setup.mqtt;
    m.validate()
        .map_err(|(key, msg)| HomeError::Config { key, msg })?;
    let opts = connect::options(m, &m.client_id_for(&setup.device_id))?;
    let topics = Topics::new(
        &m.base_topic_for(&setup.device_id),
        &m.discovery_prefix,
        &setup.device_id,
    );
    let backoff = Backoff {
        min: Duration::from_secs_f64(m.reconnect_min_seconds),
        max: Duration::from_secs_f64(m.reconnect_max_seconds.max(m.reconnect_min_seconds)),
    };
    let link = Link::start(opts, topics.availability(), topics.subscriptions(), backoff);
    tracing::info!(url = %m.url, base = %topics.base, "MQTT link starting");
    let (stats_tx, stats) = watch::channel(HomeStats::default());
    let (stop, stop_rx) = watch::channel(false);
    let home = Home {
        device: Device::hearth(&setup.device_id),
        topics: topics.clone(),
        state: StatePublisher::new(setup.state_interval, setup.refresh),
        commander: Commander::new(daemon.clone(), setup.presets.clone()),
        presets: setup.presets,
        gpu: GpuTotals::default(),
        daemon,
        stats: HomeStats::default(),
        stats_tx,
        urgent_until: None,
    };
    let task = tokio::spawn(home.run(link, stop_rx));
    Ok(HomeHandle {
        stats,
        stop,
        task,
        topics,
    })
}

/// After a command, every status change is published at once for this long, so its effect
/// comes back without waiting for the steady-state interval.
const URGENT_WINDOW: Duration = Duration::from_secs(3);

/// The home task's state.
struct Home {
    device: Device,
    topics: Topics,
    state: StatePublisher,
    commander: Commander,
    presets: BTreeMap<String, f64>,
    gpu: GpuTotals,
    daemon: DaemonClient,
    stats: HomeStats,
    stats_tx: watch::Sender<HomeStats>,
    urgent_until: Option<Instant>,
}

impl Home {
    /// Runs until `stop`; hands the link back for its clean shutdown.
    async fn run(mut self, mut link: Link, mut stop: watch::Receiver<bool>) -> Link {
        let mut status = self.daemon.status.clone();
        let mut steady = tokio::time::interval(self.state.min_interval());
        steady.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                r = link.connected.changed() => {
                    if r.is_err() {
                        break;
                    }
                    self.announce(&link.publisher).await;
                }
                Some(m) = link.incoming.recv() => self.on_message(&link.publisher, m).await,
                r = status.changed() => {
                    if r.is_err() {
                        break;
                    }
                    if self.urgent_until.is_some_and(|t| Instant::now() < t) {
                        self.publish_state(&link.publisher, true).await;
                    }
                }
                _ = steady.tick() => self.publish_state(&link.publisher, false).await,
            }
            self.stats.link = link.publisher.stats();
            self.stats_tx.send_replace(self.stats);
        }
        link
    }

    /// Sends every discovery config (retained) and forgets what state was sent.
    async fn announce(&mut self, p: &Publisher) {
        let configs = discovery::configs(
            &self.topics,
            &self.device,
            self.presets.keys().map(String::as_str),
        );
        for (topic, payload) in &configs {
            p.publish(topic, payload, true, QoS::AtLeastOnce);
        }
        self.stats.announcements += 1;
        tracing::info!(entities = configs.len(), "Home Assistant discovery sent");
        self.state.forget_all();
        self.publish_state(p, false).await;
    }

    /// Home Assistant's birth message, or a command.
    async fn on_message(&mut self, p: &Publisher, m: Message) {
        if m.topic == self.topics.ha_status() {
            if m.payload.trim() == "online" {
                self.announce(p).await;
            }
            return;
        }
        let Some(c) = self.topics.command_of(&m.topic) else {
            return;
        };
        if m.retain {
            // The broker replays a retained command on every subscription: it was sent before
            // this connection, perhaps long before this daemon started. Never act on it.
            self.stats.stale_commands_ignored += 1;
            tracing::info!(topic = %m.topic, payload = %m.payload, "retained command ignored (sent before this connection)");
            return;
        }
        match self.commander.apply(c, &m.payload).await {
            Ok(()) => {
                self.stats.commands_applied += 1;
                tracing::info!(topic = %m.topic, payload = %m.payload, "command from Home Assistant applied");
            }
            Err(why) => {
                self.stats.commands_refused += 1;
                tracing::warn!(topic = %m.topic, payload = %m.payload, %why, "command from Home Assistant refused");
                // Home Assistant may show the refused value: say the real one again.
                self.state.forget(c.state());
            }
        }
        self.urgent_until = Some(Instant::now() + URGENT_WINDOW);
        self.publish_state(p, true).await;
    }

    /// One state pass over the latest status (none before the first control tick, none while
    /// the link is down); `commanded` limits it to the values commands change.
    async fn publish_state(&mut self, p: &Publisher, commanded: bool) {
        // While the link is down there is nothing to send: everything goes on reconnection.
        if !p.is_connected() {
            return;
        }
        let s = self.daemon.status.borrow().clone();
        if !state::is_from_a_tick(&s) {
            return;
        }
        self.gpu.update(&self.daemon.store, &s.sched.accounts).await;
        self.commander.observe(s.sched.mix);
        let extras = Extras {
            gpu_joules: self.gpu.joules,
            gpu_earned: self.gpu.earned,
            pin_gpu_share: self.commander.pin_gpu_share,
        };
        let values = state::values(&s, &self.presets, &extras);
        let t = &self.topics;
        let publish =
            |rel: &str, payload: &str| p.publish(&t.at(rel), payload, true, QoS::AtMostOnce);
        if commanded {
            self.state.pass_commanded(values, publish);
        } else {
            self.state.pass(Instant::now(), values, publish);
        }
    }
}
