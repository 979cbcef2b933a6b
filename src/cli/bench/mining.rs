//! `hearth bench stratum` and `hearth bench asic`: the software ASIC against the local pool,
//! and its throttle response.

use anyhow::{bail, Context, Result};

/// `hearth bench stratum`: the pool's hashrate from share difficulty against the ASIC's.
pub fn stratum(minutes: f64, chips: usize, json: bool) -> Result<()> {
    if !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
        bail!("--minutes must be in (0, 1440]");
    }
    let cfg = hearth::devices::software_asic::AsicConfig {
        chips,
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let r = rt
        .block_on(hearth::devices::software_asic::bench::hashrate_agreement(
            cfg,
            minutes * 60.0,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{chips} chips at full rate against the local pool for {:.0} s, {} accepted shares",
        r.seconds, r.shares
    );
    println!(
        "  pool, from accepted share difficulty: {:.2} MH/s",
        r.pool_hashes_per_second / 1e6
    );
    println!(
        "  ASIC, hashes computed:                {:.2} MH/s",
        r.asic_hashes_per_second / 1e6
    );
    println!(
        "  pool / ASIC = {:.3}; expected 1 ± {:.3} (1σ, Poisson over {} shares): {:.1}σ off",
        r.ratio,
        r.relative_sigma,
        r.shares,
        (r.ratio - 1.0).abs() / r.relative_sigma
    );
    Ok(())
}

/// `hearth bench asic`: how fast the software ASIC follows rate steps.
pub fn asic(repeats: usize, chips: usize, json: bool) -> Result<()> {
    let cfg = hearth::devices::software_asic::AsicConfig {
        chips,
        ..Default::default()
    };
    let r = hearth::devices::software_asic::bench::throttle_response(cfg, repeats.max(1))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "software ASIC throttle response, {chips} chips, {} rate steps (50 ms slices)",
        r.steps
    );
    println!(
        "  set_rate → every chip running a slice at the new rate: p50 {:.2} ms, max {:.2} ms",
        r.p50_ms, r.max_ms
    );
    println!(
        "  first slice at the new rate: |duty − rate| mean {:.4}, max {:.4}; {} of {} steps within 5 %",
        r.mean_duty_error, r.max_duty_error, r.within_5_percent, r.steps
    );
    println!(
        "  new work (clean_jobs) → every chip hashing it: p50 {:.2} ms, max {:.2} ms",
        r.work_switch_p50_ms, r.work_switch_max_ms
    );
    Ok(())
}
