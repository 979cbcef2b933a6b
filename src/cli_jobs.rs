//! `hearth jobs ...`: leased jobs as a client of the running daemon's `Jobs` gRPC service (the
//! daemon is the job store's only writer). Also the kernel arguments `hearth gpu run` shares, and
//! the `--spec job.toml` job file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use sha2::{Digest, Sha256};

use hearth::api::convert::{state_to, unix_s, MAX_INLINE_TENSOR_BYTES};
use hearth::api::pb;
use hearth::gpu::job::{GpuJob, JobLimits, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobSpec, JobState, Lease};

use crate::cli_client::{grpc, one_line, rt, Conn, JobsClient};

/// Bytes per UploadTensor message.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Inline bytes one SubmitJob may carry in all; inputs past it are uploaded first (the server
/// takes messages up to 33 MiB).
const INLINE_BUDGET: usize = 24 << 20;
/// The kernel names `KERNEL` and a job file's `kernel.type` take.
const KERNELS: &str = "matmul, add, mul, relu, gelu, softmax, mlp_infer, mlp_train or custom";

/// A kernel and its inputs, as `hearth gpu run` and `hearth jobs submit` take them.
#[derive(clap::Args)]
pub struct JobArgs {
    /// matmul, add, mul, relu, gelu, softmax, mlp_infer, mlp_train or custom.
    #[arg(required_unless_present = "spec")]
    pub kernel: Option<String>,
    /// A job file (TOML: kernel, its parameters, inputs, lease) instead of KERNEL and its options.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["kernel", "size", "input", "lr", "batch", "epochs", "wgsl", "entry", "workgroups", "outputs"]
    )]
    pub spec: Option<PathBuf>,
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

/// The lease fields a job file may set; the command-line flags win over them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileLease {
    /// `tenant`.
    pub tenant: Option<String>,
    /// `price`, per GPU-second.
    pub price: Option<f64>,
    /// `deadline_in`, seconds from submission.
    pub deadline_in: Option<f64>,
    /// `priority`.
    pub priority: Option<i32>,
}

/// A kernel that is not custom, by its command-line name.
fn builtin_kernel(name: &str, lr: f32, batch: u32, epochs: u32) -> Option<KernelSpec> {
    let op = |op| Some(KernelSpec::Elementwise { op });
    match name {
        "matmul" => Some(KernelSpec::Matmul),
        "add" => op(ElementwiseOp::Add),
        "mul" => op(ElementwiseOp::Mul),
        "relu" => op(ElementwiseOp::Relu),
        "gelu" => op(ElementwiseOp::Gelu),
        "softmax" => Some(KernelSpec::Softmax),
        "mlp_infer" => Some(KernelSpec::MlpInfer),
        "mlp_train" => Some(KernelSpec::MlpTrain { lr, batch, epochs }),
        _ => None,
    }
}

fn read_npy(p: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Tensor::from_npy(&bytes).with_context(|| p.display().to_string())
}

fn inputs_of(kernel: &KernelSpec, files: &[PathBuf], size: &[usize]) -> Result<Vec<Tensor>> {
    if !files.is_empty() {
        files.iter().map(|p| read_npy(p)).collect()
    } else {
        Ok(hearth::gpu::reference::synthetic_inputs(kernel, size, 1)?)
    }
}

impl JobArgs {
    /// The GPU job these arguments describe.
    pub fn build(&self) -> Result<GpuJob> {
        Ok(self.load()?.0)
    }

    /// The GPU job, and the lease fields of a `--spec` file (empty without one).
    pub fn load(&self) -> Result<(GpuJob, FileLease)> {
        if let Some(path) = &self.spec {
            return load_spec(path);
        }
        let name = self.kernel.as_deref().unwrap_or_default();
        let kernel = match builtin_kernel(name, self.lr, self.batch, self.epochs) {
            Some(k) => k,
            None if name == "custom" => {
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
            None => bail!("unknown kernel {name:?}: {KERNELS}"),
        };
        let inputs = inputs_of(&kernel, &self.input, &self.size)?;
        Ok((GpuJob { kernel, inputs }, FileLease::default()))
    }
}

/// A job file's values, read with its path and the key in every error.
struct SpecReader<'a> {
    path: &'a Path,
}

impl SpecReader<'_> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: key `{key}`: {msg}", self.path.display())
    }

    fn unknown_keys(&self, t: &toml::Table, prefix: &str, known: &[&str]) -> Result<()> {
        match t.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.err(
                &format!("{prefix}{k}"),
                format!("unknown key (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn str(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<String>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(full, format!("expected a string, got {}", v.type_str()))),
        }
    }

    fn f64(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<f64>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) => Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(v) => Err(self.err(full, format!("expected a number, got {}", v.type_str()))),
        }
    }

    fn int<T: TryFrom<i64>>(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<T>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => T::try_from(*i)
                .map(Some)
                .map_err(|_| self.err(full, format!("{i} is out of range"))),
            Some(v) => Err(self.err(full, format!("expected an integer, got {}", v.type_str()))),
        }
    }

    fn list<T>(
        &self,
        t: &toml::Table,
        key: &str,
        full: &str,
        item: impl Fn(&toml::Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<Vec<T>>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    item(v).ok_or_else(|| {
                        self.err(
                            &format!("{full}[{i}]"),
                            format!("expected {what}, got {}", v.type_str()),
                        )
                    })
                })
                .collect::<Result<Vec<T>>>()
                .map(Some),
            Some(v) => Err(self.err(
                full,
                format!("expected an array of {what}s, got {}", v.type_str()),
            )),
        }
    }
}

fn nonneg<T: TryFrom<i64>>(v: &toml::Value) -> Option<T> {
    v.as_integer().and_then(|i| T::try_from(i).ok())
}

/// Reads a job file: the kernel and its parameters, its inputs (paths relative to the file, or
/// `size` for random ones) and its lease fields. Errors name the file and the key.
pub fn load_spec(path: &Path) -> Result<(GpuJob, FileLease)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow!(
            "{}: not valid TOML: {}",
            path.display(),
            one_line(e.message())
        )
    })?;
    let r = SpecReader { path };
    r.unknown_keys(
        &doc,
        "",
        &[
            "kernel",
            "inputs",
            "size",
            "tenant",
            "price",
            "deadline_in",
            "priority",
        ],
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    let empty = toml::Table::new();
    let (ty, kt) = match doc.get("kernel") {
        None => return Err(r.err("kernel", format!("required: one of {KERNELS}"))),
        Some(toml::Value::String(s)) => (s.clone(), &empty),
        Some(toml::Value::Table(t)) => {
            r.unknown_keys(
                t,
                "kernel.",
                &[
                    "type",
                    "op",
                    "lr",
                    "batch",
                    "epochs",
                    "wgsl",
                    "source",
                    "entry",
                    "workgroups",
                    "outputs",
                ],
            )?;
            let ty = r
                .str(t, "type", "kernel.type")?
                .ok_or_else(|| r.err("kernel.type", format!("required: one of {KERNELS}")))?;
            (ty, t)
        }
        Some(v) => {
            return Err(r.err(
                "kernel",
                format!("expected a kernel name or a table, got {}", v.type_str()),
            ))
        }
    };
    // The keys each kernel takes besides `type`.
    let takes: &[&str] = match ty.as_str() {
        "elementwise" => &["op"],
        "mlp_train" => &["lr", "batch", "epochs"],
        "custom" => &["wgsl", "source", "entry", "workgroups", "outputs"],
        _ => &[],
    };
    if let Some(k) = kt
        .keys()
        .find(|k| k.as_str() != "type" && !takes.contains(&k.as_str()))
    {
        return Err(r.err(&format!("kernel.{k}"), format!("not a parameter of {ty}")));
    }
    let kernel = if ty == "elementwise" {
        let op = r.str(kt, "op", "kernel.op")?.ok_or_else(|| {
            r.err(
                "kernel.op",
                "required for elementwise: add, mul, relu or gelu",
            )
        })?;
        match builtin_kernel(&op, 0.0, 0, 0) {
            Some(k @ KernelSpec::Elementwise { .. }) => k,
            _ => return Err(r.err("kernel.op", format!("{op:?}: add, mul, relu or gelu"))),
        }
    } else if ty == "custom" {
        let wgsl = match (
            r.str(kt, "wgsl", "kernel.wgsl")?,
            r.str(kt, "source", "kernel.source")?,
        ) {
            (Some(file), None) => {
                let p = base.join(file);
                std::fs::read_to_string(&p)
                    .map_err(|e| r.err("kernel.wgsl", format!("reading {}: {e}", p.display())))?
            }
            (None, Some(src)) => src,
            (Some(_), Some(_)) => {
                return Err(r.err(
                    "kernel.source",
                    "give kernel.wgsl (a file) or kernel.source, not both",
                ))
            }
            (None, None) => {
                return Err(r.err(
                    "kernel.wgsl",
                    "required for custom: a WGSL file (or kernel.source, the WGSL inline)",
                ))
            }
        };
        let workgroups = r
            .list(
                kt,
                "workgroups",
                "kernel.workgroups",
                nonneg::<u32>,
                "an integer",
            )?
            .unwrap_or_else(|| vec![1, 1, 1]);
        let [x, y, z] = workgroups[..] else {
            return Err(r.err("kernel.workgroups", "give [x, y, z]"));
        };
        KernelSpec::Custom {
            wgsl,
            entry_point: r
                .str(kt, "entry", "kernel.entry")?
                .unwrap_or_else(|| "main".into()),
            workgroups: [x, y, z],
            outputs: r
                .list(
                    kt,
                    "outputs",
                    "kernel.outputs",
                    nonneg::<usize>,
                    "an integer",
                )?
                .ok_or_else(|| {
                    r.err(
                        "kernel.outputs",
                        "required for custom: f32 length of each output",
                    )
                })?,
        }
    } else {
        let lr = r.f64(kt, "lr", "kernel.lr")?.unwrap_or(0.1) as f32;
        let batch = r.int(kt, "batch", "kernel.batch")?.unwrap_or(32);
        let epochs = r.int(kt, "epochs", "kernel.epochs")?.unwrap_or(10);
        builtin_kernel(&ty, lr, batch, epochs)
            .ok_or_else(|| r.err("kernel.type", format!("unknown kernel {ty:?}: {KERNELS}")))?
    };
    let lease = FileLease {
        tenant: r.str(&doc, "tenant", "tenant")?,
        price: r.f64(&doc, "price", "price")?,
        deadline_in: r.f64(&doc, "deadline_in", "deadline_in")?,
        priority: r.int(&doc, "priority", "priority")?,
    };
    let files = r.list(
        &doc,
        "inputs",
        "inputs",
        |v| v.as_str().map(|s| base.join(s)),
        "a path",
    )?;
    let size = r.list(&doc, "size", "size", nonneg::<usize>, "an integer")?;
    let inputs = match (files, size) {
        (Some(_), Some(_)) => return Err(r.err("size", "give inputs or size, not both")),
        (Some(files), None) => files
            .iter()
            .enumerate()
            .map(|(i, p)| read_npy(p).map_err(|e| r.err(&format!("inputs[{i}]"), format!("{e:#}"))))
            .collect::<Result<_>>()?,
        (None, Some(size)) => {
            inputs_of(&kernel, &[], &size).map_err(|e| anyhow!("{}: {e:#}", path.display()))?
        }
        (None, None) => {
            return Err(r.err(
                "inputs",
                "required: the input .npy files (or size = [...] for random inputs)",
            ))
        }
    };
    Ok((GpuJob { kernel, inputs }, lease))
}

/// Writes output tensors as `.npy`: `path` for one, `path.0.npy`, `path.1.npy`, ... for several.
/// Returns the files written.
pub fn write_outputs(path: &Path, outputs: &[Tensor]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(outputs.len());
    for (i, t) in outputs.iter().enumerate() {
        let p = if outputs.len() == 1 {
            path.to_path_buf()
        } else {
            path.with_extension(format!("{i}.npy"))
        };
        std::fs::write(&p, t.to_npy()).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

/// `hearth jobs` subcommands.
#[derive(Subcommand)]
pub enum JobsAction {
    /// Submit a job to the running daemon; it is stored durably before this returns.
    Submit {
        /// The kernel and its inputs (or --spec FILE).
        #[command(flatten)]
        job: Box<JobArgs>,
        /// Who pays (A-Z a-z 0-9 . _ -; default owner). Tenant tokens always act for their own.
        #[arg(long)]
        tenant: Option<String>,
        /// Price per GPU-second (default 0).
        #[arg(long)]
        price: Option<f64>,
        /// Deadline, seconds from now.
        #[arg(long, value_name = "SECONDS")]
        deadline_in: Option<f64>,
        /// Higher runs first among equal deadlines (default 0).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Follow the job with a progress bar until it ends; fail unless it SUCCEEDED.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List jobs, in submission order.
    List {
        /// Only jobs in this state (QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED).
        #[arg(long)]
        state: Option<JobState>,
        #[command(flatten)]
        conn: Conn,
    },
    /// One job: state, progress, usage, lease, times and result digest.
    Get {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a job that has not ended (a running one is stopped at its next chunk).
    Cancel {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a job with a progress bar until it ends; fail unless it SUCCEEDED.
    Watch {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Fetch a finished job's outputs, check their SHA-256 and write them as .npy into DIR.
    Result {
        /// The job id (7 or jobs/7).
        id: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `7` or `jobs/7` → `jobs/7`.
fn job_name(id: &str) -> Result<String> {
    id.strip_prefix("jobs/")
        .unwrap_or(id)
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| format!("jobs/{n}"))
        .ok_or_else(|| anyhow!("{id:?} is not a job id (7 or jobs/7)"))
}

fn job_id(name: &str) -> u64 {
    name.strip_prefix("jobs/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn state_of(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap_or(pb::JobState::Unspecified)
}

fn state_name(j: &pb::Job) -> &'static str {
    state_of(j).as_str_name()
}

fn is_terminal(j: &pb::Job) -> bool {
    matches!(
        state_of(j),
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

fn opt_str(s: &str) -> serde_json::Value {
    if s.is_empty() {
        serde_json::Value::Null
    } else {
        s.into()
    }
}

/// A job as one JSON object; the field names are stable.
fn job_json(j: &pb::Job) -> serde_json::Value {
    let lease = j.lease.clone().unwrap_or_default();
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(unix_s);
    serde_json::json!({
        "id": job_id(&j.name),
        "name": j.name,
        "state": state_name(j),
        "kernel": j.kernel,
        "tenant": lease.tenant,
        "price_per_gpu_second": lease.price_per_gpu_second,
        "deadline_unix_s": time(&lease.deadline),
        "priority": lease.priority,
        "input_shapes": j.input_shapes.iter().map(|t| t.shape.clone()).collect::<Vec<_>>(),
        "create_unix_s": time(&j.create_time),
        "start_unix_s": time(&j.start_time),
        "end_unix_s": time(&j.end_time),
        "units_done": j.units_done,
        "units_total": j.units_total,
        "gpu_seconds": j.gpu_seconds,
        "energy_joules": j.energy_joules,
        "earned": j.earned,
        "result_digest": opt_str(&j.result_digest),
        "error": opt_str(&j.error),
        "history": j.history.iter().map(|c| serde_json::json!({
            "from": state_str(c.from_state),
            "to": state_str(c.to_state),
            "reason": c.reason,
            "unix_s": time(&c.time),
        })).collect::<Vec<_>>(),
    })
}

/// A proto state number's name; `None` for JOB_STATE_UNSPECIFIED (a submission's "from").
fn state_str(n: i32) -> Option<&'static str> {
    match pb::JobState::try_from(n) {
        Ok(pb::JobState::Unspecified) | Err(_) => None,
        Ok(s) => Some(s.as_str_name()),
    }
}

fn progress(j: &pb::Job) -> String {
    if j.units_total > 0 {
        format!("{}/{}", j.units_done, j.units_total)
    } else {
        j.units_done.to_string()
    }
}

/// The table's header line.
fn table_header() -> String {
    format!(
        "{:>6}  {:<9}  {:<11}  {:<12}  {:>10}  {:>8}  {:>9}  {:>10}",
        "ID", "STATE", "KERNEL", "TENANT", "UNITS", "GPU-S", "ENERGY J", "EARNED"
    )
}

/// One table row.
fn job_row(j: &pb::Job) -> String {
    let tenant = j.lease.as_ref().map_or("", |l| l.tenant.as_str());
    let mut row = format!(
        "{:>6}  {:<9}  {:<11}  {:<12}  {:>10}  {:>8.3}  {:>9.1}  {:>10.6}",
        job_id(&j.name),
        state_name(j),
        j.kernel,
        tenant,
        progress(j),
        j.gpu_seconds,
        j.energy_joules,
        j.earned
    );
    if !j.error.is_empty() {
        row.push_str(&format!("  error: {}", one_line(&j.error)));
    }
    row
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map_or("-".into(), |d| {
            d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

/// One job, for people.
fn print_job(j: &pb::Job) {
    let lease = j.lease.clone().unwrap_or_default();
    println!("{}  {}  {}", j.name, state_name(j), j.kernel);
    let shapes: Vec<String> = j
        .input_shapes
        .iter()
        .map(|t| format!("{:?}", t.shape))
        .collect();
    println!("  inputs     {}", shapes.join(" "));
    println!(
        "  lease      tenant {}  price {}/GPU-s  deadline {}  priority {}",
        lease.tenant,
        lease.price_per_gpu_second,
        when(&lease.deadline),
        lease.priority
    );
    println!(
        "  times      created {}  started {}  ended {}",
        when(&j.create_time),
        when(&j.start_time),
        when(&j.end_time)
    );
    println!(
        "  usage      {} units  {:.3} GPU-s  {:.1} J  earned {:.6}",
        progress(j),
        j.gpu_seconds,
        j.energy_joules,
        j.earned
    );
    if !j.error.is_empty() {
        println!("  error      {}", one_line(&j.error));
    }
    for (i, c) in j.history.iter().enumerate() {
        let label = if i == 0 { "history" } else { "" };
        let to = state_str(c.to_state).unwrap_or("?");
        let step = match state_str(c.from_state) {
            Some(from) => format!("{from} -> {to}"),
            None => to.to_string(),
        };
        println!(
            "  {label:<10} {}  {step:<21}  {}",
            when(&c.time),
            one_line(&c.reason)
        );
    }
    if !j.result_digest.is_empty() {
        println!("sha256: {}", j.result_digest);
    }
}

fn now_unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The domain kernel as the proto one.
fn kernel_to(k: &KernelSpec) -> pb::Kernel {
    use pb::kernel::Kind;
    let kind = match k {
        KernelSpec::Matmul => Kind::Matmul(pb::MatmulKernel {}),
        KernelSpec::Softmax => Kind::Softmax(pb::SoftmaxKernel {}),
        KernelSpec::MlpInfer => Kind::MlpInfer(pb::MlpInferKernel {}),
        KernelSpec::Elementwise { op } => Kind::Elementwise(pb::ElementwiseKernel {
            op: match op {
                ElementwiseOp::Add => "add",
                ElementwiseOp::Mul => "mul",
                ElementwiseOp::Relu => "relu",
                ElementwiseOp::Gelu => "gelu",
            }
            .into(),
        }),
        KernelSpec::MlpTrain { lr, batch, epochs } => Kind::MlpTrain(pb::MlpTrainKernel {
            learning_rate: *lr,
            batch: *batch,
            epochs: *epochs,
        }),
        KernelSpec::Custom {
            wgsl,
            entry_point,
            workgroups,
            outputs,
        } => Kind::Custom(pb::CustomKernel {
            wgsl: wgsl.clone(),
            entry_point: entry_point.clone(),
            workgroups: workgroups.to_vec(),
            output_lengths: outputs.iter().map(|&n| n as u64).collect(),
        }),
    };
    pb::Kernel { kind: Some(kind) }
}

fn shape_of(t: &Tensor) -> Vec<u64> {
    t.shape.iter().map(|&d| d as u64).collect()
}

/// Sends `t` with UploadTensor in ~1 MiB messages; returns its name.
async fn upload(c: &mut JobsClient, t: &Tensor) -> Result<String> {
    let bytes = t.le_bytes();
    let mut msgs: Vec<pb::UploadTensorRequest> = bytes
        .chunks(UPLOAD_CHUNK)
        .map(|c| pb::UploadTensorRequest {
            shape: Vec::new(),
            data: c.to_vec(),
        })
        .collect();
    drop(bytes);
    if msgs.is_empty() {
        msgs.push(pb::UploadTensorRequest::default());
    }
    msgs[0].shape = shape_of(t);
    let r = c
        .upload_tensor(tokio_stream::iter(msgs))
        .await
        .map_err(grpc)?
        .into_inner();
    Ok(r.name)
}

/// The job's inputs: inline while they are small, uploaded first otherwise.
async fn send_inputs(c: &mut JobsClient, inputs: &[Tensor]) -> Result<Vec<pb::TensorInput>> {
    use pb::tensor_input::Source;
    let mut inline = 0usize;
    let mut out = Vec::with_capacity(inputs.len());
    for (i, t) in inputs.iter().enumerate() {
        let n = t.bytes();
        let source = if n <= MAX_INLINE_TENSOR_BYTES && inline + n <= INLINE_BUDGET {
            inline += n;
            Source::Inline(pb::Tensor {
                shape: shape_of(t),
                data: t.le_bytes(),
            })
        } else {
            Source::Uploaded(
                upload(c, t)
                    .await
                    .with_context(|| format!("uploading input {i} ({n} bytes)"))?,
            )
        };
        out.push(pb::TensorInput {
            source: Some(source),
        });
    }
    Ok(out)
}

/// The progress bar of `watch` and `submit --wait` (drawn on stderr only when it is a terminal;
/// cleared when dropped).
fn progress_bar(name: &str) -> Result<indicatif::ProgressBar> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
    let style = ProgressStyle::with_template(
        "{spinner} {prefix} [{bar:30}] {pos}/{len} units  {msg} ({elapsed})",
    )
    .context("the progress bar's template")?
    .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(name.to_string())
        .with_finish(ProgressFinish::AndClear);
    bar.enable_steady_tick(Duration::from_millis(120));
    Ok(bar)
}

fn update_bar(bar: &indicatif::ProgressBar, j: &pb::Job) {
    if j.units_total > 0 {
        bar.set_length(j.units_total);
    }
    bar.set_position(j.units_done);
    bar.set_message(format!(
        "{}  {:.2} GPU-s  {:.1} J",
        state_name(j),
        j.gpu_seconds,
        j.energy_joules
    ));
}

/// Follows `name` until it ends: a progress bar (none with `--json`), then the final job; fails
/// unless it SUCCEEDED.
async fn follow(c: &mut JobsClient, name: &str, json: bool) -> Result<()> {
    let mut stream = c
        .watch_job(pb::WatchJobRequest { name: name.into() })
        .await
        .map_err(grpc)?
        .into_inner();
    let bar = if json {
        None
    } else {
        Some(progress_bar(name)?)
    };
    let mut last: Option<pb::Job> = None;
    while let Some(ev) = stream.message().await.map_err(grpc)? {
        if let Some(j) = ev.job {
            if let Some(b) = &bar {
                update_bar(b, &j);
            }
            last = Some(j);
        }
    }
    drop(bar);
    let job = match last {
        Some(j) if is_terminal(&j) => j,
        // The stream ended early (the daemon is stopping): ask once more.
        _ => c
            .get_job(pb::GetJobRequest { name: name.into() })
            .await
            .map_err(grpc)?
            .into_inner(),
    };
    if !is_terminal(&job) {
        bail!(
            "{name} is still {} but the daemon closed the stream (stopping?); follow it again with `hearth jobs watch {}`",
            state_name(&job),
            job_id(name)
        );
    }
    if json {
        println!("{}", job_json(&job));
    } else {
        println!("{}", job_row(&job));
        if !job.result_digest.is_empty() {
            println!("sha256: {}", job.result_digest);
        }
    }
    if state_of(&job) != pb::JobState::Succeeded {
        let why = if job.error.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&job.error))
        };
        bail!("{name} ended {}{why}", state_name(&job));
    }
    Ok(())
}

/// Splits a result stream's bytes into the outputs after checking them against the digest.
fn assemble(digest: &str, shapes: &[pb::Tensor], data: &[u8]) -> Result<Vec<Tensor>> {
    let got = hex::encode(Sha256::digest(data));
    if got != digest {
        bail!("refusing the result: its data hashes to sha256 {got}, but the daemon's digest is {digest:?}");
    }
    let mut outputs = Vec::with_capacity(shapes.len());
    let mut at = 0usize;
    for (i, s) in shapes.iter().enumerate() {
        let shape: Vec<usize> = s
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .with_context(|| format!("output {i}: dimension too large"))?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|v| v.checked_mul(4))
            .with_context(|| format!("output {i}: shape {shape:?} overflows"))?;
        let bytes = data
            .get(at..at.saturating_add(n))
            .with_context(|| format!("output {i}: the result ends early"))?;
        at += n;
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        outputs.push(Tensor::new(shape, values).with_context(|| format!("output {i}"))?);
    }
    if at != data.len() {
        bail!(
            "the result has {} bytes past its outputs' shapes",
            data.len() - at
        );
    }
    Ok(outputs)
}

fn one_line_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}", one_line(&e.to_string()))
}

async fn submit(job: GpuJob, lease: Lease, wait: bool, conn: &Conn) -> Result<()> {
    let mut c = conn.jobs().await?;
    let inputs = send_inputs(&mut c, &job.inputs).await?;
    let req = pb::SubmitJobRequest {
        job: Some(pb::JobSpec {
            kernel: Some(kernel_to(&job.kernel)),
            inputs,
            lease: Some(pb::Lease {
                tenant: lease.tenant,
                price_per_gpu_second: lease.price_per_gpu_second,
                deadline: lease.deadline_unix_s.map(hearth::api::convert::timestamp),
                priority: lease.priority,
            }),
        }),
    };
    drop(job);
    let j = c.submit_job(req).await.map_err(grpc)?.into_inner();
    if wait {
        return follow(&mut c, &j.name, conn.json).await;
    }
    if conn.json {
        println!("{}", job_json(&j));
    } else {
        println!("{} queued", j.name);
    }
    Ok(())
}

/// Runs a `hearth jobs` command against the daemon.
pub fn run(action: JobsAction) -> Result<()> {
    match action {
        JobsAction::Submit {
            job,
            tenant,
            price,
            deadline_in,
            priority,
            wait,
            conn,
        } => {
            let (gpu_job, file) = job.load()?;
            // The lease: the flags, then the job file's keys, then the defaults.
            let deadline_in = deadline_in.or(file.deadline_in);
            let spec = JobSpec {
                job: gpu_job,
                lease: Lease {
                    tenant: tenant.or(file.tenant).unwrap_or_else(|| "owner".into()),
                    price_per_gpu_second: price.or(file.price).unwrap_or(0.0),
                    deadline_unix_s: deadline_in.map(|d| now_unix_s() + d),
                    priority: priority.or(file.priority).unwrap_or(0),
                },
            };
            // Obvious mistakes fail here, before the network: the spec's own checks, and the
            // kernel's (arity, shapes, WGSL) against the default limits and the WebGPU default
            // binding size. The daemon checks again against its limits and device.
            spec.validate().map_err(one_line_err)?;
            spec.job
                .plan(&JobLimits::default(), 128 << 20)
                .map_err(one_line_err)?;
            rt()?.block_on(submit(spec.job, spec.lease, wait, &conn))
        }
        JobsAction::List { state, conn } => rt()?.block_on(async move {
            let mut c = conn.jobs().await?;
            let state = state.map_or(0, |s| state_to(s) as i32);
            let mut page_token = String::new();
            if !conn.json {
                println!("{}", table_header());
            }
            loop {
                let r = c
                    .list_jobs(pb::ListJobsRequest {
                        page_size: 1000,
                        page_token,
                        state,
                    })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                for j in &r.jobs {
                    if conn.json {
                        println!("{}", job_json(j));
                    } else {
                        println!("{}", job_row(j));
                    }
                }
                if r.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = r.next_page_token;
            }
        }),
        JobsAction::Get { id, conn } => {
            let name = job_name(&id)?;
            rt()?.block_on(async move {
                let j = conn
                    .jobs()
                    .await?
                    .get_job(pb::GetJobRequest { name })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                if conn.json {
                    println!("{}", job_json(&j));
                } else {
                    print_job(&j);
                }
                Ok(())
            })
        }
        JobsAction::Cancel { id, conn } => {
            let name = job_name(&id)?;
            rt()?.block_on(async move {
                let j = conn
                    .jobs()
                    .await?
                    .cancel_job(pb::CancelJobRequest { name })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                if conn.json {
                    println!("{}", job_json(&j));
                } else {
                    println!("{} {}", j.name, state_name(&j));
                }
                Ok(())
            })
        }
        JobsAction::Watch { id, conn } => {
            let name = job_name(&id)?;
            rt()?.block_on(async move {
                let mut c = conn.jobs().await?;
                follow(&mut c, &name, conn.json).await
            })
        }
        JobsAction::Result { id, out, conn } => {
            let name = job_name(&id)?;
            rt()?.block_on(async move {
                let mut stream = conn
                    .jobs()
                    .await?
                    .get_job_result(pb::GetJobResultRequest { name: name.clone() })
                    .await
                    .map_err(grpc)?
                    .into_inner();
                let first = stream
                    .message()
                    .await
                    .map_err(grpc)?
                    .with_context(|| format!("the daemon sent no result for {name}"))?;
                let mut data = first.data;
                while let Some(chunk) = stream.message().await.map_err(grpc)? {
                    data.extend_from_slice(&chunk.data);
                }
                let outputs = assemble(&first.digest, &first.outputs, &data)
                    .with_context(|| name.clone())?;
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let files =
                    write_outputs(&out.join(format!("job-{}.npy", job_id(&name))), &outputs)?;
                if conn.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": job_id(&name), "name": name, "sha256": first.digest,
                            "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                        })
                    );
                } else {
                    for f in &files {
                        println!("wrote {}", f.display());
                    }
                    println!("sha256: {}", first.digest);
                }
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_take_both_forms() {
        assert_eq!(job_name("7").unwrap(), "jobs/7");
        assert_eq!(job_name("jobs/7").unwrap(), "jobs/7");
        assert!(job_name("0").is_err() && job_name("x").is_err() && job_name("jobs/").is_err());
    }

    #[test]
    fn a_result_whose_data_does_not_match_its_digest_is_refused() {
        let t = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let u = Tensor::new(vec![3], vec![5.0, 6.0, 7.0]).unwrap();
        let digest = hearth::gpu::tensor::digest(&[t.clone(), u.clone()]);
        let shapes: Vec<pb::Tensor> = [&t, &u]
            .iter()
            .map(|t| pb::Tensor {
                shape: shape_of(t),
                data: Vec::new(),
            })
            .collect();
        let mut data = t.le_bytes();
        data.extend(u.le_bytes());
        assert_eq!(assemble(&digest, &shapes, &data).unwrap(), vec![t, u]);
        data[0] ^= 1;
        let err = assemble(&digest, &shapes, &data).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        // Right digest, wrong length for the shapes.
        let short = &data[..8];
        let d = hex::encode(Sha256::digest(short));
        assert!(assemble(&d, &shapes, short).is_err());
    }

    #[test]
    fn a_job_file_names_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.toml");
        let a = dir.path().join("a.npy");
        std::fs::write(&a, Tensor::new(vec![2, 3], vec![1.0; 6]).unwrap().to_npy()).unwrap();
        std::fs::write(
            dir.path().join("b.npy"),
            Tensor::new(vec![3, 2], vec![2.0; 6]).unwrap().to_npy(),
        )
        .unwrap();
        std::fs::write(
            &p,
            "inputs = [\"a.npy\", \"b.npy\"]\ntenant = \"acme\"\nprice = 0.5\ndeadline_in = 60\npriority = -2\n[kernel]\ntype = \"matmul\"\n",
        )
        .unwrap();
        let (job, lease) = load_spec(&p).unwrap();
        assert_eq!(job.kernel, KernelSpec::Matmul);
        assert_eq!(job.inputs[1].shape, vec![3, 2]);
        assert_eq!(
            lease,
            FileLease {
                tenant: Some("acme".into()),
                price: Some(0.5),
                deadline_in: Some(60.0),
                priority: Some(-2)
            }
        );
        for (text, key) in [
            ("kernel = \"mlp_train\"\nsize = [8,2,4,2]\n[x]\n", "`x`"),
            (
                "[kernel]\ntype = \"mlp_train\"\nlrr = 0.1\n",
                "`kernel.lrr`",
            ),
            ("[kernel]\ntype = \"matmul\"\nlr = 0.1\n", "`kernel.lr`"),
            (
                "[kernel]\ntype = \"mlp_train\"\nepochs = \"ten\"\n",
                "`kernel.epochs`",
            ),
            ("kernel = \"matmull\"\n", "`kernel.type`"),
            (
                "kernel = \"matmul\"\ninputs = [\"nope.npy\"]\n",
                "`inputs[0]`",
            ),
            ("kernel = \"matmul\"\nprice = \"free\"\n", "`price`"),
            (
                "[kernel]\ntype = \"elementwise\"\nop = \"pow\"\n",
                "`kernel.op`",
            ),
            (
                "[kernel]\ntype = \"custom\"\noutputs = [4]\n",
                "`kernel.wgsl`",
            ),
            ("tenant = \"x\"\n", "`kernel`"),
            ("kernel = \n", "not valid TOML"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = format!("{:#}", load_spec(&p).unwrap_err());
            assert!(
                err.contains(key) && err.lines().count() == 1,
                "{text:?}: {err}"
            );
        }
        // An elementwise op by its short name, with random inputs.
        std::fs::write(&p, "kernel = \"relu\"\nsize = [16]\n").unwrap();
        let (job, _) = load_spec(&p).unwrap();
        assert_eq!(job.inputs[0].shape, vec![16]);
    }
}
