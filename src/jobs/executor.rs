//! The job executor: the one task that moves jobs between the store and the GPU runner.
//!
//! It owns the store's write path for running jobs. Each poll (and on [`ExecutorHandle::notify`])
//! it reads the live jobs from the store, starts the head of the queue on the runner (resuming
//! from its stored checkpoint), preempts a running job when a job with an earlier deadline
//! arrives, and cancels a job the store says was cancelled. Runner events come back on a channel:
//! checkpoints are written to the store as they are taken, a finished job's outputs become a
//! digest-named result file, a preempted job's state is stored before it is marked PAUSED.
//!
//! It publishes a [`QueueSummary`] for the allocator and persists the accountant's figures
//! (per-job usage and the running totals) every `persist_every`. Store calls run on the blocking
//! pool, never on the control loop's path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::queue;
use super::spec::{JobId, JobState};
use super::store::{JobStore, LiveJob, StoreError, Usage};
use crate::gpu::job::{Checkpoint, JobError};
use crate::gpu::runner::{GpuRunner, JobOutcome, JobProgress};
use crate::sched::accounting::{Accounts, JobAccount, MiningAccount};
use crate::sched::scheduler::{JobUsage, QueueSummary, RunningJob};

/// Names of the running totals in the store.
const TOTALS: [&str; 6] = [
    "mining_joules",
    "mining_shares",
    "mining_accepted_work",
    "mining_earned",
    "resistive_joules",
    "mining_measured_joules",
];

/// Runs `f` on the blocking pool with the store (store calls never run on a tokio worker).
pub async fn blocking<T: Send + 'static>(
    store: &Arc<JobStore>,
    f: impl FnOnce(&JobStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .unwrap_or_else(|e| Err(StoreError::Corrupt(format!("store task failed: {e}"))))
}

/// The accounts as the store keeps them: the running totals and every live job's usage.
pub fn load_accounts(store: &JobStore) -> Result<Accounts, StoreError> {
    let t = store.totals()?;
    let get = |k: &str| t.get(k).copied().unwrap_or(0.0);
    let jobs = store
        .live()?
        .into_iter()
        .map(|j| (j.entry.id.0, account_of(j.usage)))
        .collect();
    Ok(Accounts {
        jobs,
        mining: MiningAccount {
            joules: get(TOTALS[0]),
            shares: get(TOTALS[1]) as u64,
            accepted_work: get(TOTALS[2]),
            earned: get(TOTALS[3]),
            measured_joules: get(TOTALS[5]),
        },
        resistive_joules: get(TOTALS[4]),
    })
}

fn account_of(u: Usage) -> JobAccount {
    JobAccount {
        joules: u.joules,
        gpu_seconds: u.gpu_seconds,
        earned: u.earned,
    }
}

/// The shortest time between two reads of the queue when woken by submits and cancels.
const MIN_REFRESH: Duration = Duration::from_millis(100);

/// Timing of the executor.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorConfig {
    /// How often the store is read for new, cancelled or reordered jobs (real time).
    pub poll: Duration,
    /// How often the accounts are written to the store (real time).
    pub persist_every: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(250),
            persist_every: Duration::from_secs(5),
        }
    }
}

/// The running executor.
pub struct ExecutorHandle {
    /// The queue as the allocator sees it.
    pub summary: watch::Receiver<QueueSummary>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl ExecutorHandle {
    /// Asks for a store read now (after a submit or a cancel).
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// What wakes the executor, for other handles on the daemon.
    pub fn waker(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Waits for the executor to stop (after the shutdown signal): the running job is
    /// checkpointed and PAUSED, the accounts written.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Starts the executor.
pub fn spawn(
    store: Arc<JobStore>,
    runner: Option<Arc<GpuRunner>>,
    accounts: watch::Receiver<Accounts>,
    cfg: ExecutorConfig,
    shutdown: watch::Receiver<bool>,
) -> ExecutorHandle {
    let (summary_tx, summary) = watch::channel(QueueSummary::default());
    let notify = Arc::new(Notify::new());
    let (events_tx, events) = mpsc::channel(64);
    let ex = Executor {
        store,
        runner,
        accounts,
        summary_tx,
        events_tx,
        current: None,
        unit_seconds: BTreeMap::new(),
        persisted: BTreeMap::new(),
        live: Vec::new(),
        failed_reads: 0,
    };
    let task = tokio::spawn(ex.run(cfg, notify.clone(), events, shutdown));
    ExecutorHandle {
        summary,
        notify,
        task,
    }
}

/// What the runner reports about the job it runs for us.
enum Event {
    Progress(u64, JobProgress),
    Checkpoint(u64, Arc<Checkpoint>),
    Outcome(u64, JobOutcome),
}

/// The job on the runner.
struct Current {
    job: JobId,
    run: u64,
    price: f64,
    entry: queue::QueueEntry,
    progress: JobProgress,
    /// Units done when this run started (a resumed job starts past 0).
    start_done: u64,
    /// A preemption or cancel was asked for: its reason.
    stopping: Option<String>,
    /// Units done as last written to the store.
    stored_done: u64,
    /// GPU-seconds of this run already added to the store's usage.
    recorded: f64,
}

impl Current {
    /// GPU-seconds of this run not yet in the store, given the run's total.
    fn pending(&self, total: f64) -> f64 {
        (total - self.recorded).max(0.0)
    }
}

struct Executor {
    store: Arc<JobStore>,
    runner: Option<Arc<GpuRunner>>,
    accounts: watch::Receiver<Accounts>,
    summary_tx: watch::Sender<QueueSummary>,
    events_tx: mpsc::Sender<Event>,
    current: Option<Current>,
    /// Measured GPU-seconds per unit and units left, per job that has run.
    unit_seconds: BTreeMap<u64, (f64, u64)>,
    /// Job energy as last written to the store, J.
    persisted: BTreeMap<u64, f64>,
    live: Vec<LiveJob>,
    failed_reads: u32,
}

impl Executor {
    async fn run(
        mut self,
        cfg: ExecutorConfig,
        notify: Arc<Notify>,
        mut events: mpsc::Receiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Ok(live) = blocking(&self.store, |s| s.live()).await {
            self.persisted = live
                .iter()
                .map(|j| (j.entry.id.0, j.usage.joules))
                .collect();
        }
        let mut poll = tokio::time::interval(cfg.poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut persist = tokio::time::interval(cfg.persist_every);
        persist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    self.refresh().await;
                    last = tokio::time::Instant::now();
                }
                _ = notify.notified() => {
                    // A burst of submits wakes this many times; one read of the queue per
                    // MIN_REFRESH serves them all.
                    tokio::time::sleep_until(last + MIN_REFRESH).await;
                    self.refresh().await;
                    last = tokio::time::Instant::now();
                }
                Some(ev) = events.recv() => self.on_event(ev).await,
                _ = persist.tick() => self.persist().await,
                _ = shutdown.changed() => break,
            }
        }
        self.stop(&mut events).await;
        self.persist().await;
    }

    /// Reads the live jobs, then starts, preempts or cancels as the queue says.
    async fn refresh(&mut self) {
        match blocking(&self.store, |s| s.live()).await {
            Ok(live) => {
                self.live = live;
                self.failed_reads = 0;
            }
            Err(e) => {
                self.failed_reads += 1;
                if self.failed_reads == 1 {
                    tracing::error!(error = %e, "cannot read the job queue; retrying");
                }
                return;
            }
        }
        let now = super::store::now_unix_s();
        if let (Some(cur), Some(runner)) = (&mut self.current, &self.runner) {
            if cur.stopping.is_none() {
                match self.live.iter().find(|j| j.entry.id == cur.job) {
                    // Cancelled (or otherwise ended) behind our back.
                    None => {
                        cur.stopping = Some("cancelled".into());
                        runner.cancel(cur.run);
                    }
                    Some(_) => {
                        let head = self.live.iter().find(|j| j.entry.id != cur.job);
                        if let Some(h) = head {
                            let earlier = h.entry.deadline_unix_s.is_some()
                                && queue::compare(&h.entry, &cur.entry, now)
                                    == std::cmp::Ordering::Less;
                            if earlier {
                                let why =
                                    format!("preempted by job {} (earlier deadline)", h.entry.id);
                                tracing::info!(job = %cur.job, %why, "preempting");
                                cur.stopping = Some(why);
                                runner.preempt(cur.run);
                            }
                        }
                    }
                }
            }
        }
        if self.current.is_none() {
            self.start_next().await;
        } else if let Some(cur) = &mut self.current {
            if cur.progress.done != cur.stored_done {
                let (id, done) = (cur.job, cur.progress.done);
                cur.stored_done = done;
                let _ = blocking(&self.store, move |s| s.set_progress(id, done)).await;
            }
        }
        self.publish(now);
    }

    /// Starts the head of the queue on the runner.
    async fn start_next(&mut self) {
        let Some(runner) = self.runner.clone() else {
            return;
        };
        let Some(head) = self.live.first().cloned() else {
            return;
        };
        let id = head.entry.id;
        let loaded = blocking(&self.store, move |s| {
            Ok((s.load_spec(id)?, s.checkpoint(id)?))
        })
        .await;
        let (spec, cp) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot load the job; failing it");
                self.transition(id, JobState::Failed, format!("cannot load: {e}"))
                    .await;
                return;
            }
        };
        let resumed_at = cp.as_ref().map(|c| c.done);
        let handle = match runner.submit(spec.job, cp) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "the runner refused the job");
                self.transition(id, JobState::Failed, e.to_string()).await;
                return;
            }
        };
        let reason = match resumed_at {
            Some(done) => format!("resumed from its checkpoint at unit {done}"),
            None => "started".into(),
        };
        tracing::info!(job = %id, run = handle.id, %reason, "job on the GPU");
        if head.state != JobState::Running {
            self.transition(id, JobState::Running, reason).await;
        }
        let run = handle.id;
        self.current = Some(Current {
            job: id,
            run,
            price: head.entry.price_per_gpu_second,
            entry: head.entry.clone(),
            progress: handle.progress.borrow().clone(),
            start_done: resumed_at.unwrap_or(0),
            stopping: None,
            stored_done: resumed_at.unwrap_or(0),
            recorded: 0.0,
        });
        // Forward the runner's events for this run to the executor loop.
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let mut progress = handle.progress;
            let mut checkpoint = handle.checkpoint;
            let mut outcome = handle.outcome;
            loop {
                tokio::select! {
                    biased;
                    r = &mut outcome => {
                        // The last progress first, so that usage counts every chunk.
                        if progress.has_changed().unwrap_or(false) {
                            let p = progress.borrow_and_update().clone();
                            let _ = tx.send(Event::Progress(run, p)).await;
                        }
                        let o = r.unwrap_or(JobOutcome::Failed(JobError::Cancelled));
                        let _ = tx.send(Event::Outcome(run, o)).await;
                        return;
                    }
                    Ok(()) = checkpoint.changed() => {
                        let cp = checkpoint.borrow_and_update().clone();
                        if let Some(cp) = cp {
                            let _ = tx.send(Event::Checkpoint(run, cp)).await;
                        }
                    }
                    Ok(()) = progress.changed() => {
                        let p = progress.borrow_and_update().clone();
                        let _ = tx.send(Event::Progress(run, p)).await;
                    }
                }
            }
        });
    }

    async fn on_event(&mut self, ev: Event) {
        let Some(cur) = &mut self.current else {
            return;
        };
        match ev {
            Event::Progress(run, p) if run == cur.run => {
                let ran = p.done.saturating_sub(cur.start_done);
                if ran > 0 && p.gpu_seconds > 0.0 {
                    let left = p.units.saturating_sub(p.done);
                    self.unit_seconds
                        .insert(cur.job.0, (p.gpu_seconds / ran as f64, left));
                }
                cur.progress = p;
                self.publish(super::store::now_unix_s());
            }
            Event::Checkpoint(run, cp) if run == cur.run => {
                let id = cur.job;
                if let Err(e) = blocking(&self.store, move |s| s.save_checkpoint(id, &cp)).await {
                    tracing::warn!(job = %id, error = %e, "cannot store the checkpoint");
                }
            }
            Event::Outcome(run, outcome) if run == cur.run => {
                self.end_run(outcome).await;
                self.refresh().await;
            }
            _ => {}
        }
    }

    /// Records the run's last usage, then how it ended.
    async fn end_run(&mut self, outcome: JobOutcome) {
        let total = match &outcome {
            JobOutcome::Succeeded(out) => Some(out.gpu_seconds),
            _ => None,
        };
        self.persist_with(total).await;
        if let Some(cur) = self.current.take() {
            self.finish(cur, outcome).await;
        }
    }

    /// Records how a run ended.
    async fn finish(&mut self, cur: Current, outcome: JobOutcome) {
        let id = cur.job;
        match outcome {
            JobOutcome::Succeeded(out) => {
                let done = cur.progress.units;
                let _ = blocking(&self.store, move |s| s.set_progress(id, done)).await;
                let reason = format!(
                    "done: {} chunks, {:.3} GPU-seconds this run",
                    out.chunks, out.gpu_seconds
                );
                tracing::info!(job = %id, digest = %out.digest, "job succeeded");
                let r = blocking(&self.store, move |s| {
                    s.finish(id, &out.outputs, &out.digest, 0.0, 0.0, &reason)
                })
                .await;
                if let Err(e) = r {
                    tracing::error!(job = %id, error = %e, "cannot store the result");
                    self.transition(
                        id,
                        JobState::Failed,
                        format!("cannot store the result: {e}"),
                    )
                    .await;
                }
            }
            JobOutcome::Preempted(cp) => {
                let reason = cur.stopping.unwrap_or_else(|| "preempted".into());
                // A job taken off before its first chunk has no state to keep (the runner hands
                // back an empty checkpoint); it restarts from the beginning.
                let keep = !(cp.done == 0 && cp.state.is_empty());
                let r = blocking(&self.store, move |s| {
                    if keep {
                        s.save_checkpoint(id, &cp)?;
                    }
                    s.transition(id, JobState::Paused, &reason)
                })
                .await;
                if let Err(e) = r {
                    tracing::warn!(job = %id, error = %e, "cannot pause the job");
                }
            }
            JobOutcome::Failed(JobError::Cancelled) => {
                // Cancelled in the store already, or by the runner itself.
                let _ = blocking(&self.store, move |s| match s.get(id)?.state {
                    st if st.is_terminal() => Ok(()),
                    _ => s.transition(id, JobState::Cancelled, "cancelled"),
                })
                .await;
            }
            JobOutcome::Failed(e) => {
                tracing::warn!(job = %id, error = %e, "job failed");
                self.transition(id, JobState::Failed, e.to_string()).await;
            }
        }
        self.unit_seconds.remove(&id.0);
    }

    async fn transition(&self, id: JobId, to: JobState, reason: String) {
        let r = blocking(&self.store, move |s| s.transition(id, to, &reason)).await;
        if let Err(e) = r {
            tracing::warn!(job = %id, to = %to, error = %e, "job transition refused");
        }
    }

    /// Publishes the queue summary for the allocator.
    fn publish(&self, now: f64) {
        let mut deadlines = Vec::new();
        for j in &self.live {
            let Some(d) = j.entry.deadline_unix_s else {
                continue;
            };
            let id = j.entry.id.0;
            let work = match (&self.current, self.unit_seconds.get(&id)) {
                (Some(c), Some((per, _))) if c.job.0 == id => {
                    per * c.progress.units.saturating_sub(c.progress.done) as f64
                }
                (_, Some((per, left))) => per * *left as f64,
                // Not measured yet: ask for a tenth of the GPU, enough to start it and learn.
                _ => 0.1 * (d - now).max(1.0),
            };
            deadlines.push((d, work));
        }
        let summary = QueueSummary {
            live: self.live.len(),
            live_ids: self.live.iter().map(|j| j.entry.id.0).collect(),
            deadline_utilisation: queue::deadline_utilisation(&deadlines, now),
            best_price_per_gpu_second: self
                .live
                .iter()
                .map(|j| j.entry.price_per_gpu_second)
                .fold(0.0, f64::max),
            running: self.current.as_ref().map(|c| RunningJob {
                job: c.job.0,
                run: c.run,
                done: c.progress.done,
                units: c.progress.units,
            }),
            usage: self
                .live
                .iter()
                .map(|j| {
                    let mut g = j.usage.gpu_seconds;
                    let mut e = j.usage.earned;
                    if let Some(c) = self.current.as_ref().filter(|c| c.job == j.entry.id) {
                        let p = c.pending(c.progress.gpu_seconds);
                        g += p;
                        e += p * c.price;
                    }
                    (
                        j.entry.id.0,
                        JobUsage {
                            gpu_seconds: g,
                            earned: e,
                        },
                    )
                })
                .collect(),
        };
        self.summary_tx.send_replace(summary);
    }

    /// Writes usage to the store: the running job's GPU-seconds and earnings not yet recorded
    /// (this run's total is `run_total`, default its latest progress), every job's energy
    /// since the last write, and the running totals.
    async fn persist_with(&mut self, run_total: Option<f64>) {
        let accounts = self.accounts.borrow().clone();
        let mut deltas: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
        for (id, a) in &accounts.jobs {
            let before = self.persisted.get(id).copied().unwrap_or(a.joules);
            let dj = (a.joules - before).max(0.0);
            if dj > 0.0 {
                deltas.insert(*id, (0.0, dj, 0.0));
            }
        }
        let mut run_pending = None;
        if let Some(c) = &self.current {
            let p = c.pending(run_total.unwrap_or(c.progress.gpu_seconds));
            if p > 0.0 {
                let d = deltas.entry(c.job.0).or_default();
                d.0 = p;
                d.2 = p * c.price;
                run_pending = Some(p);
            }
        }
        let m = &accounts.mining;
        let totals = [
            m.joules,
            m.shares as f64,
            m.accepted_work,
            m.earned,
            accounts.resistive_joules,
            m.measured_joules,
        ];
        let r = blocking(&self.store, move |s| {
            for (id, (g, j, e)) in deltas {
                match s.record_usage(JobId(id), g, j, e) {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let named: Vec<(&str, f64)> = TOTALS.iter().copied().zip(totals).collect();
            s.save_totals(&named)
        })
        .await;
        match r {
            Ok(()) => {
                self.persisted = accounts
                    .jobs
                    .iter()
                    .map(|(id, a)| (*id, a.joules))
                    .collect();
                if let (Some(c), Some(p)) = (&mut self.current, run_pending) {
                    c.recorded += p;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the accounts; will retry"),
        }
    }

    async fn persist(&mut self) {
        self.persist_with(None).await;
    }

    /// On shutdown: takes the running job off the GPU with a checkpoint and marks it PAUSED,
    /// so that the next start resumes it where it stopped.
    async fn stop(&mut self, events: &mut mpsc::Receiver<Event>) {
        let (Some(cur), Some(runner)) = (&mut self.current, &self.runner) else {
            return;
        };
        let run = cur.run;
        if cur.stopping.is_none() {
            cur.stopping = Some("daemon stopping".into());
            runner.preempt(run);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Outcome(r, o))) if r == run => {
                    self.end_run(o).await;
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        "the running job did not stop in time; it resumes from its last checkpoint"
                    );
                    return;
                }
            }
        }
    }
}
