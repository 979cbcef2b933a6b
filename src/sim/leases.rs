//! A seeded synthetic stream of leased GPU jobs, and the queue that runs them in the simulator.
//!
//! Arrivals are Poisson; each lease's work (GPU-seconds at full utilisation), price per
//! GPU-second and deadline slack are drawn uniformly from configured ranges. The deadline is
//! `arrival + slack × work`, so a slack near 1 leaves no room for running below full speed.
//! Jobs run in the real queue order ([`crate::jobs::queue::compare`]): earliest deadline first,
//! then priority, then price.

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

use super::SimError;
use crate::jobs::queue::{compare, QueueEntry};
use crate::jobs::spec::JobId;

/// The lease stream's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// Mean time between two arrivals, minutes (Poisson arrivals).
    pub mean_interarrival_minutes: f64,
    /// Work of one lease, GPU-seconds at full utilisation: `[min, max]`, drawn uniformly.
    pub work_gpu_seconds: [f64; 2],
    /// Price per GPU-second: `[min, max]`, drawn uniformly.
    pub price_per_gpu_second: [f64; 2],
    /// Deadline slack (deadline = arrival + slack × work): `[min, max]`, drawn uniformly, ≥ 1.
    pub slack: [f64; 2],
    /// Seed of the stream.
    pub seed: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            mean_interarrival_minutes: 60.0,
            work_gpu_seconds: [600.0, 5400.0],
            // Mining with the default board earns 2.98e-8 per joule, 1.49e-5 per second of a
            // 500 W GPU: most leases are worth more per joule, about one in eight is not.
            price_per_gpu_second: [1.0e-5, 5.0e-5],
            slack: [1.2, 8.0],
            seed: 1,
        }
    }
}

impl LeaseConfig {
    /// Checks the ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |key: &'static str, msg: String| Err(SimError::Invalid { key, msg });
        let m = self.mean_interarrival_minutes;
        if !(m.is_finite() && m > 0.0) {
            return bad(
                "workloads.leases.mean_interarrival_minutes",
                format!("must be a positive number, got {m}"),
            );
        }
        // (key, range, lowest allowed min, whether min may equal it)
        let ranges: [(&'static str, [f64; 2], f64, bool); 3] = [
            (
                "workloads.leases.work_gpu_seconds",
                self.work_gpu_seconds,
                0.0,
                false,
            ),
            (
                "workloads.leases.price_per_gpu_second",
                self.price_per_gpu_second,
                0.0,
                true,
            ),
            ("workloads.leases.slack", self.slack, 1.0, true),
        ];
        for (key, [lo, hi], floor, inclusive) in ranges {
            let above = if inclusive { lo >= floor } else { lo > floor };
            if !(lo.is_finite() && hi.is_finite() && lo <= hi && above) {
                let op = if inclusive { "≤" } else { "<" };
                return bad(
                    key,
                    format!("must be [min, max] with {floor} {op} min ≤ max, got [{lo}, {hi}]"),
                );
            }
        }
        Ok(())
    }
}

/// One leased GPU job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lease {
    /// Its id, in arrival order.
    pub id: u64,
    /// When it arrives, s.
    pub arrival_s: f64,
    /// Its work, GPU-seconds at full utilisation.
    pub work_gpu_seconds: f64,
    /// What one GPU-second earns.
    pub price_per_gpu_second: f64,
    /// When it must be done, s.
    pub deadline_s: f64,
    /// Its priority (always 0 here).
    pub priority: i32,
}

/// The leases arriving before `horizon_s`, in arrival order. The same config gives the same
/// stream.
pub fn generate(cfg: &LeaseConfig, horizon_s: f64) -> Vec<Lease> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut out = Vec::new();
    let Ok(gap) = Exp::new(1.0 / (60.0 * cfg.mean_interarrival_minutes)) else {
        return out;
    };
    let draw = |rng: &mut StdRng, [lo, hi]: [f64; 2]| {
        if lo < hi {
            rng.random_range(lo..=hi)
        } else {
            lo
        }
    };
    let mut t = 0.0;
    loop {
        t += gap.sample(&mut rng);
        if t >= horizon_s || horizon_s.is_nan() {
            return out;
        }
        let work = draw(&mut rng, cfg.work_gpu_seconds);
        let price = draw(&mut rng, cfg.price_per_gpu_second);
        let slack = draw(&mut rng, cfg.slack);
        out.push(Lease {
            id: out.len() as u64,
            arrival_s: t,
            work_gpu_seconds: work,
            price_per_gpu_second: price,
            deadline_s: t + slack * work,
            priority: 0,
        });
    }
}

/// What the GPU did for the queue in one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickWork {
    /// Seconds of the tick the GPU had a job to run.
    pub busy_seconds: f64,
    /// GPU-seconds of work done.
    pub gpu_seconds: f64,
    /// Earned: Σ price × GPU-seconds.
    pub earned: f64,
    /// Jobs finished.
    pub completed: u64,
    /// Of those, finished after their deadline.
    pub late: u64,
}

#[derive(Debug, Clone)]
struct Active {
    lease: Lease,
    remaining: f64,
}

/// Leases that have arrived and are not done, in queue order, plus those still to come.
#[derive(Debug, Clone)]
pub struct LeaseQueue {
    upcoming: Vec<Lease>,
    next: usize,
    active: Vec<Active>,
}

impl LeaseQueue {
    /// A queue that will receive `leases` (in arrival order) as time passes.
    pub fn new(leases: Vec<Lease>) -> Self {
        Self {
            upcoming: leases,
            next: 0,
            active: Vec::new(),
        }
    }

    /// Admits the leases that have arrived by `now_s`.
    pub fn admit(&mut self, now_s: f64) {
        let before = self.active.len();
        while let Some(l) = self
            .upcoming
            .get(self.next)
            .filter(|l| l.arrival_s <= now_s)
        {
            self.active.push(Active {
                lease: *l,
                remaining: l.work_gpu_seconds,
            });
            self.next += 1;
        }
        if self.active.len() != before {
            let entry = |a: &Active| QueueEntry {
                id: JobId(a.lease.id),
                deadline_unix_s: Some(a.lease.deadline_s),
                priority: a.lease.priority,
                price_per_gpu_second: a.lease.price_per_gpu_second,
            };
            self.active
                .sort_by(|a, b| compare(&entry(a), &entry(b), now_s));
        }
    }

    /// Whether a job is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.active.is_empty()
    }

    /// The highest price per GPU-second among waiting jobs.
    pub fn best_price(&self) -> Option<f64> {
        self.active
            .iter()
            .map(|a| a.lease.price_per_gpu_second)
            .reduce(f64::max)
    }

    /// The GPU utilisation the waiting jobs need to meet their deadlines, by EDF:
    /// `max_k Σ_{i≤k} remaining_i / (deadline_k − now)`. Infinite if one is overdue, 0 if none
    /// waits.
    pub fn deadline_utilisation(&self, now_s: f64) -> f64 {
        let mut by_deadline: Vec<(f64, f64)> = self
            .active
            .iter()
            .map(|a| (a.lease.deadline_s, a.remaining))
            .collect();
        by_deadline.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut need = 0.0f64;
        let mut sum = 0.0;
        for (deadline, remaining) in by_deadline {
            sum += remaining;
            let left = deadline - now_s;
            if left <= 0.0 {
                return f64::INFINITY;
            }
            need = need.max(sum / left);
        }
        need
    }

    /// Runs the queue for `dt_s` seconds from `now_s` at utilisation `u` (0..=1): `u·dt_s`
    /// GPU-seconds of work, spent in queue order.
    pub fn run(&mut self, now_s: f64, dt_s: f64, u: f64) -> TickWork {
        let mut w = TickWork::default();
        if self.active.is_empty() {
            return w;
        }
        let u = u.clamp(0.0, 1.0);
        if u == 0.0 {
            // Powered at idle with a job loaded: busy, but no progress.
            w.busy_seconds = dt_s;
            return w;
        }
        let capacity = u * dt_s;
        let mut left = capacity;
        let mut done = 0;
        for a in &mut self.active {
            if left <= 0.0 {
                break;
            }
            let take = a.remaining.min(left);
            a.remaining -= take;
            left -= take;
            w.gpu_seconds += take;
            w.earned += take * a.lease.price_per_gpu_second;
            if a.remaining <= 1e-9 {
                done += 1;
                w.completed += 1;
                let finished_at = now_s + (capacity - left) / u;
                if finished_at > a.lease.deadline_s + 1e-9 {
                    w.late += 1;
                }
            } else {
                break;
            }
        }
        self.active.drain(..done);
        w.busy_seconds = if self.active.is_empty() {
            ((capacity - left) / u).min(dt_s)
        } else {
            dt_s
        };
        w
    }

    /// Jobs not done whose deadline is before `now_s`.
    pub fn overdue(&self, now_s: f64) -> u64 {
        self.active
            .iter()
            .filter(|a| a.lease.deadline_s < now_s)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: u64, work: f64, price: f64, deadline: f64) -> Lease {
        Lease {
            id,
            arrival_s: 0.0,
            work_gpu_seconds: work,
            price_per_gpu_second: price,
            deadline_s: deadline,
            priority: 0,
        }
    }

    #[test]
    fn the_stream_is_deterministic_for_a_seed() {
        let cfg = LeaseConfig::default();
        let a = generate(&cfg, 48.0 * 3600.0);
        let b = generate(&cfg, 48.0 * 3600.0);
        assert_eq!(a, b);
        // About one an hour.
        assert!((30..=70).contains(&a.len()), "{}", a.len());
        let c = generate(
            &LeaseConfig {
                seed: 2,
                ..cfg.clone()
            },
            48.0 * 3600.0,
        );
        assert_ne!(a, c);
        for l in &a {
            assert!(l.arrival_s < 48.0 * 3600.0);
            assert!((600.0..=5400.0).contains(&l.work_gpu_seconds));
            assert!((1.0e-5..=5.0e-5).contains(&l.price_per_gpu_second));
            let slack = (l.deadline_s - l.arrival_s) / l.work_gpu_seconds;
            assert!((1.2 - 1e-9..=8.0 + 1e-9).contains(&slack), "{slack}");
        }
        assert!(a.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
    }

    #[test]
    fn edf_demand_is_the_tightest_prefix() {
        let mut q = LeaseQueue::new(vec![
            lease(0, 100.0, 1.0, 1000.0),
            lease(1, 400.0, 2.0, 500.0),
        ]);
        assert_eq!(q.deadline_utilisation(0.0), 0.0);
        q.admit(0.0);
        // By deadline: 400 / 500 = 0.8, then 500 / 1000 = 0.5.
        assert!((q.deadline_utilisation(0.0) - 0.8).abs() < 1e-12);
        assert_eq!(q.best_price(), Some(2.0));
        assert_eq!(q.deadline_utilisation(600.0), f64::INFINITY);
    }

    #[test]
    fn work_runs_in_deadline_order_and_late_jobs_count() {
        let mut q = LeaseQueue::new(vec![lease(0, 10.0, 1.0, 100.0), lease(1, 5.0, 2.0, 3.0)]);
        q.admit(0.0);
        // Half speed for 8 s: 4 GPU-s on job 1 (deadline 3), not done.
        let w = q.run(0.0, 8.0, 0.5);
        assert_eq!((w.gpu_seconds, w.earned, w.completed), (4.0, 8.0, 0));
        assert_eq!(q.overdue(8.0), 1);
        // Full speed: job 1 finishes late after 1 s, job 0 gets the remaining 9 GPU-s.
        let w = q.run(8.0, 10.0, 1.0);
        assert_eq!((w.completed, w.late), (1, 1));
        assert!((w.gpu_seconds - 10.0).abs() < 1e-12);
        assert!((w.earned - (2.0 + 9.0)).abs() < 1e-12);
        assert_eq!(w.busy_seconds, 10.0);
        // The last GPU-second: done early in the tick, on time.
        let w = q.run(18.0, 10.0, 1.0);
        assert_eq!((w.completed, w.late), (1, 0));
        assert!((w.busy_seconds - 1.0).abs() < 1e-9);
        assert!(!q.has_work());
    }
}
