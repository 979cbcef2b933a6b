//! The room side: sensors, the room model, the setpoint schedule, the controller and safety.
//!
//! Data flows sensors → safety → controller → heat budget; nothing here knows about workloads.

pub mod controller;
pub mod estimator;
pub mod room;
pub mod safety;
pub mod schedule;
pub mod sensor;
pub mod time;
