//! The custom WGSL path: a tenant shader checked against the binding convention, loops bounded.

use super::{invalid, JobError, JobLimits};
use crate::gpu::validate;

/// Validates tenant WGSL against the custom-kernel convention and bounds its loops; needs no
/// device, so a bad shader is refused at submission.
pub(super) fn check_custom(
    wgsl: &str,
    entry: &str,
    inputs: usize,
    outputs: usize,
    yz: [u32; 2],
    limits: &JobLimits,
) -> Result<validate::WgslInfo, JobError> {
    let info = validate::prepare_untrusted(wgsl, limits.max_loop_iterations)
        .map_err(|e| invalid("kernel.wgsl", e))?;
    let Some(ep) = info.entry_points.iter().find(|e| e.name == entry) else {
        let names: Vec<&str> = info.entry_points.iter().map(|e| e.name.as_str()).collect();
        return Err(invalid(
            "kernel.entry_point",
            format!("{entry:?} is not in the shader (it has {names:?})"),
        ));
    };
    if ep.stage != "Compute" {
        return Err(invalid(
            "kernel.entry_point",
            format!("{entry:?} is not a compute entry point"),
        ));
    }
    let wg: u64 = ep.workgroup_size.iter().map(|&w| w as u64).product();
    let slice = wg * yz.iter().map(|&w| w as u64).product::<u64>();
    if slice > limits.max_invocations_per_slice {
        return Err(JobError::Limit {
            limit: "max_invocations_per_slice",
            msg: format!(
                "workgroups y·z × workgroup size {:?} = {slice} invocations per x-slice, at most {}",
                ep.workgroup_size, limits.max_invocations_per_slice
            ),
        });
    }
    let want = 1 + inputs + outputs;
    if info.bindings.len() != want {
        return Err(invalid(
            "kernel.wgsl",
            format!(
                "declares {} bindings; a job with {inputs} inputs and {outputs} outputs needs {want}: \
                 @binding(0) uniform Params, 1..={inputs} read-only storage, then {outputs} read-write storage",
                info.bindings.len()
            ),
        ));
    }
    for (i, b) in info.bindings.iter().enumerate() {
        let ok = match (i, &b.kind) {
            (0, validate::ResourceKind::Uniform) => {
                b.group == 0 && b.binding == 0 && b.type_size == 16
            }
            (i, validate::ResourceKind::Storage { read_only }) => {
                b.group == 0 && b.binding == i as u32 && *read_only == (i <= inputs)
            }
            _ => false,
        };
        if !ok {
            let want = match i {
                0 => {
                    "a 16-byte uniform struct { start: u32, end: u32, pad: vec2<u32> }".to_string()
                }
                i if i <= inputs => format!("var<storage, read> (input {})", i - 1),
                i => format!("var<storage, read_write> (output {})", i - 1 - inputs),
            };
            return Err(invalid(
                "kernel.wgsl",
                format!(
                    "@group(0) @binding({i}) must be {want}, found {:?} at @group({}) @binding({})",
                    b.kind, b.group, b.binding
                ),
            ));
        }
    }
    Ok(info)
}
