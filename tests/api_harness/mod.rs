//! The gRPC API on loopback in front of a real daemon, for `tests/api.rs` and
//! `tests/api_roles.rs`: a daemon with a simulated room, its data dir, and the owner's token.

use std::net::SocketAddr;
use std::path::Path;

use tonic::transport::Channel;

use hearth::api::auth::{Role, TokenStore, OWNER_TOKEN_FILE};
use hearth::api::{ApiConfig, ApiServer};
use hearth::clock::Clock;
use hearth::config::Config;
use hearth::daemon::{spawn, DaemonHandle};

/// The one place an `ApiConfig` is built (it may gain fields).
pub fn api_config(data_dir: &Path, listen: SocketAddr) -> ApiConfig {
    ApiConfig {
        listen,
        tls: None,
        insecure: false,
        data_dir: data_dir.to_path_buf(),
        max_upload_bytes: 1 << 20,
        max_total_upload_bytes: 2 << 20,
        max_in_flight: 64,
    }
}

/// A daemon with mining off, the GPU off, a cold simulated room at 30×, and its data dir.
pub fn config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.mining.enabled = false;
    cfg.gpu.enabled = false;
    cfg.simulation.speed = 30.0;
    cfg.simulation.initial_celsius = 15.0;
    cfg.jobs.data_dir = Some(dir.to_path_buf());
    cfg
}

/// The daemon for `cfg`, its clock at noon.
pub async fn daemon(cfg: Config) -> DaemonHandle {
    let speed = cfg.simulation.speed;
    spawn(cfg, Clock::starting_at(12.0 * 3600.0, 0, speed))
        .await
        .unwrap()
}

/// The API server and its daemon; `stop` ends both.
pub struct Api {
    pub daemon: DaemonHandle,
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    server: ApiServer,
    pub dir: tempfile::TempDir,
    pub owner: String,
}

impl Api {
    /// Starts a daemon (`tweak` its config) and the API in front of it (`api` its config).
    pub async fn start(tweak: impl FnOnce(&mut Config), api: impl FnOnce(&mut ApiConfig)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        tweak(&mut cfg);
        let daemon = daemon(cfg).await;
        let mut acfg = api_config(dir.path(), "127.0.0.1:0".parse().unwrap());
        api(&mut acfg);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let server = hearth::api::serve(daemon.client(), acfg, stop_rx)
            .await
            .unwrap();
        let owner = owner_token(dir.path());
        Api {
            addr: server.addr,
            daemon,
            stop,
            server,
            dir,
            owner,
        }
    }

    /// A plaintext channel to the API.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Issues a token.
    pub fn token(&self, role: Role, tenant: Option<&str>) -> String {
        TokenStore::new(self.dir.path())
            .add(role, tenant.map(str::to_string))
            .unwrap()
            .0
    }

    /// Stops the API, then the daemon.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.server.join().await;
        self.daemon.shutdown().await;
    }
}

/// The owner token the daemon wrote on first start.
pub fn owner_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(OWNER_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string()
}
