//! Real `nats-server -js` processes for the market tests (Debian's package, installed by
//! `.ci/setup`): one server, or a 3-node cluster, on free loopback ports with temp store dirs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::bin::free_port;

/// A `nats-server -js` child, killed and reaped on drop (also when a test panics).
pub struct NatsServer {
    child: Option<Child>,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn bin() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

fn wait_listening(port: u16) {
    super::bin::wait_listening(port, "nats-server");
}

impl NatsServer {
    fn spawn(port: u16, extra: &[String]) -> Self {
        let mut s = Self {
            child: None,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            extra: extra.to_vec(),
            dir: tempfile::tempdir().unwrap(),
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let child = Command::new(bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        self.child = Some(child);
    }

    /// Starts a killed server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
        wait_listening(self.port);
    }

    /// One server with JetStream.
    pub fn start() -> Self {
        let port = free_port();
        let s = Self::spawn(port, &[]);
        wait_listening(port);
        s
    }

    /// A 3-node JetStream cluster; returns the nodes (all listening).
    pub fn cluster() -> Vec<Self> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes: Vec<Self> = ports
            .iter()
            .enumerate()
            .map(|(i, (p, c))| {
                Self::spawn(
                    *p,
                    &[
                        "-n".into(),
                        format!("n{i}"),
                        "--cluster_name".into(),
                        "hearth".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{c}"),
                        "--routes".into(),
                        routes.clone(),
                    ],
                )
            })
            .collect();
        for (p, _) in &ports {
            wait_listening(*p);
        }
        nodes
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A JetStream context once JetStream answers ("stream not found" is an answer).
    pub async fn jetstream(url: &str) -> jetstream::Context {
        let t0 = Instant::now();
        loop {
            if let Ok(client) = async_nats::connect(url).await {
                let js = jetstream::new(client);
                match js.get_stream("READY_PROBE").await {
                    Ok(_) => return js,
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::context::GetStreamErrorKind::JetStream(_)
                        ) =>
                    {
                        return js
                    }
                    Err(_) => {}
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "JetStream at {url} not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
