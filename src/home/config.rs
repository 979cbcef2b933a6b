//! The `[mqtt]` section: where the broker is (a parsed `mqtt://` or `mqtts://` URL), who hearth
//! is on it, and where its topics live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::HomeError;

/// The MQTT link to the home's broker (Home Assistant's). Absent from the config file = no MQTT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` (port 1883 if left out) or `mqtts://host:port` (TLS, port 8883).
    pub url: String,
    /// User name on the broker (none: anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password on the broker (needs a user name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// MQTT client id (default `hearth-<device id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Prefix of hearth's own state and command topics (default `hearth/<device id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_topic: Option<String>,
    /// PEM certificates to trust for `mqtts://` instead of the Mozilla root set (a home broker
    /// usually has its own CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// MQTT keepalive, seconds.
    pub keepalive_seconds: u64,
    /// First reconnect delay, seconds.
    pub reconnect_min_seconds: f64,
    /// Longest reconnect delay, seconds (the delay doubles up to it).
    pub reconnect_max_seconds: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            client_id: None,
            discovery_prefix: "homeassistant".into(),
            base_topic: None,
            tls_ca: None,
            keepalive_seconds: 30,
            reconnect_min_seconds: 1.0,
            reconnect_max_seconds: 60.0,
        }
    }
}

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
                t => (
                    h,
                    Some(t.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
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

/// Checks a topic prefix: not empty, no wildcard, no empty level, no leading or trailing `/`.
fn check_prefix(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!("{topic:?} must not hold `+`, `#` or NUL"));
    }
    if topic.split('/').any(str::is_empty) {
        return Err(format!(
            "{topic:?} must not start or end with `/` nor hold `//`"
        ));
    }
    if topic.len() > 200 {
        return Err(format!("{} bytes is too long (at most 200)", topic.len()));
    }
    Ok(())
}

impl MqttConfig {
    /// The client id to use, given this device's id.
    pub fn client_id_for(&self, device_id: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("hearth-{device_id}"))
    }

    /// The base topic to use, given this device's id.
    pub fn base_topic_for(&self, device_id: &str) -> String {
        self.base_topic
            .clone()
            .unwrap_or_else(|| format!("hearth/{device_id}"))
    }

    /// Checks every value. The error names the key under `mqtt.` and says what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, msg: String| Err((format!("mqtt.{key}"), msg));
        if let Err(e) = BrokerUrl::parse(&self.url) {
            return bad("url", e.to_string());
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("password", "a password needs mqtt.username".into());
        }
        if let Some(u) = &self.username {
            if u.is_empty() || u.len() > 256 {
                return bad("username", "must be 1–256 bytes".into());
            }
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace) {
                return bad(
                    "client_id",
                    format!("{id:?}: must be 1–64 bytes without spaces"),
                );
            }
        }
        if let Err(msg) = check_prefix(&self.discovery_prefix) {
            return bad("discovery_prefix", msg);
        }
        if let Some(t) = &self.base_topic {
            if let Err(msg) = check_prefix(t) {
                return bad("base_topic", msg);
            }
        }
        if let Some(ca) = &self.tls_ca {
            if ca.as_os_str().is_empty() {
                return bad("tls_ca", "must name a file".into());
            }
        }
        if !(5..=3600).contains(&self.keepalive_seconds) {
            return bad(
                "keepalive_seconds",
                format!("must be 5–3600 s, got {}", self.keepalive_seconds),
            );
        }
        let (lo, hi) = (self.reconnect_min_seconds, self.reconnect_max_seconds);
        if !(lo.is_finite() && (0.01..=600.0).contains(&lo)) {
            return bad(
                "reconnect_min_seconds",
                format!("must be 0.01–600 s, got {lo}"),
            );
        }
        if !(hi.is_finite() && hi >= lo && hi <= 3600.0) {
            return bad(
                "reconnect_max_seconds",
                format!("must be between mqtt.reconnect_min_seconds ({lo} s) and 3600 s, got {hi}"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(cfg: &MqttConfig) -> String {
        cfg.validate().unwrap_err().0
    }

    #[test]
    fn defaults_validate_and_fill_in_the_device_id() {
        let cfg = MqttConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.base_topic_for("dev-1"), "hearth/dev-1");
        assert_eq!(cfg.client_id_for("dev-1"), "hearth-dev-1");
    }

    #[test]
    fn errors_name_the_key() {
        let with = |f: fn(&mut MqttConfig)| {
            let mut c = MqttConfig::default();
            f(&mut c);
            key_of(&c)
        };
        assert_eq!(with(|c| c.url = "http://x:1".into()), "mqtt.url");
        assert_eq!(with(|c| c.password = Some("p".into())), "mqtt.password");
        assert_eq!(with(|c| c.client_id = Some("a b".into())), "mqtt.client_id");
        assert_eq!(
            with(|c| c.discovery_prefix = "home/#".into()),
            "mqtt.discovery_prefix"
        );
        assert_eq!(
            with(|c| c.base_topic = Some("/hearth".into())),
            "mqtt.base_topic"
        );
        assert_eq!(with(|c| c.keepalive_seconds = 0), "mqtt.keepalive_seconds");
        assert_eq!(
            with(|c| c.reconnect_min_seconds = f64::NAN),
            "mqtt.reconnect_min_seconds"
        );
        assert_eq!(
            with(|c| c.reconnect_max_seconds = 0.5),
            "mqtt.reconnect_max_seconds"
        );
    }

    #[test]
    fn urls_parse_with_default_ports() {
        let u = BrokerUrl::parse("mqtt://broker.lan").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (false, "broker.lan", 1883)
        );
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
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<MqttConfig>("urll = \"mqtt://a:1\"").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }
}
