//! The ASIC seam: what the mining engine needs of a hashing board, whatever drives it.
//!
//! [`AsicBackend`] takes work and a rate command with its dead-man deadline, and reports
//! hashrate, power (labelled measured or modelled) and chips. The software ASIC
//! (`devices::software_asic`) and the real hardware drivers in `devices/` implement it.

use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

use super::header::{StratumJob, Target};
use super::sha256d::{self, Kernel};

/// An ASIC configuration that cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum AsicError {
    /// A value is out of range.
    #[error("asic.{key}: {msg}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The forced kernel cannot run here.
    #[error(transparent)]
    Kernel(#[from] sha256d::ScanError),
}

/// Work for the ASIC: a job, the extranonces it may use, and the share target.
#[derive(Debug, Clone)]
pub struct Work {
    /// The job.
    pub job: Arc<StratumJob>,
    /// The session's extranonce1.
    pub extranonce1: Vec<u8>,
    /// Bytes of extranonce2.
    pub extranonce2_size: usize,
    /// First extranonce2 this ASIC may use; chip `i` of `n` uses `first + i`, `first + i + n`, …
    pub extranonce2_first: u64,
    /// The share target.
    pub share_target: Target,
    /// Block version to hash (already rolled, if rolling).
    pub version: u32,
}

/// A share found by a chip.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundShare {
    /// The job it belongs to.
    pub job_id: String,
    /// The session extranonce1 it was hashed with.
    pub extranonce1: Vec<u8>,
    /// Its extranonce2.
    pub extranonce2: Vec<u8>,
    /// Its ntime.
    pub ntime: u32,
    /// Its nonce.
    pub nonce: u32,
    /// The block version it was hashed with.
    pub version: u32,
    /// Its SHA-256d hash, internal byte order.
    pub hash: [u8; 32],
    /// The difficulty it achieves.
    pub difficulty: f64,
}

/// A rate command with its dead-man deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateCommand {
    /// Fraction of full rate, 0–1.
    pub rate: f64,
    /// After this instant the chips stop unless a fresh command arrives; `None` never expires.
    pub valid_until: Option<Instant>,
}

impl RateCommand {
    /// The rate in force at `now`.
    pub fn rate_at(&self, now: Instant) -> f64 {
        match self.valid_until {
            Some(deadline) if now > deadline => 0.0,
            _ => self.rate.clamp(0.0, 1.0),
        }
    }
}

/// How a power figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// From a power model.
    Modelled,
    /// From a meter.
    Measured,
}

/// One chip's recent behaviour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChipStats {
    /// Chip id.
    pub chip: String,
    /// Hashes computed since start.
    pub hashes: u64,
    /// Modelled chip temperature, °C.
    pub celsius: f64,
    /// The last completed slice: busy / wall.
    pub last_slice_duty: f64,
    /// The sequence number of the command in force during that slice.
    pub last_slice_command: u64,
    /// When that slice started.
    #[serde(skip)]
    pub last_slice_started: Option<Instant>,
    /// The latest command seen and when the chip put it in force (within one nonce batch).
    #[serde(skip)]
    pub command_applied: Option<(u64, Instant)>,
    /// The latest work seen and when the chip started hashing it.
    #[serde(skip)]
    pub work_applied: Option<(u64, Instant)>,
}

impl ChipStats {
    /// Whether the last completed slice ran wholly under command `seq`: it started once the
    /// chip had `seq` in force and ended under it.
    pub fn last_slice_wholly_under(&self, seq: u64) -> bool {
        match (self.command_applied, self.last_slice_started) {
            (Some((q, at)), Some(started)) => {
                q == seq && self.last_slice_command == seq && started >= at
            }
            _ => false,
        }
    }
}

/// A snapshot of the ASIC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AsicStats {
    /// Measured hashrate over the last second, hashes per second.
    pub hashes_per_second: f64,
    /// Hashes computed since start.
    pub hashes_total: u64,
    /// Shares found since start.
    pub shares_found: u64,
    /// Power, W.
    pub power_watts: f64,
    /// How `power_watts` was obtained.
    pub power_source: PowerSource,
    /// Busy fraction over the last second, 0–1.
    pub duty: f64,
    /// The kernel in use.
    pub kernel: Kernel,
    /// Whether the configuration forced it (else it was measured fastest).
    pub kernel_forced: bool,
    /// Per chip.
    pub chips: Vec<ChipStats>,
}

/// What every ASIC driver offers; the software ASIC and real hardware implement it alike.
pub trait AsicBackend: Send + Sync {
    /// Replaces the work; chips switch at once and drop the old work.
    fn set_work(&self, work: Option<Work>);
    /// Sets the rate (0–1) and its dead-man deadline.
    fn set_rate(&self, command: RateCommand);
    /// A snapshot of hashrate, power and chips.
    fn stats(&self) -> AsicStats;
    /// Its power range and how fast it follows a new rate.
    fn power_range(&self) -> PowerRange;
}

/// An ASIC's power range: off, or running between idle and full power.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerRange {
    /// Power when powered but idle, W.
    pub idle_watts: f64,
    /// Power at full rate, W.
    pub max_watts: f64,
    /// Time to follow a new rate, s.
    pub response_seconds: f64,
}

impl PowerRange {
    /// The rate command that maps a power target onto this board: 0 below idle power (board
    /// off), else the fraction of the range from idle to max.
    pub fn rate_for_watts(&self, watts: f64) -> f64 {
        if watts <= self.idle_watts || self.max_watts <= self.idle_watts {
            0.0
        } else {
            ((watts - self.idle_watts) / (self.max_watts - self.idle_watts)).min(1.0)
        }
    }
}
