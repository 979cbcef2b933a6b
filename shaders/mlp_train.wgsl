// Minibatch SGD training of a 2-layer MLP (ReLU hidden layer, softmax cross-entropy).
//   X: N x D, labels: N (u32, must be < C), W1: D x Hd, b1: Hd, W2: Hd x C, b2: C.
//
// Global step sequence: steps_per_epoch = ceil(N / batch); step s belongs to epoch
// s / steps_per_epoch and uses samples [off, off + bs) with
// off = (s % steps_per_epoch) * batch, bs = min(batch, N - off)  (last batch may be partial).
// No shuffling.
//
// One step = four dispatches with the SAME Params (p.start = s, p.end = s + 1), in order:
//   fwd_hidden      bs*Hd invocations (WG 256): H = relu(X_b . W1 + b1)
//   softmax_ce      bs    invocations (WG 64) : logits = H . W2 + b2; per-sample CE loss -> L;
//                                               G = (softmax - onehot) / bs   (dlogits)
//   backward_hidden bs*Hd invocations (WG 256): dH = (G . W2^T) * (H > 0)
//   update          D*Hd + Hd + Hd*C + C + 1 invocations (WG 256):
//                     W1 -= lr * X_b^T . dH ; b1 -= lr * colsum(dH)
//                     W2 -= lr * H^T . G    ; b2 -= lr * colsum(G)
//                     last invocation: epoch_loss[e] accumulates sum(L) (in sample order);
//                     on the epoch's first step it is reset, on its last step divided by N
//                     so epoch_loss[e] = mean CE loss over the epoch's N samples.
// Every sum is taken in increasing index order starting from 0 (CPU reference matches).
// All dispatches are deterministic (no atomics), so results do not depend on how a run of
// steps is split into chunks.
//
// scratch layout (floats), B = p.batch:
//   H  [0,            B*Hd)        hidden activations
//   dH [B*Hd,         2*B*Hd)      hidden gradient
//   G  [2*B*Hd,       2*B*Hd+B*C)  logits -> dlogits
//   L  [2*B*Hd+B*C,   2*B*Hd+B*C+B) per-sample loss of the current batch

struct Params {
    start: u32,            // global step index of this dispatch
    end: u32,              // start + 1 (informational)
    n: u32,
    d: u32,
    hd: u32,
    c: u32,
    batch: u32,
    steps_per_epoch: u32,  // ceil(n / batch)
    epochs: u32,
    lr: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> w1: array<f32>;
@group(0) @binding(4) var<storage, read_write> b1: array<f32>;
@group(0) @binding(5) var<storage, read_write> w2: array<f32>;
@group(0) @binding(6) var<storage, read_write> b2: array<f32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(8) var<storage, read_write> epoch_loss: array<f32>;

struct Step {
    epoch: u32,
    index: u32,   // step index within the epoch
    off: u32,     // first sample
    bs: u32,      // samples in this batch
}

fn step_info() -> Step {
    var st: Step;
    st.epoch = p.start / p.steps_per_epoch;
    st.index = p.start % p.steps_per_epoch;
    st.off = st.index * p.batch;
    st.bs = min(p.batch, p.n - st.off);
    return st;
}

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

fn h_base() -> u32 { return 0u; }
fn dh_base() -> u32 { return p.batch * p.hd; }
fn g_base() -> u32 { return 2u * p.batch * p.hd; }
fn l_base() -> u32 { return 2u * p.batch * p.hd + p.batch * p.c; }

@compute @workgroup_size(256)
fn fwd_hidden(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let st = step_info();
    let i = flat(wid, nwg, lid, 256u);
    if (i >= st.bs * p.hd) {
        return;
    }
    let r = i / p.hd;
    let j = i % p.hd;
    let xb = (st.off + r) * p.d;
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) {
        acc += x[xb + k] * w1[k * p.hd + j];
    }
    scratch[h_base() + r * p.hd + j] = max(acc + b1[j], 0.0);
}

@compute @workgroup_size(64)
fn softmax_ce(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let st = step_info();
    let r = flat(wid, nwg, lid, 64u);
    if (r >= st.bs) {
        return;
    }
    let hb = h_base() + r * p.hd;
    let gb = g_base() + r * p.c;
    let y = labels[st.off + r];
    // logits
    var m = -3.4028234663852886e38;
    for (var cc = 0u; cc < p.c; cc++) {
        var acc = 0.0;
        for (var k = 0u; k < p.hd; k++) {
            acc += scratch[hb + k] * w2[k * p.c + cc];
        }
        let z = acc + b2[cc];
        scratch[gb + cc] = z;
        m = max(m, z);
    }
    let zy = scratch[gb + y];
    var s = 0.0;
    for (var cc = 0u; cc < p.c; cc++) {
        let e = exp(scratch[gb + cc] - m);
        scratch[gb + cc] = e;
        s += e;
    }
    // CE loss = logsumexp(z) - z_y = log(s) + m - z_y
    scratch[l_base() + r] = log(s) - (zy - m);
    let inv_bs = 1.0 / f32(st.bs);
    for (var cc = 0u; cc < p.c; cc++) {
        var t = scratch[gb + cc] / s;
        if (cc == y) {
            t = t - 1.0;
        }
        scratch[gb + cc] = t * inv_bs;
    }
}

@compute @workgroup_size(256)
fn backward_hidden(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let st = step_info();
    let i = flat(wid, nwg, lid, 256u);
    if (i >= st.bs * p.hd) {
        return;
    }
    let r = i / p.hd;
    let j = i % p.hd;
    var g = 0.0;
    if (scratch[h_base() + r * p.hd + j] > 0.0) {
        let gb = g_base() + r * p.c;
        for (var cc = 0u; cc < p.c; cc++) {
            g += scratch[gb + cc] * w2[j * p.c + cc];
        }
    }
    scratch[dh_base() + r * p.hd + j] = g;
}

@compute @workgroup_size(256)
fn update(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let st = step_info();
    var i = flat(wid, nwg, lid, 256u);
    let n_w1 = p.d * p.hd;
    let n_w2 = p.hd * p.c;
    if (i < n_w1) {
        let k = i / p.hd;
        let j = i % p.hd;
        var g = 0.0;
        for (var r = 0u; r < st.bs; r++) {
            g += x[(st.off + r) * p.d + k] * scratch[dh_base() + r * p.hd + j];
        }
        w1[i] = w1[i] - p.lr * g;
        return;
    }
    i -= n_w1;
    if (i < p.hd) {
        var g = 0.0;
        for (var r = 0u; r < st.bs; r++) {
            g += scratch[dh_base() + r * p.hd + i];
        }
        b1[i] = b1[i] - p.lr * g;
        return;
    }
    i -= p.hd;
    if (i < n_w2) {
        let j = i / p.c;
        let cc = i % p.c;
        var g = 0.0;
        for (var r = 0u; r < st.bs; r++) {
            g += scratch[h_base() + r * p.hd + j] * scratch[g_base() + r * p.c + cc];
        }
        w2[i] = w2[i] - p.lr * g;
        return;
    }
    i -= n_w2;
    if (i < p.c) {
        var g = 0.0;
        for (var r = 0u; r < st.bs; r++) {
            g += scratch[g_base() + r * p.c + i];
        }
        b2[i] = b2[i] - p.lr * g;
        return;
    }
    i -= p.c;
    if (i == 0u) {
        var acc = 0.0;
        if (st.index != 0u) {
            acc = epoch_loss[st.epoch];
        }
        for (var r = 0u; r < st.bs; r++) {
            acc += scratch[l_base() + r];
        }
        if (st.index + 1u == p.steps_per_epoch) {
            acc = acc / f32(p.n);
        }
        epoch_loss[st.epoch] = acc;
    }
}
