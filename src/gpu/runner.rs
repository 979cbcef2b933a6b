//! The GPU runner: one thread that owns the device and runs jobs as bounded chunks, paced so that
//! its duty cycle (busy time over wall time) follows the power target.
//!
//! Power model (labelled "modelled"): `P = idle_w + (max_w − idle_w)·u` while the device has a
//! target, and 0 W (power-gated) once its target is 0 and it ran nothing for a second. A target
//! of `W` watts
//! asks for utilisation `u = (W − idle_w)/(max_w − idle_w)`, clamped to [0, 1]. After a chunk that
//! kept the device busy for `b`, the runner idles `b·(1 − u)/u`. Chunks are sized from the measured
//! time per unit so that one takes at most `chunk_ms` (less at low duty, so that a pacing period
//! stays near `period_ms`). A new target therefore takes effect within one chunk, and no single
//! dispatch can hold the device for long.
//!
//! A target carries a deadline (the dead-man): once it passes with no fresh target, the runner
//! pauses. Pause, resume, preempt and cancel take effect between chunks. Preempting reads the job's
//! state back to host memory and hands it to the caller as a [`Checkpoint`]. The runner also takes
//! a checkpoint every `checkpoint_every_seconds` of GPU time, and if the device is lost it opens a
//! new one and resumes every job from its last checkpoint.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::device::{AdapterSummary, Gpu, GpuError};
use super::job::{Checkpoint, GpuJob, JobError, JobLimits, Prepared};
use super::kernels::Catalog;
use super::tensor::{digest, Tensor};

/// Pacing, power envelope and per-job caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerConfig {
    /// Power with the device idle, W.
    pub idle_watts: f64,
    /// Power with the device fully busy, W.
    pub max_watts: f64,
    /// Longest chunk, ms.
    pub chunk_ms: f64,
    /// Pacing period (chunk plus idle) aimed at, ms.
    pub period_ms: f64,
    /// GPU-busy seconds between automatic checkpoints.
    pub checkpoint_every_seconds: f64,
    /// Per-job caps.
    pub limits: JobLimits,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            idle_watts: 30.0,
            max_watts: 250.0,
            chunk_ms: 50.0,
            period_ms: 50.0,
            checkpoint_every_seconds: 10.0,
            limits: JobLimits::default(),
        }
    }
}

impl RunnerConfig {
    /// Checks every value; the error names the key (under `gpu.`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        if !(self.idle_watts >= 0.0 && self.max_watts > self.idle_watts) {
            return bad(
                "max_watts",
                format!(
                    "must exceed idle_watts ({} W), got {} W",
                    self.idle_watts, self.max_watts
                ),
            );
        }
        if !(1.0..=1000.0).contains(&self.chunk_ms) {
            return bad("chunk_ms", format!("must be 1–1000, got {}", self.chunk_ms));
        }
        if !(self.period_ms >= self.chunk_ms && self.period_ms <= 10_000.0) {
            return bad(
                "period_ms",
                format!("must be chunk_ms–10000, got {}", self.period_ms),
            );
        }
        if self.checkpoint_every_seconds.is_nan() || self.checkpoint_every_seconds <= 0.0 {
            return bad("checkpoint_every_seconds", "must be positive".into());
        }
        let l = &self.limits;
        if l.max_job_bytes == 0
            || l.max_chunks == 0
            || l.max_workgroups == 0
            || l.max_loop_iterations == 0
            || l.max_invocations_per_slice == 0
        {
            return bad("limits", "every cap must be at least 1".into());
        }
        if l.max_gpu_seconds.is_nan() || l.max_gpu_seconds <= 0.0 {
            return bad("limits.max_gpu_seconds", "must be positive".into());
        }
        Ok(())
    }

    /// Utilisation that `watts` asks for; below 0.5 % the device rests.
    pub fn utilisation(&self, watts: f64) -> f64 {
        let u = ((watts - self.idle_watts) / (self.max_watts - self.idle_watts)).clamp(0.0, 1.0);
        if u < 0.005 {
            0.0
        } else {
            u
        }
    }
}

/// A finished job's results.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutput {
    /// The output tensors.
    pub outputs: Vec<Tensor>,
    /// SHA-256 of the outputs' little-endian f32 bytes: the receipt.
    pub digest: String,
    /// GPU-busy seconds.
    pub gpu_seconds: f64,
    /// Chunks run.
    pub chunks: u64,
    /// Modelled energy: busy time at full power, J.
    pub joules: f64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Done.
    Succeeded(JobOutput),
    /// Taken off the device; resume by submitting it with this checkpoint.
    Preempted(Checkpoint),
    /// Failed, or cancelled.
    Failed(JobError),
}

/// A job's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobProgress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub units: u64,
    /// Chunks run.
    pub chunks: u64,
    /// GPU-busy seconds.
    pub gpu_seconds: f64,
    /// Paused by its owner.
    pub paused: bool,
    /// Times it resumed from a checkpoint after a device loss.
    pub recoveries: u32,
}

/// The caller's end of a submitted job.
pub struct JobHandle {
    /// The runner's id for it.
    pub id: u64,
    /// Progress after every chunk.
    pub progress: watch::Receiver<JobProgress>,
    /// The outcome, once.
    pub outcome: oneshot::Receiver<JobOutcome>,
    /// The latest automatic checkpoint, for the caller to keep durably.
    pub checkpoint: watch::Receiver<Option<Arc<Checkpoint>>>,
}

/// One pacing cycle: a chunk and the idle time before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cycle {
    /// Start of the chunk, seconds since the runner started.
    pub at: f64,
    /// Idle before it, s.
    pub idle: f64,
    /// The chunk's busy time, s.
    pub busy: f64,
    /// The utilisation asked for.
    pub target: f64,
}

/// The runner's state for the status snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerStatus {
    /// The adapter.
    pub adapter: AdapterSummary,
    /// The target, W (0 when it expired).
    pub target_watts: f64,
    /// The target's deadline passed with no fresh one: paused.
    pub target_expired: bool,
    /// Busy fraction over the last second.
    pub duty: f64,
    /// `idle + (max − idle)·duty`, W.
    pub watts: f64,
    /// "modelled" (lavapipe and GPUs without a power sensor) or "measured".
    pub power_source: &'static str,
    /// Busy seconds since start.
    pub busy_seconds: f64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The job on the device, if any.
    pub running: Option<u64>,
    /// Jobs held (running, waiting or paused).
    pub jobs: usize,
    /// Device losses recovered from.
    pub device_resets: u64,
    /// Jobs finished, failed, preempted.
    pub finished: u64,
}

enum Cmd {
    Submit(Box<Active>),
    Target { watts: f64, until: Instant },
    Pause(u64, bool),
    Preempt(u64),
    Cancel(u64),
    LoseDevice,
    Shutdown,
}

struct Active {
    id: u64,
    job: GpuJob,
    units: u64,
    align: u64,
    prepared: Option<Prepared>,
    done: u64,
    last_cp: Option<Checkpoint>,
    since_cp: f64,
    unit_seconds: Option<f64>,
    progress: JobProgress,
    progress_tx: watch::Sender<JobProgress>,
    outcome_tx: Option<oneshot::Sender<JobOutcome>>,
    checkpoint_tx: watch::Sender<Option<Arc<Checkpoint>>>,
}

impl Active {
    fn finish(mut self, outcome: JobOutcome) {
        if let Some(tx) = self.outcome_tx.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// The idle time after a chunk of `busy` seconds that makes the duty `u` (0 < u ≤ 1).
fn idle_gap(busy: f64, u: f64) -> Duration {
    if u <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((busy * (1.0 - u) / u).clamp(0.0, 60.0))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running GPU engine.
pub struct GpuRunner {
    tx: mpsc::Sender<Cmd>,
    status: Arc<Mutex<RunnerStatus>>,
    cycles: Arc<Mutex<VecDeque<Cycle>>>,
    cfg: RunnerConfig,
    next_id: std::sync::atomic::AtomicU64,
    start: Instant,
    thread: Option<JoinHandle<()>>,
}

impl GpuRunner {
    /// Builds the catalog on `gpu` and starts the runner thread.
    pub fn start(gpu: Gpu, cfg: RunnerConfig) -> Result<Self, JobError> {
        cfg.validate().map_err(|(k, m)| JobError::Invalid {
            field: format!("gpu.{k}"),
            msg: m,
        })?;
        let catalog = Catalog::new(&gpu)?;
        let status = Arc::new(Mutex::new(RunnerStatus {
            adapter: gpu.summary.clone(),
            target_watts: 0.0,
            target_expired: true,
            duty: 0.0,
            watts: 0.0,
            power_source: "modelled",
            busy_seconds: 0.0,
            uptime_seconds: 0.0,
            running: None,
            jobs: 0,
            device_resets: 0,
            finished: 0,
        }));
        let cycles = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let worker = Worker {
            gpu,
            catalog,
            cfg: cfg.clone(),
            rx,
            status: status.clone(),
            cycles: cycles.clone(),
            jobs: VecDeque::new(),
            target: (0.0, start),
            start,
            next_chunk_at: Instant::now(),
            last_chunk: None,
            recent: VecDeque::new(),
            lose_device: false,
        };
        let thread = std::thread::Builder::new()
            .name("hearth-gpu".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                JobError::Gpu(GpuError::Io(format!("cannot start the GPU thread: {e}")))
            })?;
        Ok(Self {
            tx,
            status,
            cycles,
            cfg,
            next_id: std::sync::atomic::AtomicU64::new(1),
            start,
            thread: Some(thread),
        })
    }

    /// Checks `job` and queues it, resuming from `checkpoint` if given.
    pub fn submit(
        &self,
        job: GpuJob,
        checkpoint: Option<Checkpoint>,
    ) -> Result<JobHandle, JobError> {
        let max_binding = lock(&self.status).adapter.max_storage_buffer_binding_size;
        let plan = job.plan(&self.cfg.limits, max_binding)?;
        if let Some(cp) = &checkpoint {
            if cp.done > plan.units {
                return Err(JobError::Invalid {
                    field: "checkpoint".into(),
                    msg: format!("{} units done of {}", cp.done, plan.units),
                });
            }
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let progress = JobProgress {
            done: checkpoint.as_ref().map_or(0, |c| c.done),
            units: plan.units,
            ..JobProgress::default()
        };
        let (progress_tx, progress_rx) = watch::channel(progress.clone());
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let (checkpoint_tx, checkpoint_rx) = watch::channel(None);
        let active = Active {
            id,
            job,
            units: plan.units,
            align: plan.align,
            prepared: None,
            done: progress.done,
            last_cp: checkpoint,
            since_cp: 0.0,
            unit_seconds: None,
            progress,
            progress_tx,
            outcome_tx: Some(outcome_tx),
            checkpoint_tx,
        };
        self.send(Cmd::Submit(Box::new(active)))?;
        Ok(JobHandle {
            id,
            progress: progress_rx,
            outcome: outcome_rx,
            checkpoint: checkpoint_rx,
        })
    }

    fn send(&self, cmd: Cmd) -> Result<(), JobError> {
        self.tx
            .send(cmd)
            .map_err(|_| JobError::Gpu(GpuError::Io("the GPU runner has stopped".into())))
    }

    /// Sets the power target, valid for `valid_for` (then the runner pauses).
    pub fn set_target(&self, watts: f64, valid_for: Duration) {
        let now = Instant::now();
        // A deadline beyond what Instant can hold (an unbounded target) counts as a year.
        let until = now
            .checked_add(valid_for)
            .unwrap_or(now + Duration::from_secs(365 * 86_400));
        let _ = self.send(Cmd::Target { watts, until });
    }

    /// Pauses job `id` between chunks; its state stays on the device.
    pub fn pause(&self, id: u64) {
        let _ = self.send(Cmd::Pause(id, true));
    }

    /// Resumes a paused job.
    pub fn resume(&self, id: u64) {
        let _ = self.send(Cmd::Pause(id, false));
    }

    /// Takes job `id` off the device; its outcome becomes `Preempted(checkpoint)`.
    pub fn preempt(&self, id: u64) {
        let _ = self.send(Cmd::Preempt(id));
    }

    /// Cancels job `id`.
    pub fn cancel(&self, id: u64) {
        let _ = self.send(Cmd::Cancel(id));
    }

    /// Destroys the device, as a driver reset would (drills and tests of recovery).
    pub fn lose_device(&self) {
        let _ = self.send(Cmd::LoseDevice);
    }

    /// A snapshot of the runner.
    pub fn status(&self) -> RunnerStatus {
        lock(&self.status).clone()
    }

    /// The last pacing cycles, oldest first (at most 4096).
    pub fn cycles(&self) -> Vec<Cycle> {
        lock(&self.cycles).iter().copied().collect()
    }

    /// Seconds since the runner started: the time base of [`Cycle::at`].
    pub fn seconds_since_start(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }
}

impl Drop for GpuRunner {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    gpu: Gpu,
    catalog: Catalog,
    cfg: RunnerConfig,
    rx: mpsc::Receiver<Cmd>,
    status: Arc<Mutex<RunnerStatus>>,
    cycles: Arc<Mutex<VecDeque<Cycle>>>,
    jobs: VecDeque<Active>,
    target: (f64, Instant),
    start: Instant,
    next_chunk_at: Instant,
    /// (end, busy seconds) of the last chunk.
    last_chunk: Option<(Instant, f64)>,
    /// (end, busy seconds) of the chunks of the last second.
    recent: VecDeque<(Instant, f64)>,
    lose_device: bool,
}

impl Worker {
    fn utilisation(&self, now: Instant) -> f64 {
        if now > self.target.1 {
            0.0
        } else {
            self.cfg.utilisation(self.target.0)
        }
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            let u = self.utilisation(now);
            let runnable = self.jobs.iter().any(|j| !j.progress.paused);
            let wait = if u > 0.0 && runnable {
                self.next_chunk_at.saturating_duration_since(now)
            } else {
                // Nothing to do: wake for commands, and to publish status now and then.
                Duration::from_millis(100)
            };
            if !wait.is_zero() {
                match self.rx.recv_timeout(wait) {
                    Ok(Cmd::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                self.publish();
                continue;
            }
            // Commands that arrived while a chunk ran.
            while let Ok(cmd) = self.rx.try_recv() {
                if matches!(cmd, Cmd::Shutdown) {
                    self.stop();
                    return;
                }
                self.command(cmd);
            }
            if self.utilisation(Instant::now()) > 0.0 {
                self.chunk();
            }
            self.publish();
        }
        self.stop();
    }

    fn stop(&mut self) {
        for j in self.jobs.drain(..) {
            j.finish(JobOutcome::Failed(JobError::Gpu(GpuError::Io(
                "the GPU runner stopped".into(),
            ))));
        }
        self.publish();
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Submit(a) => {
                tracing::info!(
                    job = a.id,
                    kernel = a.job.kernel.name(),
                    units = a.units,
                    "GPU job queued"
                );
                self.jobs.push_back(*a);
            }
            Cmd::Target { watts, until } => {
                self.target = (watts, until);
                // Re-time the idle gap after the last chunk for the new duty at once.
                let u = self.utilisation(Instant::now());
                if let Some((end, busy)) = self.last_chunk {
                    if u > 0.0 {
                        // A long chunk run at the old duty must not hold the new one back for
                        // more than one pacing period.
                        let period =
                            Duration::from_secs_f64(self.cfg.period_ms / 1000.0 * (1.0 - u));
                        self.next_chunk_at = (end + idle_gap(busy, u)).min(Instant::now() + period);
                    }
                }
            }
            Cmd::Pause(id, paused) => {
                if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
                    j.progress.paused = paused;
                    j.progress_tx.send_replace(j.progress.clone());
                }
            }
            Cmd::Preempt(id) => {
                if let Some(i) = self.jobs.iter().position(|j| j.id == id) {
                    if let Some(j) = self.jobs.remove(i) {
                        let outcome = match (&j.prepared, &j.last_cp) {
                            (Some(p), _) => match p.checkpoint(&self.gpu, j.done) {
                                Ok(cp) => JobOutcome::Preempted(cp),
                                Err(e) => JobOutcome::Failed(e.into()),
                            },
                            (None, Some(cp)) => JobOutcome::Preempted(cp.clone()),
                            (None, None) => JobOutcome::Preempted(Checkpoint {
                                done: 0,
                                state: Vec::new(),
                            }),
                        };
                        tracing::info!(job = id, done = j.done, "GPU job preempted");
                        self.bump_finished();
                        j.finish(outcome);
                    }
                }
            }
            Cmd::Cancel(id) => {
                if let Some(i) = self.jobs.iter().position(|j| j.id == id) {
                    if let Some(j) = self.jobs.remove(i) {
                        self.bump_finished();
                        j.finish(JobOutcome::Failed(JobError::Cancelled));
                    }
                }
            }
            Cmd::LoseDevice => self.lose_device = true,
            Cmd::Shutdown => {}
        }
    }

    fn bump_finished(&self) {
        lock(&self.status).finished += 1;
    }

    /// Runs one chunk of the first runnable job.
    fn chunk(&mut self) {
        let Some(idx) = self.jobs.iter().position(|j| !j.progress.paused) else {
            return;
        };
        let u = self.utilisation(Instant::now());
        if self.jobs[idx].prepared.is_none() {
            let j = &self.jobs[idx];
            match Prepared::new(&self.gpu, &j.job, &self.cfg.limits, j.last_cp.as_ref()) {
                Ok(p) => self.jobs[idx].prepared = Some(p),
                Err(JobError::Gpu(GpuError::Lost(_))) => return self.recover(),
                Err(e) => return self.fail(idx, e),
            }
        }
        // Aim at 3/4 of the cap: per-unit times on a busy machine jitter, the cap should still hold.
        let budget = ((0.75 * self.cfg.chunk_ms).min((u * self.cfg.period_ms).max(2.0))) / 1000.0;
        let j = &mut self.jobs[idx];
        let Some(prepared) = j.prepared.as_ref() else {
            return;
        };
        let remaining = j.units - j.done;
        let mut n = match j.unit_seconds {
            None => j.align.max(1),
            Some(t) if t > 0.0 => (budget / t).floor().max(1.0) as u64,
            Some(_) => prepared.max_units_per_chunk(),
        };
        n = n.min(prepared.max_units_per_chunk());
        if n > j.align {
            n -= n % j.align;
        }
        let n = n.min(remaining);
        let range = j.done..j.done + n;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let t0 = Instant::now();
        let idle = self
            .last_chunk
            .map_or(0.0, |(end, _)| (t0 - end).as_secs_f64());
        let ran = prepared
            .encode(&self.gpu, &self.catalog, &mut enc, range.clone())
            .map_err(JobError::from)
            .and_then(|_| {
                if self.lose_device {
                    self.lose_device = false;
                    self.gpu.destroy();
                }
                self.gpu.run(enc).map_err(JobError::from)
            });
        let end = Instant::now();
        let busy = (end - t0).as_secs_f64();
        self.account(t0, end, idle, busy, u);
        match ran {
            Ok(()) => {}
            Err(JobError::Gpu(GpuError::Lost(_))) => return self.recover(),
            Err(e) => return self.fail(idx, e),
        }
        let j = &mut self.jobs[idx];
        j.done = range.end;
        j.since_cp += busy;
        let per_unit = busy / n as f64;
        j.unit_seconds = Some(match j.unit_seconds {
            // The first chunk includes pipeline warm-up; trust the newer figure more.
            Some(t) => 0.5 * t + 0.5 * per_unit,
            None => per_unit,
        });
        j.progress.done = j.done;
        j.progress.chunks += 1;
        j.progress.gpu_seconds += busy;
        j.progress_tx.send_replace(j.progress.clone());
        let limits = &self.cfg.limits;
        if j.done < j.units {
            if j.progress.chunks >= limits.max_chunks {
                let msg = format!(
                    "{} chunks run, {} of {} units done",
                    j.progress.chunks, j.done, j.units
                );
                return self.fail(
                    idx,
                    JobError::Limit {
                        limit: "max_chunks",
                        msg,
                    },
                );
            }
            if j.progress.gpu_seconds >= limits.max_gpu_seconds {
                let msg = format!(
                    "{:.1} GPU-seconds used, {} of {} units done",
                    j.progress.gpu_seconds, j.done, j.units
                );
                return self.fail(
                    idx,
                    JobError::Limit {
                        limit: "max_gpu_seconds",
                        msg,
                    },
                );
            }
            if j.since_cp >= self.cfg.checkpoint_every_seconds {
                j.since_cp = 0.0;
                if let Some(p) = &j.prepared {
                    match p.checkpoint(&self.gpu, j.done) {
                        Ok(cp) => {
                            j.checkpoint_tx.send_replace(Some(Arc::new(cp.clone())));
                            j.last_cp = Some(cp);
                        }
                        Err(GpuError::Lost(_)) => return self.recover(),
                        Err(e) => return self.fail(idx, e.into()),
                    }
                }
            }
            return;
        }
        // Done: read the outputs back.
        let outputs = match j.prepared.as_ref().map(|p| p.outputs(&self.gpu)) {
            Some(Ok(o)) => o,
            Some(Err(GpuError::Lost(_))) => return self.recover(),
            Some(Err(e)) => return self.fail(idx, e.into()),
            None => return,
        };
        if let Some(j) = self.jobs.remove(idx) {
            let out = JobOutput {
                digest: digest(&outputs),
                outputs,
                gpu_seconds: j.progress.gpu_seconds,
                chunks: j.progress.chunks,
                joules: j.progress.gpu_seconds * self.cfg.max_watts,
            };
            tracing::info!(job = j.id, chunks = out.chunks, gpu_seconds = out.gpu_seconds, digest = %out.digest, "GPU job succeeded");
            self.bump_finished();
            j.finish(JobOutcome::Succeeded(out));
        }
    }

    fn account(&mut self, t0: Instant, end: Instant, idle: f64, busy: f64, u: f64) {
        self.last_chunk = Some((end, busy));
        self.next_chunk_at = end + idle_gap(busy, u);
        self.recent.push_back((end, busy));
        lock(&self.status).busy_seconds += busy;
        let mut c = lock(&self.cycles);
        c.push_back(Cycle {
            at: (t0 - self.start).as_secs_f64(),
            idle,
            busy,
            target: u,
        });
        if c.len() > 4096 {
            c.pop_front();
        }
    }

    fn fail(&mut self, idx: usize, e: JobError) {
        if let Some(j) = self.jobs.remove(idx) {
            tracing::warn!(job = j.id, error = %e, "GPU job failed");
            self.bump_finished();
            j.finish(JobOutcome::Failed(e));
        }
    }

    /// A new device on the same adapter; every job restarts from its last checkpoint.
    fn recover(&mut self) {
        tracing::warn!("GPU device lost: reopening and resuming from checkpoints");
        let reopened = self
            .gpu
            .reopen()
            .map_err(JobError::from)
            .and_then(|gpu| Ok((Catalog::new(&gpu)?, gpu)));
        match reopened {
            Ok((catalog, gpu)) => {
                self.gpu = gpu;
                self.catalog = catalog;
                lock(&self.status).device_resets += 1;
                for j in &mut self.jobs {
                    j.prepared = None;
                    j.done = j.last_cp.as_ref().map_or(0, |c| c.done);
                    j.since_cp = 0.0;
                    j.progress.done = j.done;
                    j.progress.recoveries += 1;
                    j.progress_tx.send_replace(j.progress.clone());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the GPU; failing its jobs");
                for j in self.jobs.drain(..) {
                    j.finish(JobOutcome::Failed(e.clone()));
                }
            }
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|(end, _)| now.duration_since(*end) > Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        let duty = (self.recent.iter().map(|(_, b)| b).sum::<f64>()).min(1.0);
        let expired = now > self.target.1;
        let mut s = lock(&self.status);
        s.target_watts = if expired { 0.0 } else { self.target.0 };
        s.target_expired = expired;
        s.duty = duty;
        // With no target and nothing run in the last second the device is power-gated: a
        // heater with no heat budget draws nothing.
        s.watts = if duty == 0.0 && s.target_watts == 0.0 {
            0.0
        } else {
            self.cfg.idle_watts + (self.cfg.max_watts - self.cfg.idle_watts) * duty
        };
        s.uptime_seconds = (now - self.start).as_secs_f64();
        s.running = self.jobs.iter().find(|j| !j.progress.paused).map(|j| j.id);
        s.jobs = self.jobs.len();
    }
}
