//! What the layer files' tests share: tensors from plain values and back, a forward context
//! from mask rows, hand-set weights, and plain-Rust reference calculations (loops over `Vec`s,
//! no tensor ops and none of the layers' code) that the layers' outputs are checked against.

use burn::backend::Flex;
use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::ForwardCtx;

pub type B = Flex;

/// A tensor of `shape` holding `values` in row-major order.
pub fn tensor<const D: usize>(values: &[f32], shape: [usize; D]) -> Tensor<B, D> {
    Tensor::<B, 1>::from_floats(values, &Default::default()).reshape(shape)
}

/// A tensor's values in row-major order.
pub fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

/// Token ids [batch, length] from rows of ids.
pub fn ids(rows: &[&[i64]]) -> Tensor<B, 2, Int> {
    let (b, l) = (rows.len(), rows[0].len());
    Tensor::<B, 1, Int>::from_ints(rows.concat().as_slice(), &Default::default()).reshape([b, l])
}

/// A context whose mask has these rows (1 for a token, 0 for padding); token types all 0.
pub fn forward_ctx(mask_rows: &[&[f32]]) -> ForwardCtx<B> {
    let (b, l) = (mask_rows.len(), mask_rows[0].len());
    ForwardCtx {
        mask: tensor(&mask_rows.concat(), [b, l]),
        token_type_ids: Tensor::zeros([b, l], &Default::default()),
    }
}

/// Asserts that `got` and `want` agree entry by entry to within `tolerance`.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance,
            "entry {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// `n` fixed values in [-0.5, 0.5), a different run for each `seed`: hand-set weights without
/// writing each one out. Neighbouring entries differ, so a transposed or shifted index shows.
pub fn pattern(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13 + 3) % 23) as f32 / 23.0 - 0.5)
        .collect()
}

/// Sets a linear map's kernel [d_in, d_out] and bias [d_out] to `pattern` values.
pub fn set_linear(linear: &mut Linear<B>, seed: usize) {
    let [d_in, d_out] = linear.weight.val().dims();
    linear.weight = Param::from_tensor(tensor(&pattern(d_in * d_out, seed), [d_in, d_out]));
    linear.bias = Some(Param::from_tensor(tensor(
        &pattern(d_out, seed + 1),
        [d_out],
    )));
}

/// Sets a layer norm's scale to 1 + `pattern` and its shift to `pattern` values.
pub fn set_norm(norm: &mut LayerNorm<B>, seed: usize) {
    let [d] = norm.gamma.val().dims();
    let gamma: Vec<f32> = pattern(d, seed).iter().map(|g| 1.0 + g).collect();
    norm.gamma = Param::from_tensor(tensor(&gamma, [d]));
    norm.beta = Some(Param::from_tensor(tensor(&pattern(d, seed + 1), [d])));
}

/// Plain-Rust versions of the building blocks, one example at a time: a sequence is a list of
/// positions, each a list of features.
pub mod plain {
    use burn::nn::{LayerNorm, Linear};

    use super::{B, values};

    pub type Rows = Vec<Vec<f32>>;

    /// `rows` (row-major values) cut into rows of `width`.
    pub fn rows(values: &[f32], width: usize) -> Rows {
        values.chunks(width).map(<[f32]>::to_vec).collect()
    }

    /// A linear map read out of a burn `Linear`: y = x·kernel + bias.
    pub struct Affine {
        /// [d_in][d_out]
        pub kernel: Rows,
        pub bias: Vec<f32>,
    }

    impl Affine {
        pub fn of(linear: &Linear<B>) -> Self {
            let [_, d_out] = linear.weight.val().dims();
            Affine {
                kernel: rows(&values(linear.weight.val()), d_out),
                bias: linear
                    .bias
                    .as_ref()
                    .map_or(vec![0.0; d_out], |b| values(b.val())),
            }
        }
        pub fn apply(&self, x: &[f32]) -> Vec<f32> {
            let mut y = self.bias.clone();
            for (xi, row) in x.iter().zip(&self.kernel) {
                for (yj, w) in y.iter_mut().zip(row) {
                    *yj += xi * w;
                }
            }
            y
        }
        pub fn apply_rows(&self, x: &Rows) -> Rows {
            x.iter().map(|r| self.apply(r)).collect()
        }
    }

    /// A layer norm read out of a burn `LayerNorm`, with the epsilon the layer passes.
    pub struct Norm {
        pub gamma: Vec<f32>,
        pub beta: Vec<f32>,
        pub epsilon: f32,
    }

    impl Norm {
        pub fn of(norm: &LayerNorm<B>, epsilon: f64) -> Self {
            let gamma = values(norm.gamma.val());
            let beta = norm
                .beta
                .as_ref()
                .map_or(vec![0.0; gamma.len()], |b| values(b.val()));
            Norm {
                gamma,
                beta,
                epsilon: epsilon as f32,
            }
        }
        /// (x − mean) / sqrt(biased variance + epsilon) · gamma + beta.
        pub fn apply(&self, x: &[f32]) -> Vec<f32> {
            let n = x.len() as f32;
            let mean = x.iter().sum::<f32>() / n;
            let variance = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
            let scale = 1.0 / (variance + self.epsilon).sqrt();
            (x.iter().zip(&self.gamma).zip(&self.beta))
                .map(|((v, g), b)| (v - mean) * scale * g + b)
                .collect()
        }
        pub fn apply_rows(&self, x: &Rows) -> Rows {
            x.iter().map(|r| self.apply(r)).collect()
        }
    }

    pub fn add(a: &Rows, b: &Rows) -> Rows {
        (a.iter().zip(b))
            .map(|(x, y)| x.iter().zip(y).map(|(u, v)| u + v).collect())
            .collect()
    }

    pub fn softmax(x: &[f32]) -> Vec<f32> {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    /// Multi-head attention weights of each query over the keys whose `key_mask` is 1 (the
    /// others get none): `[head][query][key]`. Head h reads columns h·dk..(h+1)·dk.
    pub fn attention_weights(
        q: &Rows,
        k: &Rows,
        key_mask: &[f32],
        heads: usize,
        scale: f32,
    ) -> Vec<Rows> {
        let dk = q[0].len() / heads;
        (0..heads)
            .map(|h| {
                let cols = h * dk..(h + 1) * dk;
                q.iter()
                    .map(|qi| {
                        let real: Vec<usize> =
                            (0..k.len()).filter(|&j| key_mask[j] > 0.0).collect();
                        let scores: Vec<f32> = (real.iter())
                            .map(|&j| {
                                let dot: f32 = (cols.clone()).map(|c| qi[c] * k[j][c]).sum();
                                dot * scale
                            })
                            .collect();
                        let mut weights = vec![0.0; k.len()];
                        for (&j, w) in real.iter().zip(softmax(&scores)) {
                            weights[j] = w;
                        }
                        weights
                    })
                    .collect()
            })
            .collect()
    }

    /// Multi-head attention: each head's weights applied to its value columns, heads side by
    /// side. [query][heads·dv]
    pub fn attention(
        q: &Rows,
        k: &Rows,
        v: &Rows,
        key_mask: &[f32],
        heads: usize,
        scale: f32,
    ) -> Rows {
        let weights = attention_weights(q, k, key_mask, heads, scale);
        let dv = v[0].len() / heads;
        (0..q.len())
            .map(|i| {
                (0..heads * dv)
                    .map(|c| {
                        let h = c / dv;
                        (0..v.len()).map(|j| weights[h][i][j] * v[j][c]).sum()
                    })
                    .collect()
            })
            .collect()
    }

    /// A recurrent gate read out of burn's `GateController`: x·W + b + h·U + c.
    pub struct Gate {
        pub input: Affine,
        pub hidden: Affine,
    }

    impl Gate {
        pub fn of(gate: &burn::nn::GateController<B>) -> Self {
            Gate {
                input: Affine::of(&gate.input_transform),
                hidden: Affine::of(&gate.hidden_transform),
            }
        }
        /// The gate's value before its activation, for input `x` and previous hidden state `h`.
        pub fn pre(&self, x: &[f32], h: &[f32]) -> Vec<f32> {
            let (a, b) = (self.input.apply(x), self.hidden.apply(h));
            a.iter().zip(&b).map(|(u, v)| u + v).collect()
        }
    }

    pub fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    /// What a masked bidirectional recurrent layer gives for one row whose first `tokens`
    /// steps are real, from each direction's cell run (its hidden state after each step of the
    /// steps given): the final state (forward after the last real token, then backward after
    /// reading the real tokens from last to first) and each real position's outputs.
    pub fn bidirectional(
        x: &Rows,
        tokens: usize,
        forward: impl Fn(&Rows) -> Rows,
        backward: impl Fn(&Rows) -> Rows,
    ) -> (Vec<f32>, Rows) {
        let real = x[..tokens].to_vec();
        let ahead = forward(&real);
        let back = backward(&real.iter().rev().cloned().collect());
        let last = [ahead[tokens - 1].clone(), back[tokens - 1].clone()].concat();
        let steps = (0..tokens)
            .map(|t| [ahead[t].clone(), back[tokens - 1 - t].clone()].concat())
            .collect();
        (last, steps)
    }

    /// The standard normal distribution function Φ, from its Taylor series (plenty of terms
    /// for |x| ≤ 3): exact GELU is x·Φ(x).
    pub fn normal_cdf(x: f64) -> f64 {
        // erf(z) = 2/√π Σ (−1)ⁿ z^(2n+1) / (n! (2n+1))
        let z = x / std::f64::consts::SQRT_2;
        let (mut term, mut sum) = (z, 0.0);
        for n in 0..60 {
            sum += term / (2 * n + 1) as f64;
            term *= -z * z / (n + 1) as f64;
        }
        0.5 * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
    }
}
