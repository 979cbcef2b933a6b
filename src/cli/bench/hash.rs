//! `hearth bench hash`: MH/s per thread of every scan kernel against the portable baseline.

use anyhow::{bail, Result};

/// Runs the bench and prints its report.
pub fn run(threads: usize, seconds: f64, json: bool) -> Result<()> {
    if threads == 0 || threads > 1024 || !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--threads must be 1–1024 and --seconds in (0, 3600]");
    }
    let speeds = hearth::mining::bench::hash_speeds(threads, seconds);
    if json {
        println!("{}", serde_json::to_string_pretty(&speeds)?);
        return Ok(());
    }
    println!(
        "SHA-256d scan, {threads} thread(s), {seconds} s per kernel, mining target (top word 0)\n"
    );
    println!(
        "{:<10}{:>16}{:>14}{:>18}",
        "kernel", "MH/s per thread", "MH/s total", "× portable (sha2)"
    );
    for k in &speeds {
        println!(
            "{:<10}{:>16.2}{:>14.2}{:>18.2}",
            k.kernel.name(),
            k.mhs_per_thread,
            k.mhs_per_thread * k.threads as f64,
            k.ratio_to_portable
        );
    }
    Ok(())
}
