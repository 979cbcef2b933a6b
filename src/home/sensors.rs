//! Room and outdoor temperatures from MQTT (`sensors.room.kind = "mqtt"`): a Zigbee thermometer
//! through zigbee2mqtt (`{"temperature": 21.3, ...}` on `zigbee2mqtt/<name>`, with
//! `field = "temperature"`), or any device that publishes a plain number. Each reading is
//! stamped with the daemon's clock when it arrives and published like every other source
//! (`watch<Option<Reading>>`), so the supervisor's stale-sensor trip judges it the same way.
//! A retained message (kept by the broker from before hearth subscribed, of unknown age) is
//! not taken as a reading. Payloads that are too big, not numbers, not finite or outside
//! −50…80 °C are refused with a log line, and the last reading is kept to go stale.

use rumqttc::{AsyncClient, QoS};
use thiserror::Error;
use tokio::sync::watch;

use super::session::{self, Link, Session};
use crate::clock::Clock;
use crate::thermal::sensor::Reading;

/// The largest payload a device's message may have here, bytes (a zigbee2mqtt thermometer's
/// message is a few hundred).
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The plausible range of a room or outdoor temperature, °C.
pub const CELSIUS_RANGE: std::ops::RangeInclusive<f64> = -50.0..=80.0;

/// Why a payload carries no usable value.
#[derive(Debug, Error, PartialEq)]
pub enum PayloadError {
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes is larger than {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    /// Not UTF-8 text.
    #[error("payload is not UTF-8 text")]
    NotText,
    /// A field was configured and the payload is not a JSON object.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// The configured field is not in the JSON payload (or is not a number, string or bool).
    #[error("payload has no field {0:?} holding a value")]
    NoField(String),
    /// The value is not a number.
    #[error("{0:?} is not a number")]
    NotNumber(String),
    /// The number is not finite or outside its plausible range.
    #[error("{0} is outside {1}")]
    OutOfRange(f64, String),
}

/// The value a payload carries, as text: the whole payload trimmed or, with `field`, the member
/// of the JSON payload at that dotted path (`ENERGY.Power`): a string's content, a number or a
/// boolean as written.
pub fn payload_value(payload: &[u8], field: Option<&str>) -> Result<String, PayloadError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| PayloadError::NotText)?;
    let Some(field) = field else {
        return Ok(text.trim().to_string());
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let value = field
        .split('.')
        .try_fold(&json, |v, key| v.get(key))
        .ok_or_else(|| PayloadError::NoField(field.to_string()))?;
    match value {
        serde_json::Value::String(s) => Ok(s.trim().to_string()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(PayloadError::NoField(field.to_string())),
    }
}

/// The number a payload carries (see [`payload_value`]), if finite and within `range`.
pub fn payload_number(
    payload: &[u8],
    field: Option<&str>,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, PayloadError> {
    let text = payload_value(payload, field)?;
    let v: f64 = text
        .parse()
        .map_err(|_| PayloadError::NotNumber(text.chars().take(40).collect()))?;
    if !v.is_finite() || !range.contains(&v) {
        return Err(PayloadError::OutOfRange(
            v,
            format!("{}…{}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

/// Checks a topic to subscribe to or publish on exactly: not empty, no wildcard, no NUL, at most
/// 256 bytes.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must name a topic".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!("{topic:?} must not hold `+`, `#` or NUL"));
    }
    if topic.len() > 256 {
        return Err(format!("{} bytes is too long (at most 256)", topic.len()));
    }
    Ok(())
}

/// Checks a JSON field path: dot-separated, no empty part, at most 100 bytes.
pub fn check_field(field: &str) -> Result<(), String> {
    if field.is_empty() || field.len() > 100 || field.split('.').any(str::is_empty) {
        return Err(format!(
            "{field:?} must be a member name or a dotted path (1–100 bytes)"
        ));
    }
    Ok(())
}

/// One temperature from MQTT: its topic, the JSON field holding it, and where readings go.
pub struct MqttSensor {
    /// `room` or `outdoor`, for logs.
    pub name: &'static str,
    /// The topic the device publishes on.
    pub topic: String,
    /// The JSON field with the temperature; `None` for a plain number payload.
    pub field: Option<String>,
    /// Where each accepted reading goes.
    pub readings: watch::Sender<Option<Reading>>,
}

/// The sensors' side of a session: subscribes to each sensor's topic on every connection and
/// turns messages into readings.
struct Subscriber {
    sensors: Vec<MqttSensor>,
    /// Per sensor: whether its last payload was refused (the first refusal after a good
    /// reading is a warning, the next ones debug lines, so a flood cannot flood the log).
    refusing: Vec<bool>,
    clock: Clock,
}

impl Subscriber {
    fn new(sensors: Vec<MqttSensor>, clock: Clock) -> Self {
        let refusing = vec![false; sensors.len()];
        Self {
            sensors,
            refusing,
            clock,
        }
    }

    /// Takes one message: a reading for each sensor on `topic`, or a log line saying why not.
    fn take(&mut self, topic: &str, payload: &[u8], retained: bool) {
        for (s, refusing) in self.sensors.iter().zip(self.refusing.iter_mut()) {
            if s.topic != topic {
                continue;
            }
            if retained {
                tracing::info!(sensor = s.name, %topic, "ignoring a retained temperature of unknown age; waiting for a fresh one");
                continue;
            }
            match payload_number(payload, s.field.as_deref(), CELSIUS_RANGE) {
                Ok(celsius) => {
                    s.readings.send_replace(Some(Reading {
                        celsius,
                        at_s: self.clock.now_s(),
                    }));
                    *refusing = false;
                }
                Err(e) if !*refusing => {
                    tracing::warn!(sensor = s.name, %topic, error = %e, "MQTT temperature refused; the last reading will go stale");
                    *refusing = true;
                }
                Err(e) => {
                    tracing::debug!(sensor = s.name, %topic, error = %e, "MQTT temperature refused")
                }
            }
        }
    }
}

impl Session for Subscriber {
    fn connected(&mut self, client: &AsyncClient) {
        for s in &self.sensors {
            if let Err(e) = client.try_subscribe(s.topic.clone(), QoS::AtMostOnce) {
                tracing::warn!(sensor = s.name, topic = %s.topic, error = %e, "cannot subscribe");
            }
        }
    }

    fn message(&mut self, topic: &str, payload: &[u8], retained: bool) {
        self.take(topic, payload, retained);
    }

    fn lost(&mut self) {
        // Readings stop; the supervisor sees them age.
    }
}

/// Runs the subscriber of `sensors` on `link` (a client of its own) until `shutdown`.
pub async fn run(
    link: Link,
    sensors: Vec<MqttSensor>,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) {
    let mut sub = Subscriber::new(sensors, clock);
    session::run(link, &mut sub, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zigbee2mqtt_json_and_plain_numbers() {
        let z2m = br#"{"battery":97,"humidity":48.2,"linkquality":120,"temperature":21.34}"#;
        let t = payload_number(z2m, Some("temperature"), CELSIUS_RANGE).unwrap();
        assert_eq!(t, 21.34);
        assert_eq!(payload_number(b" 19.5\n", None, CELSIUS_RANGE), Ok(19.5));
        let tasmota = br#"{"Time":"2026-12-07T04:00:00","ENERGY":{"Power":1480,"Voltage":230}}"#;
        assert_eq!(
            payload_number(tasmota, Some("ENERGY.Power"), 0.0..=1e5),
            Ok(1480.0)
        );
        assert_eq!(
            payload_value(br#"{"state":"ON","power":3}"#, Some("state")).unwrap(),
            "ON"
        );
        assert_eq!(
            payload_number(br#"{"t":"22.5"}"#, Some("t"), CELSIUS_RANGE),
            Ok(22.5)
        );
    }

    #[test]
    fn refuses_bad_payloads() {
        let r = |p: &[u8], f: Option<&str>| payload_number(p, f, CELSIUS_RANGE);
        assert!(matches!(r(b"warm", None), Err(PayloadError::NotNumber(_))));
        assert!(matches!(r(b"NaN", None), Err(PayloadError::OutOfRange(..))));
        assert!(matches!(r(b"inf", None), Err(PayloadError::OutOfRange(..))));
        assert!(matches!(r(b"85", None), Err(PayloadError::OutOfRange(..))));
        assert!(matches!(r(b"-51", None), Err(PayloadError::OutOfRange(..))));
        assert!(matches!(r(b"\xff\xfe", None), Err(PayloadError::NotText)));
        assert!(matches!(
            r(br#"{"temperature":21"#, Some("temperature")),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            r(b"21.5", Some("temperature")),
            Err(PayloadError::NoField(_))
        ));
        assert!(matches!(
            r(br#"{"humidity":40}"#, Some("temperature")),
            Err(PayloadError::NoField(_))
        ));
        assert!(matches!(
            r(br#"{"temperature":{"v":1}}"#, Some("temperature")),
            Err(PayloadError::NoField(_))
        ));
        assert!(matches!(
            r(br#"{"temperature":null}"#, Some("temperature")),
            Err(PayloadError::NoField(_))
        ));
        let big = vec![b'1'; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            r(&big, None),
            Err(PayloadError::TooLarge(MAX_PAYLOAD_BYTES + 1))
        );
    }

    #[test]
    fn readings_are_stamped_on_arrival_and_retained_ones_ignored() {
        let (tx, rx) = watch::channel(None);
        let clock = Clock::starting_at(1000.0, 0, 1.0);
        let mut sub = Subscriber::new(
            vec![MqttSensor {
                name: "room",
                topic: "zigbee2mqtt/living".into(),
                field: Some("temperature".into()),
                readings: tx,
            }],
            clock.clone(),
        );
        sub.take("zigbee2mqtt/living", br#"{"temperature":20.5}"#, true);
        assert_eq!(*rx.borrow(), None, "a retained reading is of unknown age");
        sub.take("zigbee2mqtt/other", br#"{"temperature":20.5}"#, false);
        assert_eq!(*rx.borrow(), None);
        sub.take("zigbee2mqtt/living", br#"{"temperature":20.5}"#, false);
        let r = rx.borrow().unwrap();
        assert_eq!(r.celsius, 20.5);
        assert!(r.at_s >= 1000.0 && r.at_s <= clock.now_s());
        sub.take("zigbee2mqtt/living", br#"{"temperature":"hot"}"#, false);
        assert_eq!(
            rx.borrow().unwrap(),
            r,
            "a bad payload keeps the last reading"
        );
    }

    #[test]
    fn topics_and_fields_are_checked() {
        assert!(check_topic("zigbee2mqtt/Living room").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("zigbee2mqtt/+").is_err());
        assert!(check_topic("a/#").is_err());
        assert!(check_field("ENERGY.Power").is_ok());
        assert!(check_field("a..b").is_err());
        assert!(check_field("").is_err());
    }
}
