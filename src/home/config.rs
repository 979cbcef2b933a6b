//! The `[mqtt]` section: where the broker is, who hearth is on it, and where its topics live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
        if let Err(e) = super::connect::BrokerUrl::parse(&self.url) {
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
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<MqttConfig>("urll = \"mqtt://a:1\"").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }
}
