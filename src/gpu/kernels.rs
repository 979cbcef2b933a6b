//! The kernel catalog: the WGSL in `shaders/` (compiled into the binary), each kernel's `Params`
//! uniform, its dispatch geometry for a range of work, and the pipelines built on a device.
//!
//! Conventions every kernel keeps (custom ones too): everything is in bind group 0; binding 0 is a
//! uniform `Params` whose first two fields are the `[start, end)` range of this dispatch; the other
//! bindings are storage buffers of little-endian f32 (u32 for labels). Workgroup grids are 2-D
//! with x ≤ 65535, so that no range needs more than the WebGPU default limit per dimension.

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use super::device::Gpu;
use super::validate::{self, ResourceKind};

mod template;

/// WGSL sources, embedded at compile time.
pub mod source {
    /// The template of the tuned matmuls for CPU-type adapters (lavapipe): register-blocked, no
    /// workgroup memory, A shared through subgroup broadcasts; expanded per family member.
    pub const MATMUL_CPU_TEMPLATE: &str = include_str!("../../shaders/matmul_cpu.tmpl.wgsl");
    /// The tuned matmul for GPUs: tiled in workgroup memory, register-blocked.
    pub const MATMUL_GPU: &str = include_str!("../../shaders/matmul_gpu.wgsl");
    /// One output per invocation: the baseline the tuned kernels are measured against.
    pub const MATMUL_NAIVE: &str = include_str!("../../shaders/matmul_naive.wgsl");
    /// add, mul, relu, gelu.
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    /// Row-wise, numerically stable softmax.
    pub const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
    /// Batch inference of a 2-layer MLP.
    pub const MLP_INFER: &str = include_str!("../../shaders/mlp_infer.wgsl");
    /// Minibatch SGD of a 2-layer MLP: forward, backward, update.
    pub const MLP_TRAIN: &str = include_str!("../../shaders/mlp_train.wgsl");
}

/// A kernel that cannot be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// naga rejected the WGSL (its diagnostics follow).
    #[error("invalid WGSL: {0}")]
    Invalid(String),
    /// The bindings are not what the kernel convention needs.
    #[error("{0}")]
    Bindings(String),
    /// An entry point the caller named does not exist.
    #[error("no compute entry point {0:?}")]
    NoEntry(String),
}

/// WebGPU's default `max_compute_workgroups_per_dimension`.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// A grid of workgroups covering `invocations` invocations, `wg` per group.
pub fn grid(invocations: u64, wg: u32) -> [u32; 3] {
    let groups = invocations.div_ceil(wg as u64);
    if groups <= MAX_GROUPS_PER_DIM as u64 {
        return [groups as u32, 1, 1];
    }
    // Callers bound a chunk far below 65535² groups (`Job::max_units_per_chunk`).
    let y = groups
        .div_ceil(MAX_GROUPS_PER_DIM as u64)
        .min(MAX_GROUPS_PER_DIM as u64);
    [MAX_GROUPS_PER_DIM, y as u32, 1]
}

/// `matmul*.wgsl` Params: C\[row_start..row_end\] = A·B for M×K A and K×N B.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct MatmulParams {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of B and C.
    pub n: u32,
    /// Columns of A, rows of B.
    pub k: u32,
    /// First output row of this dispatch.
    pub row_start: u32,
    /// One past the last output row.
    pub row_end: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// Elementwise operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u32)]
pub enum ElementwiseOp {
    /// a + b.
    Add = 0,
    /// a · b.
    Mul = 1,
    /// max(a, 0).
    Relu = 2,
    /// GELU, tanh approximation.
    Gelu = 3,
}

impl ElementwiseOp {
    /// Whether the op takes two inputs.
    pub fn binary(self) -> bool {
        matches!(self, Self::Add | Self::Mul)
    }
}

/// `elementwise.wgsl` Params: elements `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct ElementwiseParams {
    /// First element.
    pub start: u32,
    /// One past the last element.
    pub end: u32,
    /// [`ElementwiseOp`] as u32.
    pub op: u32,
    /// Padding.
    pub pad: u32,
}

/// `softmax.wgsl` Params: rows `[start, end)` of a rows × cols matrix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct SoftmaxParams {
    /// First row.
    pub start: u32,
    /// One past the last row.
    pub end: u32,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
}

/// `mlp_infer.wgsl` Params: batch rows `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct MlpInferParams {
    /// First row.
    pub start: u32,
    /// One past the last row.
    pub end: u32,
    /// Batch rows.
    pub batch: u32,
    /// Input features.
    pub d: u32,
    /// Hidden units.
    pub hd: u32,
    /// Classes.
    pub c: u32,
    /// Padding.
    pub pad: [u32; 2],
}

/// `mlp_train.wgsl` Params of one SGD step `s` (`start = s`, `end = s + 1`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct MlpTrainParams {
    /// The step.
    pub start: u32,
    /// The step + 1.
    pub end: u32,
    /// Samples.
    pub n: u32,
    /// Input features.
    pub d: u32,
    /// Hidden units.
    pub hd: u32,
    /// Classes.
    pub c: u32,
    /// Minibatch size.
    pub batch: u32,
    /// ceil(n / batch).
    pub steps_per_epoch: u32,
    /// Epochs.
    pub epochs: u32,
    /// Learning rate.
    pub lr: f32,
    /// Padding.
    pub pad: [u32; 2],
}

const _: () = {
    assert!(std::mem::size_of::<MatmulParams>() == 32);
    assert!(std::mem::size_of::<ElementwiseParams>() == 16);
    assert!(std::mem::size_of::<SoftmaxParams>() == 16);
    assert!(std::mem::size_of::<MlpInferParams>() == 32);
    assert!(std::mem::size_of::<MlpTrainParams>() == 48);
};

/// The shape of a training job: what the step → minibatch mapping depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainShape {
    /// Samples.
    pub n: u32,
    /// Input features.
    pub d: u32,
    /// Hidden units.
    pub hd: u32,
    /// Classes.
    pub c: u32,
    /// Minibatch size.
    pub batch: u32,
    /// Epochs.
    pub epochs: u32,
}

impl TrainShape {
    /// ceil(n / batch).
    pub fn steps_per_epoch(&self) -> u32 {
        self.n.div_ceil(self.batch)
    }

    /// All steps of the job.
    pub fn total_steps(&self) -> u64 {
        self.epochs as u64 * self.steps_per_epoch() as u64
    }

    /// (epoch, first sample, batch size) of step `s`; the last batch of an epoch may be short.
    pub fn step_batch(&self, s: u32) -> (u32, u32, u32) {
        let spe = self.steps_per_epoch();
        let off = (s % spe) * self.batch;
        (s / spe, off, self.batch.min(self.n - off))
    }

    /// Floats of scratch: batch · (2·hd + c + 1).
    pub fn scratch_len(&self) -> usize {
        self.batch as usize * (2 * self.hd as usize + self.c as usize + 1)
    }

    /// The four (entry point, grid) dispatches of step `s`, in order.
    pub fn step_dispatches(&self, s: u32) -> [(&'static str, [u32; 3]); 4] {
        let (_, _, bs) = self.step_batch(s);
        let (bs, hd, d, c) = (bs as u64, self.hd as u64, self.d as u64, self.c as u64);
        [
            ("fwd_hidden", grid(bs * hd, 256)),
            ("softmax_ce", grid(bs, 64)),
            ("backward_hidden", grid(bs * hd, 256)),
            ("update", grid(d * hd + hd + hd * c + c + 1, 256)),
        ]
    }
}

/// A compiled WGSL module: one bind group layout (derived from the module's declared bindings)
/// shared by a pipeline per compute entry point.
pub struct Kernel {
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<(String, wgpu::ComputePipeline)>,
    /// Bytes of the Params uniform at binding 0.
    pub params_size: u64,
    /// Binding 0 takes a dynamic offset (one Params slot per step).
    pub dynamic: bool,
    /// Storage bindings 1.., with whether each is read-only.
    pub storage: Vec<(u32, bool)>,
    /// Each entry point's workgroup size.
    pub workgroup_sizes: Vec<(String, [u32; 3])>,
}

impl Kernel {
    /// Validates `src` and builds its pipelines.
    pub fn new(gpu: &Gpu, src: &str, label: &str, dynamic: bool) -> Result<Self, KernelError> {
        let info = validate::validate_catalog(src, label).map_err(KernelError::Invalid)?;
        Self::from_module(gpu, info, label, dynamic)
    }

    /// Builds the pipelines of an already validated module.
    pub fn from_module(
        gpu: &Gpu,
        info: validate::WgslInfo,
        label: &str,
        dynamic: bool,
    ) -> Result<Self, KernelError> {
        let mut entries = Vec::new();
        let mut params_size = 0;
        let mut storage = Vec::new();
        for b in &info.bindings {
            let what = format!("{label}: @group({}) @binding({})", b.group, b.binding);
            if b.group != 0 {
                return Err(KernelError::Bindings(format!(
                    "{what}: only group 0 is bound"
                )));
            }
            let ty = match (&b.kind, b.binding) {
                (ResourceKind::Uniform, 0) => {
                    params_size = b.type_size as u64;
                    wgpu::BufferBindingType::Uniform
                }
                (ResourceKind::Storage { read_only }, n) if n > 0 => {
                    storage.push((n, *read_only));
                    wgpu::BufferBindingType::Storage {
                        read_only: *read_only,
                    }
                }
                (k, n) => {
                    return Err(KernelError::Bindings(format!(
                        "{what}: binding 0 must be the uniform Params and bindings 1.. storage buffers; got {k:?} at {n}"
                    )))
                }
            };
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: b.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: dynamic && b.binding == 0,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        if params_size == 0 {
            return Err(KernelError::Bindings(format!(
                "{label}: @group(0) @binding(0) must be a uniform Params struct starting with start: u32, end: u32"
            )));
        }
        let dev = &gpu.device;
        let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &entries,
        });
        let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let workgroup_sizes: Vec<(String, [u32; 3])> = info
            .entry_points
            .iter()
            .filter(|e| e.stage == "Compute")
            .map(|e| (e.name.clone(), e.workgroup_size))
            .collect();
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(info.module)),
        });
        let pipelines = workgroup_sizes
            .iter()
            .map(|(name, _)| {
                let p = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: Some(&pl),
                    module: &module,
                    entry_point: Some(name),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (name.clone(), p)
            })
            .collect();
        Ok(Self {
            layout,
            pipelines,
            params_size,
            dynamic,
            storage,
            workgroup_sizes,
        })
    }

    /// The pipeline of entry point `name`.
    pub fn pipeline(&self, name: &str) -> Result<&wgpu::ComputePipeline, KernelError> {
        self.pipelines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .ok_or_else(|| KernelError::NoEntry(name.to_string()))
    }

    /// A bind group: `params` at binding 0 (its first `params_size` bytes, or a window at a
    /// dynamic offset), `storage` at bindings 1.. in order.
    pub fn bind_group(
        &self,
        gpu: &Gpu,
        params: &wgpu::Buffer,
        storage: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: 0,
                size: NonZeroU64::new(self.params_size),
            }),
        }];
        for (i, b) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Encodes the dispatches `(entry, grid)` with one bind group, in one compute pass.
    pub fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        bind: &wgpu::BindGroup,
        dispatches: &[(&str, [u32; 3])],
    ) -> Result<(), KernelError> {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_bind_group(0, bind, &[]);
        for (entry, g) in dispatches {
            if g.contains(&0) {
                continue;
            }
            pass.set_pipeline(self.pipeline(entry)?);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
        Ok(())
    }
}

/// Which matmul variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatmulVariant {
    /// Register-blocked, no workgroup memory: fastest on CPU adapters, where barriers are costly.
    Cpu,
    /// `Cpu` with vec4 loads, for K and N multiples of 4.
    CpuVec4,
    /// Tiled in workgroup memory and register-blocked: for GPUs.
    Gpu,
    /// One output per invocation (the baseline).
    Naive,
}

/// A member of the CPU-adapter matmul family: the parameters `shaders/matmul_cpu.tmpl.wgsl` is
/// expanded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuMatmul {
    /// The entry point (and kernel label).
    entry: &'static str,
    /// Output rows per workgroup, a multiple of 8 (A is shared by groups of 8 lanes).
    rows: u32,
    /// A and B are bound as vec4s: K and N must be multiples of 4.
    vec4: bool,
}

impl CpuMatmul {
    /// Lanes per workgroup.
    const LANES: u32 = 64;
    /// Contiguous output columns per lane (one vec4 accumulator per row).
    const COLS_PER_LANE: u32 = 4;
    /// [`MatmulVariant::Cpu`]: any M, N, K.
    const ANY: Self = Self {
        entry: "matmul_cpu",
        rows: 24,
        vec4: false,
    };
    /// [`MatmulVariant::CpuVec4`]: K and N multiples of 4.
    const VEC4: Self = Self {
        entry: "matmul_cpu_v4",
        rows: 32,
        vec4: true,
    };

    /// The WGSL of this member.
    fn source(self) -> Result<String, KernelError> {
        use template::Value::{Int, Str};
        let elem = if self.vec4 { "vec4<f32>" } else { "f32" };
        let params = [
            ("ENTRY", Str(self.entry)),
            ("ELEM", Str(elem)),
            ("TM", Int(self.rows.into())),
            ("WG", Int(Self::LANES.into())),
            ("VEC4", Int(self.vec4.into())),
        ];
        template::expand(source::MATMUL_CPU_TEMPLATE, &params)
            .map_err(|e| KernelError::Invalid(format!("{}: {e}", self.entry)))
    }

    /// (entry point, output rows, output columns) of one workgroup.
    fn tile(self) -> (&'static str, u32, u32) {
        (self.entry, self.rows, Self::LANES * Self::COLS_PER_LANE)
    }
}

/// Every catalog kernel, built on one device.
pub struct Catalog {
    /// Whether the CPU-adapter matmuls apply (a CPU adapter with subgroups of at least 8 lanes).
    pub cpu_matmul: bool,
    /// Register-blocked matmul for CPU adapters (any size).
    pub matmul_cpu: Option<Kernel>,
    /// Its vec4 fast path.
    pub matmul_cpu_v4: Option<Kernel>,
    /// Workgroup-memory tiled matmul for GPUs.
    pub matmul_gpu: Kernel,
    /// The naive matmul (baseline).
    pub matmul_naive: Kernel,
    /// add, mul, relu, gelu.
    pub elementwise: Kernel,
    /// Row-wise softmax.
    pub softmax: Kernel,
    /// MLP inference.
    pub mlp_infer: Kernel,
    /// MLP training (dynamic Params offset, one slot per step).
    pub mlp_train: Kernel,
}

impl Catalog {
    /// Builds every catalog kernel on `gpu`.
    pub fn new(gpu: &Gpu) -> Result<Self, KernelError> {
        let s = &gpu.summary;
        let cpu_matmul = s.software && s.subgroups && s.subgroup_min_size >= 8;
        let cpu = |m: CpuMatmul| -> Result<Option<Kernel>, KernelError> {
            Ok(match cpu_matmul {
                true => Some(Kernel::new(gpu, &m.source()?, m.entry, false)?),
                false => None,
            })
        };
        Ok(Self {
            cpu_matmul,
            matmul_cpu: cpu(CpuMatmul::ANY)?,
            matmul_cpu_v4: cpu(CpuMatmul::VEC4)?,
            matmul_gpu: Kernel::new(gpu, source::MATMUL_GPU, "matmul_gpu", false)?,
            matmul_naive: Kernel::new(gpu, source::MATMUL_NAIVE, "matmul_naive", false)?,
            elementwise: Kernel::new(gpu, source::ELEMENTWISE, "elementwise", false)?,
            softmax: Kernel::new(gpu, source::SOFTMAX, "softmax", false)?,
            mlp_infer: Kernel::new(gpu, source::MLP_INFER, "mlp_infer", false)?,
            mlp_train: Kernel::new(gpu, source::MLP_TRAIN, "mlp_train", true)?,
        })
    }

    /// The tuned variant for an M×K by K×N product on this device: on CPU adapters the
    /// register-blocked kernels (vec4 when K and N allow), elsewhere the tiled one.
    pub fn tuned_matmul(&self, n: u32, k: u32) -> MatmulVariant {
        match (self.cpu_matmul, n.is_multiple_of(4) && k.is_multiple_of(4)) {
            (true, true) => MatmulVariant::CpuVec4,
            (true, false) => MatmulVariant::Cpu,
            (false, _) => MatmulVariant::Gpu,
        }
    }

    /// The kernel of a matmul variant (the CPU ones only where they apply).
    pub fn matmul(&self, v: MatmulVariant) -> Option<&Kernel> {
        match v {
            MatmulVariant::Cpu => self.matmul_cpu.as_ref(),
            MatmulVariant::CpuVec4 => self.matmul_cpu_v4.as_ref(),
            MatmulVariant::Gpu => Some(&self.matmul_gpu),
            MatmulVariant::Naive => Some(&self.matmul_naive),
        }
    }
}

/// The entry point and grid of one matmul dispatch over `rows` output rows of an M×N result.
pub fn matmul_dispatch(v: MatmulVariant, n: u32, rows: u32) -> (&'static str, [u32; 3]) {
    let (entry, rows_per_wg, cols_per_wg) = match v {
        MatmulVariant::Cpu => CpuMatmul::ANY.tile(),
        MatmulVariant::CpuVec4 => CpuMatmul::VEC4.tile(),
        MatmulVariant::Gpu => ("matmul_gpu", 64, 64),
        MatmulVariant::Naive => ("matmul_naive", 16, 16),
    };
    (
        entry,
        [n.div_ceil(cols_per_wg), rows.div_ceil(rows_per_wg), 1],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_matmul_family_expands_to_valid_wgsl() {
        let storage = |read_only| ResourceKind::Storage { read_only };
        for m in [CpuMatmul::ANY, CpuMatmul::VEC4] {
            let src = m.source().unwrap();
            let info = validate::validate_catalog(&src, m.entry).unwrap_or_else(|e| panic!("{e}"));
            let entries: Vec<_> = info
                .entry_points
                .iter()
                .map(|e| (e.name.as_str(), e.stage.as_str(), e.workgroup_size))
                .collect();
            assert_eq!(entries, [(m.entry, "Compute", [CpuMatmul::LANES, 1, 1])]);
            let bindings: Vec<_> = info
                .bindings
                .iter()
                .map(|b| (b.group, b.binding, b.kind.clone()))
                .collect();
            let expected = [
                (0, 0, ResourceKind::Uniform),
                (0, 1, storage(true)),
                (0, 2, storage(true)),
                (0, 3, storage(false)),
            ];
            assert_eq!(bindings, expected, "{}", m.entry);
            let params = std::mem::size_of::<MatmulParams>() as u32;
            assert_eq!(info.bindings[0].type_size, params, "{}", m.entry);
        }
    }

    #[test]
    fn cpu_matmul_dispatch_covers_its_tiles() {
        // 64 lanes of 4 columns: 256 columns per workgroup; 24 or 32 rows.
        assert_eq!(
            matmul_dispatch(MatmulVariant::Cpu, 257, 25),
            ("matmul_cpu", [2, 2, 1])
        );
        assert_eq!(
            matmul_dispatch(MatmulVariant::CpuVec4, 256, 64),
            ("matmul_cpu_v4", [1, 2, 1])
        );
    }
}
