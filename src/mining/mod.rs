//! The Bitcoin side: block headers, SHA-256d scan kernels and the (software) ASIC.

pub mod asic;
pub mod bench;
pub mod engine;
pub mod header;
pub mod sha256d;
pub mod stratum;
