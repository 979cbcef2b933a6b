//! The gRPC API on loopback in front of a real daemon (in the test process): a daemon with a
//! simulated room, its data dir, and the owner's token.

use std::net::SocketAddr;
use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use hearth::api::auth::{Role, TokenStore, OWNER_TOKEN_FILE};
use hearth::api::pb;
use hearth::api::{ApiConfig, ApiServer};
use hearth::config::Config;
use hearth::daemon::DaemonHandle;
use hearth::gpu::tensor::Tensor;

use super::daemon::spawn_at_noon;

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
    let mut cfg = super::daemon::config(dir);
    cfg.mining.enabled = false;
    cfg.gpu.enabled = false;
    cfg
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
        let daemon = spawn_at_noon(cfg).await;
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

/// A request with `authorization: Bearer TOKEN`, or without the header.
pub fn req<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    r
}

/// A request with `authorization: Bearer TOKEN`.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    req(msg, Some(token))
}

/// A tensor sent inline with the job.
pub fn inline(t: &Tensor) -> pb::TensorInput {
    pb::TensorInput {
        source: Some(pb::tensor_input::Source::Inline(pb::Tensor {
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            data: t.le_bytes(),
        })),
    }
}

/// The SHA-256 of `b` in hex, as the API reports result digests.
pub fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
