//! The connection to the daemon's gRPC API that the owner's commands share (`--addr`, the
//! bearer token, TLS), and the helpers every client command uses.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use hearth::api::auth::OWNER_TOKEN_FILE;
use hearth::api::pb;
use hearth::config::JobsConfig;

/// How to reach the daemon.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The daemon's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "HEARTH_ADDR")]
    addr: String,
    /// The bearer token's file (default: the data dir's owner.token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The daemon's data dir, where the owner token is (default: the XDG data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an `https://` address.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// A channel that sends the bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A Jobs client over an authenticated channel.
pub type JobsClient = pb::jobs_client::JobsClient<Authed>;

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// The data dir given, or the default one.
pub(crate) fn data_dir(d: &Option<PathBuf>) -> Result<PathBuf> {
    Ok(match d {
        Some(d) => d.clone(),
        None => JobsConfig::default().resolved_data_dir()?,
    })
}

impl Conn {
    async fn channel(&self) -> Result<(Channel, Bearer)> {
        let path = match &self.token_file {
            Some(p) => p.clone(),
            None => data_dir(&self.data_dir)?.join(OWNER_TOKEN_FILE),
        };
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the token from {} (give --token-file, or start `hearth serve` once to create it)",
                path.display()
            )
        })?;
        let value = format!("Bearer {}", token.trim())
            .parse()
            .context("the token file holds characters a header cannot carry")?;
        let mut ep = Endpoint::from_shared(self.addr.clone())
            .with_context(|| format!("--addr {:?} is not a URL", self.addr))?;
        if self.addr.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &self.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(tls)?;
        }
        let ch = ep.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the hearth daemon at {} ({e}); start it with `hearth serve`",
                self.addr
            )
        })?;
        Ok((ch, Bearer(value)))
    }

    /// A Control client.
    pub async fn control(&self) -> Result<pb::control_client::ControlClient<Authed>> {
        let (ch, b) = self.channel().await?;
        Ok(pb::control_client::ControlClient::with_interceptor(ch, b))
    }

    /// A Jobs client.
    pub async fn jobs(&self) -> Result<JobsClient> {
        let (ch, b) = self.channel().await?;
        Ok(pb::jobs_client::JobsClient::with_interceptor(ch, b))
    }
}

/// A single-threaded runtime for one command.
pub fn rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// A gRPC status as a one-line error: its code and message.
pub fn grpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), one_line(e.message()))
}

/// A message on one line: its non-blank lines, trimmed, joined by "; ".
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
