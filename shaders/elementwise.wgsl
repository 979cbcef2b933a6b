// Elementwise ops over the element range [p.start, p.end).
//   op 0: out = a + b      op 1: out = a * b
//   op 2: out = relu(a)    op 3: out = gelu(a)   (tanh approximation, see gelu_tanh)
// Unary ops never read `b`; the host may bind `a` again as `b`.
// Dispatch: 1-D workgroups of 256 laid out on a 2-D grid (x <= 65535);
// invocation i handles element p.start + i.

struct Params {
    start: u32,
    end: u32,
    op: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

// GELU, tanh approximation:
//   gelu(x) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
// tanh(u) is evaluated as sign(u) * (1 - e) / (1 + e), e = exp(-2|u|), which is
// overflow-free for every finite u (some drivers' builtin tanh returns NaN for large |u|).
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let e = exp(-2.0 * abs(u));
    let t = sign(u) * (1.0 - e) / (1.0 + e);
    return 0.5 * x * (1.0 + t);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = p.start + (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.end) {
        return;
    }
    let x = a[i];
    var r: f32;
    switch p.op {
        case 0u: { r = x + b[i]; }
        case 1u: { r = x * b[i]; }
        case 2u: { r = max(x, 0.0); }
        default: { r = gelu_tanh(x); }
    }
    out[i] = r;
}
