//! The fused operations written with burn's tensor operations: the default implementation
//! for every backend without a kernel of its own (CUDA, ndarray), and the reference the
//! kernels are tested against.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Distribution, FloatDType, TensorMetadata, TensorPrimitive};

use super::{
    AttentionGrads, AttentionMasks, AttentionOptions, PartOptions, RelativeOptions, Rotary,
};

pub(super) fn wrap<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

pub(super) fn unwrap<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// a · b, under [`super::autocast_bf16`] from f32 operands rounded to bf16: the backend sums
/// the products in f32 (CubeCL's matmul accumulates half types in f32) and rounds the result
/// to bf16, which comes back as f32, as a product under PyTorch's autocast does. Through
/// autodiff the casts' backward rounds the gradient too, so the backward products run in bf16
/// as well.
fn product<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    product_as(a, b, super::autocast_bf16())
}

/// [`product`] with bf16 operands where `bf16` (and both are f32), so that the tests need not
/// turn the process-wide switch on under the other tests' feet.
fn product_as<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    bf16: bool,
) -> Tensor<B, D> {
    let f32_operands = a.dtype() == DType::F32 && b.dtype() == DType::F32;
    if !(f32_operands && bf16) {
        return a.matmul(b);
    }
    let product = a.cast(FloatDType::BF16).matmul(b.cast(FloatDType::BF16));
    product.cast(FloatDType::F32)
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

/// 1 where key j is out of query i's reach (|i − j| > window), else 0: [lq, lk].
fn outside_window<B: Backend>(
    lq: usize,
    lk: usize,
    window: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let outside: Vec<f32> = (0..lq)
        .flat_map(|i| (0..lk).map(move |j| f32::from(u8::from(i.abs_diff(j) > window))))
        .collect();
    Tensor::from_data(TensorData::new(outside, [lq, lk]), device)
}

/// Attention weights softmax(scale·QKᵀ + bias + penalties) [b, h, lq, lk], with the
/// options' window and evenly attending padded queries.
pub fn attention_probs<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    key_mask: Option<Tensor<B, 2>>,
    bias: Option<Tensor<B, 4>>,
    o: AttentionOptions,
) -> Tensor<B, 4> {
    let q = split_heads(q, o.num_heads);
    let k = split_heads(k, o.num_heads);
    let mut scores = product(q, k.swap_dims(2, 3)).mul_scalar(o.scale);
    let [b, _, lq, lk] = scores.dims();
    if let Some(bias) = bias {
        scores = scores + bias;
    }
    let penalty = super::finite_in(scores.dtype(), o.mask_penalty as f64);
    // Keys only: [b, 1, 1, lk].
    let key_mask = key_mask.map(|m| m.unsqueeze_dim::<3>(1).unsqueeze_dim::<4>(1));
    if let Some(mask) = &key_mask {
        scores = scores + mask.clone().neg().add_scalar(1.0) * penalty;
    }
    if let Some(window) = o.window {
        // Penalised once: keys already padded keep their single penalty.
        let outside = outside_window::<B>(lq, lk, window, &scores.device()).reshape([1, 1, lq, lk]);
        let outside = match &key_mask {
            Some(mask) => outside * mask.clone(),
            None => outside,
        };
        scores = scores + outside * penalty;
    }
    let probs = softmax(scores, 3);
    match key_mask {
        Some(mask) if o.even_padded_queries => {
            let query = mask.reshape([b, 1, lq, 1]);
            let even = query.clone().neg().add_scalar(1.0) / lk as f64;
            probs * query + even
        }
        _ => probs,
    }
}

pub fn attention_forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    masks: AttentionMasks<FloatTensor<B>>,
    o: AttentionOptions,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let probs = attention_probs(
        wrap(q),
        wrap(k),
        masks.key_mask.map(wrap),
        masks.bias.map(wrap),
        o,
    );
    let weights = match masks.dropout_mask {
        Some(m) => probs.clone() * wrap::<B, 4>(m),
        None => probs.clone(),
    };
    let out = merge_heads(product(weights, split_heads(wrap(v), o.num_heads)));
    (unwrap(out), unwrap(probs))
}

#[allow(clippy::too_many_arguments)]
pub fn attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    probs: FloatTensor<B>,
    masks: AttentionMasks<FloatTensor<B>>,
    grad: FloatTensor<B>,
    o: AttentionOptions,
    bias_grad: bool,
) -> AttentionGrads<FloatTensor<B>> {
    let h = o.num_heads;
    let (q, k, v) = (
        split_heads(wrap(q), h),
        split_heads(wrap(k), h),
        split_heads(wrap(v), h),
    );
    let p: Tensor<B, 4> = wrap(probs);
    let g = split_heads(wrap(grad), h);
    let mask = masks.dropout_mask.map(wrap::<B, 4>);
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
    let mut ds = p * (dw - row);
    if let (Some(key_mask), true) = (masks.key_mask, o.even_padded_queries) {
        // The even rows of padded queries do not depend on the scores.
        let key_mask: Tensor<B, 2> = wrap(key_mask);
        let [b, lq] = key_mask.dims();
        ds = ds * key_mask.reshape([b, 1, lq, 1]);
    }
    let dq = ds.clone().matmul(k).mul_scalar(o.scale);
    let dk = ds.clone().swap_dims(2, 3).matmul(q).mul_scalar(o.scale);
    AttentionGrads {
        q: unwrap(merge_heads(dq)),
        k: unwrap(merge_heads(dk)),
        v: unwrap(merge_heads(dv)),
        bias: bias_grad.then(|| unwrap(ds)),
    }
}

/// The table row of each (i, j) as an index over the product's columns: [l, l], rows
/// counted from `first` (the first row any distance reads).
fn relative_index<B: Backend>(
    l: usize,
    o: &RelativeOptions,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let (first, _) = o.rows_used();
    let index: Vec<i64> = (0..l)
        .flat_map(|i| {
            (0..l).map(move |j| (o.rows_by_distance[i + l - 1 - j] as usize - first) as i64)
        })
        .collect();
    Tensor::from_data(TensorData::new(index, [l, l]), device)
}

/// x's heads against the table rows the distances read: [b, h, l, used rows].
fn relative_product<B: Backend>(
    x: Tensor<B, 3>,
    table: Tensor<B, 2>,
    o: &RelativeOptions,
) -> Tensor<B, 4> {
    let [b, _, _] = x.dims();
    let (first, last) = o.rows_used();
    let [_, width] = table.dims();
    let used = table
        .slice([first..last + 1, 0..width])
        .reshape([1, last + 1 - first, width]);
    let table = split_heads(used, o.num_heads);
    let [_, h, rows, d] = table.dims();
    product(
        split_heads(x, o.num_heads),
        table.expand([b, h, rows, d]).swap_dims(2, 3),
    )
}

pub fn relative_scores<B: Backend>(
    x: FloatTensor<B>,
    table: FloatTensor<B>,
    o: &RelativeOptions,
) -> FloatTensor<B> {
    let x: Tensor<B, 3> = wrap(x);
    let [b, l, _] = x.dims();
    let h = o.num_heads;
    let index = relative_index::<B>(l, o, &x.device());
    let product = relative_product(x, wrap(table), o).mul_scalar(o.scale);
    let scores = match o.transposed {
        false => product.gather(3, index.reshape([1, 1, l, l]).expand([b, h, l, l])),
        true => product
            .gather(
                3,
                index
                    .swap_dims(0, 1)
                    .reshape([1, 1, l, l])
                    .expand([b, h, l, l]),
            )
            .swap_dims(2, 3),
    };
    unwrap(scores)
}

pub fn relative_scores_backward<B: Backend>(
    x: FloatTensor<B>,
    table: FloatTensor<B>,
    grad: FloatTensor<B>,
    o: &RelativeOptions,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (x, table): (Tensor<B, 3>, Tensor<B, 2>) = (wrap(x), wrap(table));
    let [b, l, _] = x.dims();
    let [rows, width] = table.dims();
    let h = o.num_heads;
    let (first, last) = o.rows_used();
    let used = last + 1 - first;
    let device = x.device();
    let index = relative_index::<B>(l, o, &device);
    let grad: Tensor<B, 4> = wrap::<B, 4>(grad).mul_scalar(o.scale);
    // The gradient of the product: each score's gradient added at the column it read.
    let (grad, index) = match o.transposed {
        false => (grad, index),
        true => (grad.swap_dims(2, 3), index.swap_dims(0, 1)),
    };
    let index = index.reshape([1, 1, l, l]).expand([b, h, l, l]);
    let dproduct = Tensor::<B, 4>::zeros([b, h, l, used], &device).scatter(
        3,
        index,
        grad,
        burn::tensor::IndexingUpdateOp::Add,
    );
    let table_used = split_heads(
        table
            .slice([first..last + 1, 0..width])
            .reshape([1, used, width]),
        h,
    );
    let d = width / h;
    let dx = dproduct.clone().matmul(table_used.expand([b, h, used, d]));
    let dtable_used = dproduct
        .swap_dims(2, 3)
        .matmul(split_heads(x, h))
        .sum_dim(0)
        .swap_dims(1, 2)
        .reshape([used, width]);
    let dtable = Tensor::<B, 2>::zeros([rows, width], &device)
        .slice_assign([first..last + 1, 0..width], dtable_used);
    (unwrap(merge_heads(dx)), unwrap(dtable))
}

pub fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let y = product(wrap::<B, 2>(x), wrap(weight));
    match bias {
        Some(b) => unwrap(y + wrap::<B, 1>(b).unsqueeze::<2>()),
        None => unwrap(y),
    }
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

/// cos and sin of a rotary table as [1, length, 1, head_dim] tensors.
fn rotary_tensors<B: Backend>(
    t: &Rotary,
    l: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let d = t.head_dim;
    let table =
        |v: &[f32]| Tensor::from_data(TensorData::new(v[..l * d].to_vec(), [1, l, 1, d]), device);
    (table(&t.cos), table(&t.sin))
}

/// rotate_half over the last dimension: (−x₂, x₁); with `transpose`, (x₂, −x₁).
fn rotate_half<B: Backend>(x: Tensor<B, 4>, transpose: bool) -> Tensor<B, 4> {
    let [b, l, n, d] = x.dims();
    let first = x.clone().slice([0..b, 0..l, 0..n, 0..d / 2]);
    let second = x.slice([0..b, 0..l, 0..n, d / 2..d]);
    match transpose {
        false => Tensor::cat(vec![second.neg(), first], 3),
        true => Tensor::cat(vec![second, first.neg()], 3),
    }
}

pub fn packed_part<B: Backend>(x: FloatTensor<B>, o: &PartOptions) -> FloatTensor<B> {
    let x: Tensor<B, 3> = wrap(x);
    let [b, l, full] = x.dims();
    let w = full / o.parts;
    let part = x.slice([0..b, 0..l, o.part * w..(o.part + 1) * w]);
    let Some(t) = &o.rotary else {
        return unwrap(part);
    };
    let (cos, sin) = rotary_tensors::<B>(t, l, &part.device());
    let heads = part.reshape([b, l, w / t.head_dim, t.head_dim]);
    let out = heads.clone() * cos + rotate_half(heads, false) * sin;
    unwrap(out.reshape([b, l, w]))
}

pub fn packed_part_backward<B: Backend>(grad: FloatTensor<B>, o: &PartOptions) -> FloatTensor<B> {
    let g: Tensor<B, 3> = wrap(grad);
    let [b, l, w] = g.dims();
    let device = g.device();
    let d_part = match &o.rotary {
        Some(t) => {
            let (cos, sin) = rotary_tensors::<B>(t, l, &device);
            let heads = g.reshape([b, l, w / t.head_dim, t.head_dim]);
            let d = heads.clone() * cos + rotate_half(heads * sin, true);
            d.reshape([b, l, w])
        }
        None => g,
    };
    let dx = Tensor::<B, 3>::zeros([b, l, w * o.parts], &device)
        .slice_assign([0..b, 0..l, o.part * w..(o.part + 1) * w], d_part);
    unwrap(dx)
}

/// x as [rows, last dimension], and its shape.
fn rows_of<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 2>, Vec<usize>) {
    let dims = x.shape().to_vec();
    let last = *dims.last().expect("a last dimension");
    let rows = dims.iter().product::<usize>() / last.max(1);
    (wrap::<B, 2>(B::float_reshape(x, [rows, last].into())), dims)
}

pub fn geglu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let (x, mut dims) = rows_of::<B>(x);
    let [n, full] = x.dims();
    let w = full / 2;
    let input = x.clone().slice([0..n, 0..w]);
    let gate = x.slice([0..n, w..full]);
    let y: Tensor<B, 2> = wrap::<B, 2>(gelu::<B>(unwrap(input))) * gate;
    *dims.last_mut().expect("a last dimension") = w;
    B::float_reshape(unwrap(y), dims.into())
}

pub fn geglu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let (x, dims) = rows_of::<B>(x);
    let (g, _) = rows_of::<B>(grad);
    let [n, full] = x.dims();
    let w = full / 2;
    let input = x.clone().slice([0..n, 0..w]);
    let gate = x.slice([0..n, w..full]);
    let d_input: Tensor<B, 2> = wrap(gelu_backward::<B>(
        unwrap(input.clone()),
        unwrap(g.clone() * gate),
    ));
    let d_gate = wrap::<B, 2>(gelu::<B>(unwrap(input))) * g;
    B::float_reshape(unwrap(Tensor::cat(vec![d_input, d_gate], 1)), dims.into())
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

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;
    use crate::fused::amx::tests::reference;

    type Ad = Autodiff<Flex>;

    fn pattern(len: usize, phase: f32) -> Vec<f32> {
        (0..len)
            .map(|i| (i as f32 * 0.37 + phase).sin() * 1.7)
            .collect()
    }

    /// M [rows, cols] → Mᵀ [cols, rows], both row-major.
    fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| m[i % rows * cols + i / rows])
            .collect()
    }

    fn values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
        assert_eq!(t.dtype(), DType::F32, "a result in f32");
        t.into_data().to_vec::<f32>().expect("f32 data")
    }

    /// Each of `got` a bf16 value within one bf16 rounding (2⁻⁸ relative, of the largest) of
    /// `want`, computed in f64.
    #[track_caller]
    fn assert_bf16_close(got: &[f32], want: &[f64]) {
        let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.to_bits() & 0xffff, 0, "{g} is not a bf16 value");
            assert!(
                (f64::from(*g) - w).abs() <= scale / 256.0,
                "{g} against {w}"
            );
        }
    }

    /// Under autocast a product is the bf16 roundings' products summed and rounded to bf16,
    /// given back in f32; through autodiff the gradients come back in f32 from bf16 products
    /// of the rounded incoming gradient. Off, it is the plain f32 product.
    #[test]
    fn autocast_products_run_on_bf16_operands_and_give_f32_back() {
        let (m, k, n) = (5, 37, 3);
        let (av, bv, wv) = (
            pattern(m * k, 0.0),
            pattern(k * n, 1.0),
            pattern(m * n, 2.0),
        );
        let device = Default::default();
        let tensor = |v: &[f32], shape: [usize; 2]| {
            Tensor::<Ad, 2>::from_data(TensorData::new(v.to_vec(), shape), &device)
        };
        let (a, b) = (
            tensor(&av, [m, k]).require_grad(),
            tensor(&bv, [k, n]).require_grad(),
        );
        let y = product_as(a.clone(), b.clone(), true);
        assert_bf16_close(&values(y.clone()), &reference(&av, &bv, m, k, n));
        let plain = values(product_as(a.clone(), b.clone(), false));
        assert!(plain.iter().any(|v| v.to_bits() & 0xffff != 0), "f32 off");

        // d(Σ y·w)/dA = w·Bᵀ and /dB = Aᵀ·w, each from bf16 roundings.
        let grads = (y * tensor(&wv, [m, n])).sum().backward();
        let da = reference(&wv, &transposed(&bv, k, n), m, n, k);
        let db = reference(&transposed(&av, m, k), &wv, k, m, n);
        assert_bf16_close(&values(a.grad(&grads).expect("dA")), &da);
        assert_bf16_close(&values(b.grad(&grads).expect("dB")), &db);
    }
}
