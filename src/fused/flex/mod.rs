//! The fused operations on burn-flex's own storage: row-parallel over rayon's pool, `gemm`
//! on strided views (no head split / merge copies), vectorised exp and erf.
//!
//! One file per operation family: `attention.rs`, `linear.rs`, `norm.rs` (LayerNorm),
//! `activation.rs` (GELU, ReLU), `pooling.rs` (mean pooling), `dropout.rs` (dropout masks,
//! residual dropout, the masked product), `relative.rs` (DeBERTa's relative-position scores),
//! `packed.rs` (parts of a packed projection, rotary positions, GeGLU). This file holds what
//! they share (tensor wrapping, `contiguous` / `values`, the unzeroed output buffers and
//! `par_filled`, the `gemm` wrapper, partial-sum adding) and `PipeOps for Flex`, which routes
//! to them.
//! Softmax cross-entropy has no flex kernel: `Flex` keeps the trait's default (decomposed)
//! implementation.

mod activation;
mod attention;
mod dropout;
mod feed_forward;
mod huge_pages;
mod linear;
mod norm;
mod packed;
mod pooling;
mod relative;

pub use activation::{gelu, gelu_backward, relu, relu_backward};
pub use attention::{attention_backward, attention_forward};
pub use dropout::{dropout_mask, multiply_tensors, residual};
pub use feed_forward::feed_forward_norm;
pub use linear::{linear, linear_backward, linear_gelu, linear_residual_norm, linears};
pub use norm::{layer_norm, layer_norm_backward};
pub use packed::{geglu, geglu_backward, packed_part, packed_part_backward};
pub use pooling::{mean_pool, mean_pool_backward};
pub use relative::{relative_scores, relative_scores_backward};

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::amx;
use super::math::multiversion;
use super::{
    AttentionGrads, AttentionMasks, AttentionOptions, PartOptions, PipeOps, RelativeOptions,
};

type Ft = FlexTensor;

fn is_f32(tensors: &[&Ft]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// A weight of the plain backend's fused linears (inference: autodiff's training ops do not
/// come here), asked onto 2 MB pages where bf16-mixed packs it for the tiles
/// ([`huge_pages`]). Only a weight stored contiguously: a strided view is copied afresh by
/// each product, and moving each copy would cost more than it saves.
fn inference_weight(w: Ft) -> Ft {
    if amx::mixed()
        && let Some(values) = w.as_slice::<f32>()
    {
        huge_pages::weights(&[values]);
    }
    w
}

/// A contiguous f32 view (copies only when the layout is strided or offset).
pub(super) fn contiguous(t: &Ft) -> Ft {
    t.to_contiguous()
}

pub(super) fn values(t: &Ft) -> &[f32] {
    t.as_slice::<f32>()
        .expect("contiguous f32 tensor after to_contiguous")
}

pub(super) fn tensor(data: Vec<f32>, dims: &[usize]) -> Ft {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(dims.to_vec())),
        DType::F32,
    )
}

/// A pointer that may cross into rayon tasks, each writing its own disjoint strided block.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own batch row and head columns).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so closures capture the whole `Shared`, not its raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// An output buffer that the kernels fill completely through raw pointers (gemm never reads
/// its destination when not accumulating), so it is not zeroed first: zeroing the 67 MB of
/// model A's attention weights cost 6 % of a training step.
struct Written {
    buffer: Vec<f32>,
    len: usize,
}

impl Written {
    fn new(len: usize) -> Self {
        Written {
            buffer: Vec::with_capacity(len),
            len,
        }
    }
    fn ptr(&mut self) -> Shared {
        Shared(self.buffer.as_mut_ptr())
    }
    /// # Safety
    /// All `len` elements must have been written.
    unsafe fn assume_written(mut self) -> Vec<f32> {
        unsafe { self.buffer.set_len(self.len) };
        self.buffer
    }
}

/// `len` values made by `fill(task, chunk)` over rayon's pool, `chunk` elements a task (the
/// last one shorter), without zeroing the buffer first: `fill` must write every element of
/// its chunk. A zeroed `vec!` is a memset on the calling thread before any task starts, and in
/// a model A training step those memsets were a quarter of the time the main thread ran alone.
fn par_filled(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    par_filled_with(len, chunk, fill).0
}

/// [`par_filled`] where each task also returns a value (partial sums), in task order.
fn par_filled_with<R: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) -> R + Sync,
) -> (Vec<f32>, Vec<R>) {
    let mut out = Written::new(len);
    let ptr = out.ptr();
    let results = (0..len.div_ceil(chunk))
        .into_par_iter()
        .map(|task| {
            let start = task * chunk;
            let n = chunk.min(len - start);
            // SAFETY: each task gets its own in-bounds range of the buffer.
            fill(task, unsafe {
                std::slice::from_raw_parts_mut(ptr.get().add(start), n)
            })
        })
        .collect();
    // SAFETY: the ranges cover the buffer and `fill` writes all of each.
    (unsafe { out.assume_written() }, results)
}

/// `dst[m×n] (+)= beta · lhs[m×k] · rhs[k×n]`, all as (row stride, column stride) views.
///
/// # Safety
/// The pointers must address the strided blocks they describe.
#[allow(clippy::too_many_arguments)]
unsafe fn mm(
    shape: (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    beta: f32,
    accumulate: bool,
) {
    unsafe { mm_with(shape, dst, lhs, rhs, beta, accumulate, Parallelism::None) }
}

/// [`mm`] with gemm's own threading.
#[allow(clippy::too_many_arguments)]
unsafe fn mm_with(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    beta: f32,
    accumulate: bool,
    parallelism: Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// [`mm`] on AMX tiles where bf16-mixed is on (attention's per-head products, inside their
/// own rayon tasks), else [`mm`] itself. `beta` scales the left operand as it is rounded.
///
/// # Safety
/// As [`mm`]; the destination's column stride is 1, and each operand has one stride 1.
unsafe fn mm_mixed(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    beta: f32,
    accumulate: bool,
) {
    if amx::mixed() && m * n * k >= MIXED_MIN_PRODUCT && dst.2 == 1 {
        // SAFETY: the caller's contract (each operand's extent follows from its strides).
        if let Some((a, bt)) = unsafe { mixed_operands(lhs, rhs, (m, n, k)) } {
            let start = match accumulate {
                true => amx::Start::Onto,
                false => amx::Start::Zero,
            };
            let c = (dst.0, dst.1 as usize);
            // SAFETY: the caller's contract.
            unsafe { amx::block_product(c, start, a.scaled(beta), bt, (m, k, n)) };
            return;
        }
    }
    unsafe { mm((m, n, k), dst, lhs, rhs, beta, accumulate) }
}

/// Per-head products smaller than this (m·n·k) stay in f32.
pub(super) const MIXED_MIN_PRODUCT: usize = 1 << 16;

/// A [m, k] and B [k, n] given by pointer and (row, column) strides as the AMX packer's
/// sources: A itself or Aᵀ, and Bᵀ or B; `None` where neither stride of one is 1.
///
/// # Safety
/// Each operand's elements lie in one allocation, from its pointer to its last element.
unsafe fn mixed_operands<'a>(
    (a, ra, ca): (*const f32, isize, isize),
    (b, rb, cb): (*const f32, isize, isize),
    (m, n, k): (usize, usize, usize),
) -> Option<(amx::Source<'a>, amx::Source<'a>)> {
    let extent = |rows: usize, rs: isize, cols: usize, cs: isize| {
        (rows.max(1) - 1) * rs as usize + (cols.max(1) - 1) * cs as usize + 1
    };
    // SAFETY: the caller's contract: the extents stay inside each operand.
    let (av, bv) = unsafe {
        (
            std::slice::from_raw_parts(a, extent(m, ra, k, ca)),
            std::slice::from_raw_parts(b, extent(k, rb, n, cb)),
        )
    };
    let a = match (ra, ca) {
        (_, 1) => amx::Source::rows(av).with_stride(ra as usize),
        (1, _) => amx::Source::transposed(av).with_stride(ca as usize),
        _ => return None,
    };
    // The packer's right operand is Bᵀ [n, k]: its rows are B's columns.
    let bt = match (rb, cb) {
        (1, _) => amx::Source::rows(bv).with_stride(cb as usize),
        (_, 1) => amx::Source::transposed(bv).with_stride(rb as usize),
        _ => return None,
    };
    Some((a, bt))
}

multiversion! {
    /// `out = a ⊙ b`, one pass.
    fn multiply_into(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x * y;
        }
    }
}

/// Adds equal-length rows (partial sums, or a matrix's rows) in order.
fn add_up<R: AsRef<[f32]>>(rows: impl IntoIterator<Item = R>, len: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for row in rows {
        for (s, v) in total.iter_mut().zip(row.as_ref()) {
            *s += v;
        }
    }
    total
}

const ELEMENTS_PER_TASK: usize = 16_384;

impl PipeOps for Flex {
    fn fused_attention_forward(
        q: Ft,
        k: Ft,
        v: Ft,
        masks: AttentionMasks<Ft>,
        options: AttentionOptions,
    ) -> (Ft, Ft) {
        let (out, probs) = attention_forward(q, k, v, masks, options, true);
        (out, probs.expect("kept"))
    }
    fn fused_attention(
        q: Ft,
        k: Ft,
        v: Ft,
        masks: AttentionMasks<Ft>,
        options: AttentionOptions,
    ) -> Ft {
        attention_forward(q, k, v, masks, options, false).0
    }
    fn fused_attention_backward(
        q: Ft,
        k: Ft,
        v: Ft,
        probs: Ft,
        masks: AttentionMasks<Ft>,
        grad: Ft,
        options: AttentionOptions,
        bias_grad: bool,
    ) -> AttentionGrads<Ft> {
        attention_backward(q, k, v, probs, masks, grad, options, bias_grad)
    }
    fn fused_relative_scores(x: Ft, table: Ft, options: RelativeOptions) -> Ft {
        relative_scores(x, table, &options)
    }
    fn fused_relative_scores_backward(
        x: Ft,
        table: Ft,
        grad: Ft,
        options: RelativeOptions,
    ) -> (Ft, Ft) {
        relative_scores_backward(x, table, grad, &options)
    }
    fn fused_packed_part(x: Ft, options: PartOptions) -> Ft {
        packed_part(x, &options)
    }
    fn fused_packed_part_backward(grad: Ft, options: PartOptions) -> Ft {
        packed_part_backward(grad, &options)
    }
    fn fused_geglu(x: Ft) -> Ft {
        geglu(x)
    }
    fn fused_geglu_backward(x: Ft, grad: Ft) -> Ft {
        geglu_backward(x, grad)
    }
    fn fused_linear(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
        linear(x, weight, bias)
    }
    fn fused_linear_backward(x: Ft, weight: Ft, grad: Ft) -> (Ft, Ft, Ft) {
        linear_backward(x, weight, grad)
    }
    fn fused_linear_gelu(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
        linear_gelu(x, weight, bias)
    }
    fn fused_linears(x: Ft, layers: Vec<(Ft, Option<Ft>)>) -> Vec<Ft> {
        let layers: Vec<_> = layers
            .into_iter()
            .map(|(w, b)| (inference_weight(w), b))
            .collect();
        linears(x, layers)
    }
    fn fused_linear_residual_norm(
        linear: (Ft, Ft, Option<Ft>),
        residual: Ft,
        norm: (Ft, Option<Ft>),
        epsilon: f64,
    ) -> Ft {
        let (x, w, b) = linear;
        linear_residual_norm((x, inference_weight(w), b), residual, norm, epsilon)
    }
    fn fused_feed_forward_norm(
        x: Ft,
        up: (Ft, Option<Ft>),
        down: (Ft, Option<Ft>),
        norm: (Ft, Option<Ft>),
        epsilon: f64,
    ) -> Ft {
        let (up, down) = (
            (inference_weight(up.0), up.1),
            (inference_weight(down.0), down.1),
        );
        feed_forward_norm(x, up, down, norm, epsilon)
    }
    fn fused_layer_norm(x: Ft, gamma: Ft, beta: Option<Ft>, epsilon: f64) -> Ft {
        layer_norm(x, gamma, beta, epsilon)
    }
    fn fused_layer_norm_backward(x: Ft, gamma: Ft, epsilon: f64, grad: Ft) -> (Ft, Ft, Ft) {
        layer_norm_backward(x, gamma, epsilon, grad)
    }
    fn fused_mean_pool(x: Ft, mask: Option<Ft>) -> Ft {
        mean_pool(x, mask)
    }
    fn fused_mean_pool_backward(mask: Option<Ft>, grad: Ft, length: usize) -> Ft {
        mean_pool_backward(mask, grad, length)
    }
    fn fused_relu(x: Ft) -> Ft {
        relu(x)
    }
    fn fused_relu_backward(output: Ft, grad: Ft) -> Ft {
        relu_backward(output, grad)
    }
    fn fused_gelu(x: Ft) -> Ft {
        gelu(x)
    }
    fn fused_residual(x: Ft, z: Ft, mask: Option<Ft>) -> Ft {
        residual(x, z, mask)
    }
    fn fused_multiply(a: Ft, b: Ft) -> Ft {
        multiply_tensors(a, b)
    }
    fn fused_gelu_backward(x: Ft, grad: Ft) -> Ft {
        gelu_backward(x, grad)
    }
}
