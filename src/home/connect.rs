//! From `[mqtt]` to rumqttc's connection options: the broker's address, credentials, TLS
//! (rustls with ring) for `mqtts://`, and a bounded packet size.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::config::{BrokerUrl, MqttConfig};
use super::error::HomeError;

/// The largest MQTT packet hearth reads or writes, bytes. A peer (or a big retained message on a
/// subscribed topic) cannot make the link buffer more than this: a larger packet is a protocol
/// error and the link reconnects. Discovery configs are a few KiB.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;

/// rumqttc options for `cfg`, connecting as `client_id`: a clean session (nothing queued for
/// hearth survives a disconnect, so no stale command is delivered later), the configured
/// keepalive, credentials, TLS for `mqtts://` and [`MAX_PACKET_BYTES`] both ways. The last will
/// is the link's to set.
pub fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, HomeError> {
    let url = BrokerUrl::parse(&cfg.url)?;
    let mut opts = MqttOptions::new(client_id, url.host.clone(), url.port);
    opts.set_keep_alive(Duration::from_secs(cfg.keepalive_seconds.max(1)))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    if url.tls {
        let tls = crate::mining::stratum::transport::client_config(cfg.tls_ca.as_deref())?;
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_credentials_tls_and_the_packet_bound() {
        let mut cfg = MqttConfig {
            url: "mqtts://127.0.0.1:8884".into(),
            username: Some("heater".into()),
            password: Some("secret".into()),
            keepalive_seconds: 20,
            ..MqttConfig::default()
        };
        let o = options(&cfg, "hearth-x").unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 8884));
        assert_eq!(o.client_id(), "hearth-x");
        assert_eq!(o.keep_alive(), Duration::from_secs(20));
        assert_eq!(o.max_packet_size(), MAX_PACKET_BYTES);
        assert!(o.clean_session());
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("heater", "secret")
        );
        assert!(matches!(
            o.transport(),
            Transport::Tls(TlsConfiguration::Rustls(_))
        ));
        cfg.url = "mqtt://127.0.0.1:1883".into();
        assert!(matches!(
            options(&cfg, "c").unwrap().transport(),
            Transport::Tcp
        ));
        cfg.url = "mqtts://127.0.0.1".into();
        cfg.tls_ca = Some("/nonexistent/ca.pem".into());
        assert!(options(&cfg, "c").is_err());
    }
}
