//! From `[mqtt]` to rumqttc's connection options: broker address from the URL, credentials,
//! TLS (rustls with ring) for `mqtts://`, and a bounded packet size.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::config::MqttConfig;
use super::HomeError;

/// The largest MQTT packet hearth reads or writes, bytes. A peer (or a big retained message on a
/// subscribed topic) cannot make the link buffer more than this: a larger packet is a protocol
/// error and the link reconnects. Discovery configs are a few KiB.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;

/// A parsed `mqtt://` or `mqtts://` broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or IP address (brackets of an IPv6 literal removed).
    pub host: String,
    /// TCP port (1883, or 8883 with TLS, when the URL has none).
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Self, HomeError> {
        let bad = |why: &str| HomeError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt", r)) => (false, r),
            Some(("mqtts", r)) => (true, r),
            _ => return Err(bad("expected mqtt://host:port or mqtts://host:port")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(bad("only a host and a port are allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            match tail {
                "" => (h, None),
                t => (h, Some(t.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?)),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port must be 1–65535")),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

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
    fn urls_parse_with_default_ports() {
        let u = BrokerUrl::parse("mqtt://broker.lan").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "broker.lan", 1883));
        let u = BrokerUrl::parse("mqtts://10.0.0.2/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "10.0.0.2", 8883));
        let u = BrokerUrl::parse("mqtt://[::1]:1999").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        let u = BrokerUrl::parse("mqtt://127.0.0.1:18830").unwrap();
        assert_eq!(u.port, 18830);
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "tcp://a:1",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://a:0",
            "mqtt://a:70000",
            "mqtt://a:1/topic",
            "mqtt://user:pw@a:1",
            "mqtt://[::1",
            "ws://a:1",
        ] {
            assert!(BrokerUrl::parse(url).is_err(), "{url}");
        }
    }

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
        assert_eq!((login.username.as_str(), login.password.as_str()), ("heater", "secret"));
        assert!(matches!(o.transport(), Transport::Tls(TlsConfiguration::Rustls(_))));
        cfg.url = "mqtt://127.0.0.1:1883".into();
        assert!(matches!(options(&cfg, "c").unwrap().transport(), Transport::Tcp));
        cfg.url = "mqtts://127.0.0.1".into();
        cfg.tls_ca = Some("/nonexistent/ca.pem".into());
        assert!(options(&cfg, "c").is_err());
    }
}
