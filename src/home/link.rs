//! The MQTT connection, in a task of its own: it polls rumqttc's event loop, reconnects with
//! exponential backoff, says `online` (retained) on every connection with `offline` as its last
//! will, re-subscribes, and hands incoming messages over through a bounded queue.
//!
//! Nothing here waits on the daemon and nothing in the daemon waits on it: publishing is a
//! non-blocking `try` into rumqttc's bounded request queue, and a message that does not fit, or
//! is published while the link is down, is dropped and counted. Everything is re-published on
//! each connection anyway.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Requests (publishes, subscribes) rumqttc holds for the connection; more are dropped.
pub const REQUEST_QUEUE: usize = 256;
/// Incoming messages held for the home task; more are dropped.
pub const INCOMING_QUEUE: usize = 64;
/// How long a shutdown waits for `offline` and the goodbye to go out.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// `online`, the availability payload while connected.
pub const ONLINE: &str = "online";
/// `offline`, the availability payload after a clean shutdown and the last will.
pub const OFFLINE: &str = "offline";

/// A message from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its payload, as text (invalid UTF-8 replaced); at most the link's packet bound.
    pub payload: String,
    /// The retain flag: set when the broker replays a stored message on subscription.
    pub retain: bool,
}

/// The link's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages handed to the connection.
    pub published: u64,
    /// Messages dropped: link down, or the request queue full.
    pub dropped: u64,
    /// Messages received.
    pub received: u64,
    /// Messages received but dropped (the incoming queue full).
    pub received_dropped: u64,
    /// Connections made (the first and every reconnection).
    pub connections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    received_dropped: AtomicU64,
    connections: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A cheap handle for publishing; never waits.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    connected: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Publisher {
    /// Queues `payload` on `topic`; returns whether it was queued. While the link is down, or
    /// with the queue full, the message is dropped and counted.
    pub fn publish(&self, topic: &str, payload: &str, retain: bool, qos: QoS) -> bool {
        if !self.is_connected() {
            bump(&self.counters.dropped);
            return false;
        }
        match self
            .client
            .try_publish(topic, qos, retain, payload.as_bytes().to_vec())
        {
            Ok(()) => {
                bump(&self.counters.published);
                true
            }
            Err(_) => {
                bump(&self.counters.dropped);
                false
            }
        }
    }

    /// Whether a broker session is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The counters so far.
    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            received_dropped: c.received_dropped.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }
}

/// The running link.
pub struct Link {
    /// For publishing.
    pub publisher: Publisher,
    /// Incoming messages.
    pub incoming: mpsc::Receiver<Message>,
    /// Bumped on every connection (after `online` and the subscriptions are queued): everything
    /// must be published again.
    pub connected: watch::Receiver<u64>,
    availability: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Link {
    /// A link dropped without [`Link::shutdown`] drops its connection: the last will says
    /// `offline`.
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Reconnect delays: from `min`, doubling up to `max`, back to `min` after a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `delay`.
    pub fn next(&self, delay: Duration) -> Duration {
        (delay * 2).clamp(self.min, self.max)
    }
}

impl Link {
    /// Starts the link task: connects with `opts` (its last will set here to `offline`,
    /// retained, on `availability`), subscribes to `subscriptions` on every connection.
    pub fn start(
        mut opts: MqttOptions,
        availability: String,
        subscriptions: Vec<String>,
        backoff: Backoff,
    ) -> Self {
        opts.set_last_will(LastWill::new(
            availability.clone(),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, events) = AsyncClient::new(opts, REQUEST_QUEUE);
        let publisher = Publisher {
            client,
            connected: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
        };
        let (in_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let (gen_tx, connected) = watch::channel(0u64);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            events,
            publisher.clone(),
            Session {
                availability: availability.clone(),
                subscriptions,
            },
            backoff,
            in_tx,
            gen_tx,
            stop_rx,
        ));
        Self {
            publisher,
            incoming,
            connected,
            availability,
            stop,
            task: Some(task),
        }
    }

    /// Says `offline` (retained) and disconnects cleanly, waiting at most [`SHUTDOWN_WAIT`];
    /// if the broker is not reachable the connection is dropped and the last will says it.
    pub async fn shutdown(mut self) {
        let p = &self.publisher;
        let said = p.is_connected()
            && tokio::time::timeout(
                SHUTDOWN_WAIT,
                p.client
                    .publish(&self.availability, QoS::AtLeastOnce, true, OFFLINE),
            )
            .await
            .is_ok_and(|r| r.is_ok());
        if said {
            bump(&p.counters.published);
            let _ = p.client.try_disconnect();
        }
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_WAIT, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        tracing::info!(said_offline = said, "MQTT link closed");
    }
}

/// What every connection sets up.
struct Session {
    availability: String,
    subscriptions: Vec<String>,
}

impl Session {
    /// Queues the subscriptions and `online`; counted as dropped if the queue is full.
    fn open(&self, p: &Publisher) {
        for t in &self.subscriptions {
            if p.client.try_subscribe(t.clone(), QoS::AtLeastOnce).is_err() {
                bump(&p.counters.dropped);
            }
        }
        p.publish(&self.availability, ONLINE, true, QoS::AtLeastOnce);
    }
}

async fn run(
    mut events: EventLoop,
    p: Publisher,
    session: Session,
    backoff: Backoff,
    incoming: mpsc::Sender<Message>,
    connections: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = backoff.min;
    loop {
        // While connected, the event loop is never cancelled mid-packet: a shutdown goes through
        // the queue (`offline`, then DISCONNECT). While connecting, a stop may cut in.
        let event = if p.is_connected() {
            events.poll().await
        } else {
            tokio::select! {
                e = events.poll() => e,
                _ = stop.changed() => break,
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                p.connected.store(true, Ordering::Release);
                bump(&p.counters.connections);
                delay = backoff.min;
                tracing::info!("MQTT link up");
                session.open(&p);
                connections.send_modify(|n| *n += 1);
            }
            Ok(Event::Incoming(Packet::Publish(m))) => {
                bump(&p.counters.received);
                let msg = Message {
                    topic: m.topic,
                    payload: String::from_utf8_lossy(&m.payload).into_owned(),
                    retain: m.retain,
                };
                if incoming.try_send(msg).is_err() {
                    bump(&p.counters.received_dropped);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if p.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "MQTT link lost; reconnecting");
                } else {
                    tracing::debug!(error = %e, retry_in = ?delay, "MQTT connect failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
                delay = backoff.next(delay);
            }
        }
    }
    p.connected.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(700),
        };
        let mut d = b.min;
        let mut seen = vec![d];
        for _ in 0..5 {
            d = b.next(d);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 700, 700, 700]);
    }

    #[tokio::test]
    async fn publishing_while_down_is_dropped_and_counted() {
        // Port 1 on loopback: nothing listens, the link stays down.
        let opts = MqttOptions::new("t", "127.0.0.1", 1);
        let link = Link::start(
            opts,
            "t/availability".into(),
            vec![],
            Backoff {
                min: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
        );
        assert!(!link.publisher.publish("t/x", "1", false, QoS::AtMostOnce));
        let s = link.publisher.stats();
        assert_eq!((s.published, s.dropped, s.connections), (0, 1, 0));
        link.shutdown().await;
    }
}
