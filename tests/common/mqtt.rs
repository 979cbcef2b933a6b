//! A real `mosquitto` broker for the home tests (Debian's package, installed by `.ci/setup`) on a
//! free loopback port, and a raw MQTT client in the test made with rumqttc.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, EventLoop, MqttOptions};

use super::bin::free_port;

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
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest none\n"
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
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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
