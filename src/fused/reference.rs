//! The fused operations written with burn's tensor operations: the default implementation
//! for every backend without a kernel of its own (CUDA, ndarray), and the reference the
//! kernels are tested against.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Distribution, TensorPrimitive};

use super::AttentionOptions;

pub(super) fn wrap<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

pub(super) fn unwrap<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// [b, l, heads·d] → [b, heads, l, d]
fn split_heads<B: Backend>(t: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, w] = t.dims();
    t.reshape([b, l, heads, w / heads]).swap_dims(1, 2)
}

/// [b, heads, l, d] → [b, l, heads·d]
fn merge_heads<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, l, d] = t.dims();
    t.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Attention weights softmax(scale·QKᵀ + penalty) [b, h, lq, lk].
pub fn attention_probs<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    key_mask: Option<Tensor<B, 2>>,
    o: AttentionOptions,
) -> Tensor<B, 4> {
    let q = split_heads(q, o.num_heads);
    let k = split_heads(k, o.num_heads);
    let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(o.scale);
    if let Some(mask) = key_mask {
        let penalty = super::finite_in(scores.dtype(), o.mask_penalty as f64);
        let penalty = (mask.neg().add_scalar(1.0) * penalty)
            .unsqueeze_dim::<3>(1)
            .unsqueeze_dim::<4>(1);
        scores = scores + penalty;
    }
    softmax(scores, 3)
}

pub fn attention_forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    key_mask: Option<FloatTensor<B>>,
    dropout_mask: Option<FloatTensor<B>>,
    o: AttentionOptions,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let probs = attention_probs(wrap(q), wrap(k), key_mask.map(wrap), o);
    let weights = match dropout_mask {
        Some(m) => probs.clone() * wrap::<B, 4>(m),
        None => probs.clone(),
    };
    let out = merge_heads(weights.matmul(split_heads(wrap(v), o.num_heads)));
    (unwrap(out), unwrap(probs))
}

pub fn attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    probs: FloatTensor<B>,
    dropout_mask: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    o: AttentionOptions,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let h = o.num_heads;
    let (q, k, v) = (
        split_heads(wrap(q), h),
        split_heads(wrap(k), h),
        split_heads(wrap(v), h),
    );
    let p: Tensor<B, 4> = wrap(probs);
    let g = split_heads(wrap(grad), h);
    let mask = dropout_mask.map(wrap::<B, 4>);
    let weights = match &mask {
        Some(m) => p.clone() * m.clone(),
        None => p.clone(),
    };
    let dv = weights.swap_dims(2, 3).matmul(g.clone());
    let mut dw = g.matmul(v.swap_dims(2, 3));
    if let Some(m) = mask {
        dw = dw * m;
    }
    let row = (dw.clone() * p.clone()).sum_dim(3);
    let ds = p * (dw - row);
    let dq = ds.clone().matmul(k).mul_scalar(o.scale);
    let dk = ds.swap_dims(2, 3).matmul(q).mul_scalar(o.scale);
    (
        unwrap(merge_heads(dq)),
        unwrap(merge_heads(dk)),
        unwrap(merge_heads(dv)),
    )
}

pub fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let y = wrap::<B, 2>(x).matmul(wrap(weight)) + wrap::<B, 1>(bias).unsqueeze::<2>();
    unwrap(y)
}

pub fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x, w, g): (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) = (wrap(x), wrap(weight), wrap(grad));
    let d_out = g.dims()[1];
    let dx = g.clone().matmul(w.transpose());
    let dw = x.transpose().matmul(g.clone());
    let db = g.sum_dim(0).reshape([d_out]);
    (unwrap(dx), unwrap(dw), unwrap(db))
}

/// Layer normalisation over the last dimension with any rank, as burn's LayerNorm computes it.
fn normalise<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    x.sub(mean).div(var.add_scalar(eps).sqrt())
}

pub fn layer_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: Option<FloatTensor<B>>,
    eps: f64,
) -> FloatTensor<B> {
    let (x, dims) = flatten(x);
    let y = normalise(x, eps) * wrap::<B, 1>(gamma).unsqueeze::<2>();
    let y = match beta {
        Some(b) => y + wrap::<B, 1>(b).unsqueeze::<2>(),
        None => y,
    };
    B::float_reshape(unwrap(y), dims.into())
}

pub fn layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    eps: f64,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x, dims) = flatten(x);
    let (dy, _) = flatten(grad);
    let [_, d] = x.dims();
    let (var, mean) = x.clone().var_mean_bias(1);
    let rstd = var.add_scalar(eps).sqrt().recip();
    let xhat = (x - mean) * rstd.clone();
    let dgamma = (dy.clone() * xhat.clone()).sum_dim(0).reshape([d]);
    let dbeta = dy.clone().sum_dim(0).reshape([d]);
    let g = dy * wrap::<B, 1>(gamma).unsqueeze::<2>();
    let mean_g = g.clone().mean_dim(1);
    let mean_gx = (g.clone() * xhat.clone()).mean_dim(1);
    let dx = rstd * (g - mean_g - xhat * mean_gx);
    (
        B::float_reshape(unwrap(dx), dims.into()),
        unwrap(dgamma),
        unwrap(dbeta),
    )
}

/// Any-rank float tensor as [rows, last dim], with its original dims.
fn flatten<B: Backend>(t: FloatTensor<B>) -> (Tensor<B, 2>, Vec<usize>) {
    let dims = burn::tensor::TensorMetadata::shape(&t).to_vec();
    let d = *dims.last().expect("at least one dimension");
    let n: usize = dims.iter().product();
    let flat: Tensor<B, 1> = wrap::<B, 1>(B::float_reshape(t, [n].into()));
    (flat.reshape([n / d.max(1), d]), dims)
}

pub fn gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::gelu(x)
}

pub fn gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    B::gelu_backward(x, grad)
}

/// `x + z ⊙ mask`, or `x + z` without a mask.
pub fn residual<B: Backend>(
    x: FloatTensor<B>,
    z: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let z = match mask {
        Some(m) => B::float_mul(z, m),
        None => z,
    };
    B::float_add(x, z)
}

/// Mean sparse categorical cross-entropy of logits [n, c] against labels [n], as a [1] tensor.
pub fn cross_entropy<B: Backend>(logits: FloatTensor<B>, labels: IntTensor<B>) -> FloatTensor<B> {
    let logits: Tensor<B, 2> = wrap(logits);
    let labels: Tensor<B, 1, Int> = Tensor::from_primitive(labels);
    let [n, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([n, 1]));
    unwrap(picked.mean().neg())
}

/// d loss / d logits = (softmax − one-hot) · grad / n.
pub fn cross_entropy_backward<B: Backend>(
    logits: FloatTensor<B>,
    labels: IntTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let logits: Tensor<B, 2> = wrap(logits);
    let labels: Tensor<B, 1, Int> = Tensor::from_primitive(labels);
    let [n, c] = logits.dims();
    let device = logits.device();
    let one_hot = Tensor::<B, 2>::zeros([n, c], &device).scatter(
        1,
        labels.reshape([n, 1]),
        Tensor::ones([n, 1], &device),
        burn::tensor::IndexingUpdateOp::Add,
    );
    let g: Tensor<B, 1> = wrap(grad);
    let scale = g.reshape([1, 1]).div_scalar(n as f64);
    unwrap((softmax(logits, 1) - one_hot) * scale)
}

/// Inverted-dropout keep mask {0, 1/(1−p)}, drawn as burn's Dropout draws it.
pub fn dropout_mask<B: Backend, const D: usize>(
    shape: [usize; D],
    prob: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    let keep = 1.0 - prob;
    Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), device).mul_scalar(1.0 / keep)
}

/// Σₜ x·m / max(Σₜ m, 1) over dim 1, or the plain mean.
pub fn mean_pool<B: Backend>(x: FloatTensor<B>, mask: Option<FloatTensor<B>>) -> FloatTensor<B> {
    let x: Tensor<B, 3> = wrap(x);
    let [b, _, d] = x.dims();
    let pooled = match mask {
        Some(mask) => {
            let mask: Tensor<B, 2> = wrap(mask);
            let counts = mask.clone().sum_dim(1).clamp_min(1.0);
            (x * mask.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d]) / counts
        }
        None => x.mean_dim(1).reshape([b, d]),
    };
    unwrap(pooled)
}

pub fn mean_pool_backward<B: Backend>(
    mask: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    length: usize,
) -> FloatTensor<B> {
    let grad: Tensor<B, 2> = wrap(grad);
    let [b, d] = grad.dims();
    let dx = match mask {
        Some(mask) => {
            let mask: Tensor<B, 2> = wrap(mask);
            let counts = mask.clone().sum_dim(1).clamp_min(1.0);
            (grad / counts).unsqueeze_dim::<3>(1) * mask.unsqueeze_dim::<3>(2)
        }
        None => {
            let scale = 1.0 / length as f64;
            grad.unsqueeze_dim::<3>(1)
                .expand([b, length, d])
                .mul_scalar(scale)
        }
    };
    unwrap(dx)
}
