// Naive reference kernel: one output element per invocation. Any M, N, K.
struct Params { m: u32, n: u32, k: u32, row_start: u32, row_end: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(16, 16, 1)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = p.row_start + gid.y;
    if (col >= p.n || row >= p.row_end) {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < p.k; i += 1u) {
        acc = fma(a[row * p.k + i], b[i * p.n + col], acc);
    }
    c[row * p.n + col] = acc;
}
