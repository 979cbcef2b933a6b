//! The byte stream under a Stratum session: plain TCP (`stratum+tcp://`) or TLS over TCP
//! (`stratum+ssl://`, rustls with the ring provider). Both sides of the protocol — the client and
//! the local pool — see one boxed stream type, so nothing above this module knows which it has.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A bidirectional byte stream a session runs over.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// A boxed [`Conn`].
pub type BoxConn = Box<dyn Conn>;

/// How a pool URL asks to be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `stratum+tcp://`.
    Tcp,
    /// `stratum+ssl://` (also accepted: `stratum+tls://`).
    Tls,
}

/// A parsed pool URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUrl {
    /// TCP or TLS.
    pub scheme: Scheme,
    /// Host name or IP address (the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A URL, certificate or key the transport cannot use.
#[derive(Debug, Error)]
pub enum TransportError {
    /// Not `stratum+tcp://host:port` or `stratum+ssl://host:port`.
    #[error("pool url {0:?}: expected stratum+tcp://host:port or stratum+ssl://host:port")]
    Url(String),
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {msg}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl PoolUrl {
    /// Parses `stratum+tcp://host:port` or `stratum+ssl://host:port` (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Self, TransportError> {
        let bad = || TransportError::Url(url.to_string());
        let (scheme, rest) = if let Some(r) = url.strip_prefix("stratum+tcp://") {
            (Scheme::Tcp, r)
        } else if let Some(r) = url
            .strip_prefix("stratum+ssl://")
            .or_else(|| url.strip_prefix("stratum+tls://"))
        {
            (Scheme::Tls, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        // `[::1]:3333` → `::1`.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, with IPv6 hosts bracketed, for `TcpStream::connect`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> Result<ServerName<'static>, TransportError> {
        ServerName::try_from(self.host.clone()).map_err(|_| TransportError::Url(self.host.clone()))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = |msg: String| TransportError::Pem {
        path: path.to_path_buf(),
        msg,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A TLS client configuration: trusts the PEM certificates in `ca_file` if given, else the
/// Mozilla root set (webpki-roots), so that no system certificate store is needed.
pub fn client_tls(ca_file: Option<&Path>) -> Result<TlsConnector, TransportError> {
    Ok(TlsConnector::from(Arc::new(client_config(ca_file)?)))
}

/// The rustls client configuration under [`client_tls`] (ring provider), for clients that take a
/// `rustls::ClientConfig` themselves (the MQTT link).
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TransportError::Pem {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// A TLS server configuration from a PEM certificate chain and a PEM private key.
pub fn server_tls(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TransportError> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TransportError::Pem {
        path: key_file.to_path_buf(),
        msg: e.to_string(),
    })?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Opens a session stream to `url`: TCP with `TCP_NODELAY`, then the TLS handshake if the
/// scheme asks for it (`tls` must then be given).
pub async fn connect(url: &PoolUrl, tls: Option<&TlsConnector>) -> std::io::Result<BoxConn> {
    let tcp = TcpStream::connect(url.address()).await?;
    tcp.set_nodelay(true)?;
    match (url.scheme, tls) {
        (Scheme::Tcp, _) => Ok(Box::new(tcp)),
        (Scheme::Tls, Some(connector)) => {
            let name = url
                .server_name()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Ok(Box::new(connector.connect(name, tcp).await?))
        }
        (Scheme::Tls, None) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "stratum+ssl:// without a TLS configuration",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_ssl_and_ipv6_and_rejects_the_rest() {
        let u = PoolUrl::parse("stratum+tcp://pool.example:3333").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Tcp, "pool.example", 3333)
        );
        let u = PoolUrl::parse("stratum+ssl://pool.example:443/").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Tls, 443));
        assert_eq!(
            PoolUrl::parse("stratum+tls://h:1").unwrap().scheme,
            Scheme::Tls
        );
        let u = PoolUrl::parse("stratum+tcp://[::1]:3333").unwrap();
        assert_eq!(
            (u.host.as_str(), u.address()),
            ("::1", "[::1]:3333".to_string())
        );
        for bad in [
            "http://h:1",
            "stratum+tcp://h",
            "stratum+tcp://:1",
            "stratum+tcp://h:0",
            "stratum+tcp://h:99999",
            "stratum+ssl://h:x",
            "stratum+tcp://h/p:1",
        ] {
            assert!(PoolUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_tls(Some(&missing)).err().unwrap().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_tls(Some(&empty)).err().unwrap().to_string();
        assert!(e.contains("empty.pem") && e.contains("CERTIFICATE"), "{e}");
        let e = server_tls(&empty, &empty).err().unwrap().to_string();
        assert!(e.contains("empty.pem"), "{e}");
    }

    #[test]
    fn web_roots_load() {
        client_tls(None).unwrap();
    }
}
