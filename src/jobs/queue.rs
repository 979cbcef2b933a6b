//! Queue order: pure logic, no I/O.
//!
//! Jobs with a deadline come before jobs without one, earliest deadline first (so overdue jobs
//! lead); then higher priority; then higher value per GPU-second; then submission order.

use std::cmp::Ordering;

use super::spec::JobId;

/// What ordering needs to know about a waiting job.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    /// The job; ids grow in submission order, so this is also the final tie-break.
    pub id: JobId,
    /// The lease's deadline (unix seconds), if any.
    pub deadline_unix_s: Option<f64>,
    /// The lease's priority; higher first.
    pub priority: i32,
    /// What a GPU-second of this job earns; higher first.
    pub price_per_gpu_second: f64,
}

/// Compares two entries: `Less` runs first.
pub fn compare(a: &QueueEntry, b: &QueueEntry, now_unix_s: f64) -> Ordering {
    // (has no deadline, not overdue, deadline): (false, false, ..) sorts first.
    let key = |e: &QueueEntry| {
        e.deadline_unix_s
            .map(|d| (false, d >= now_unix_s, d))
            .unwrap_or((true, true, 0.0))
    };
    let (ka, kb) = (key(a), key(b));
    ka.0.cmp(&kb.0)
        .then(ka.1.cmp(&kb.1))
        .then(ka.2.total_cmp(&kb.2))
        .then(b.priority.cmp(&a.priority))
        .then(b.price_per_gpu_second.total_cmp(&a.price_per_gpu_second))
        .then(a.id.cmp(&b.id))
}

/// The ids of `jobs` in the order they should run.
pub fn order(jobs: &[QueueEntry], now_unix_s: f64) -> Vec<JobId> {
    let mut v: Vec<&QueueEntry> = jobs.iter().collect();
    v.sort_by(|a, b| compare(a, b, now_unix_s));
    v.into_iter().map(|e| e.id).collect()
}

/// GPU utilisation that finishes every deadline job in time, running them earliest deadline
/// first: the largest `Σ_{i≤k} work_i / (deadline_k − now)` over the jobs sorted by deadline.
/// `jobs` are (deadline unix s, remaining GPU-seconds at full utilisation); a deadline already
/// past counts as one second away. 0 with no jobs; above 1 when the deadlines cannot all be met.
pub fn deadline_utilisation(jobs: &[(f64, f64)], now_unix_s: f64) -> f64 {
    let mut v: Vec<(f64, f64)> = jobs
        .iter()
        .copied()
        .filter(|(d, w)| d.is_finite() && w.is_finite() && *w > 0.0)
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut work = 0.0;
    let mut need: f64 = 0.0;
    for (deadline, w) in v {
        work += w;
        need = need.max(work / (deadline - now_unix_s).max(1.0));
    }
    need
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_utilisation_is_the_tightest_prefix() {
        assert_eq!(deadline_utilisation(&[], 0.0), 0.0);
        // 50 s of work due in 100 s: half the GPU.
        assert!((deadline_utilisation(&[(100.0, 50.0)], 0.0) - 0.5).abs() < 1e-12);
        // A second job due at 120 with 40 s more: (50 + 40) / 120 = 0.75 is the tighter.
        let u = deadline_utilisation(&[(120.0, 40.0), (100.0, 50.0)], 0.0);
        assert!((u - 0.75).abs() < 1e-12, "{u}");
        // Infeasible: more than the whole GPU.
        assert!(deadline_utilisation(&[(10.0, 20.0)], 0.0) > 1.0);
        // Overdue counts as one second away; no work needs nothing.
        assert_eq!(deadline_utilisation(&[(5.0, 3.0)], 10.0), 3.0);
        assert_eq!(deadline_utilisation(&[(5.0, 0.0)], 0.0), 0.0);
    }

    fn e(id: u64, deadline: Option<f64>, priority: i32, price: f64) -> QueueEntry {
        QueueEntry {
            id: JobId(id),
            deadline_unix_s: deadline,
            priority,
            price_per_gpu_second: price,
        }
    }

    fn ids(v: Vec<JobId>) -> Vec<u64> {
        v.into_iter().map(|j| j.0).collect()
    }

    #[test]
    fn deadlines_first_earliest_first_overdue_leading() {
        let now = 1000.0;
        let jobs = [
            e(1, None, 100, 9.0),
            e(2, Some(2000.0), 0, 0.0),
            e(3, Some(1500.0), 0, 0.0),
            e(4, Some(900.0), 0, 0.0),  // overdue
            e(5, Some(500.0), -5, 0.0), // more overdue
            e(6, Some(1000.0), 0, 0.0), // due now: not overdue
        ];
        assert_eq!(ids(order(&jobs, now)), [5, 4, 6, 3, 2, 1]);
    }

    #[test]
    fn then_priority_then_value_then_submission() {
        let jobs = [
            e(1, None, 0, 1.0),
            e(2, None, 1, 0.5),
            e(3, None, 0, 2.0),
            e(4, None, 0, 1.0),
            e(5, Some(10.0), 0, 1.0),
            e(6, Some(10.0), 3, 0.0),
            e(7, Some(10.0), 0, 1.5),
        ];
        assert_eq!(ids(order(&jobs, 0.0)), [6, 7, 5, 2, 3, 1, 4]);
    }

    #[test]
    fn order_ignores_input_order_and_is_total() {
        let jobs = vec![
            e(3, None, 0, 1.0),
            e(1, None, 0, 1.0),
            e(2, Some(5.0), 0, 1.0),
        ];
        let mut rev = jobs.clone();
        rev.reverse();
        assert_eq!(order(&jobs, 0.0), order(&rev, 0.0));
        assert_eq!(ids(order(&jobs, 0.0)), [2, 1, 3]);
        assert!(order(&[], 0.0).is_empty());
    }
}
