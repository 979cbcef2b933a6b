//! Stratum V1: the only module that knows Stratum JSON. The typed wire messages, the capped
//! line reader, the transport (TCP or TLS), the client (failover, reconnect) and the local pool.

pub mod client;
pub mod lines;
pub mod message;
pub mod pool;
pub mod transport;
