//! The Bitcoin side: block headers, SHA-256d scan kernels, the ASIC seam and the mining engine.
//!
//! Architecture Invariant: nothing here names a device; the ASIC drivers live in `devices/`.

pub mod asic;
pub mod bench;
pub mod engine;
pub mod fleet;
pub mod header;
pub mod sha256d;
pub mod stratum;
pub mod workload;
