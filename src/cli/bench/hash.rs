//! `hearth bench hash`: MH/s per thread of every scan kernel, beside the one-stream limit
//! measured in the same run.

use anyhow::{bail, Result};

/// Runs the bench and prints its report.
pub fn run(threads: usize, seconds: f64, json: bool) -> Result<()> {
    if threads == 0 || threads > 1024 || !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--threads must be 1–1024 and --seconds in (0, 3600]");
    }
    let report = hearth::mining::bench::hash_bench(threads, seconds);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
