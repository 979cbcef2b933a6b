//! The software ASIC: threads ("chips") that compute real SHA-256d behind the
//! [`AsicBackend`] seam.
//!
//! The rate is set by duty cycling: each chip works in slices of at most 50 ms, hashing for
//! `rate × slice` and idling for the rest. A new command or new work wakes the chips at once and
//! starts a fresh slice, so a new rate takes effect within one slice. A command carries a deadline
//! (the dead-man timer): once it passes without a fresh command, the chips stop.
//!
//! Power and chip temperature are modelled, and labelled so; the hashrate is measured: hashes
//! actually computed, divided by the wall time they took.

pub mod bench;
pub mod device;

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mining::asic::{
    AsicBackend, AsicError, AsicStats, ChipStats, FoundShare, PowerRange, PowerSource, RateCommand,
    Work,
};
use crate::mining::header::{hash_difficulty, sha256d};
use crate::mining::sha256d::{self, Kernel, Prepared};
use crate::thermal::safety::{ChipReading, ChipTemperatures};

/// Configuration of the software ASIC. The defaults describe a 400 W heater board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsicConfig {
    /// Hashing threads ("chips").
    pub chips: usize,
    /// Modelled power when powered but idle, W.
    pub idle_watts: f64,
    /// Modelled power at full rate, W.
    pub max_watts: f64,
    /// Duty-cycle slice, ms (1–50).
    pub slice_ms: u64,
    /// Force a scan kernel; `None` picks the fastest this CPU supports, by measurement.
    pub kernel: Option<Kernel>,
    /// Temperature the chips cool towards, °C.
    pub ambient_celsius: f64,
    /// Chip temperature rise at full power, K.
    pub full_power_rise_kelvin: f64,
    /// Chip thermal time constant, s.
    pub thermal_time_constant_seconds: f64,
    /// The temperature a chip must stay below, °C.
    pub chip_limit_celsius: f64,
}

impl Default for AsicConfig {
    fn default() -> Self {
        Self {
            chips: 2,
            idle_watts: 20.0,
            max_watts: 400.0,
            slice_ms: 50,
            kernel: None,
            ambient_celsius: 25.0,
            full_power_rise_kelvin: 45.0,
            thermal_time_constant_seconds: 30.0,
            chip_limit_celsius: 90.0,
        }
    }
}

impl AsicConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), AsicError> {
        let bad = |key, msg: String| Err(AsicError::Invalid { key, msg });
        if self.chips == 0 || self.chips > 256 {
            return bad("chips", format!("must be 1–256, got {}", self.chips));
        }
        if !(self.idle_watts >= 0.0 && self.max_watts >= self.idle_watts) {
            return bad(
                "max_watts",
                format!(
                    "must be at least idle_watts ({}) and idle_watts must not be negative, got {}",
                    self.idle_watts, self.max_watts
                ),
            );
        }
        if !(1..=50).contains(&self.slice_ms) {
            return bad(
                "slice_ms",
                format!("must be 1–50 ms, got {}", self.slice_ms),
            );
        }
        if self.thermal_time_constant_seconds.is_nan() || self.thermal_time_constant_seconds <= 0.0
        {
            return bad("thermal_time_constant_seconds", "must be positive".into());
        }
        if let Some(k) = self.kernel {
            k.check_on(&sha256d::CpuFeatures::detect())?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Slice {
    started: Instant,
    wall: Duration,
    busy: Duration,
    hashes: u64,
}

#[derive(Debug)]
struct ChipState {
    hashes: u64,
    celsius: f64,
    slices: VecDeque<Slice>,
    last_command: u64,
    applied: Option<(u64, Instant)>,
    work_applied: Option<(u64, Instant)>,
}

#[derive(Debug)]
struct Control {
    command: RateCommand,
    command_seq: u64,
    work: Option<Arc<Work>>,
    work_seq: u64,
    stop: bool,
}

struct Shared {
    cfg: AsicConfig,
    kernel: Kernel,
    control: Mutex<Control>,
    wake: Condvar,
    chips: Vec<Mutex<ChipState>>,
    shares_found: AtomicU64,
    extranonce2_next: Vec<AtomicU64>,
    found_tx: Mutex<mpsc::Sender<FoundShare>>,
    temperatures: Option<ChipTemperatures>,
    stopping: AtomicBool,
}

/// Locks a mutex, recovering the data if a chip thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The software ASIC.
pub struct SoftwareAsic {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// How long one batch of hashing should take; the busy time overshoots its budget by at most
/// this, which keeps the duty cycle within about 1 % of a 50 ms slice.
const BATCH: Duration = Duration::from_micros(500);
/// Slices kept for rate and duty figures (about one second at 50 ms).
const SLICES_KEPT: usize = 20;

impl SoftwareAsic {
    /// Starts the chips, idle until given work and a rate. Found shares arrive on the receiver;
    /// chip temperatures go to `temperatures` for the safety supervisor.
    ///
    /// Without a forced kernel, the first start in a process times every kernel (about 0.1 s,
    /// see [`Kernel::best`]): call it off async workers, or after that choice is made.
    pub fn start(
        cfg: AsicConfig,
        temperatures: Option<ChipTemperatures>,
    ) -> Result<(Self, mpsc::Receiver<FoundShare>), AsicError> {
        cfg.validate()?;
        let kernel = cfg.kernel.unwrap_or_else(Kernel::best);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            kernel,
            control: Mutex::new(Control {
                command: RateCommand {
                    rate: 0.0,
                    valid_until: None,
                },
                command_seq: 0,
                work: None,
                work_seq: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            chips: (0..cfg.chips)
                .map(|_| {
                    Mutex::new(ChipState {
                        hashes: 0,
                        celsius: cfg.ambient_celsius,
                        slices: VecDeque::new(),
                        last_command: 0,
                        applied: None,
                        work_applied: None,
                    })
                })
                .collect(),
            shares_found: AtomicU64::new(0),
            extranonce2_next: (0..cfg.chips).map(|_| AtomicU64::new(0)).collect(),
            found_tx: Mutex::new(tx),
            temperatures,
            stopping: AtomicBool::new(false),
            cfg,
        });
        let threads = (0..shared.cfg.chips)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("asic-chip{i}"))
                    .spawn(move || chip_loop(&s, i))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AsicError::Invalid {
                key: "chips",
                msg: format!("cannot start a chip thread: {e}"),
            })?;
        tracing::info!(
            chips = shared.cfg.chips,
            kernel = kernel.name(),
            "software ASIC started"
        );
        Ok((Self { shared, threads }, rx))
    }

    /// Whether the board is powered: a non-zero rate whose deadline has not passed.
    fn is_powered(&self, now: Instant) -> bool {
        lock(&self.shared.control).command.rate_at(now) > 0.0
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AsicConfig {
        &self.shared.cfg
    }

    /// The sequence number of the latest work (for tests and benches).
    pub fn work_seq(&self) -> u64 {
        lock(&self.shared.control).work_seq
    }

    /// The sequence number of the latest rate command (for tests and benches).
    pub fn command_seq(&self) -> u64 {
        lock(&self.shared.control).command_seq
    }
}

impl Drop for SoftwareAsic {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        lock(&self.shared.control).stop = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl AsicBackend for SoftwareAsic {
    fn set_work(&self, work: Option<Work>) {
        let mut c = lock(&self.shared.control);
        if let Some(w) = &work {
            for (i, next) in self.shared.extranonce2_next.iter().enumerate() {
                next.store(w.extranonce2_first + i as u64, Ordering::SeqCst);
            }
        }
        c.work = work.map(Arc::new);
        c.work_seq += 1;
        drop(c);
        self.shared.wake.notify_all();
    }

    fn set_rate(&self, command: RateCommand) {
        let mut c = lock(&self.shared.control);
        c.command = command;
        c.command_seq += 1;
        drop(c);
        self.shared.wake.notify_all();
    }

    fn stats(&self) -> AsicStats {
        let cfg = &self.shared.cfg;
        let now = Instant::now();
        let (mut hashes, mut wall, mut busy, mut total) = (0u64, 0.0f64, 0.0f64, 0u64);
        let mut chips = Vec::new();
        for (i, chip) in self.shared.chips.iter().enumerate() {
            let c = lock(chip);
            total += c.hashes;
            let recent: Vec<&Slice> = c
                .slices
                .iter()
                .filter(|s| now.duration_since(s.started) < Duration::from_secs(1))
                .collect();
            let chip_wall: f64 = recent.iter().map(|s| s.wall.as_secs_f64()).sum();
            hashes += recent.iter().map(|s| s.hashes).sum::<u64>();
            wall += chip_wall;
            busy += recent.iter().map(|s| s.busy.as_secs_f64()).sum::<f64>();
            let last = c.slices.back();
            chips.push(ChipStats {
                chip: format!("asic{i}"),
                hashes: c.hashes,
                celsius: c.celsius,
                last_slice_duty: last.map_or(0.0, |s| {
                    s.busy.as_secs_f64() / s.wall.as_secs_f64().max(1e-9)
                }),
                last_slice_command: c.last_command,
                last_slice_started: last.map(|s| s.started),
                command_applied: c.applied,
                work_applied: c.work_applied,
            });
        }
        let n = cfg.chips as f64;
        let duty = if wall > 0.0 { busy / wall } else { 0.0 };
        AsicStats {
            // Per-chip walls overlap in time: hashes over (wall / chips) seconds.
            hashes_per_second: if wall > 0.0 {
                hashes as f64 * n / wall
            } else {
                0.0
            },
            hashes_total: total,
            shares_found: self.shared.shares_found.load(Ordering::Relaxed),
            // A board commanded to rate 0 (or past its deadline) is switched off: 0 W.
            power_watts: if self.is_powered(now) {
                cfg.idle_watts + (cfg.max_watts - cfg.idle_watts) * duty
            } else {
                0.0
            },
            power_source: PowerSource::Modelled,
            duty,
            kernel: self.shared.kernel,
            kernel_forced: self.shared.cfg.kernel.is_some(),
            chips,
        }
    }

    /// The modelled range; it follows a new rate within one slice.
    fn power_range(&self) -> PowerRange {
        let cfg = &self.shared.cfg;
        PowerRange {
            idle_watts: cfg.idle_watts,
            max_watts: cfg.max_watts,
            response_seconds: cfg.slice_ms.max(1) as f64 / 1000.0,
        }
    }
}

/// The work a chip is hashing: one extranonce2's header.
struct ChipWork {
    work: Arc<Work>,
    extranonce2: Vec<u8>,
    prepared: Prepared,
    next_nonce: u64,
}

impl ChipWork {
    fn next(shared: &Shared, chip: usize, work: Arc<Work>) -> ChipWork {
        let n = shared.cfg.chips as u64;
        let en2_value = shared.extranonce2_next[chip].fetch_add(n, Ordering::SeqCst);
        let size = work.extranonce2_size.min(8);
        let en2 = en2_value.to_be_bytes()[8 - size..].to_vec();
        let root = work.job.merkle_root(&work.extranonce1, &en2);
        let header = work.job.header(&root, work.version, work.job.ntime, 0);
        ChipWork {
            extranonce2: en2,
            prepared: Prepared::new(&header),
            next_nonce: 0,
            work,
        }
    }
}

/// One chip: hashes in slices of `slice_ms`, busy for `rate × slice` of each. A new command
/// changes the busy budget of the slice in progress (a lower rate stops hashing at once, a
/// higher one wakes the chip from its idle rest) without restarting the slice, so that the
/// duty cycle stays the commanded rate however often commands arrive. New work replaces the
/// old between batches.
fn chip_loop(shared: &Shared, chip: usize) {
    let slice = Duration::from_millis(shared.cfg.slice_ms);
    let mut current: Option<ChipWork> = None;
    let mut seen_work = 0u64;
    let mut seen_command = u64::MAX;
    let mut batch: u32 = 1024;
    let mut cands = Vec::new();
    let mut last_update = Instant::now();
    loop {
        let started = Instant::now();
        let mut hashes = 0u64;
        let mut busy = Duration::ZERO;
        loop {
            let now = Instant::now();
            let (rate, work) = {
                let c = lock(&shared.control);
                if c.stop {
                    return;
                }
                if c.command_seq != seen_command {
                    seen_command = c.command_seq;
                    lock(&shared.chips[chip]).applied = Some((seen_command, now));
                }
                let work = (c.work_seq != seen_work).then(|| (c.work_seq, c.work.clone()));
                (c.command.rate_at(now), work)
            };
            // New work replaces the old at once, within the slice.
            if let Some((seq, work)) = work {
                seen_work = seq;
                current = work.map(|w| ChipWork::next(shared, chip, w));
                lock(&shared.chips[chip]).work_applied = Some((seq, Instant::now()));
            }
            let budget = if current.is_some() {
                slice.mul_f64(rate)
            } else {
                Duration::ZERO
            };
            if busy < budget && !shared.stopping.load(Ordering::Relaxed) {
                if let Some(cw) = current.as_mut() {
                    match hash_batch(shared, chip, cw, batch, &mut cands) {
                        Some((count, took)) => {
                            busy += took;
                            hashes += u64::from(count);
                            // Aim each batch at BATCH of wall time.
                            let per_hash = took.as_secs_f64() / f64::from(count.max(1));
                            batch = ((BATCH.as_secs_f64() / per_hash.max(1e-10)) as u32)
                                .clamp(64, 1 << 22);
                            continue;
                        }
                        None => current = None,
                    }
                }
            }
            // Rest until the slice ends, waking early for a new command or work.
            let elapsed = started.elapsed();
            if elapsed >= slice {
                break;
            }
            let c = lock(&shared.control);
            if !c.stop && c.command_seq == seen_command && c.work_seq == seen_work {
                let _ = shared
                    .wake
                    .wait_timeout(c, slice - elapsed)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        let wall = started.elapsed();
        record_slice(
            shared,
            chip,
            started,
            wall,
            busy,
            hashes,
            seen_command,
            &mut last_update,
        );
    }
}

/// Scans one batch of nonces of `cw` and sends the shares found; `None` if the kernel failed
/// (the chip idles). Returns the nonces scanned and the time taken.
fn hash_batch(
    shared: &Shared,
    chip: usize,
    cw: &mut ChipWork,
    batch: u32,
    cands: &mut Vec<u32>,
) -> Option<(u32, Duration)> {
    let remaining = (1u64 << 32) - cw.next_nonce;
    let count = u64::from(batch).min(remaining) as u32;
    let t0 = Instant::now();
    cands.clear();
    let target = cw.work.share_target;
    if sha256d::candidates(
        shared.kernel,
        &cw.prepared,
        target.top_word(),
        cw.next_nonce as u32,
        count,
        cands,
    )
    .is_err()
    {
        tracing::error!(chip, "scan kernel failed; chip idles");
        return None;
    }
    let took = t0.elapsed();
    for &nonce in cands.iter() {
        let hash = sha256d(&cw.prepared.with_nonce(nonce));
        if target.is_met_by(&hash) {
            shared.shares_found.fetch_add(1, Ordering::Relaxed);
            let share = FoundShare {
                job_id: cw.work.job.job_id.clone(),
                extranonce1: cw.work.extranonce1.clone(),
                extranonce2: cw.extranonce2.clone(),
                ntime: cw.work.job.ntime,
                nonce,
                version: cw.work.version,
                hash,
                difficulty: hash_difficulty(&hash),
            };
            let _ = lock(&shared.found_tx).send(share);
        }
    }
    cw.next_nonce += u64::from(count);
    if cw.next_nonce >= 1 << 32 {
        let w = cw.work.clone();
        *cw = ChipWork::next(shared, chip, w);
    }
    Some((count, took))
}

#[allow(clippy::too_many_arguments)]
fn record_slice(
    shared: &Shared,
    chip: usize,
    started: Instant,
    wall: Duration,
    busy: Duration,
    hashes: u64,
    command_seq: u64,
    last_update: &mut Instant,
) {
    let cfg = &shared.cfg;
    let mut c = lock(&shared.chips[chip]);
    c.hashes += hashes;
    c.last_command = command_seq;
    c.slices.push_back(Slice {
        started,
        wall,
        busy,
        hashes,
    });
    while c.slices.len() > SLICES_KEPT {
        c.slices.pop_front();
    }
    // First-order chip temperature from this slice's modelled power.
    let duty = busy.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let power_share = (cfg.idle_watts + (cfg.max_watts - cfg.idle_watts) * duty) / cfg.max_watts;
    let steady = cfg.ambient_celsius + cfg.full_power_rise_kelvin * power_share;
    let dt = last_update.elapsed().as_secs_f64();
    *last_update = Instant::now();
    let a = 1.0 - (-dt / cfg.thermal_time_constant_seconds).exp();
    c.celsius += a * (steady - c.celsius);
    let celsius = c.celsius;
    drop(c);
    if let Some(t) = &shared.temperatures {
        t.report(ChipReading {
            chip: format!("asic{chip}"),
            celsius,
            limit_celsius: cfg.chip_limit_celsius,
            at_s: None,
        });
    }
}
