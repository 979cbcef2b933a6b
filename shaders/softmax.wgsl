// Row-wise, numerically stable softmax of a rows x cols matrix (row-major),
// for rows [p.start, p.end). One invocation per row, no workgroup memory:
//   m = max_j x[j];  out[j] = exp(x[j] - m);  s = sum_j out[j];  out[j] = out[j] / s
// (sum taken left to right; the CPU reference does the same).
// Any cols >= 1 works. Dispatch: workgroups of 64 on a 2-D grid (x <= 65535).
// `out` must not alias `x`.

struct Params {
    start: u32,
    end: u32,
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = p.start + (wid.y * nwg.x + wid.x) * WG + lid;
    if (r >= p.end || r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var m = x[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, x[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let e = exp(x[base + j] - m);
        out[base + j] = e;
        s += e;
    }
    for (var j = 0u; j < p.cols; j++) {
        out[base + j] = out[base + j] / s;
    }
}
