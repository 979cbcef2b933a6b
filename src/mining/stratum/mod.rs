//! Stratum V1: the only module that knows Stratum JSON. So far: the typed wire messages; the
//! client (failover, reconnect) and the local pool build on them.

pub mod client;
pub mod lines;
pub mod message;
pub mod pool;
