//! The mining fleet: the devices that hash, driven as one workload of the scheduler.
//!
//! `device` is the seam every device kind implements ([`device::MinerDevice`]).

pub mod device;
