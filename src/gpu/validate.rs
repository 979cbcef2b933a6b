//! WGSL validation with naga (same version wgpu 30 uses) plus binding reflection.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::AddressSpace;

/// Kind of a global resource binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Uniform,
    Storage {
        read_only: bool,
    },
    /// Textures, samplers, acceleration structures, ... (not used by these kernels).
    Handle,
    Other(String),
}

/// One `@group(g) @binding(b)` global.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingInfo {
    pub group: u32,
    pub binding: u32,
    pub name: Option<String>,
    pub kind: ResourceKind,
    /// Byte size of the binding's type (for runtime-sized arrays: size of one element stride
    /// times 1, i.e. the minimum); informational.
    pub type_size: u32,
}

/// One entry point and the bindings it statically uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPointInfo {
    pub name: String,
    pub stage: String,
    pub workgroup_size: [u32; 3],
    /// (group, binding) pairs used by this entry point, sorted.
    pub used_bindings: Vec<(u32, u32)>,
}

/// Result of a successful validation.
#[derive(Debug)]
pub struct WgslInfo {
    pub module: naga::Module,
    pub module_info: naga::valid::ModuleInfo,
    pub entry_points: Vec<EntryPointInfo>,
    /// All bound globals, sorted by (group, binding).
    pub bindings: Vec<BindingInfo>,
}

/// Parse and validate WGSL; on failure returns every diagnostic naga produced, rendered
/// with file/line/column (`wgsl:LINE:COL`) by naga's `emit_to_string`.
pub fn validate_wgsl(src: &str) -> Result<WgslInfo, String> {
    validate_wgsl_named(src, "wgsl")
}

/// Like [`validate_wgsl`] but uses `path` as the file name in diagnostics.
pub fn validate_wgsl_named(src: &str, path: &str) -> Result<WgslInfo, String> {
    validate_with(src, path, Capabilities::default())
}

/// Validates WGSL of the catalog, which may use subgroup operations.
pub fn validate_catalog(src: &str, path: &str) -> Result<WgslInfo, String> {
    validate_with(src, path, Capabilities::default() | Capabilities::SUBGROUP)
}

/// Validates tenant WGSL (default capabilities: no subgroups, no f16), then bounds every loop
/// to `max_iterations` iterations per invocation (see `bound`) and validates the result again.
pub fn prepare_untrusted(src: &str, max_iterations: u32) -> Result<WgslInfo, String> {
    let mut info = validate_with(src, "wgsl", Capabilities::default())?;
    super::bound::bound_loops(&mut info.module, max_iterations);
    let mut validator = Validator::new(ValidationFlags::all(), Capabilities::default());
    info.module_info = validator.validate(&info.module).map_err(|e| {
        format!(
            "internal error: the loop-bounded shader failed validation: {}",
            e.as_inner()
        )
    })?;
    Ok(info)
}

fn validate_with(src: &str, path: &str, caps: Capabilities) -> Result<WgslInfo, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| {
        let loc = e
            .location(src)
            .map(|l| format!("{path}:{}:{}: ", l.line_number, l.line_position))
            .unwrap_or_default();
        format!(
            "{loc}parse error: {}\n{}",
            e.message(),
            e.emit_to_string_with_path(src, path)
        )
    })?;
    let mut validator = Validator::new(ValidationFlags::all(), caps);
    let module_info = validator.validate(&module).map_err(|e| {
        let loc = e
            .location(src)
            .map(|l| format!("{path}:{}:{}: ", l.line_number, l.line_position))
            .unwrap_or_default();
        format!(
            "{loc}validation error: {}\n{}",
            e.as_inner(),
            e.emit_to_string_with_path(src, path)
        )
    })?;

    let mut bindings = Vec::new();
    for (_, gv) in module.global_variables.iter() {
        let Some(rb) = &gv.binding else { continue };
        let kind = match gv.space {
            AddressSpace::Uniform => ResourceKind::Uniform,
            AddressSpace::Storage { access } => ResourceKind::Storage {
                read_only: !access.contains(naga::StorageAccess::STORE),
            },
            AddressSpace::Handle => ResourceKind::Handle,
            other => ResourceKind::Other(format!("{other:?}")),
        };
        let type_size = module.types[gv.ty].inner.size(module.to_ctx());
        bindings.push(BindingInfo {
            group: rb.group,
            binding: rb.binding,
            name: gv.name.clone(),
            kind,
            type_size,
        });
    }
    bindings.sort_by_key(|b| (b.group, b.binding));

    let mut entry_points = Vec::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = module_info.get_entry_point(i);
        let mut used: Vec<(u32, u32)> = module
            .global_variables
            .iter()
            .filter(|(h, _)| !fi[*h].is_empty())
            .filter_map(|(_, gv)| gv.binding.as_ref().map(|b| (b.group, b.binding)))
            .collect();
        used.sort();
        entry_points.push(EntryPointInfo {
            name: ep.name.clone(),
            stage: format!("{:?}", ep.stage),
            workgroup_size: ep.workgroup_size,
            used_bindings: used,
        });
    }
    Ok(WgslInfo {
        module,
        module_info,
        entry_points,
        bindings,
    })
}
