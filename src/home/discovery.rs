//! Home Assistant discovery: one retained config per entity under
//! `<prefix>/<component>/<node id>/<object id>/config`, all sharing one device block and the
//! availability topic. The keys and units are the ones Home Assistant's MQTT integration
//! documents for each platform.

use serde_json::{json, Map, Value};

use super::topics::{CommandTopic, Topics};
use crate::thermal::schedule::{MAX_SETPOINT_CELSIUS, MIN_SETPOINT_CELSIUS};

/// The mix options of the select entity, in the order Home Assistant shows them.
pub const MIX_OPTIONS: [&str; 4] = ["auto", "mining only", "AI only", "pinned"];

/// The device every entity belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// A stable id (the heater's device id).
    pub id: String,
    /// The name Home Assistant shows.
    pub name: String,
    /// The model.
    pub model: String,
    /// The manufacturer.
    pub manufacturer: String,
    /// hearth's version.
    pub sw_version: String,
}

impl Device {
    /// hearth's device block for `id`.
    pub fn hearth(id: &str) -> Self {
        Self {
            id: id.to_string(),
            name: format!("hearth {id}"),
            model: "hearth compute heater".into(),
            manufacturer: "hearth".into(),
            sw_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A sensor's kind: its unit, device class and state class.
struct SensorKind {
    unit: Option<&'static str>,
    device_class: Option<&'static str>,
    state_class: &'static str,
    precision: u8,
}

const POWER: SensorKind = SensorKind {
    unit: Some("W"),
    device_class: Some("power"),
    state_class: "measurement",
    precision: 0,
};
const ENERGY: SensorKind = SensorKind {
    unit: Some("kWh"),
    device_class: Some("energy"),
    state_class: "total_increasing",
    precision: 3,
};
const HASHRATE: SensorKind = SensorKind {
    unit: Some("H/s"),
    device_class: None,
    state_class: "measurement",
    precision: 0,
};
const TEMPERATURE: SensorKind = SensorKind {
    unit: Some("°C"),
    device_class: Some("temperature"),
    state_class: "measurement",
    precision: 1,
};
const EARNINGS: SensorKind = SensorKind {
    unit: None,
    device_class: None,
    state_class: "total_increasing",
    precision: 6,
};

/// The sensors: object id (their state topic is `<base>/sensor/<object id>`), name, kind.
const SENSORS: [(&str, &str, SensorKind); 12] = [
    ("power_total", "Power", POWER),
    ("power_asic", "Mining power", POWER),
    ("power_gpu", "GPU power", POWER),
    ("power_resistive", "Element power", POWER),
    ("energy_asic", "Mining energy", ENERGY),
    ("energy_gpu", "GPU energy", ENERGY),
    ("energy_resistive", "Element energy", ENERGY),
    ("hashrate", "Hashrate", HASHRATE),
    ("earnings", "Earnings", EARNINGS),
    ("budget", "Heat budget", POWER),
    ("unmet", "Unmet heat", POWER),
    ("outdoor_temperature", "Outdoor temperature", TEMPERATURE),
];

/// The discovery configs: (topic, JSON payload), one per entity, all to be published retained.
/// `presets` are the thermostat's preset names (`none` is Home Assistant's own and left out).
pub fn configs<'a>(
    t: &Topics,
    device: &Device,
    presets: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String)> {
    let dev = json!({
        "identifiers": [format!("hearth_{}", t.node)],
        "name": device.name,
        "model": device.model,
        "manufacturer": device.manufacturer,
        "sw_version": device.sw_version,
    });
    // Keys every entity shares.
    let common = |object: &str, name: &str| -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        m.insert(
            "unique_id".into(),
            format!("hearth_{}_{object}", t.node).into(),
        );
        m.insert("device".into(), dev.clone());
        m.insert("availability_topic".into(), t.availability().into());
        m.insert("payload_available".into(), super::link::ONLINE.into());
        m.insert("payload_not_available".into(), super::link::OFFLINE.into());
        m.insert(
            "origin".into(),
            json!({"name": "hearth", "sw_version": device.sw_version}),
        );
        m
    };
    let mut out = Vec::new();
    let mut push = |component: &str, object: &str, name: &str, extra: Value| {
        let mut m = common(object, name);
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        out.push((t.config(component, object), Value::Object(m).to_string()));
    };
    let presets: Vec<&str> = presets.into_iter().filter(|p| *p != "none").collect();
    let mut climate = json!({
        "modes": ["off", "heat"],
        "mode_command_topic": t.command(CommandTopic::Mode),
        "mode_state_topic": t.at(CommandTopic::Mode.state()),
        "temperature_command_topic": t.command(CommandTopic::Target),
        "temperature_state_topic": t.at(CommandTopic::Target.state()),
        "current_temperature_topic": t.at("climate/current"),
        "action_topic": t.at("climate/action"),
        "min_temp": MIN_SETPOINT_CELSIUS,
        "max_temp": MAX_SETPOINT_CELSIUS,
        "temp_step": 0.5,
        "precision": 0.1,
        "temperature_unit": "C",
        "optimistic": false,
        "qos": 1,
    });
    if !presets.is_empty() {
        climate["preset_modes"] = json!(presets);
        climate["preset_mode_command_topic"] = t.command(CommandTopic::Preset).into();
        climate["preset_mode_state_topic"] = t.at(CommandTopic::Preset.state()).into();
    }
    push("climate", "thermostat", "Thermostat", climate);
    for (id, name, k) in &SENSORS {
        let mut s = json!({
            "state_topic": t.at(&format!("sensor/{id}")),
            "state_class": k.state_class,
            "suggested_display_precision": k.precision,
        });
        if let Some(u) = k.unit {
            s["unit_of_measurement"] = u.into();
        }
        if let Some(c) = k.device_class {
            s["device_class"] = c.into();
        }
        push("sensor", id, name, s);
    }
    push(
        "select",
        "mix",
        "Workload mix",
        json!({
            "command_topic": t.command(CommandTopic::Mix),
            "state_topic": t.at(CommandTopic::Mix.state()),
            "options": MIX_OPTIONS,
            "optimistic": false,
            "qos": 1,
        }),
    );
    push(
        "number",
        "gpu_share",
        "GPU share when pinned",
        json!({
            "command_topic": t.command(CommandTopic::GpuShare),
            "state_topic": t.at(CommandTopic::GpuShare.state()),
            "min": 0,
            "max": 100,
            "step": 1,
            "unit_of_measurement": "%",
            "mode": "slider",
            "optimistic": false,
            "qos": 1,
        }),
    );
    push(
        "binary_sensor",
        "safety_trip",
        "Safety trip",
        json!({
            "state_topic": t.at("trip"),
            "json_attributes_topic": t.at("trip/attributes"),
            "device_class": "problem",
            "payload_on": "ON",
            "payload_off": "OFF",
        }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_is_json_with_a_unique_id_and_the_device() {
        let t = Topics::new("hearth/dev-1", "homeassistant", "dev-1");
        let cfgs = configs(&t, &Device::hearth("dev-1"), ["away", "comfort", "none"]);
        let mut ids = std::collections::BTreeSet::new();
        for (topic, payload) in &cfgs {
            assert!(topic.starts_with("homeassistant/") && topic.ends_with("/config"));
            let v: Value = serde_json::from_str(payload).unwrap();
            assert!(ids.insert(v["unique_id"].as_str().unwrap().to_string()));
            assert_eq!(v["device"]["identifiers"][0], "hearth_dev-1");
            assert_eq!(v["availability_topic"], "hearth/dev-1/availability");
        }
        assert_eq!(cfgs.len(), 1 + SENSORS.len() + 3);
        let climate: Value = serde_json::from_str(&cfgs[0].1).unwrap();
        assert_eq!(climate["preset_modes"], json!(["away", "comfort"]));
        assert_eq!(climate["min_temp"], 5.0);
        assert_eq!(climate["max_temp"], 30.0);
    }
}
