//! hearth: the control daemon of a compute heater.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod emulate;
pub mod gpu;
pub mod home;
pub mod jobs;
pub mod market;
pub mod mining;
pub mod ops;
pub mod power;
pub mod sched;
pub mod sim;
pub mod status;
pub mod telemetry;
pub mod thermal;
