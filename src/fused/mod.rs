//! Fused operations through burn's backend-extension pattern.
//!
//! [`PipeOps`] extends a burn backend with scaled dot-product attention, layer
//! normalisation, exact GELU and softmax cross-entropy. Its default methods are the
//! decomposed tensor-op formulas ([`reference`]), so every backend keeps working unchanged;
//! burn-flex gets row-parallel kernels on its raw storage ([`flex`]) and `Autodiff<B>` gets
//! tracked operations with their own backward passes ([`autodiff`]), so that training reaches
//! the kernels instead of burn-autodiff's decompositions.
//!
//! The layers stay generic over `B: Backend`: the functions at the bottom of this file route
//! a call to `Flex` / `Autodiff<Flex>`'s implementation when `B` is one of them (a `TypeId`
//! check, no unsafe casts) and to the reference formulas otherwise.

pub mod adam;
pub mod amx;
mod autodiff;
mod flex;
pub mod math;
pub mod reference;

use std::any::{Any, TypeId};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, FloatDType, TensorMetadata, TensorPrimitive};

use reference::{unwrap, wrap};

/// What the attention kernel needs besides its tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionOptions {
    pub num_heads: usize,
    /// Multiplies QKᵀ (1/√key_dim).
    pub scale: f32,
    /// Added to the scores of padded keys (a large negative number).
    pub mask_penalty: f32,
    /// Keys farther than this from their query (|i − j| > window) get the penalty too, once
    /// (ModernBERT's local layers); `None`: every key is in reach.
    pub window: Option<usize>,
    /// Self-attention only: a padded query (by the key mask) attends evenly to every key and
    /// passes no gradient back, as DeBERTa's `masked_fill` of whole rows does; otherwise a
    /// padded query attends like any other.
    pub even_padded_queries: bool,
}

impl AttentionOptions {
    /// Every key in reach, padded queries attending like any other.
    pub fn new(num_heads: usize, scale: f32, mask_penalty: f32) -> Self {
        AttentionOptions {
            num_heads,
            scale,
            mask_penalty,
            window: None,
            even_padded_queries: false,
        }
    }
}

/// Whether the backends without kernels of their own (CUDA) run bf16-mixed, see
/// [`set_autocast_bf16`].
static AUTOCAST_BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// bf16-mixed on the backends that take the [`reference`] formulas (CUDA), for this process:
/// the products of linear layers and of attention (QKᵀ and weights·V) round their f32
/// operands to bf16 and return f32, as PyTorch's autocast does; their backward products
/// follow through the casts. Parameters, optimizer state, softmax, LayerNorm and the loss stay
/// in f32. burn-flex has its own switch, [`amx::set_mixed`].
pub fn set_autocast_bf16(on: bool) {
    AUTOCAST_BF16.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_autocast_bf16`] is on.
pub fn autocast_bf16() -> bool {
    AUTOCAST_BF16.load(std::sync::atomic::Ordering::Relaxed)
}

/// `value` clamped to the finite range of `dtype`. A mask penalty such as −1e9 or `f32::MIN`
/// rounds to −∞ in f16 (`f32::MIN` in bf16 too), and the kept positions' 0·∞ is NaN. Half
/// precisions get half their range, so that adding a score to the penalty stays finite too.
pub fn finite_in(dtype: DType, value: f64) -> f64 {
    let max = match dtype {
        DType::F16 => burn::tensor::f16::MAX.to_f64() / 2.0,
        DType::BF16 => burn::tensor::bf16::MAX.to_f64() / 2.0,
        DType::F32 | DType::Flex32 => f64::from(f32::MAX),
        _ => f64::MAX,
    };
    value.clamp(-max, max)
}

/// DeBERTa's relative-position scores of one kind: content to position (the score of query
/// i and key j reads x_i against the table row of their distance) or position to content
/// (`transposed`: x_j).
#[derive(Clone, Debug, PartialEq)]
pub struct RelativeOptions {
    pub num_heads: usize,
    /// Multiplies every score.
    pub scale: f32,
    /// The table row each distance i − j reads, for −(length − 1) ..= length − 1 (entry
    /// i − j + length − 1).
    pub rows_by_distance: std::sync::Arc<[u32]>,
    /// Position to content: (i, j) reads x_j.
    pub transposed: bool,
}

impl RelativeOptions {
    /// The first and the last table row any distance reads.
    pub fn rows_used(&self) -> (usize, usize) {
        let rows = self.rows_by_distance.iter().map(|&r| r as usize);
        (rows.clone().min().unwrap_or(0), rows.max().unwrap_or(0))
    }
}

/// Rotary position tables in the rotate-half layout: cos and sin of each position's angles,
/// `head_dim` values a position.
#[derive(Clone, Debug, PartialEq)]
pub struct Rotary {
    pub cos: std::sync::Arc<[f32]>,
    pub sin: std::sync::Arc<[f32]>,
    pub head_dim: usize,
}

/// One part of a packed projection [b, l, parts·w] (query | key | value): which, and the
/// rotary table its heads are rotated by, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct PartOptions {
    pub part: usize,
    pub parts: usize,
    pub rotary: Option<Rotary>,
}

/// What an attention call reads besides q, k and v (each optional; shapes in [`PipeOps`]).
#[derive(Clone, Debug)]
pub struct AttentionMasks<T> {
    pub key_mask: Option<T>,
    /// Added to the scaled scores before the masks (DeBERTa's position terms).
    pub bias: Option<T>,
    pub dropout_mask: Option<T>,
}

impl<T> AttentionMasks<T> {
    /// The same masks as another tensor type (a backend's inner primitive, a cast).
    pub fn map<U>(self, f: impl Fn(T) -> U) -> AttentionMasks<U> {
        AttentionMasks {
            key_mask: self.key_mask.map(&f),
            bias: self.bias.map(&f),
            dropout_mask: self.dropout_mask.map(&f),
        }
    }
}

/// Attention's gradients: dq, dk, dv and, where asked for, the score bias's.
pub struct AttentionGrads<T> {
    pub q: T,
    pub k: T,
    pub v: T,
    pub bias: Option<T>,
}

/// A burn backend with pipe's fused operations. Tensors are primitives; shapes:
/// q [b, lq, heads·dk], k [b, lk, heads·dk], v [b, lk, heads·dv], key mask [b, lk]
/// (1 = token, 0 = padding), score bias [b, heads, lq, lk] (added to the scaled scores; the
/// full shape, not a broadcast one: its gradient comes back in that shape),
/// dropout mask [b, heads, lq, lk] ({0, 1/(1−p)}).
pub trait PipeOps: Backend {
    /// Multi-head attention output [b, lq, heads·dv].
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<FloatTensor<Self>>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        Self::fused_attention_forward(q, k, v, masks, options).0
    }
    /// Output and the attention weights before dropout [b, heads, lq, lk].
    fn fused_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<FloatTensor<Self>>,
        options: AttentionOptions,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::attention_forward::<Self>(q, k, v, masks, options)
    }
    /// Gradients (dq, dk, dv) from the output gradient, and the score bias's gradient (the
    /// scores' own) where `bias_grad` asks for it. `masks.bias` is not read.
    #[allow(clippy::too_many_arguments)]
    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        masks: AttentionMasks<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        options: AttentionOptions,
        bias_grad: bool,
    ) -> AttentionGrads<FloatTensor<Self>> {
        reference::attention_backward::<Self>(q, k, v, probs, masks, grad, options, bias_grad)
    }
    /// Relative-position scores [b, heads, l, l] of x [b, l, heads·d] against the position
    /// table [rows, heads·d] (see [`RelativeOptions`]).
    fn fused_relative_scores(
        x: FloatTensor<Self>,
        table: FloatTensor<Self>,
        options: RelativeOptions,
    ) -> FloatTensor<Self> {
        reference::relative_scores::<Self>(x, table, &options)
    }
    /// Gradients (dx, dtable) from the scores' gradient.
    fn fused_relative_scores_backward(
        x: FloatTensor<Self>,
        table: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: RelativeOptions,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::relative_scores_backward::<Self>(x, table, grad, &options)
    }
    /// Part `options.part` of x [b, l, parts·w]: [b, l, w], its heads rotated where the
    /// options have a rotary table.
    fn fused_packed_part(x: FloatTensor<Self>, options: PartOptions) -> FloatTensor<Self> {
        reference::packed_part::<Self>(x, &options)
    }
    /// dx [b, l, parts·w] from the part's gradient (zero outside the part).
    fn fused_packed_part_backward(
        grad: FloatTensor<Self>,
        options: PartOptions,
    ) -> FloatTensor<Self> {
        reference::packed_part_backward::<Self>(grad, &options)
    }
    /// GeGLU over the last dimension: x [..., 2w] → gelu(x[..., :w]) · x[..., w:] (exact GELU).
    fn fused_geglu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::geglu::<Self>(x)
    }
    fn fused_geglu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::geglu_backward::<Self>(x, grad)
    }
    /// x·W (+ b) for x [n, d_in], W [d_in, d_out], b [d_out].
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        reference::linear::<Self>(x, weight, bias)
    }
    /// x·W_i + b_i for several layers of one input x [n, d_in] (a layer's query, key and
    /// value projections): one [`fused_linear`](PipeOps::fused_linear) each (their own
    /// autodiff nodes where training); the CPU packs x once for all of them under bf16-mixed.
    fn fused_linears(
        x: FloatTensor<Self>,
        layers: Vec<(FloatTensor<Self>, Option<FloatTensor<Self>>)>,
    ) -> Vec<FloatTensor<Self>> {
        layers
            .into_iter()
            .map(|(weight, bias)| Self::fused_linear(x.clone(), weight, bias))
            .collect()
    }
    /// GELU(x·W + b), the feed-forward's first half: the two operations one after the other
    /// (through their own autodiff nodes where training); the CPU fuses them under bf16-mixed.
    fn fused_linear_gelu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        Self::fused_gelu(Self::fused_linear(x, weight, bias))
    }
    /// LayerNorm(residual + x·W + b) over the last dimension: a projection added to the
    /// residual stream and normalised, as a post-norm sublayer ends (without dropout). x is
    /// [n, d_in]; the residual has n rows of d_out, in any shape, which the output takes.
    /// The three operations one after the other (their own autodiff nodes where training);
    /// the CPU fuses them under bf16-mixed.
    fn fused_linear_residual_norm(
        (x, weight, bias): (
            FloatTensor<Self>,
            FloatTensor<Self>,
            Option<FloatTensor<Self>>,
        ),
        residual: FloatTensor<Self>,
        (gamma, beta): (FloatTensor<Self>, Option<FloatTensor<Self>>),
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let projected = Self::fused_linear(x, weight, bias);
        let projected = Self::float_reshape(projected, residual.shape());
        let sum = Self::fused_residual(residual, projected, None);
        Self::fused_layer_norm(sum, gamma, beta, epsilon)
    }
    /// LayerNorm(x + GELU(x·W1 + b1)·W2 + b2) over rows of x [n, d]: a post-norm encoder's
    /// feed-forward sublayer (without dropout). The two operations above one after the other;
    /// the CPU keeps the inner activations in bf16 tiles under bf16-mixed.
    fn fused_feed_forward_norm(
        x: FloatTensor<Self>,
        (w1, b1): (FloatTensor<Self>, Option<FloatTensor<Self>>),
        (w2, b2): (FloatTensor<Self>, Option<FloatTensor<Self>>),
        norm: (FloatTensor<Self>, Option<FloatTensor<Self>>),
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let inner = Self::fused_linear_gelu(x.clone(), w1, b1);
        Self::fused_linear_residual_norm((inner, w2, b2), x, norm, epsilon)
    }
    /// Gradients (dx, dW, db); db is Σ of the gradient's rows whether or not there is a bias.
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::linear_backward::<Self>(x, weight, grad)
    }
    /// Layer normalisation over the last dimension (biased variance).
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        reference::layer_norm::<Self>(x, gamma, beta, epsilon)
    }
    /// Gradients (dx, dγ, dβ).
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::layer_norm_backward::<Self>(x, gamma, epsilon, grad)
    }
    /// The mean over positions of x [b, l, d] → [b, d]; with a key mask [b, l] (1 = token,
    /// 0 = padding), Σₜ x·m / max(Σₜ m, 1).
    fn fused_mean_pool(x: FloatTensor<Self>, mask: Option<FloatTensor<Self>>) -> FloatTensor<Self> {
        reference::mean_pool::<Self>(x, mask)
    }
    /// dx [b, length, d] from the gradient of the pooled [b, d].
    fn fused_mean_pool_backward(
        mask: Option<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        length: usize,
    ) -> FloatTensor<Self> {
        reference::mean_pool_backward::<Self>(mask, grad, length)
    }
    /// max(x, 0).
    fn fused_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu(x)
    }
    /// The gradient through ReLU from its output: `grad` where output > 0, else 0.
    fn fused_relu_backward(
        output: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::relu_backward(output, grad)
    }
    /// Exact GELU, x·Φ(x).
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::gelu::<Self>(x)
    }
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::gelu_backward::<Self>(x, grad)
    }
    /// A residual connection around a dropped-out branch: `x + z ⊙ mask` (the dropout keep
    /// mask, shaped as z), or `x + z`.
    fn fused_residual(
        x: FloatTensor<Self>,
        z: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        reference::residual::<Self>(x, z, mask)
    }
    /// `a ⊙ b` (the branch's gradient through its dropout mask).
    fn fused_multiply(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_mul(a, b)
    }
    /// Mean cross-entropy of logits [n, c] against labels [n], a [1] tensor.
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::cross_entropy::<Self>(logits, labels)
    }
    fn fused_cross_entropy_backward(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::cross_entropy_backward::<Self>(logits, labels, grad)
    }
}

/// The CPU training backend.
type FlexAd = Autodiff<Flex>;

fn is<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

/// Moves a value between two names of the same type (checked by [`is`] before each call).
fn cast<X: 'static, Y: 'static>(x: X) -> Y {
    let boxed: Box<dyn Any> = Box::new(x);
    *boxed
        .downcast::<Y>()
        .expect("route: backend types checked equal")
}

/// Calls `PipeOps::$op` of `Autodiff<Flex>` or `Flex` when `$b` is one of them, with every
/// argument and the result moved across type names; else `$fallback`.
macro_rules! route {
    ($b:ty, $op:ident($($arg:expr),*), $fallback:expr) => {
        if is::<$b, FlexAd>() {
            cast(<FlexAd as PipeOps>::$op($(cast($arg)),*))
        } else if is::<$b, Flex>() {
            cast(<Flex as PipeOps>::$op($(cast($arg)),*))
        } else {
            $fallback
        }
    };
}

/// Multi-head scaled dot-product attention.
///
/// # Shapes
/// - q: [batch, lq, heads·dk]; k: [batch, lk, heads·dk]; v: [batch, lk, heads·dv]
/// - key_mask: [batch, lk], 1 for tokens and 0 for padding
/// - output: [batch, lq, heads·dv]
///
/// `dropout` applies to the attention weights while training (an autodiff backend).
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    key_mask: Option<Tensor<B, 2>>,
    dropout: f64,
    options: AttentionOptions,
) -> Tensor<B, 3> {
    attention_with_bias(q, k, v, key_mask, None, dropout, options)
}

/// [`attention`] with a term added to the scaled scores before the masks, its gradient
/// tracked: softmax(scale·QKᵀ + bias + penalties)·V.
///
/// # Shapes
/// - as [`attention`]; bias: [batch, heads, lq, lk]
pub fn attention_with_bias<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    key_mask: Option<Tensor<B, 2>>,
    bias: Option<Tensor<B, 4>>,
    dropout: f64,
    options: AttentionOptions,
) -> Tensor<B, 3> {
    let device = q.device();
    let [b, lq, _] = q.dims();
    let lk = k.dims()[1];
    let dropout_mask = (dropout > 0.0 && B::ad_enabled(&device)).then(|| {
        unwrap(keep_mask::<B, 4>(
            [b, options.num_heads, lq, lk],
            dropout,
            &device,
        ))
    });
    let (q, k, v) = (unwrap(q), unwrap(k), unwrap(v));
    let masks = AttentionMasks {
        key_mask: key_mask.map(unwrap),
        bias: bias.map(unwrap),
        dropout_mask,
    };
    let out: FloatTensor<B> = route!(
        B,
        fused_attention(q, k, v, masks, options),
        reference::attention_forward::<B>(q, k, v, masks, options).0
    );
    wrap(out)
}

/// DeBERTa's relative-position scores of one kind (see [`RelativeOptions`]): one kernel per
/// (batch row, head) on the CPU instead of a gather over the whole product.
///
/// # Shapes
/// - x: [batch, length, heads·d]; table: [rows, heads·d]
/// - output: [batch, heads, length, length]
pub fn relative_scores<B: Backend>(
    x: Tensor<B, 3>,
    table: Tensor<B, 2>,
    options: RelativeOptions,
) -> Tensor<B, 4> {
    let (x, table) = (unwrap(x), unwrap(table));
    let out: FloatTensor<B> = route!(
        B,
        fused_relative_scores(x, table, options),
        reference::relative_scores::<B>(x, table, &options)
    );
    wrap(out)
}

/// One part of a packed projection (see [`PartOptions`]), rotated where the options say.
///
/// # Shapes
/// - x: [batch, length, parts·w]; output: [batch, length, w]
pub fn packed_part<B: Backend>(x: Tensor<B, 3>, options: PartOptions) -> Tensor<B, 3> {
    let x = unwrap(x);
    let out: FloatTensor<B> = route!(
        B,
        fused_packed_part(x, options),
        reference::packed_part::<B>(x, &options)
    );
    wrap(out)
}

/// GeGLU: gelu(input) · gate over x = input | gate (exact GELU).
///
/// # Shapes
/// - x: [..., 2w]; output: [..., w]
pub fn geglu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = unwrap(x);
    let out: FloatTensor<B> = route!(B, fused_geglu(x), reference::geglu::<B>(x));
    wrap(out)
}

/// Layer normalisation over the last dimension.
///
/// # Shapes
/// - x: [..., d]; gamma, beta: [d]; output: the shape of x
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    let (x, gamma, beta) = (unwrap(x), unwrap(gamma), beta.map(unwrap));
    let out: FloatTensor<B> = route!(
        B,
        fused_layer_norm(x, gamma, beta, epsilon),
        reference::layer_norm::<B>(x, gamma, beta, epsilon)
    );
    wrap(out)
}

/// burn's `LayerNorm` module through the fused operation.
pub fn layer_norm_module<B: Backend, const D: usize>(
    norm: &burn::nn::LayerNorm<B>,
    x: Tensor<B, D>,
    epsilon: f64,
) -> Tensor<B, D> {
    layer_norm(
        x,
        norm.gamma.val(),
        norm.beta.as_ref().map(|b| b.val()),
        epsilon,
    )
}

/// Exact (erf) GELU.
///
/// # Shapes
/// - x: any; output: the shape of x
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = unwrap(x);
    let out: FloatTensor<B> = route!(B, fused_gelu(x), reference::gelu::<B>(x));
    wrap(out)
}

/// The mean over a sequence's positions (padding left out when a mask is given), in one
/// parallel pass each way on the CPU: burn's backward of `mean_dim` fills a [b, l, d] tensor
/// of ones and multiplies it by the broadcast gradient element by element, on one core (10 %
/// of a model A training step).
///
/// # Shapes
/// - x: [batch, length, d]; mask: [batch, length], 1 for tokens and 0 for padding
/// - output: [batch, d]
pub fn mean_pool<B: Backend>(x: Tensor<B, 3>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 2> {
    let (x, mask) = (unwrap(x), mask.map(unwrap));
    let out: FloatTensor<B> = route!(
        B,
        fused_mean_pool(x, mask),
        reference::mean_pool::<B>(x, mask)
    );
    wrap(out)
}

/// ReLU in one parallel pass each way on the CPU: burn-flex runs it on one core, and its
/// backward pass took a strided element-by-element path (4.5 % of a model A training step).
///
/// # Shapes
/// - x: any; output: the shape of x
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = unwrap(x);
    let out: FloatTensor<B> = route!(B, fused_relu(x), B::relu(x));
    wrap(out)
}

/// A residual connection around a branch with dropout: `x + dropout(z)`, one parallel pass
/// on the CPU (burn's element-wise ops run on one core below 4M elements), and one tracked
/// node whose backward pass hands the gradient to x and, through the mask, to z.
///
/// # Shapes
/// - x, z: the same shape; output: that shape
pub fn residual_dropout<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    z: Tensor<B, D>,
    prob: f64,
) -> Tensor<B, D> {
    let device = x.device();
    if x.dims() != z.dims() {
        return x + dropout(z, prob);
    }
    let mask = (prob > 0.0 && B::ad_enabled(&device))
        .then(|| unwrap(keep_mask::<B, D>(z.dims(), prob, &device)));
    let (x, z) = (unwrap(x), unwrap(z));
    let out: FloatTensor<B> = route!(
        B,
        fused_residual(x, z, mask),
        reference::residual::<B>(x, z, mask)
    );
    wrap(out)
}

/// Mean sparse categorical cross-entropy.
///
/// # Shapes
/// - logits: [n, classes]; labels: [n]; output: [1]
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let logits = unwrap(logits);
    let labels: IntTensor<B> = labels.into_primitive();
    let out: FloatTensor<B> = route!(
        B,
        fused_cross_entropy(logits, labels),
        reference::cross_entropy::<B>(logits, labels)
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// A `Linear` layer on a sequence as one [batch·length, d_in] matrix product, so that its
/// weight gradient is one product too; burn's broadcast form makes a batched product and a
/// sum over the batch, with a transposed copy of the input.
///
/// # Shapes
/// - x: [batch, length, d_in]; output: [batch, length, d_out]
pub fn linear_seq<B: Backend>(layer: &burn::nn::Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let y = linear(layer, x.reshape([b * l, d]));
    let out = y.dims()[1];
    y.reshape([b, l, out])
}

/// A `Linear` layer's weight [d_in, d_out] and bias [d_out] as backend tensors.
fn linear_params<B: Backend>(
    layer: &burn::nn::Linear<B>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let bias = layer.bias.as_ref().map(|b| unwrap(b.val()));
    (unwrap(layer.weight.val()), bias)
}

/// A `Linear` layer as one fused operation (product and bias in one pass, the bias gradient
/// summed with the weight gradient), with or without a bias (ModernBERT has none).
///
/// # Shapes
/// - x: [n, d_in]; output: [n, d_out]
pub fn linear<B: Backend>(layer: &burn::nn::Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let (weight, bias) = linear_params(layer);
    let x = unwrap(x);
    let out: FloatTensor<B> = route!(
        B,
        fused_linear(x, weight, bias),
        reference::linear::<B>(x, weight, bias)
    );
    wrap(out)
}

/// Several `Linear` layers applied to the same sequence (a layer's query, key and value
/// projections), each as [`linear_seq`]; the CPU reads and rounds x once for all of them
/// under bf16-mixed.
///
/// # Shapes
/// - x: [batch, length, d_in]; outputs: [batch, length, d_out] of each layer
pub fn linears_seq<B: Backend>(
    layers: &[&burn::nn::Linear<B>],
    x: Tensor<B, 3>,
) -> Vec<Tensor<B, 3>> {
    let [b, l, d] = x.dims();
    let x = unwrap(x.reshape([b * l, d]));
    let params: Vec<(FloatTensor<B>, Option<FloatTensor<B>>)> =
        layers.iter().map(|layer| linear_params(layer)).collect();
    let outs: Vec<FloatTensor<B>> = route!(
        B,
        fused_linears(x, params),
        params
            .into_iter()
            .map(|(weight, bias)| reference::linear::<B>(x.clone(), weight, bias))
            .collect()
    );
    outs.into_iter()
        .map(|out| {
            let y: Tensor<B, 2> = wrap(out);
            let d_out = y.dims()[1];
            y.reshape([b, l, d_out])
        })
        .collect()
}

/// GELU(x·W + b) of a `Linear` layer over a sequence, fused where the backend can.
///
/// # Shapes
/// - x: [batch, length, d_in]; output: [batch, length, d_out]
pub fn linear_gelu_seq<B: Backend>(layer: &burn::nn::Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let (weight, bias) = linear_params(layer);
    let x = unwrap(x.reshape([b * l, d]));
    let out: FloatTensor<B> = route!(
        B,
        fused_linear_gelu(x, weight, bias),
        reference::gelu::<B>(reference::linear::<B>(x, weight, bias))
    );
    let y: Tensor<B, 2> = wrap(out);
    let out = y.dims()[1];
    y.reshape([b, l, out])
}

/// LayerNorm(residual + dropout(x·W + b)) of a `Linear` layer and a `LayerNorm` module over
/// a sequence: how a post-norm encoder sublayer ends. Fused where the backend can, when
/// dropout is off (inference); [`residual_dropout`] and [`layer_norm_module`] otherwise.
///
/// # Shapes
/// - x: [batch, length, d_in]; residual: [batch, length, d_out]; output: [batch, length, d_out]
pub fn linear_residual_norm_seq<B: Backend>(
    layer: &burn::nn::Linear<B>,
    x: Tensor<B, 3>,
    residual: Tensor<B, 3>,
    (norm, epsilon): (&burn::nn::LayerNorm<B>, f64),
    dropout: f64,
) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    if dropout > 0.0 && B::ad_enabled(&x.device()) {
        let projected = linear_seq(layer, x);
        return layer_norm_module(
            norm,
            residual_dropout(residual, projected, dropout),
            epsilon,
        );
    }
    let (weight, bias) = linear_params(layer);
    let x = unwrap(x.reshape([b * l, d]));
    let (gamma, beta) = (
        unwrap(norm.gamma.val()),
        norm.beta.as_ref().map(|b| unwrap(b.val())),
    );
    let residual = unwrap(residual);
    let out: FloatTensor<B> = route!(
        B,
        fused_linear_residual_norm((x, weight, bias), residual, (gamma, beta), epsilon),
        {
            let projected = reference::linear::<B>(x, weight, bias);
            let projected = B::float_reshape(projected, residual.shape());
            let sum = reference::residual::<B>(residual, projected, None);
            reference::layer_norm::<B>(sum, gamma, beta, epsilon)
        }
    );
    wrap(out)
}

/// LayerNorm(x + dropout(GELU(x·W1 + b1)·W2 + b2)) of two `Linear` layers and a `LayerNorm`
/// module over a sequence: a post-norm encoder's feed-forward sublayer with exact GELU. One
/// operation where dropout is off (inference), which the CPU fuses under bf16-mixed;
/// [`linear_gelu_seq`] and [`linear_residual_norm_seq`] otherwise.
///
/// # Shapes
/// - x: [batch, length, d]; output: [batch, length, d]
pub fn feed_forward_norm_seq<B: Backend>(
    (up, down): (&burn::nn::Linear<B>, &burn::nn::Linear<B>),
    x: Tensor<B, 3>,
    (norm, epsilon): (&burn::nn::LayerNorm<B>, f64),
    dropout: f64,
) -> Tensor<B, 3> {
    // Where the one operation is not taken: the two, each routed on its own.
    let two_operations = |x: Tensor<B, 3>| {
        let inner = linear_gelu_seq(up, x.clone());
        linear_residual_norm_seq(down, inner, x, (norm, epsilon), dropout)
    };
    if dropout > 0.0 && B::ad_enabled(&x.device()) {
        return two_operations(x);
    }
    let [b, l, d] = x.dims();
    let (up_params, down_params) = (linear_params(up), linear_params(down));
    let gamma_beta = (
        unwrap(norm.gamma.val()),
        norm.beta.as_ref().map(|b| unwrap(b.val())),
    );
    let rows = unwrap(x.clone().reshape([b * l, d]));
    let out: FloatTensor<B> = route!(
        B,
        fused_feed_forward_norm(rows, up_params, down_params, gamma_beta, epsilon),
        return two_operations(x)
    );
    let y: Tensor<B, 2> = wrap(out);
    y.reshape([b, l, d])
}

/// Inverted dropout while training (an autodiff backend); the identity otherwise.
///
/// # Shapes
/// - x: any; output: the shape of x
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    let device = x.device();
    if prob == 0.0 || !B::ad_enabled(&device) {
        return x;
    }
    let shape = x.dims();
    x * keep_mask::<B, D>(shape, prob, &device)
}

thread_local! {
    /// A data-parallel worker's own dropout stream: (key, masks drawn so far).
    static DROPOUT_STREAM: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with this thread's CPU dropout masks keyed by `key` and a counter instead of the
/// backend's RNG, which is one stream for the whole process: data-parallel workers draw at the
/// same time, and each must draw the same masks whatever the others do.
pub fn with_dropout_stream<R>(key: u64, f: impl FnOnce() -> R) -> R {
    DROPOUT_STREAM.with(|s| s.set(Some((key, 0))));
    let out = f();
    DROPOUT_STREAM.with(|s| s.set(None));
    out
}

/// The next key of this thread's dropout stream, if one is set (splitmix64 of key + counter).
fn stream_key() -> Option<u64> {
    DROPOUT_STREAM.with(|s| {
        let (key, n) = s.get()?;
        s.set(Some((key, n + 1)));
        let mut z = key.wrapping_add((n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some((z ^ (z >> 31)) >> 16)
    })
}

/// Inverted-dropout keep mask {0, 1/(1−p)}: on the CPU from a counter-based generator, in
/// parallel, keyed by a seed drawn from the backend's RNG (so `seed` still fixes every mask)
/// or from the thread's [`with_dropout_stream`]; elsewhere burn's `Dropout` draw.
fn keep_mask<B: Backend, const D: usize>(
    shape: [usize; D],
    prob: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    let draw = || -> u64 {
        if let Some(key) = stream_key() {
            return key;
        }
        // 48 random bits from the backend's stream.
        // In f32 whatever the run's precision: bf16 would keep 8 of the 24 bits.
        let draw: Vec<f32> = Tensor::<B, 1>::random(
            [2],
            burn::tensor::Distribution::Default,
            (device, DType::F32),
        )
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data");
        ((draw[0] * 16_777_216.0) as u64) << 24 | (draw[1] * 16_777_216.0) as u64
    };
    // The fused mask is f32; under a half precision it takes the device's float dtype, as
    // every other tensor of the step does.
    let float = burn::tensor::get_device_settings::<B>(device).float_dtype;
    let flex_mask = |seed| {
        let mask: Tensor<Flex, D> = wrap(flex::dropout_mask(&shape, prob, seed));
        match float {
            FloatDType::F32 => mask,
            half => mask.cast(half),
        }
    };
    if is::<B, FlexAd>() {
        cast(Tensor::<FlexAd, D>::from_inner(flex_mask(draw())))
    } else if is::<B, Flex>() {
        cast(flex_mask(draw()))
    } else {
        reference::dropout_mask::<B, D>(shape, prob, device)
    }
}

#[cfg(test)]
mod tests;
