//! Energy and earnings, integrated from reported power: per GPU job (joules, GPU-seconds,
//! amount earned), for mining (joules, shares, estimated earnings) and for the resistive element
//! (joules). Power is integrated with the trapezoid rule between samples; a gap longer than
//! `max_gap_seconds` (a stalled or restarted daemon) is not bridged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One job's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobAccount {
    /// Energy, J.
    pub joules: f64,
    /// GPU-busy seconds.
    pub gpu_seconds: f64,
    /// Earned: GPU-seconds × the lease's price per GPU-second.
    pub earned: f64,
}

/// Mining's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MiningAccount {
    /// Energy, J.
    pub joules: f64,
    /// The part of `joules` integrated from measured power (real miners' own meters), J; the
    /// rest is modelled (the software ASIC).
    #[serde(default)]
    pub measured_joules: f64,
    /// Accepted shares.
    pub shares: u64,
    /// Accepted work, in difficulty-1 shares.
    pub accepted_work: f64,
    /// Estimated earnings: accepted work × the configured value of a difficulty-1 share.
    pub earned: f64,
}

/// Everything the heater has spent and earned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounts {
    /// Per GPU job, by job id.
    pub jobs: BTreeMap<u64, JobAccount>,
    /// Mining.
    pub mining: MiningAccount,
    /// The resistive element, J.
    pub resistive_joules: f64,
}

/// One sample of what the workloads draw and did since the last one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Time, s.
    pub at_s: f64,
    /// ASIC power, W.
    pub asic_watts: f64,
    /// Whether `asic_watts` was measured (else modelled).
    pub asic_measured: bool,
    /// GPU power, W, and the job it ran for (None: idle power, charged to no job).
    pub gpu_watts: f64,
    /// The job on the GPU, with its lease price per GPU-second.
    pub gpu_job: Option<(u64, f64)>,
    /// GPU-busy seconds of that job since the last sample.
    pub gpu_busy_seconds: f64,
    /// Resistive element power, W.
    pub resistive_watts: f64,
    /// Shares accepted since the last sample, and their total difficulty.
    pub new_shares: (u64, f64),
}

/// Integrates samples into [`Accounts`].
#[derive(Debug, Clone)]
pub struct Accountant {
    /// The accounts so far.
    pub accounts: Accounts,
    last: Option<Sample>,
    max_gap_seconds: f64,
    value_per_share: f64,
}

impl Accountant {
    /// Starts from `accounts` (as kept in the store); `value_per_share` is the earnings of one
    /// accepted difficulty-1 share.
    pub fn new(accounts: Accounts, max_gap_seconds: f64, value_per_share: f64) -> Self {
        Self {
            accounts,
            last: None,
            max_gap_seconds,
            value_per_share,
        }
    }

    /// Adds a sample.
    pub fn record(&mut self, s: Sample) {
        let a = &mut self.accounts;
        a.mining.shares += s.new_shares.0;
        a.mining.accepted_work += s.new_shares.1;
        a.mining.earned += s.new_shares.1 * self.value_per_share;
        if let Some((id, price)) = s.gpu_job {
            let job = a.jobs.entry(id).or_default();
            job.gpu_seconds += s.gpu_busy_seconds;
            job.earned += s.gpu_busy_seconds * price;
        }
        if let Some(prev) = &self.last {
            let dt = s.at_s - prev.at_s;
            if dt > 0.0 && dt <= self.max_gap_seconds {
                let trap = |a: f64, b: f64| 0.5 * (a + b) * dt;
                let mining = trap(prev.asic_watts, s.asic_watts);
                a.mining.joules += mining;
                if s.asic_measured && prev.asic_measured {
                    a.mining.measured_joules += mining;
                }
                a.resistive_joules += trap(prev.resistive_watts, s.resistive_watts);
                // GPU energy goes to the job that ran through the interval.
                if let (Some((id, _)), Some((pid, _))) = (s.gpu_job, prev.gpu_job) {
                    if id == pid {
                        a.jobs.entry(id).or_default().joules += trap(prev.gpu_watts, s.gpu_watts);
                    }
                }
            }
        }
        self.last = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrates_power_and_credits_work() {
        let mut acc = Accountant::new(Accounts::default(), 10.0, 2.0);
        for t in 0..=10 {
            acc.record(Sample {
                at_s: t as f64,
                asic_watts: 100.0 + 10.0 * t as f64,
                asic_measured: t >= 5,
                gpu_watts: 200.0,
                gpu_job: Some((7, 0.5)),
                gpu_busy_seconds: if t == 0 { 0.0 } else { 0.8 },
                resistive_watts: 50.0,
                new_shares: (1, 0.25),
            });
        }
        let a = &acc.accounts;
        // ∫ 100 + 10t dt over 0..10 = 1000 + 500, exact for a linear ramp.
        assert!((a.mining.joules - 1500.0).abs() < 1e-9);
        // Measured from t = 5 on: ∫ 100 + 10t dt over 5..10 = 500 + 375.
        assert!((a.mining.measured_joules - 875.0).abs() < 1e-9);
        assert_eq!(a.mining.shares, 11);
        assert!((a.mining.earned - 11.0 * 0.25 * 2.0).abs() < 1e-12);
        assert!((a.resistive_joules - 500.0).abs() < 1e-9);
        let j = &a.jobs[&7];
        assert!((j.joules - 2000.0).abs() < 1e-9);
        assert!((j.gpu_seconds - 8.0).abs() < 1e-12 && (j.earned - 4.0).abs() < 1e-12);
    }

    #[test]
    fn gaps_are_not_bridged_and_jobs_do_not_share_energy() {
        let mut acc = Accountant::new(Accounts::default(), 5.0, 0.0);
        let s = |at, job| Sample {
            at_s: at,
            asic_watts: 100.0,
            asic_measured: false,
            gpu_watts: 200.0,
            gpu_job: job,
            ..Sample::default()
        };
        acc.record(s(0.0, Some((1, 0.0))));
        acc.record(s(1.0, Some((1, 0.0))));
        // A restart: 100 s unaccounted, not 100 s of power.
        acc.record(s(101.0, Some((2, 0.0))));
        acc.record(s(102.0, Some((2, 0.0))));
        let a = &acc.accounts;
        assert!((a.mining.joules - 200.0).abs() < 1e-9);
        assert!((a.jobs[&1].joules - 200.0).abs() < 1e-9);
        assert!((a.jobs[&2].joules - 200.0).abs() < 1e-9);
    }
}
