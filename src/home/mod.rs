//! The home: the MQTT link to the broker Home Assistant uses. Only this module knows MQTT topics.
//!
//! - [`config`]: the `[mqtt]` section;
//! - [`connect`]: broker URL, credentials and TLS to rumqttc options.
//!
//! Devices on the home's broker: [`sensors`] (room and outdoor temperatures from MQTT) and
//! [`session`] (a supervised client of its own for each of them and for the smart plug).

pub mod config;
pub mod connect;
pub mod sensors;
pub mod session;

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
}
