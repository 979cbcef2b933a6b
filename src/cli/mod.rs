//! The `hearth` command's front-ends, one module per command group; `main.rs` parses the command
//! line and dispatches here.

pub mod bench;
pub mod client;
pub mod config;
pub mod control;
pub mod devices;
pub mod emulate;
pub mod gpu;
pub mod jobs;
pub mod market;
pub mod mine;
pub mod pool;
pub mod serve;
pub mod simulate;
pub mod token;
