//! The AI side: leased jobs as wgpu compute shaders, paced to a power target.
//!
//! `device` picks the adapter and owns the device; `kernels` is the catalog of `shaders/*.wgsl`;
//! `validate` checks WGSL with naga and bounds the loops of tenant shaders; `job` turns a job's
//! tensors into buffers and ranges; `runner` runs jobs as bounded chunks paced by duty cycle;
//! `tensor` is the tensor type with `.npy` I/O; `reference` holds the CPU references the tests
//! compare against; `bench` is `hearth bench gpu`; `workload` is the runner as the scheduler
//! sees it.

pub mod bench;
pub mod bound;
pub mod device;
pub mod job;
pub mod kernels;
pub mod reference;
pub mod runner;
pub mod tensor;
pub mod validate;
pub mod workload;
