// Batch inference of a 2-layer MLP for batch rows [p.start, p.end):
//   H   = relu(X . W1 + b1)          X: B x D, W1: D x Hd, b1: Hd, H: B x Hd
//   out = softmax(H . W2 + b2)       W2: Hd x C, b2: C, out: B x C
// Three entry points, dispatched in this order for the same range:
//   hidden  : one invocation per H element   ((end-start)*hd invocations, WG 256)
//   logits  : one invocation per out element ((end-start)*c  invocations, WG 256)
//   softmax : one invocation per row, in place on `out` ((end-start) invocations, WG 64)
// Workgroups are laid out on a 2-D grid (x <= 65535). Dot products are summed in
// index order k = 0..K-1 starting from 0, then the bias is added (CPU reference matches).

struct Params {
    start: u32,
    end: u32,
    batch: u32,
    d: u32,
    hd: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;
@group(0) @binding(3) var<storage, read> b1: array<f32>;
@group(0) @binding(4) var<storage, read> w2: array<f32>;
@group(0) @binding(5) var<storage, read> b2: array<f32>;
@group(0) @binding(6) var<storage, read_write> h: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

@compute @workgroup_size(256)
fn hidden(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid, 256u);
    let end = min(p.end, p.batch);
    if (p.start >= end || i >= (end - p.start) * p.hd) {
        return;
    }
    let r = p.start + i / p.hd;
    let j = i % p.hd;
    let xb = r * p.d;
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) {
        acc += x[xb + k] * w1[k * p.hd + j];
    }
    h[r * p.hd + j] = max(acc + b1[j], 0.0);
}

@compute @workgroup_size(256)
fn logits(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid, 256u);
    let end = min(p.end, p.batch);
    if (p.start >= end || i >= (end - p.start) * p.c) {
        return;
    }
    let r = p.start + i / p.c;
    let j = i % p.c;
    let hb = r * p.hd;
    var acc = 0.0;
    for (var k = 0u; k < p.hd; k++) {
        acc += h[hb + k] * w2[k * p.c + j];
    }
    out[r * p.c + j] = acc + b2[j];
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = p.start + flat(wid, nwg, lid, 64u);
    if (r >= p.end || r >= p.batch) {
        return;
    }
    let base = r * p.c;
    var m = out[base];
    for (var j = 1u; j < p.c; j++) {
        m = max(m, out[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) {
        let e = exp(out[base + j] - m);
        out[base + j] = e;
        s += e;
    }
    for (var j = 0u; j < p.c; j++) {
        out[base + j] = out[base + j] / s;
    }
}
