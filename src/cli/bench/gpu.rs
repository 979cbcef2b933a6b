//! `hearth bench gpu`: matmul GFLOP/s, throttle response and mlp_train throughput.

use anyhow::{bail, Result};

/// Runs the bench and prints its report.
pub fn run(
    sizes: Vec<usize>,
    adapter: hearth::gpu::device::AdapterChoice,
    json: bool,
) -> Result<()> {
    if sizes.is_empty() || sizes.iter().any(|&n| !(1..=8192).contains(&n)) {
        bail!("--sizes must be 1–8192");
    }
    let b = hearth::gpu::bench::run(&adapter, &sizes)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(());
    }
    println!(
        "adapter: {} ({})\n",
        b.adapter,
        if b.software { "software" } else { "hardware" }
    );
    println!(
        "{:>6} {:<8} {:>13} {:>13} {:>10} {:>14} {:>12}",
        "size", "variant", "tuned GFLOP/s", "naive GFLOP/s", "× naive", "CPU sgemm (1t)", "× CPU"
    );
    for m in &b.matmul {
        println!(
            "{:>6} {:<8} {:>13.2} {:>13.2} {:>10.1} {:>14.2} {:>12.2}",
            m.size,
            format!("{:?}", m.variant).to_lowercase(),
            m.tuned_gflops,
            m.naive_gflops,
            m.tuned_gflops / m.naive_gflops,
            m.cpu_gflops,
            m.tuned_gflops / m.cpu_gflops
        );
    }
    println!("\n(naive at sizes over 256 times the first 256 rows; CPU sgemm is matrixmultiply on one thread)");
    println!(
        "\nthrottle response (new target → start of the first chunk from which the per-chunk duty holds within ±0.05, 5 chunks):"
    );
    for st in &b.steps {
        match st.response_s {
            Some(t) => println!(
                "  {:.0} % → {:.0} %: {:.0} ms",
                st.from * 100.0,
                st.to * 100.0,
                t * 1000.0
            ),
            None => println!(
                "  {:.0} % → {:.0} %: did not settle",
                st.from * 100.0,
                st.to * 100.0
            ),
        }
    }
    println!(
        "\nmlp_train (N 4096, D 64, H 128, C 10, batch 64): {:.0} samples/s",
        b.mlp_train_samples_per_s
    );
    println!(
        "chunk busy time during the steps: median {:.1} ms, longest {:.1} ms",
        b.chunk_ms_p50, b.chunk_ms_max
    );
    Ok(())
}
