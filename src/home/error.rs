//! What the MQTT link cannot work with.

use thiserror::Error;

/// Something the MQTT link cannot work with.
#[derive(Debug, Error)]
pub enum HomeError {
    /// The broker URL is unusable.
    #[error("mqtt url {url:?}: {why}")]
    Url {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The TLS settings (CA file, rustls) are unusable.
    #[error("mqtt TLS: {0}")]
    Tls(#[from] crate::mining::stratum::transport::TransportError),
    /// A setting is out of range.
    #[error("config key `{key}`: {msg}")]
    Config {
        /// The dotted key (`mqtt.…`).
        key: String,
        /// What is wrong.
        msg: String,
    },
}
