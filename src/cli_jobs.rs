//! `hearth jobs ...`: leased jobs in the local data dir. Submitting writes the job durably to the
//! store; a running `hearth serve` on the same data dir picks it up within its poll period.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use hearth::config::JobsConfig;
use hearth::gpu::job::{GpuJob, JobLimits, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobId, JobRecord, JobSpec, JobState, JobStore, Lease, ListFilter, StoreLimits};

/// A kernel and its inputs, as `hearth gpu run` and `hearth jobs submit` take them.
#[derive(clap::Args)]
pub struct JobArgs {
    /// matmul, add, mul, relu, gelu, softmax, mlp_infer, mlp_train or custom.
    pub kernel: String,
    /// Random inputs of this size: matmul M,K,N; add/mul/relu/gelu N; softmax ROWS,COLS;
    /// mlp_infer B,D,H,C; mlp_train N,D,H,C (Gaussian blobs, one per class).
    #[arg(long, value_delimiter = ',', conflicts_with = "input")]
    size: Vec<usize>,
    /// Input tensors (.npy), in the kernel's order; repeat the flag.
    #[arg(long)]
    input: Vec<PathBuf>,
    /// mlp_train learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// mlp_train minibatch.
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// mlp_train epochs.
    #[arg(long, default_value_t = 10)]
    epochs: u32,
    /// custom: the WGSL file.
    #[arg(long)]
    wgsl: Option<PathBuf>,
    /// custom: the entry point.
    #[arg(long, default_value = "main")]
    entry: String,
    /// custom: workgroups x,y,z.
    #[arg(long, value_delimiter = ',', default_value = "1,1,1")]
    workgroups: Vec<u32>,
    /// custom: f32 length of each output.
    #[arg(long, value_delimiter = ',')]
    outputs: Vec<usize>,
}

impl JobArgs {
    /// The GPU job these arguments describe.
    pub fn build(&self) -> Result<GpuJob> {
        let kernel = match self.kernel.as_str() {
            "matmul" => KernelSpec::Matmul,
            "add" => KernelSpec::Elementwise {
                op: ElementwiseOp::Add,
            },
            "mul" => KernelSpec::Elementwise {
                op: ElementwiseOp::Mul,
            },
            "relu" => KernelSpec::Elementwise {
                op: ElementwiseOp::Relu,
            },
            "gelu" => KernelSpec::Elementwise {
                op: ElementwiseOp::Gelu,
            },
            "softmax" => KernelSpec::Softmax,
            "mlp_infer" => KernelSpec::MlpInfer,
            "mlp_train" => KernelSpec::MlpTrain {
                lr: self.lr,
                batch: self.batch,
                epochs: self.epochs,
            },
            "custom" => {
                let path = self.wgsl.as_ref().context("custom needs --wgsl FILE")?;
                let wgsl = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let [x, y, z] = self.workgroups[..] else {
                    bail!("--workgroups takes x,y,z")
                };
                KernelSpec::Custom {
                    wgsl,
                    entry_point: self.entry.clone(),
                    workgroups: [x, y, z],
                    outputs: self.outputs.clone(),
                }
            }
            k => bail!(
                "unknown kernel {k:?}: matmul, add, mul, relu, gelu, softmax, mlp_infer, \
                 mlp_train or custom"
            ),
        };
        let inputs: Vec<Tensor> = if !self.input.is_empty() {
            self.input
                .iter()
                .map(|p| {
                    let bytes =
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    Tensor::from_npy(&bytes).with_context(|| p.display().to_string())
                })
                .collect::<Result<_>>()?
        } else {
            hearth::gpu::reference::synthetic_inputs(&kernel, &self.size, 1)?
        };
        Ok(GpuJob { kernel, inputs })
    }
}

/// Writes output tensors as `.npy`: `path` for one, `path.0.npy`, `path.1.npy`, ... for several.
pub fn write_outputs(path: &Path, outputs: &[Tensor]) -> Result<()> {
    for (i, t) in outputs.iter().enumerate() {
        let p = if outputs.len() == 1 {
            path.to_path_buf()
        } else {
            path.with_extension(format!("{i}.npy"))
        };
        std::fs::write(&p, t.to_npy()).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// `hearth jobs` subcommands.
#[derive(Subcommand)]
pub enum JobsAction {
    /// Store a job durably; the daemon on the same data dir runs it.
    Submit {
        /// The kernel and its inputs.
        #[command(flatten)]
        job: Box<JobArgs>,
        /// Who pays (A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "owner")]
        tenant: String,
        /// Price per GPU-second.
        #[arg(long, default_value_t = 0.0)]
        price: f64,
        /// Deadline, seconds from now.
        #[arg(long, value_name = "SECONDS")]
        deadline_in: Option<f64>,
        /// Higher runs first among equal deadlines.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Wait until the job has finished and print its result digest.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List jobs, newest last.
    List {
        /// Only jobs in this state (QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED).
        #[arg(long)]
        state: Option<JobState>,
        #[command(flatten)]
        common: Common,
    },
    /// One job: state, progress, usage, digest and its transitions.
    Get {
        /// The job id.
        id: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Cancel a job (a running one stops within the daemon's poll period).
    Cancel {
        /// The job id.
        id: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Write a finished job's outputs as .npy files into DIR.
    Result {
        /// The job id.
        id: u64,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

/// Options every `hearth jobs` command takes.
#[derive(clap::Args)]
pub struct Common {
    /// The daemon's data dir (default: `$XDG_DATA_HOME/hearth`, else `~/.local/share/hearth`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn open(&self) -> Result<JobStore> {
        let dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => JobsConfig::default().resolved_data_dir()?,
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        JobStore::open(&dir, StoreLimits::default())
            .with_context(|| format!("opening the job store in {}", dir.display()))
    }
}

fn now_unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn print_record(r: &JobRecord, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:>6}  {:<9}  {:<10}  {:<12}  {:>10}  {:>9.3} GPU-s  {:>9.1} J  earned {:.6}{}",
            r.id,
            r.state.as_str(),
            r.kernel.name(),
            r.lease.tenant,
            r.progress_units,
            r.usage.gpu_seconds,
            r.usage.joules,
            r.usage.earned,
            r.last_error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs a `hearth jobs` command.
pub fn run(action: JobsAction) -> Result<()> {
    match action {
        JobsAction::Submit {
            job,
            tenant,
            price,
            deadline_in,
            priority,
            wait,
            common,
        } => {
            let spec = JobSpec {
                job: job.build()?,
                lease: Lease {
                    tenant,
                    price_per_gpu_second: price,
                    deadline_unix_s: deadline_in.map(|d| now_unix_s() + d),
                    priority,
                },
            };
            spec.validate()?;
            // The kernel's own checks (arity, shapes, WGSL) against the default limits and the
            // WebGPU default binding size; the daemon checks again against its device.
            spec.job.plan(&JobLimits::default(), 128 << 20)?;
            let store = common.open()?;
            let id = store.submit(&spec)?;
            if !wait {
                if common.json {
                    println!("{}", serde_json::json!({ "id": id.0 }));
                } else {
                    println!("job {id} queued");
                }
                return Ok(());
            }
            loop {
                let r = store.get(id)?;
                if r.state.is_terminal() {
                    print_record(&r, common.json)?;
                    if !common.json {
                        if let Some(d) = &r.result_digest {
                            println!("sha256: {d}");
                        }
                    }
                    if r.state != JobState::Succeeded {
                        bail!("job {id} ended {}", r.state);
                    }
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        JobsAction::List { state, common } => {
            let store = common.open()?;
            let mut token = None;
            loop {
                let (page, next) = store.list(
                    ListFilter {
                        tenant: None,
                        state,
                    },
                    1000,
                    token,
                )?;
                for r in &page {
                    print_record(r, common.json)?;
                }
                match next {
                    Some(t) => token = Some(t),
                    None => return Ok(()),
                }
            }
        }
        JobsAction::Get { id, common } => {
            let store = common.open()?;
            let r = store.get(JobId(id))?;
            let transitions = store.transitions(JobId(id))?;
            if common.json {
                println!(
                    "{}",
                    serde_json::json!({ "job": r, "transitions": transitions })
                );
                return Ok(());
            }
            print_record(&r, false)?;
            if let Some(d) = &r.result_digest {
                println!("sha256: {d}");
            }
            for t in transitions {
                println!(
                    "  {:.3}  {} -> {}  {}",
                    t.at_unix_s,
                    t.from.map(|s| s.as_str()).unwrap_or("-"),
                    t.to,
                    t.reason
                );
            }
            Ok(())
        }
        JobsAction::Cancel { id, common } => {
            let store = common.open()?;
            store.transition(JobId(id), JobState::Cancelled, "cancelled by the owner")?;
            println!("job {id} cancelled");
            Ok(())
        }
        JobsAction::Result { id, out, common } => {
            let store = common.open()?;
            let (outputs, digest) = store.result(JobId(id))?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            write_outputs(&out.join(format!("job-{id}.npy")), &outputs)?;
            println!("sha256: {digest}");
            Ok(())
        }
    }
}
