//! The kernel and its inputs as `hearth gpu run` and `hearth jobs submit` take them: KERNEL and
//! its flags, or `--spec FILE`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::kernels::ElementwiseOp;
use hearth::gpu::tensor::Tensor;

use super::spec::load_spec;

/// The kernel names `KERNEL` and a job file's `kernel.type` take.
pub(super) const KERNELS: &str =
    "matmul, add, mul, relu, gelu, softmax, mlp_infer, mlp_train or custom";

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
pub(super) fn builtin_kernel(name: &str, lr: f32, batch: u32, epochs: u32) -> Option<KernelSpec> {
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

/// Reads a `.npy` file, its path in every error.
pub(super) fn read_npy(p: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Tensor::from_npy(&bytes).with_context(|| p.display().to_string())
}

/// The inputs: the files given, or random ones of `size`.
pub(super) fn inputs_of(
    kernel: &KernelSpec,
    files: &[PathBuf],
    size: &[usize],
) -> Result<Vec<Tensor>> {
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
