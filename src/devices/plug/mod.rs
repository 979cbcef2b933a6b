//! Switched loads: a resistive element behind a smart plug on the home's MQTT broker
//! (`heater.resistive.kind = "mqtt_switch"`), behind the same [`crate::sched::workload::Workload`]
//! seam as the simulated element. An on/off element cannot draw 300 W of a 1000 W element, so
//! its target becomes a duty over a window (time proportioning, [`duty`]); the plug is driven
//! and heard over MQTT ([`mqtt`]). It fails cold: off on a zero target, an expired deadline, a
//! trip or a lost broker, and counted as drawing until the plug confirms off.
//!
//! - [`duty`]: the time-proportioning decision, pure, in schedule seconds;
//! - [`mqtt`]: the plug's commands, state and measured power, and the workload.

pub mod duty;
pub mod mqtt;

pub use mqtt::{start, MqttPlug};
