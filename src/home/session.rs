//! One supervised MQTT client for a part of hearth that talks to devices on the home's broker
//! (the MQTT room sensors, the smart plug): a fresh rumqttc client per connection (nothing
//! queued on a dead connection is sent on the next), reconnects with a doubling backoff, and
//! hands the owner's [`Session`] its events. The rumqttc event loop runs in its own task and is
//! never cancelled mid-poll; the owner's handlers run on the supervising task, so they must not
//! block (they publish with `try_publish`).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::MissedTickBehavior;

use super::config::MqttConfig;
use super::connect::options;
use super::HomeError;

/// How many requests (publishes, subscribes) a client queues before `try_publish` refuses.
pub const REQUEST_QUEUE: usize = 16;

/// How long, real time, a stopping session may take to deliver its last messages.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the owner of a session does with its events. Every handler runs on the supervising
/// task: none may block.
pub trait Session: Send {
    /// The broker accepted the connection: subscribe, publish what must be known.
    fn connected(&mut self, client: &AsyncClient);
    /// A message on a subscribed topic; `retained` when the broker kept it from before.
    fn message(&mut self, topic: &str, payload: &[u8], retained: bool);
    /// The broker acknowledged a QoS 1 publish.
    fn acked(&mut self) {}
    /// The connection is lost, or could not be made.
    fn lost(&mut self);
    /// Called each period and on each wake-up; `client` is `None` while disconnected.
    fn tick(&mut self, _client: Option<&AsyncClient>) {}
    /// The daemon is stopping: publish the last messages; `true` while some are unacknowledged
    /// (the session then waits for [`Session::acked`] up to a grace time).
    fn stopping(&mut self, _client: Option<&AsyncClient>) -> bool {
        false
    }
    /// Whether messages from [`Session::stopping`] still wait for their acknowledgement.
    fn unacked(&self) -> bool {
        false
    }
}

/// Where and how a session connects.
#[derive(Clone)]
pub struct Link {
    /// The client's options (its own client id).
    pub options: MqttOptions,
    /// The first reconnect delay, real time.
    pub backoff_min: Duration,
    /// The longest reconnect delay, real time.
    pub backoff_max: Duration,
    /// The period of [`Session::tick`], if the owner wants one.
    pub tick: Option<Duration>,
    /// Wakes the session to call [`Session::tick`] at once.
    pub wake: Option<Arc<Notify>>,
}

impl Link {
    /// A link to the `[mqtt]` broker for `role` (`sensors`, `plug`): a client id of its own (the
    /// configured one, or `hearth-<process id>`, then `-<role>`) and the configured backoff.
    pub fn for_role(cfg: &MqttConfig, role: &str) -> Result<Self, HomeError> {
        let base = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("hearth-{}", std::process::id()));
        let options = options(cfg, &format!("{base}-{role}"))?;
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(1));
        Ok(Self {
            options,
            backoff_min: secs(cfg.reconnect_min_seconds),
            backoff_max: secs(cfg.reconnect_max_seconds),
            tick: None,
            wake: None,
        })
    }
}

/// An event of the connection, from the event loop's task.
enum LinkEvent {
    Connected,
    Message(String, Vec<u8>, bool),
    Acked,
    Lost(String),
}

/// How a connection ended.
enum Ended {
    Lost(String),
    Shutdown,
}

/// Runs `session` on `link` until `shutdown`: connects, reconnects after a loss with a delay
/// that doubles from `backoff_min` to `backoff_max` (reset by a successful connection).
pub async fn run(link: Link, session: &mut dyn Session, mut shutdown: watch::Receiver<bool>) {
    let name = link.options.client_id();
    let mut delay = link.backoff_min;
    let mut ticks = tokio::time::interval(link.tick.unwrap_or(Duration::from_secs(3600)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let (client, mut events) = AsyncClient::new(link.options.clone(), REQUEST_QUEUE);
        let (tx, mut rx) = mpsc::channel(64);
        let poller = tokio::spawn(async move {
            loop {
                let ev = match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        LinkEvent::Message(p.topic, p.payload.to_vec(), p.retain)
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => LinkEvent::Acked,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(LinkEvent::Lost(e.to_string())).await;
                        return;
                    }
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        let mut connected = false;
        let ended = loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(LinkEvent::Connected) => {
                        tracing::info!(client = %name, "MQTT connected");
                        connected = true;
                        delay = link.backoff_min;
                        session.connected(&client);
                    }
                    Some(LinkEvent::Message(topic, payload, retained)) => {
                        session.message(&topic, &payload, retained);
                    }
                    Some(LinkEvent::Acked) => session.acked(),
                    Some(LinkEvent::Lost(e)) => break Ended::Lost(e),
                    None => break Ended::Lost("event loop ended".into()),
                },
                _ = ticks.tick(), if link.tick.is_some() => {
                    session.tick(connected.then_some(&client));
                }
                _ = woken(link.wake.as_deref()) => session.tick(connected.then_some(&client)),
                _ = shutdown.changed() => break Ended::Shutdown,
            }
        };
        match ended {
            Ended::Shutdown => {
                if session.stopping(connected.then_some(&client)) {
                    drain(&mut rx, session).await;
                }
                let _ = client.try_disconnect();
                // Let the event loop send the DISCONNECT, briefly.
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
                poller.abort();
                return;
            }
            Ended::Lost(e) => {
                poller.abort();
                if connected {
                    tracing::warn!(client = %name, error = %e, retry_in = ?delay, "MQTT connection lost");
                } else {
                    tracing::warn!(client = %name, error = %e, retry_in = ?delay, "MQTT connection failed");
                }
                session.lost();
            }
        }
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = ticks.tick(), if link.tick.is_some() => session.tick(None),
                _ = woken(link.wake.as_deref()) => session.tick(None),
                _ = shutdown.changed() => {
                    session.stopping(None);
                    return;
                }
            }
        }
        delay = (delay * 2).min(link.backoff_max);
    }
}

/// Resolves when `wake` is notified; never without one.
async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Waits, up to [`STOP_GRACE`], until the session's last messages are acknowledged.
async fn drain(rx: &mut mpsc::Receiver<LinkEvent>, session: &mut dyn Session) {
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while session.unacked() {
            match rx.recv().await {
                Some(LinkEvent::Acked) => session.acked(),
                Some(LinkEvent::Message(topic, payload, retained)) => {
                    session.message(&topic, &payload, retained);
                }
                Some(LinkEvent::Connected) => {}
                Some(LinkEvent::Lost(_)) | None => return,
            }
        }
    })
    .await;
}
