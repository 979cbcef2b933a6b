//! Pure-Rust CPU references. Every dot product / reduction is summed in the same order as
//! the WGSL kernels (increasing index, starting from 0.0, bias added last), so differences
//! to the GPU come only from per-operation rounding (exp/log/tanh precision, FMA contraction).

use super::kernels::TrainShape;

/// Row-major matmul: a (m x k) . b (k x n) -> m x n.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for t in 0..k {
                acc += a[i * k + t] * b[t * n + j];
            }
            out[i * n + j] = acc;
        }
    }
    out
}

/// Elementwise a + b.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Elementwise a * b.
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

/// Elementwise max(a, 0).
pub fn relu(a: &[f32]) -> Vec<f32> {
    a.iter().map(|&x| x.max(0.0)).collect()
}

/// GELU, tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), same formula as the WGSL.
#[allow(clippy::excessive_precision)]
pub fn gelu_scalar(x: f32) -> f32 {
    let u = 0.797_884_560_802_865_4_f32 * (x + 0.044715 * x * x * x);
    let e = (-2.0 * u.abs()).exp();
    let t = if u > 0.0 {
        1.0
    } else if u < 0.0 {
        -1.0
    } else {
        0.0
    } * (1.0 - e)
        / (1.0 + e);
    0.5 * x * (1.0 + t)
}

/// Elementwise GELU (tanh approximation).
pub fn gelu(a: &[f32]) -> Vec<f32> {
    a.iter().map(|&x| gelu_scalar(x)).collect()
}

/// Row-wise numerically stable softmax of a rows x cols matrix.
pub fn softmax(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * cols);
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        softmax_row(
            &x[r * cols..(r + 1) * cols],
            &mut out[r * cols..(r + 1) * cols],
        );
    }
    out
}

fn softmax_row(x: &[f32], out: &mut [f32]) {
    let mut m = x[0];
    for &v in &x[1..] {
        m = m.max(v);
    }
    let mut s = 0.0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let e = (v - m).exp();
        *o = e;
        s += e;
    }
    for o in out.iter_mut() {
        *o /= s;
    }
}

/// MLP parameters: W1 (D x Hd), b1 (Hd), W2 (Hd x C), b2 (C), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpWeights {
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

/// Deterministic init: W uniform in ±sqrt(6/fan_in) (He-uniform) from a SplitMix64 stream, biases 0.
pub fn init_weights(d: usize, hd: usize, c: usize, seed: u64) -> MlpWeights {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32) / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a1 = (6.0 / d as f32).sqrt();
    let a2 = (6.0 / hd as f32).sqrt();
    let w1 = (0..d * hd).map(|_| next() * a1).collect();
    let w2 = (0..hd * c).map(|_| next() * a2).collect();
    MlpWeights {
        w1,
        b1: vec![0.0; hd],
        w2,
        b2: vec![0.0; c],
    }
}

/// Hidden layer relu(X.W1 + b1) for `rows` rows of x (D wide) -> rows x Hd.
fn hidden(x: &[f32], w: &MlpWeights, rows: usize, d: usize, hd: usize) -> Vec<f32> {
    let mut h = vec![0.0f32; rows * hd];
    for r in 0..rows {
        for j in 0..hd {
            let mut acc = 0.0f32;
            for k in 0..d {
                acc += x[r * d + k] * w.w1[k * hd + j];
            }
            h[r * hd + j] = (acc + w.b1[j]).max(0.0);
        }
    }
    h
}

/// Logits H.W2 + b2 for `rows` rows -> rows x C.
fn logits(h: &[f32], w: &MlpWeights, rows: usize, hd: usize, c: usize) -> Vec<f32> {
    let mut z = vec![0.0f32; rows * c];
    for r in 0..rows {
        for j in 0..c {
            let mut acc = 0.0f32;
            for k in 0..hd {
                acc += h[r * hd + k] * w.w2[k * c + j];
            }
            z[r * c + j] = acc + w.b2[j];
        }
    }
    z
}

/// MLP inference: softmax(relu(X.W1 + b1).W2 + b2) for X (B x D) -> B x C probabilities.
pub fn mlp_infer(x: &[f32], w: &MlpWeights, b: usize, d: usize, hd: usize, c: usize) -> Vec<f32> {
    let h = hidden(x, w, b, d, hd);
    let z = logits(&h, w, b, hd, c);
    softmax(&z, b, c)
}

/// Runs global SGD steps [start, end) exactly like mlp_train.wgsl, updating `w` and `epoch_loss`.
#[allow(clippy::too_many_arguments)]
pub fn mlp_train(
    x: &[f32],
    labels: &[u32],
    w: &mut MlpWeights,
    shape: &TrainShape,
    lr: f32,
    start: u32,
    end: u32,
    epoch_loss: &mut [f32],
) {
    let (d, hd, c) = (shape.d as usize, shape.hd as usize, shape.c as usize);
    let spe = shape.steps_per_epoch();
    for s in start..end {
        let (epoch, off, bs) = shape.step_batch(s);
        let (off, bs) = (off as usize, bs as usize);
        let xb = &x[off * d..(off + bs) * d];
        // forward
        let h = hidden(xb, w, bs, d, hd);
        let z = logits(&h, w, bs, hd, c);
        let mut g = vec![0.0f32; bs * c];
        let mut loss = vec![0.0f32; bs];
        let inv_bs = 1.0 / bs as f32;
        for r in 0..bs {
            let y = labels[off + r] as usize;
            let zr = &z[r * c..(r + 1) * c];
            let mut m = f32::MIN;
            for &v in zr {
                m = m.max(v);
            }
            let mut sum = 0.0f32;
            let mut e = vec![0.0f32; c];
            for j in 0..c {
                e[j] = (zr[j] - m).exp();
                sum += e[j];
            }
            loss[r] = sum.ln() - (zr[y] - m);
            for j in 0..c {
                let mut t = e[j] / sum;
                if j == y {
                    t -= 1.0;
                }
                g[r * c + j] = t * inv_bs;
            }
        }
        // dH = (G . W2^T) * (H > 0)
        let mut dh = vec![0.0f32; bs * hd];
        for r in 0..bs {
            for j in 0..hd {
                if h[r * hd + j] > 0.0 {
                    let mut acc = 0.0f32;
                    for k in 0..c {
                        acc += g[r * c + k] * w.w2[j * c + k];
                    }
                    dh[r * hd + j] = acc;
                }
            }
        }
        // SGD update
        for k in 0..d {
            for j in 0..hd {
                let mut acc = 0.0f32;
                for r in 0..bs {
                    acc += xb[r * d + k] * dh[r * hd + j];
                }
                w.w1[k * hd + j] -= lr * acc;
            }
        }
        for j in 0..hd {
            let mut acc = 0.0f32;
            for r in 0..bs {
                acc += dh[r * hd + j];
            }
            w.b1[j] -= lr * acc;
        }
        for j in 0..hd {
            for k in 0..c {
                let mut acc = 0.0f32;
                for r in 0..bs {
                    acc += h[r * hd + j] * g[r * c + k];
                }
                w.w2[j * c + k] -= lr * acc;
            }
        }
        for k in 0..c {
            let mut acc = 0.0f32;
            for r in 0..bs {
                acc += g[r * c + k];
            }
            w.b2[k] -= lr * acc;
        }
        // epoch loss accumulation (running sum, mean at the epoch's last step)
        let idx = s % spe;
        let mut acc = if idx == 0 {
            0.0
        } else {
            epoch_loss[epoch as usize]
        };
        for &l in &loss {
            acc += l;
        }
        if idx + 1 == spe {
            acc /= shape.n as f32;
        }
        epoch_loss[epoch as usize] = acc;
    }
}

/// The four weight tensors of an MLP, in the kernels' input order.
fn weight_tensors(w: MlpWeights, d: usize, hd: usize, c: usize) -> Vec<super::tensor::Tensor> {
    use super::tensor::Tensor;
    vec![
        Tensor {
            shape: vec![d, hd],
            data: w.w1,
        },
        Tensor {
            shape: vec![hd],
            data: w.b1,
        },
        Tensor {
            shape: vec![hd, c],
            data: w.w2,
        },
        Tensor {
            shape: vec![c],
            data: w.b2,
        },
    ]
}

/// Weights from four tensors (w1, b1, w2, b2).
fn weights_of(t: &[super::tensor::Tensor]) -> MlpWeights {
    MlpWeights {
        w1: t[0].data.clone(),
        b1: t[1].data.clone(),
        w2: t[2].data.clone(),
        b2: t[3].data.clone(),
    }
}

/// Random inputs for `kernel` of the given sizes (see `hearth gpu run --size`); mlp_train gets
/// one Gaussian blob per class with He-initialised weights.
pub fn synthetic_inputs(
    kernel: &super::job::KernelSpec,
    size: &[usize],
    seed: u64,
) -> Result<Vec<super::tensor::Tensor>, super::job::JobError> {
    use super::job::{JobError, KernelSpec};
    use super::tensor::Tensor;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        }
    };
    let want = |n: usize, what: &str| -> Result<(), JobError> {
        if size.len() != n || size.contains(&0) {
            return Err(JobError::Invalid {
                field: "size".into(),
                msg: format!("{} takes --size {what} (each at least 1)", kernel.name()),
            });
        }
        Ok(())
    };
    Ok(match kernel {
        KernelSpec::Matmul => {
            want(3, "M,K,N")?;
            vec![t(vec![size[0], size[1]]), t(vec![size[1], size[2]])]
        }
        KernelSpec::Elementwise { op } => {
            want(1, "N")?;
            let n = if op.binary() { 2 } else { 1 };
            (0..n).map(|_| t(vec![size[0]])).collect()
        }
        KernelSpec::Softmax => {
            want(2, "ROWS,COLS")?;
            vec![t(vec![size[0], size[1]])]
        }
        KernelSpec::MlpInfer => {
            want(4, "B,D,H,C")?;
            let (b, d, hd, c) = (size[0], size[1], size[2], size[3]);
            let mut v = vec![t(vec![b, d])];
            v.extend(weight_tensors(init_weights(d, hd, c, seed), d, hd, c));
            v
        }
        KernelSpec::MlpTrain { .. } => {
            want(4, "N,D,H,C")?;
            let (n, d, hd, c) = (size[0], size[1], size[2], size[3]);
            let centers = t(vec![c, d]);
            let noise = t(vec![n, d]);
            let x: Vec<f32> = (0..n * d)
                .map(|i| 3.0 * centers.data[(i / d % c) * d + i % d] + 0.5 * noise.data[i])
                .collect();
            let mut v = vec![
                Tensor {
                    shape: vec![n, d],
                    data: x,
                },
                Tensor {
                    shape: vec![n],
                    data: (0..n).map(|i| (i % c) as f32).collect(),
                },
            ];
            v.extend(weight_tensors(init_weights(d, hd, c, seed), d, hd, c));
            v
        }
        KernelSpec::Custom { .. } => {
            return Err(JobError::Invalid {
                field: "input".into(),
                msg: "custom kernels take their inputs from --input files".into(),
            })
        }
    })
}

/// The CPU reference's outputs for a catalog job (`None` for custom WGSL or malformed input).
pub fn expected(job: &super::job::GpuJob) -> Option<Vec<super::tensor::Tensor>> {
    use super::job::KernelSpec;
    // Shapes are checked first, so the indexing below stays in bounds.
    job.plan(&super::job::JobLimits::default(), u64::MAX).ok()?;
    use super::kernels::ElementwiseOp;
    use super::tensor::Tensor;
    let i = &job.inputs;
    let out = |shape: Vec<usize>, data: Vec<f32>| Some(vec![Tensor { shape, data }]);
    match &job.kernel {
        KernelSpec::Matmul => {
            let (m, k, n) = (i[0].shape[0], i[0].shape[1], *i[1].shape.get(1)?);
            out(vec![m, n], matmul(&i[0].data, &i[1].data, m, k, n))
        }
        KernelSpec::Elementwise { op } => {
            let d = match op {
                ElementwiseOp::Add => add(&i[0].data, &i.get(1)?.data),
                ElementwiseOp::Mul => mul(&i[0].data, &i.get(1)?.data),
                ElementwiseOp::Relu => relu(&i[0].data),
                ElementwiseOp::Gelu => gelu(&i[0].data),
            };
            out(i[0].shape.clone(), d)
        }
        KernelSpec::Softmax => {
            let (r, c) = match i[0].shape[..] {
                [c] => (1, c),
                [r, c] => (r, c),
                _ => return None,
            };
            out(i[0].shape.clone(), softmax(&i[0].data, r, c))
        }
        KernelSpec::MlpInfer => {
            let (b, d) = (i[0].shape[0], i[0].shape[1]);
            let (hd, c) = (i.get(1)?.shape[1], i.get(3)?.shape[1]);
            let w = weights_of(&i[1..5]);
            out(vec![b, c], mlp_infer(&i[0].data, &w, b, d, hd, c))
        }
        KernelSpec::MlpTrain { lr, batch, epochs } => {
            let (n, d) = (i[0].shape[0], i[0].shape[1]);
            let (hd, c) = (i.get(2)?.shape[1], i.get(4)?.shape[1]);
            let shape = TrainShape {
                n: n as u32,
                d: d as u32,
                hd: hd as u32,
                c: c as u32,
                batch: (*batch).min(n as u32),
                epochs: *epochs,
            };
            let mut w = weights_of(&i[2..6]);
            let labels: Vec<u32> = i[1].data.iter().map(|&l| l as u32).collect();
            let mut loss = vec![0.0; *epochs as usize];
            let steps = shape.total_steps() as u32;
            mlp_train(
                &i[0].data, &labels, &mut w, &shape, *lr, 0, steps, &mut loss,
            );
            let mut v = weight_tensors(w, d, hd, c);
            v.push(Tensor {
                shape: vec![*epochs as usize],
                data: loss,
            });
            Some(v)
        }
        KernelSpec::Custom { .. } => None,
    }
}
