// Workgroup-memory tiled kernel for real GPUs. Any M, N, K.
// 64x64 output tile per workgroup of 16x16 invocations, each invocation 4x4
// outputs (rows ty+16i, cols tx+16j: conflict-free shared-memory reads and
// coalesced global stores). K is walked in slices of 16; 8 KiB workgroup memory.
struct Params { m: u32, n: u32, k: u32, row_start: u32, row_end: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TS: u32 = 64u;   // output tile edge
const BK: u32 = 16u;   // k slice
var<workgroup> As: array<f32, 1024>;   // [BK][TS], A slice stored transposed
var<workgroup> Bs: array<f32, 1024>;   // [BK][TS]

@compute @workgroup_size(16, 16, 1)
fn matmul_gpu(@builtin(workgroup_id) wg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row0 = p.row_start + wg.y * TS;
    let col0 = wg.x * TS;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let ntiles = (p.k + BK - 1u) / BK;
    for (var t = 0u; t < ntiles; t += 1u) {
        let k0 = t * BK;
        for (var i = 0u; i < 4u; i += 1u) {
            let e = li + 256u * i;
            // A: 64 rows x 16 k, read along k
            let ar = e / BK;
            let ak = e % BK;
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if (gr < p.row_end && gk < p.k) {
                av = a[gr * p.k + gk];
            }
            As[ak * TS + ar] = av;
            // B: 16 k x 64 cols, read along n
            let bk = e / TS;
            let bc = e % TS;
            let gk2 = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if (gk2 < p.k && gc < p.n) {
                bv = b[gk2 * p.n + gc];
            }
            Bs[bk * TS + bc] = bv;
        }
        workgroupBarrier();
        for (var q = 0u; q < BK; q += 1u) {
            let o = q * TS;
            let av = vec4<f32>(As[o + lid.y], As[o + lid.y + 16u], As[o + lid.y + 32u], As[o + lid.y + 48u]);
            let bv = vec4<f32>(Bs[o + lid.x], Bs[o + lid.x + 16u], Bs[o + lid.x + 32u], Bs[o + lid.x + 48u]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i += 1u) {
        let r = row0 + lid.y + 16u * i;
        if (r < p.row_end) {
            let acc = accs[i];
            for (var j = 0u; j < 4u; j += 1u) {
                let cc = col0 + lid.x + 16u * j;
                if (cc < p.n) {
                    c[r * p.n + cc] = acc[j];
                }
            }
        }
    }
}
