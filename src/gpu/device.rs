//! Adapter selection, the device and queue, buffer helpers, and device-loss detection.
//!
//! `auto` prefers a hardware adapter (discrete, then integrated, then virtual) and falls back to a
//! software one (lavapipe, device type `Cpu`). Loss of the device — a driver reset, a removed card,
//! or `Device::destroy` — sets a flag the runner checks after every chunk; the runner then opens a
//! new device on the same adapter and resumes the job from its last checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wgpu::util::DeviceExt;

/// A GPU failure.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GpuError {
    /// No adapter matched the selection.
    #[error("no GPU adapter found ({0}); for the software GPU install Mesa's lavapipe: apt-get install mesa-vulkan-drivers")]
    NoAdapter(String),
    /// The adapter refused to open a device.
    #[error("cannot open a device on {adapter}: {msg}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// The cause.
        msg: String,
    },
    /// The device was lost; the work in flight is retryable on a new device.
    #[error("GPU device lost: {0}")]
    Lost(String),
    /// Waiting for the queue or mapping a buffer failed.
    #[error("GPU: {0}")]
    Io(String),
    /// An unknown adapter selector.
    #[error("gpu.adapter {0:?}: expected auto, software, name:SUBSTRING or backend:vulkan|gl|metal|dx12")]
    Selector(String),
}

/// Which adapter to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum AdapterChoice {
    /// Hardware if there is one, else software.
    Auto,
    /// A software adapter only (lavapipe).
    Software,
    /// The first adapter whose name contains this (case-insensitive).
    Name(String),
    /// The best adapter of one backend.
    Backend(wgpu::Backend),
}

impl std::str::FromStr for AdapterChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        let bad = || GpuError::Selector(s.to_string());
        Ok(match s {
            "auto" => Self::Auto,
            "software" => Self::Software,
            _ => {
                if let Some(n) = s.strip_prefix("name:").filter(|n| !n.is_empty()) {
                    Self::Name(n.to_string())
                } else if let Some(b) = s.strip_prefix("backend:") {
                    Self::Backend(match b {
                        "vulkan" => wgpu::Backend::Vulkan,
                        "gl" => wgpu::Backend::Gl,
                        "metal" => wgpu::Backend::Metal,
                        "dx12" => wgpu::Backend::Dx12,
                        _ => return Err(bad()),
                    })
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

impl TryFrom<String> for AdapterChoice {
    type Error = GpuError;
    fn try_from(s: String) -> Result<Self, GpuError> {
        s.parse()
    }
}

impl From<AdapterChoice> for String {
    fn from(c: AdapterChoice) -> String {
        match c {
            AdapterChoice::Auto => "auto".into(),
            AdapterChoice::Software => "software".into(),
            AdapterChoice::Name(n) => format!("name:{n}"),
            AdapterChoice::Backend(b) => format!("backend:{}", b.to_str()),
        }
    }
}

/// What the status snapshot and `hearth gpu info` show of the adapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, ...
    pub backend: String,
    /// DiscreteGpu, Cpu, ...
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// A software rasteriser (lavapipe, WARP, SwiftShader).
    pub software: bool,
    /// Subgroup operations are available (and enabled on the device).
    pub subgroups: bool,
    /// Smallest subgroup size.
    pub subgroup_min_size: u32,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Storage buffers per shader stage.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Optional features the adapter has.
    pub features: Vec<String>,
}

/// An open device on a chosen adapter.
pub struct Gpu {
    adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's identity and limits.
    pub summary: AdapterSummary,
    lost: Arc<AtomicBool>,
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Every adapter wgpu can see (honours `WGPU_BACKEND`).
pub fn adapters() -> Vec<wgpu::Adapter> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

fn choose(choice: &AdapterChoice) -> Result<wgpu::Adapter, GpuError> {
    let mut all = adapters();
    all.sort_by_key(|a| {
        let i = a.get_info();
        // Among equals prefer Vulkan, the backend lavapipe and most Linux drivers speak best.
        (rank(i.device_type), i.backend != wgpu::Backend::Vulkan)
    });
    let seen: Vec<String> = all
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect();
    let found = all.into_iter().find(|a| {
        let i = a.get_info();
        match choice {
            AdapterChoice::Auto => true,
            AdapterChoice::Software => i.device_type == wgpu::DeviceType::Cpu,
            AdapterChoice::Name(n) => i.name.to_lowercase().contains(&n.to_lowercase()),
            AdapterChoice::Backend(b) => i.backend == *b,
        }
    });
    found.ok_or_else(|| {
        let what = String::from(choice.clone());
        if seen.is_empty() {
            GpuError::NoAdapter(format!("selector {what}; wgpu sees none"))
        } else {
            GpuError::NoAdapter(format!("selector {what}; wgpu sees {}", seen.join(", ")))
        }
    })
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let i = adapter.get_info();
    let l = adapter.limits();
    AdapterSummary {
        name: i.name.clone(),
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        software: i.device_type == wgpu::DeviceType::Cpu,
        subgroups: adapter.features().contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: i.subgroup_min_size,
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        features: adapter
            .features()
            .iter_names()
            .map(|(n, _)| n.to_string())
            .collect(),
    }
}

impl Gpu {
    /// Opens a device on the adapter `choice` selects and logs what it got.
    pub fn open(choice: &AdapterChoice) -> Result<Self, GpuError> {
        let adapter = choose(choice)?;
        let gpu = Self::on(adapter)?;
        let s = &gpu.summary;
        tracing::info!(
            adapter = %s.name, backend = %s.backend, device_type = %s.device_type,
            software = s.software, max_storage_binding = s.max_storage_buffer_binding_size,
            max_workgroups_per_dim = s.max_compute_workgroups_per_dimension,
            max_invocations = s.max_compute_invocations_per_workgroup,
            "GPU adapter"
        );
        Ok(gpu)
    }

    fn on(adapter: wgpu::Adapter) -> Result<Self, GpuError> {
        let summary = summarize(&adapter);
        // The adapter's own limits for storage (tenants' tensors), defaults elsewhere.
        let al = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: al.max_storage_buffer_binding_size,
            max_buffer_size: al.max_buffer_size,
            max_storage_buffers_per_shader_stage: al.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: al.max_compute_workgroup_storage_size,
            ..wgpu::Limits::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("hearth"),
            required_limits: limits,
            required_features: adapter.features() & wgpu::Features::SUBGROUP,
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device {
            adapter: summary.name.clone(),
            msg: e.to_string(),
        })?;
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!(?reason, %msg, "GPU device lost");
            flag.store(true, Ordering::SeqCst);
        });
        Ok(Self {
            adapter,
            device,
            queue,
            summary,
            lost,
        })
    }

    /// A new device on the same adapter, after a loss.
    pub fn reopen(&self) -> Result<Self, GpuError> {
        Self::on(self.adapter.clone())
    }

    /// Whether the device has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Destroys the device, as a driver reset would (drills and tests of recovery).
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// A storage buffer holding `data` (never zero-sized: WebGPU forbids empty bindings).
    pub fn storage<T: Pod>(&self, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let pad = [0u8; 4];
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: if bytes.is_empty() { &pad } else { bytes },
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zero-filled storage buffer of `n` f32.
    pub fn zeros(&self, n: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (4 * n.max(1)) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `bytes`.
    pub fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<(), GpuError> {
        let r = self.device.poll(wgpu::PollType::wait_indefinitely());
        if self.is_lost() {
            return Err(GpuError::Lost("during a dispatch".into()));
        }
        r.map(|_| ()).map_err(|e| GpuError::Io(e.to_string()))
    }

    /// Submits `enc` and waits for it.
    pub fn run(&self, enc: wgpu::CommandEncoder) -> Result<(), GpuError> {
        if self.is_lost() {
            return Err(GpuError::Lost("before a dispatch".into()));
        }
        self.queue.submit([enc.finish()]);
        self.wait()
    }

    /// Copies the first `len` bytes of `buf` back to the host.
    pub fn read_bytes(&self, buf: &wgpu::Buffer, len: u64) -> Result<Vec<u8>, GpuError> {
        let size = len.div_ceil(4) * 4;
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        self.run(enc)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| GpuError::Io("map callback never ran".into()))?
            .map_err(|e| GpuError::Io(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| GpuError::Io(e.to_string()))?;
            view[..len as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Copies `n` f32 back from `buf`.
    pub fn read_f32(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buf, 4 * n as u64)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_print_back() {
        for s in ["auto", "software", "name:llvmpipe", "backend:vulkan"] {
            let c: AdapterChoice = s.parse().unwrap();
            assert_eq!(String::from(c), s);
        }
        for bad in ["", "gpu0", "name:", "backend:cuda"] {
            let e = bad.parse::<AdapterChoice>().unwrap_err().to_string();
            assert!(e.contains("gpu.adapter"), "{e}");
        }
    }
}
