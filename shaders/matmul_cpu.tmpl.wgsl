//## The CPU-adapter matmul family (lavapipe/llvmpipe): one template, expanded by `gpu::kernels`
//## into `matmul_cpu` (TM 24, any M, N, K) and `matmul_cpu_v4` (TM 32, vec4 loads, K and N
//## multiples of 4). See shaders/README.md for the markers (`//#` lines, `${...}`).
//##
//## Design: no workgroup memory, no barriers. A workgroup of WG lanes shares one block of TM
//## output rows; lane x owns 4 contiguous columns (one vec4 accumulator per row). Per k step every
//## lane needs TM values of A (the same for all lanes) and 4 values of B (its own). Instead of
//## every lane loading all TM A values, lane l loads the A values of rows l, l+8, ... (4 k steps
//## at a time) and they are shared with subgroupBroadcast(v, const). That cuts the number of
//## per-lane buffer loads, which on llvmpipe are scalarised (one scalar load + branch per lane and
//## component) and dominate run time. Requires subgroup size >= 8 (checked on the host).
//##
//## Parameters: ENTRY (entry point name), ELEM (element type of a and b), TM (rows per
//## workgroup, a multiple of 8), WG (lanes per workgroup), VEC4 (1: a and b bound as vec4s).
// Expanded from shaders/matmul_cpu.tmpl.wgsl (TM=${TM} TN=4 WG=${WG} KU=4) by gpu::kernels -- edit the template.
// Tuned for CPU adapters (lavapipe/llvmpipe). Any M, N, K. Needs subgroup size >= 8.
// (WGSL `enable subgroups;` is omitted: naga 30 rejects it; wgpu Features::SUBGROUP enables the builtins.)

struct Params { m: u32, n: u32, k: u32, row_start: u32, row_end: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<${ELEM}>;
@group(0) @binding(2) var<storage, read> b: array<${ELEM}>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TM: u32 = ${TM}u;     // rows per workgroup (shared by all lanes)
const TN: u32 = 4u;     // contiguous columns per lane
const WG: u32 = ${WG}u;     // lanes per workgroup

//# if VEC4
// FAST PATH: requires K % 4 == 0 and N % 4 == 0 (rows of A and B are whole vec4s).
//# end
@compute @workgroup_size(${WG}, 1, 1)
fn ${ENTRY}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
    let n = p.n;
    let kk = p.k;
    let r0 = p.row_start + wg.y * TM;
    let rlast = p.row_end - 1u;
    let c0 = (wg.x * WG + lid.x) * TN;
    let nlast = n - 1u;
//## Clamped column indices: loads never go out of bounds; stores are guarded.
//# for j in 0..4
    let cc${j} = min(c0 + ${j}u, nlast);
//# end
//# if VEC4
    let cv0 = min(c0 + 0u, n - 4u);
//# end
    let l8 = sl & 7u;
//# for q in 0..TM/8
    let ar${q} = min(r0 + ${8*q}u + l8, rlast) * kk;
//# end
//# for i in 0..TM
    var acc${i}_0 = vec4<f32>(0.0);
//# end
    let kmain = kk - kk % 4u;
//## Two k loops: 4 steps at a time up to kmain, then the remainder one step at a time (tail).
//# for tail in 0..2
//# if tail
    for (var k0 = kmain; k0 < kk; k0 += 1u) {
//# else
    for (var k0 = 0u; k0 < kmain; k0 += 4u) {
//# end
//## This lane's A values: 4 k steps (a vec4), or 1 in the tail.
//# for q in 0..TM/8
//# if tail
//# if VEC4
        let la${q} = a[(ar${q} + k0 + 0u) / 4u][(k0) % 4u];
//# else
        let la${q} = a[ar${q} + k0 + 0u];
//# end
//# else
//# if VEC4
        let la${q} = a[(ar${q} + k0) / 4u];
//# else
        let la${q} = vec4<f32>(a[ar${q} + k0 + 0u], a[ar${q} + k0 + 1u], a[ar${q} + k0 + 2u], a[ar${q} + k0 + 3u]);
//# end
//# end
//# end
//## Per k step t: this lane's 4 columns of B, then one broadcast A value and fma per row.
//# for t in 0..4-3*tail
        let bo${t} = (k0 + ${t}u) * n;
//# if VEC4
        let b${t}_0 = b[(bo${t} + cv0) / 4u];
//# else
        let b${t}_0 = vec4<f32>(b[bo${t} + cc0], b[bo${t} + cc1], b[bo${t} + cc2], b[bo${t} + cc3]);
//# end
//# end
//# for t in 0..4-3*tail
//# for i in 0..TM
//# if tail
        let s${t}_${i} = subgroupBroadcast(la${i/8}, ${i%8}u);
//# else
        let s${t}_${i} = subgroupBroadcast(la${i/8}[${t}], ${i%8}u);
//# end
        acc${i}_0 = fma(vec4<f32>(s${t}_${i}), b${t}_0, acc${i}_0);
//# end
//# end
    }
//# end
//## Guarded stores.
//# for i in 0..TM
    let row${i} = r0 + ${i}u;
    if (row${i} < p.row_end) {
        let base = row${i} * n;
        if (c0 + 0u < n) { c[base + c0 + 0u] = acc${i}_0.x; }
        if (c0 + 1u < n) { c[base + c0 + 1u] = acc${i}_0.y; }
        if (c0 + 2u < n) { c[base + c0 + 2u] = acc${i}_0.z; }
        if (c0 + 3u < n) { c[base + c0 + 3u] = acc${i}_0.w; }
    }
//# end
}
