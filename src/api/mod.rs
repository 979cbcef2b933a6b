//! The gRPC API (tonic): the `Control` and `Jobs` services of `hearth.v1`, `grpc.health.v1` and
//! server reflection. The only module that knows protobuf and tonic types: domain values are
//! converted at this boundary (`convert`).
//!
//! Every call of the two services passes the bearer-token interceptor (`auth`); health and
//! reflection are open, as grpcurl and load balancers expect.

pub mod auth;
pub mod control;
pub mod convert;
pub mod jobs;
mod shed;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::ops::DaemonClient;

/// The generated protobuf messages and services.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("hearth.v1");
    /// The encoded file descriptor set, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hearth_descriptor.bin"));
}

/// The API could not start.
#[derive(Debug, Error)]
pub enum ApiError {
    /// A non-loopback address without TLS.
    #[error("--listen {0} is not loopback: give --tls-cert and --tls-key, or --insecure")]
    NeedsTls(SocketAddr),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate or key could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// tonic refused the configuration.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptors.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The token file failed.
    #[error("tokens: {0}")]
    Auth(#[from] auth::AuthError),
}

/// Where and how the API listens.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The address (127.0.0.1:50051 by default).
    pub listen: SocketAddr,
    /// PEM certificate and key for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain text on a non-loopback address.
    pub insecure: bool,
    /// The data dir (tokens live there).
    pub data_dir: PathBuf,
    /// Largest uploaded tensor, bytes.
    pub max_upload_bytes: usize,
    /// Uploaded tensors held in all, bytes.
    pub max_total_upload_bytes: usize,
    /// Calls being served at once, over all connections; a call beyond it is answered
    /// RESOURCE_EXHAUSTED at once instead of queueing, which bounds the memory that load can
    /// take (at most this many request messages are decoded at a time).
    pub max_in_flight: usize,
}

/// The default [`ApiConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// The running API server.
pub struct ApiServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Waits for the server to stop (after the shutdown signal).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Starts the API on `cfg.listen`; stops taking calls when `shutdown` turns true.
pub async fn serve(
    daemon: DaemonClient,
    cfg: ApiConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<ApiServer, ApiError> {
    if !cfg.listen.ip().is_loopback() && cfg.tls.is_none() && !cfg.insecure {
        return Err(ApiError::NeedsTls(cfg.listen));
    }
    let tokens = auth::TokenStore::new(&cfg.data_dir);
    if let Some(path) = tokens.ensure_owner()? {
        tracing::info!(path = %path.display(), "owner token created (mode 0600)");
    }
    let authn = Arc::new(auth::Authenticator::new(tokens));
    let interceptor = move |mut req: tonic::Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let who = authn.check(header)?;
        req.extensions_mut().insert(who);
        Ok(req)
    };
    let uploads = Arc::new(uploads::Uploads::new(
        cfg.max_upload_bytes,
        cfg.max_total_upload_bytes,
    ));
    let control = pb::control_server::ControlServer::with_interceptor(
        control::ControlApi {
            daemon: daemon.clone(),
            shutdown: shutdown.clone(),
        },
        interceptor.clone(),
    );
    // A submit may carry several inline tensors of up to 4 MiB each.
    let jobs = tonic::service::interceptor::InterceptedService::new(
        pb::jobs_server::JobsServer::new(jobs::JobsApi {
            daemon: daemon.clone(),
            uploads,
            shutdown: shutdown.clone(),
        })
        .max_decoding_message_size(convert::MAX_INLINE_TENSOR_BYTES * 8 + (1 << 20)),
        interceptor,
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::control_server::ControlServer<control::ControlApi>>()
        .await;
    health_reporter
        .set_serving::<pb::jobs_server::JobsServer<jobs::JobsApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ApiError::Reflection(e.to_string()))?;

    let mut builder = Server::builder();
    if let Some((cert, key)) = &cfg.tls {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| ApiError::Read {
                path: p.clone(),
                source,
            })
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ApiError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = builder
        .layer(shed::ShedLayer::new(cfg.max_in_flight))
        .add_service(health)
        .add_service(reflection)
        .add_service(control)
        .add_service(jobs);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
        // Stop reporting SERVING as the server goes.
        health_reporter
            .set_not_serving::<pb::jobs_server::JobsServer<jobs::JobsApi>>()
            .await;
    });
    tracing::info!(%addr, tls = cfg.tls.is_some(), "gRPC API listening");
    Ok(ApiServer { addr, task })
}
