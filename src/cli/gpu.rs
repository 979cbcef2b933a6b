//! `hearth gpu`: the adapter's information, and one kernel run locally.

use anyhow::{bail, Result};
use clap::Subcommand;

use super::jobs;

/// `hearth gpu` subcommands.
#[derive(Subcommand)]
pub enum GpuAction {
    /// Print the adapter, its limits and features.
    Info {
        /// Adapter selector (auto, software, name:SUBSTRING, backend:NAME).
        #[arg(long, default_value = "auto")]
        adapter: hearth::gpu::device::AdapterChoice,
        /// Every adapter wgpu sees, not just the chosen one.
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run one kernel locally on `.npy` inputs, or on random inputs of `--size`.
    Run(Box<GpuRunArgs>),
}

/// `hearth gpu run` options.
#[derive(clap::Args)]
pub struct GpuRunArgs {
    /// The kernel and its inputs.
    #[command(flatten)]
    job: jobs::JobArgs,
    /// Write the output here (.npy); with several outputs, NAME.0.npy, NAME.1.npy, ...
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Compare with the CPU reference and print the largest difference.
    #[arg(long)]
    check: bool,
    /// Adapter selector.
    #[arg(long, default_value = "auto")]
    adapter: hearth::gpu::device::AdapterChoice,
}

/// Runs a `hearth gpu` subcommand.
pub fn run(action: GpuAction) -> Result<()> {
    use hearth::gpu::device::{adapters, Gpu};
    match action {
        GpuAction::Info { adapter, all, json } => {
            if all {
                for a in adapters() {
                    let i = a.get_info();
                    println!(
                        "{} ({:?}, {:?}, {} {})",
                        i.name, i.backend, i.device_type, i.driver, i.driver_info
                    );
                }
                return Ok(());
            }
            let gpu = Gpu::open(&adapter)?;
            let s = &gpu.summary;
            if json {
                println!("{}", serde_json::to_string_pretty(s)?);
                return Ok(());
            }
            println!("adapter:        {}", s.name);
            println!("backend:        {}", s.backend);
            println!(
                "device type:    {} ({})",
                s.device_type,
                if s.software { "software" } else { "hardware" }
            );
            println!("driver:         {}", s.driver);
            println!(
                "max storage binding:   {} MiB",
                s.max_storage_buffer_binding_size >> 20
            );
            println!("max buffer:            {} MiB", s.max_buffer_size >> 20);
            println!(
                "workgroups per dim:    {}",
                s.max_compute_workgroups_per_dimension
            );
            println!(
                "invocations per group: {}",
                s.max_compute_invocations_per_workgroup
            );
            println!(
                "workgroup memory:      {} KiB",
                s.max_compute_workgroup_storage_size >> 10
            );
            println!(
                "storage buffers/stage: {}",
                s.max_storage_buffers_per_shader_stage
            );
            println!(
                "subgroups:             {} (min size {})",
                s.subgroups, s.subgroup_min_size
            );
            println!("features:              {}", s.features.join(", "));
            Ok(())
        }
        GpuAction::Run(args) => gpu_run(*args),
    }
}

fn gpu_run(a: GpuRunArgs) -> Result<()> {
    use hearth::gpu::runner::{GpuRunner, JobOutcome, RunnerConfig};
    let job = a.job.build()?;
    let want = if a.check {
        hearth::gpu::reference::expected(&job)
    } else {
        None
    };
    let gpu = hearth::gpu::device::Gpu::open(&a.adapter)?;
    let adapter = gpu.summary.name.clone();
    let runner = GpuRunner::start(gpu, RunnerConfig::default())?;
    runner.set_target(f64::MAX, std::time::Duration::from_secs(86_400));
    let train = job.kernel.name() == "mlp_train";
    let h = runner.submit(job, None)?;
    let out = match h.outcome.blocking_recv() {
        Ok(JobOutcome::Succeeded(o)) => o,
        Ok(JobOutcome::Failed(e)) => return Err(e.into()),
        Ok(JobOutcome::Preempted(_)) | Err(_) => bail!("the job did not finish"),
    };
    println!("adapter: {adapter}");
    println!("chunks: {}, GPU time: {:.3} s", out.chunks, out.gpu_seconds);
    for (i, t) in out.outputs.iter().enumerate() {
        println!("output {i}: shape {:?}", t.shape);
    }
    if train {
        if let Some(loss) = out.outputs.last() {
            let l: Vec<String> = loss.data.iter().map(|v| format!("{v:.4}")).collect();
            println!("loss per epoch: {}", l.join(" "));
        }
    }
    println!("sha256: {}", out.digest);
    if let Some(want) = want {
        let diff = out
            .outputs
            .iter()
            .zip(&want)
            .flat_map(|(g, w)| g.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()))
            .fold(0.0f32, f32::max);
        println!("largest difference from the CPU reference: {diff:e}");
    }
    if let Some(path) = &a.output {
        for p in jobs::write_outputs(path, &out.outputs)? {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
