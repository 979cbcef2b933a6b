//! A real `mosquitto` broker for the home tests (Debian's package, installed by `.ci/setup`) on a
//! free loopback port, and test clients made with rumqttc: a raw one, and a [`Recorder`] that
//! keeps every message it sees, the way Home Assistant listens.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use super::bin::{free_port, wait_listening};

/// A `mosquitto -c FILE` child listening on `127.0.0.1:port` only, anonymous clients allowed,
/// nothing persisted; killed and reaped on drop (also when a test panics).
pub struct Mosquitto {
    child: Option<Child>,
    /// The TCP port.
    pub port: u16,
    conf: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    /// A broker on a free port, listening when this returns.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A broker that speaks only TLS, with the PEM certificate chain `cert` and key `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(&format!(
            "certfile {}\nkeyfile {}\n",
            cert.display(),
            key.display()
        ))
    }

    fn start_with(listener_lines: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{listener_lines}allow_anonymous true\n\
                 persistence false\nlog_dest none\n"
            ),
        )
        .unwrap();
        let mut m = Self {
            child: None,
            port,
            conf,
            _dir: dir,
        };
        m.run();
        m
    }

    fn run(&mut self) {
        let child = Command::new(bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        wait_listening(self.port, "mosquitto");
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL): clients see the connection drop, retained messages are lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed broker again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// A raw client of this broker (`id` must be unique per broker), with a large packet limit so
    /// the test sees whatever hearth sends.
    pub fn client(&self, id: &str) -> (AsyncClient, EventLoop) {
        let mut o = MqttOptions::new(id, "127.0.0.1", self.port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        AsyncClient::new(o, 256)
    }
}

/// One message a [`Recorder`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its topic.
    pub topic: String,
    /// Its payload as text.
    pub payload: String,
    /// Whether the broker replayed it as retained.
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

/// A client that subscribes to its filters on every connection (it reconnects by itself) and
/// keeps every message, with its arrival time.
pub struct Recorder {
    /// For publishing.
    pub client: AsyncClient,
    log: Arc<Mutex<Vec<Seen>>>,
    subacks: Arc<AtomicU64>,
    filters: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Connects to `broker` as `id` and subscribes to `filters`.
    pub fn start(broker: &Mosquitto, id: &str, filters: &[&str]) -> Self {
        let (client, mut events) = broker.client(id);
        let log = Arc::new(Mutex::new(Vec::new()));
        let subacks = Arc::new(AtomicU64::new(0));
        let (c, l, a) = (client.clone(), log.clone(), subacks.clone());
        let f: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &f {
                            c.try_subscribe(t.clone(), QoS::AtLeastOnce).unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => l.lock().unwrap().push(Seen {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Self {
            client,
            log,
            subacks,
            filters: filters.len(),
            task,
        }
    }

    /// Waits until the subscriptions of `connections` connections are acknowledged.
    pub async fn ready(&self, connections: u64) {
        let want = connections * self.filters as u64;
        let t0 = Instant::now();
        while self.subacks.load(Ordering::SeqCst) < want {
            assert!(t0.elapsed() < Duration::from_secs(30), "no SUBACK");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How many messages so far (an index for [`Recorder::since`] and [`Recorder::wait_for`]).
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The messages from index `from` on.
    pub fn since(&self, from: usize) -> Vec<Seen> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// The last payload seen on `topic`.
    pub fn latest(&self, topic: &str) -> Option<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .rev()
            .find(|m| m.topic == topic)
            .map(|m| m.payload.clone())
    }

    /// Waits up to 60 s for a message from index `from` on for which `f` holds.
    pub async fn wait_for(&self, from: usize, what: &str, f: impl Fn(&Seen) -> bool) -> Seen {
        let t0 = Instant::now();
        let mut at = from;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(m) = log[at..].iter().find(|&m| f(m)) {
                    return m.clone();
                }
                at = log.len();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Publishes `payload` on `topic` (QoS 1).
    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }
}
