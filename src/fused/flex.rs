//! The fused operations on burn-flex's own storage: row-parallel over rayon's pool, `gemm`
//! on strided views (no head split / merge copies), vectorised exp and erf.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::ops::{ActivationOps, FloatTensorOps};
use burn::tensor::{Bytes, DType, Shape, TensorMetadata};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

use super::math::{self, multiversion};
use super::{AttentionOptions, PipeOps, reference};

type Ft = FlexTensor;

fn is_f32(tensors: &[&Ft]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
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

multiversion! {
    /// Scores row → e^(s − max) in place, with the key-padding penalty added first; each
    /// row's 1 / Σ goes to `inv_sums`. Normalising is left to the caller, who may scale the
    /// much narrower output rows instead.
    fn exp_rows(scores: &mut [f32], lk: usize, penalty: Option<&[f32]>, inv_sums: &mut [f32]) {
        for (row, inv) in scores.chunks_exact_mut(lk).zip(inv_sums.iter_mut()) {
            if let Some(p) = penalty {
                for (s, &pen) in row.iter_mut().zip(p) {
                    *s += pen;
                }
            }
            let m = math::max(row);
            *inv = 1.0 / math::exp_shifted_sum(row, m);
        }
    }
}

multiversion! {
    /// Multiplies each `width`-long row of `rows` (rows `stride` apart) by its factor.
    fn scale_rows(rows: &mut [f32], stride: usize, width: usize, factors: &[f32]) {
        for (i, &f) in factors.iter().enumerate() {
            for x in &mut rows[i * stride..i * stride + width] {
                *x *= f;
            }
        }
    }
}

multiversion! {
    /// dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place over dP.
    fn softmax_backward_rows(grad: &mut [f32], probs: &[f32], lk: usize) {
        for (g, p) in grad.chunks_exact_mut(lk).zip(probs.chunks_exact(lk)) {
            let d = math::dot(g, p);
            for (gi, &pi) in g.iter_mut().zip(p) {
                *gi = pi * (*gi - d);
            }
        }
    }
}

multiversion! {
    /// `a ⊙= b`.
    fn multiply(a: &mut [f32], b: &[f32]) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x *= y;
        }
    }
}

multiversion! {
    /// `out = a ⊙ b`, one pass.
    fn multiply_into(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x * y;
        }
    }
}

thread_local! {
    /// Each worker's two block buffers for the attention tasks (scores or dropped weights,
    /// score gradients), kept between tasks: allocating and zeroing 256 KB per (batch row,
    /// head) block cost more than the softmax. Callers write every element they read.
    static BLOCKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two block buffers, each at least `len` long.
fn with_blocks<R>(len: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        let (a, b) = &mut *blocks;
        if a.len() < len {
            a.resize(len, 0.0);
            b.resize(len, 0.0);
        }
        f(&mut a[..len], &mut b[..len])
    })
}

/// The attention weights after dropout: `probs` itself, or `probs ⊙ mask` written to `kept`.
fn dropped<'a>(probs: &'a [f32], mask: Option<&[f32]>, kept: &'a mut [f32]) -> &'a [f32] {
    match mask {
        Some(m) => {
            multiply_into(kept, probs, m);
            kept
        }
        None => probs,
    }
}

/// Per batch row: (1 − mask)·penalty for each key.
fn key_penalties(mask: Option<&Ft>, b: usize, lk: usize, penalty: f32) -> Option<Vec<f32>> {
    mask.map(|m| {
        let m = contiguous(m);
        let v = values(&m);
        assert_eq!(v.len(), b * lk, "key mask must be [batch, keys]");
        v.iter().map(|&x| (1.0 - x) * penalty).collect()
    })
}

struct Dims {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    dk: usize,
    dv: usize,
}

impl Dims {
    fn of(q: &Ft, k: &Ft, v: &Ft, heads: usize) -> Self {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        Dims {
            b: qs[0],
            h: heads,
            lq: qs[1],
            lk: ks[1],
            dk: qs[2] / heads,
            dv: vs[2] / heads,
        }
    }
}

/// Attention output and, with `keep_probs` (training), the weights for the backward pass;
/// without, each task's weights live in a block-sized scratch that stays in cache.
pub fn attention_forward(
    q: Ft,
    k: Ft,
    v: Ft,
    key_mask: Option<Ft>,
    dropout_mask: Option<Ft>,
    o: AttentionOptions,
    keep_probs: bool,
) -> (Ft, Option<Ft>) {
    if !is_f32(&[&q, &k, &v]) {
        let (out, probs) = reference::attention_forward::<Flex>(q, k, v, key_mask, dropout_mask, o);
        return (out, Some(probs));
    }
    let d = Dims::of(&q, &k, &v, o.num_heads);
    let (q, k, v) = (contiguous(&q), contiguous(&k), contiguous(&v));
    let (qv, kv, vv) = (values(&q), values(&k), values(&v));
    let drop = dropout_mask.map(|m| contiguous(&m));
    let drop = drop.as_ref().map(values);
    let pen = key_penalties(key_mask.as_ref(), d.b, d.lk, o.mask_penalty);
    let block = d.lq * d.lk;
    let mut probs = keep_probs.then(|| Written::new(d.b * d.h * block));
    let mut out = Written::new(d.b * d.lq * d.h * d.dv);
    let (probs_ptr, out_ptr) = (probs.as_mut().map(Written::ptr), out.ptr());
    let (qw, kw, vw) = (
        (d.h * d.dk) as isize,
        (d.h * d.dk) as isize,
        (d.h * d.dv) as isize,
    );
    (0..d.b * d.h).into_par_iter().for_each(|bh| {
        let (bi, hi) = (bh / d.h, bh % d.h);
        let q0 = qv[bi * d.lq * d.h * d.dk + hi * d.dk..].as_ptr();
        let k0 = kv[bi * d.lk * d.h * d.dk + hi * d.dk..].as_ptr();
        let v0 = vv[bi * d.lk * d.h * d.dv + hi * d.dv..].as_ptr();
        let penalty = pen.as_ref().map(|x| &x[bi * d.lk..(bi + 1) * d.lk]);
        let mask = drop.map(|m| &m[bh * block..(bh + 1) * block]);
        let mut inv_sums = vec![0.0f32; d.lq];
        with_blocks(block, |scores, kept| {
            // SAFETY: views stay inside q, k, v and this task's probability block; the
            // output columns of head `hi` in batch row `bi` belong to this task alone.
            unsafe {
                let p0 = match probs_ptr {
                    Some(all) => all.get().add(bh * block),
                    None => scores.as_mut_ptr(),
                };
                mm(
                    (d.lq, d.lk, d.dk),
                    (p0, d.lk as isize, 1),
                    (q0, qw, 1),
                    (k0, 1, kw),
                    o.scale,
                    false,
                );
                // gemm has written every element of this block.
                let p = std::slice::from_raw_parts_mut(p0, block);
                exp_rows(p, d.lk, penalty, &mut inv_sums);
                // Weights kept for the backward pass or dropped out must be the true
                // softmax; otherwise the rows of P·V are scaled instead (32 wide, not 256).
                let normalise_scores = probs_ptr.is_some() || mask.is_some();
                if normalise_scores {
                    scale_rows(p, d.lk, d.lk, &inv_sums);
                }
                let weights = dropped(p, mask, kept);
                let o0 = out_ptr.get().add(bi * d.lq * d.h * d.dv + hi * d.dv);
                mm(
                    (d.lq, d.dv, d.lk),
                    (o0, vw, 1),
                    (weights.as_ptr(), d.lk as isize, 1),
                    (v0, vw, 1),
                    1.0,
                    false,
                );
                if !normalise_scores {
                    let rows = (d.lq - 1) * vw as usize + d.dv;
                    scale_rows(
                        std::slice::from_raw_parts_mut(o0, rows),
                        vw as usize,
                        d.dv,
                        &inv_sums,
                    );
                }
            }
        });
    });
    // SAFETY: the tasks above wrote every element: each (batch row, head) block of the
    // probabilities, and each head's columns of each batch row of the output.
    let (out, probs) = unsafe { (out.assume_written(), probs.map(|p| p.assume_written())) };
    (
        tensor(out, &[d.b, d.lq, d.h * d.dv]),
        probs.map(|p| tensor(p, &[d.b, d.h, d.lq, d.lk])),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: Ft,
    k: Ft,
    v: Ft,
    probs: Ft,
    dropout_mask: Option<Ft>,
    grad: Ft,
    o: AttentionOptions,
) -> (Ft, Ft, Ft) {
    if !is_f32(&[&q, &k, &v, &grad]) {
        return reference::attention_backward::<Flex>(q, k, v, probs, dropout_mask, grad, o);
    }
    let d = Dims::of(&q, &k, &v, o.num_heads);
    let (q, k, v, g, probs) = (
        contiguous(&q),
        contiguous(&k),
        contiguous(&v),
        contiguous(&grad),
        contiguous(&probs),
    );
    let (qv, kv, vv, gv, pv) = (
        values(&q),
        values(&k),
        values(&v),
        values(&g),
        values(&probs),
    );
    let drop = dropout_mask.map(|m| contiguous(&m));
    let drop = drop.as_ref().map(values);
    let block = d.lq * d.lk;
    let (qw, vw) = ((d.h * d.dk) as isize, (d.h * d.dv) as isize);
    let mut dq = Written::new(d.b * d.lq * d.h * d.dk);
    let mut dk = Written::new(d.b * d.lk * d.h * d.dk);
    let mut dv = Written::new(d.b * d.lk * d.h * d.dv);
    let (dq_ptr, dk_ptr, dv_ptr) = (dq.ptr(), dk.ptr(), dv.ptr());
    (0..d.b * d.h).into_par_iter().for_each(|bh| {
        let (bi, hi) = (bh / d.h, bh % d.h);
        let q_off = bi * d.lq * d.h * d.dk + hi * d.dk;
        let k_off = bi * d.lk * d.h * d.dk + hi * d.dk;
        let v_off = bi * d.lk * d.h * d.dv + hi * d.dv;
        let g_off = bi * d.lq * d.h * d.dv + hi * d.dv;
        let p = &pv[bh * block..(bh + 1) * block];
        let m = drop.map(|m| &m[bh * block..(bh + 1) * block]);
        with_blocks(block, |kept, ds| {
            let weights = dropped(p, m, kept);
            // SAFETY: as in the forward pass, each task touches its own (batch row, head) block.
            unsafe {
                // dV = Wᵀ · dO
                mm(
                    (d.lk, d.dv, d.lq),
                    (dv_ptr.get().add(v_off), vw, 1),
                    (weights.as_ptr(), 1, d.lk as isize),
                    (gv[g_off..].as_ptr(), vw, 1),
                    1.0,
                    false,
                );
                // dW = dO · Vᵀ
                mm(
                    (d.lq, d.lk, d.dv),
                    (ds.as_mut_ptr(), d.lk as isize, 1),
                    (gv[g_off..].as_ptr(), vw, 1),
                    (vv[v_off..].as_ptr(), 1, vw),
                    1.0,
                    false,
                );
                if let Some(m) = m {
                    multiply(ds, m);
                }
                softmax_backward_rows(ds, p, d.lk);
                // dQ = scale · dS · K ; dK = scale · dSᵀ · Q
                mm(
                    (d.lq, d.dk, d.lk),
                    (dq_ptr.get().add(q_off), qw, 1),
                    (ds.as_ptr(), d.lk as isize, 1),
                    (kv[k_off..].as_ptr(), qw, 1),
                    o.scale,
                    false,
                );
                mm(
                    (d.lk, d.dk, d.lq),
                    (dk_ptr.get().add(k_off), qw, 1),
                    (ds.as_ptr(), 1, d.lk as isize),
                    (qv[q_off..].as_ptr(), qw, 1),
                    o.scale,
                    false,
                );
            }
        });
    });
    // SAFETY: each task wrote its head's columns of its batch row in all three.
    let (dq, dk, dv) = unsafe {
        (
            dq.assume_written(),
            dk.assume_written(),
            dv.assume_written(),
        )
    };
    (
        tensor(dq, &[d.b, d.lq, d.h * d.dk]),
        tensor(dk, &[d.b, d.lk, d.h * d.dk]),
        tensor(dv, &[d.b, d.lk, d.h * d.dv]),
    )
}

/// Rows per task of the linear kernels' row-parallel parts: at least 16 tasks where there
/// are rows enough, at most 2,048 rows each. It depends on the shape alone, so partial sums
/// add up in the same order on any number of threads.
fn linear_rows(n: usize) -> usize {
    n.div_ceil(16).clamp(64, 2048)
}

/// Weights this large go to gemm as one product that gemm threads itself (BERT's 384×1536);
/// smaller ones (model A's 32×64) are split by rows, which gemm would not parallelise.
fn gemm_threads_itself(d_in: usize, d_out: usize) -> bool {
    d_in * d_out >= 1 << 16
}

pub fn linear(x: Ft, weight: Ft, bias: Ft) -> Ft {
    if !is_f32(&[&x, &weight, &bias]) {
        return reference::linear::<Flex>(x, weight, bias);
    }
    let (x, w, b) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
    let (xv, wv, bv) = (values(&x), values(&w), values(&b));
    let (n, d_in, d_out) = (x.shape()[0], x.shape()[1], bv.len());
    let whole = gemm_threads_itself(d_in, d_out);
    let mut out = Written::new(n * d_out);
    let out_ptr = out.ptr();
    let per = linear_rows(n);
    (0..n.div_ceil(per)).into_par_iter().for_each(|c| {
        let rows = c * per..((c + 1) * per).min(n);
        // SAFETY: this task writes (the bias, then the product onto it) only its own rows.
        unsafe {
            let dst = out_ptr.get().add(rows.start * d_out);
            for r in 0..rows.len() {
                std::ptr::copy_nonoverlapping(bv.as_ptr(), dst.add(r * d_out), d_out);
            }
            if !whole {
                mm(
                    (rows.len(), d_out, d_in),
                    (dst, d_out as isize, 1),
                    (xv[rows.start * d_in..].as_ptr(), d_in as isize, 1),
                    (wv.as_ptr(), d_out as isize, 1),
                    1.0,
                    true,
                );
            }
        }
    });
    if whole {
        // SAFETY: every row holds the bias now; the product is added onto all of them.
        unsafe {
            mm_with(
                (n, d_out, d_in),
                (out_ptr.get(), d_out as isize, 1),
                (xv.as_ptr(), d_in as isize, 1),
                (wv.as_ptr(), d_out as isize, 1),
                1.0,
                true,
                Parallelism::Rayon(0),
            );
        }
    }
    // SAFETY: the row chunks cover all n rows.
    tensor(unsafe { out.assume_written() }, &[n, d_out])
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

pub fn linear_backward(x: Ft, weight: Ft, grad: Ft) -> (Ft, Ft, Ft) {
    if !is_f32(&[&x, &weight, &grad]) {
        return reference::linear_backward::<Flex>(x, weight, grad);
    }
    let (x, w, g) = (contiguous(&x), contiguous(&weight), contiguous(&grad));
    let (xv, wv, gv) = (values(&x), values(&w), values(&g));
    let (n, d_in, d_out) = (x.shape()[0], x.shape()[1], w.shape()[1]);
    let whole = gemm_threads_itself(d_in, d_out);
    let mut dx = Written::new(n * d_in);
    let dx_ptr = dx.ptr();
    // dx = g·Wᵀ, dW = xᵀ·g, db = Σ g: split by rows (partial dW and db added up in chunk
    // order), or, for large weights, as two products that gemm threads itself.
    let per = linear_rows(n);
    let partials: Vec<(Option<Vec<f32>>, Vec<f32>)> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|c| {
            let rows = c * per..((c + 1) * per).min(n);
            let db = add_up(
                gv[rows.start * d_out..rows.end * d_out].chunks_exact(d_out),
                d_out,
            );
            if whole {
                return (None, db);
            }
            let (x0, g0) = (
                xv[rows.start * d_in..].as_ptr(),
                gv[rows.start * d_out..].as_ptr(),
            );
            let mut dw = Written::new(d_in * d_out);
            // SAFETY: dx rows of this chunk only; dw is this task's own buffer.
            let dw = unsafe {
                mm(
                    (rows.len(), d_in, d_out),
                    (dx_ptr.get().add(rows.start * d_in), d_in as isize, 1),
                    (g0, d_out as isize, 1),
                    (wv.as_ptr(), 1, d_out as isize),
                    1.0,
                    false,
                );
                mm(
                    (d_in, d_out, rows.len()),
                    (dw.ptr().get(), d_out as isize, 1),
                    (x0, 1, d_in as isize),
                    (g0, d_out as isize, 1),
                    1.0,
                    false,
                );
                dw.assume_written()
            };
            (Some(dw), db)
        })
        .collect();
    let db = add_up(partials.iter().map(|p| &p.1), d_out);
    let dw = if whole {
        let mut dw = Written::new(d_in * d_out);
        // SAFETY: whole-matrix products into dx and dw, which they fill.
        unsafe {
            mm_with(
                (n, d_in, d_out),
                (dx_ptr.get(), d_in as isize, 1),
                (gv.as_ptr(), d_out as isize, 1),
                (wv.as_ptr(), 1, d_out as isize),
                1.0,
                false,
                Parallelism::Rayon(0),
            );
            mm_with(
                (d_in, d_out, n),
                (dw.ptr().get(), d_out as isize, 1),
                (xv.as_ptr(), 1, d_in as isize),
                (gv.as_ptr(), d_out as isize, 1),
                1.0,
                false,
                Parallelism::Rayon(0),
            );
            dw.assume_written()
        }
    } else {
        add_up(partials.into_iter().filter_map(|p| p.0), d_in * d_out)
    };
    // SAFETY: the row chunks (or the whole product) cover all n rows of dx.
    let dx = unsafe { dx.assume_written() };
    (
        tensor(dx, &[n, d_in]),
        tensor(dw, &[d_in, d_out]),
        tensor(db, &[d_out]),
    )
}

/// Rows per rayon task for the row-wise kernels: fixed by the data, not by the thread count,
/// so that partial sums (LayerNorm's dγ, dβ) add up in the same order on every machine.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

multiversion! {
    fn layer_norm_rows(x: &[f32], y: &mut [f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32) {
        let d = gamma.len();
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = math::sum(xr) / d as f32;
            for (yi, &xi) in yr.iter_mut().zip(xr) {
                *yi = xi - mean;
            }
            let var = math::dot(yr, yr) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            match beta {
                Some(b) => {
                    for ((yi, &g), &bi) in yr.iter_mut().zip(gamma).zip(b) {
                        *yi = *yi * rstd * g + bi;
                    }
                }
                None => {
                    for (yi, &g) in yr.iter_mut().zip(gamma) {
                        *yi = *yi * rstd * g;
                    }
                }
            }
        }
    }
}

pub fn layer_norm(x: Ft, gamma: Ft, beta: Option<Ft>, eps: f64) -> Ft {
    if !is_f32(&[&x, &gamma]) {
        return reference::layer_norm::<Flex>(x, gamma, beta, eps);
    }
    let dims = x.shape().to_vec();
    let (x, gamma) = (contiguous(&x), contiguous(&gamma));
    let beta = beta.map(|b| contiguous(&b));
    let (xv, gv) = (values(&x), values(&gamma));
    let bv = beta.as_ref().map(values);
    let d = gv.len();
    let chunk = rows_per_task(d) * d;
    let y = par_filled(xv.len(), chunk, |task, yc| {
        let xc = &xv[task * chunk..][..yc.len()];
        layer_norm_rows(xc, yc, gv, bv, eps as f32)
    });
    tensor(y, &dims)
}

multiversion! {
    /// dx for each row, and this chunk's dγ and dβ sums.
    fn layer_norm_backward_rows(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        eps: f32,
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let d = gamma.len();
        let mut xhat = vec![0.0f32; d];
        let mut g = vec![0.0f32; d];
        for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
            let mean = math::sum(xr) / d as f32;
            for (h, &xi) in xhat.iter_mut().zip(xr) {
                *h = xi - mean;
            }
            let var = math::dot(&xhat, &xhat) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for h in xhat.iter_mut() {
                *h *= rstd;
            }
            for i in 0..d {
                g[i] = dyr[i] * gamma[i];
                dgamma[i] += dyr[i] * xhat[i];
                dbeta[i] += dyr[i];
            }
            let mean_g = math::sum(&g) / d as f32;
            let mean_gx = math::dot(&g, &xhat) / d as f32;
            for i in 0..d {
                dxr[i] = rstd * (g[i] - mean_g - xhat[i] * mean_gx);
            }
        }
    }
}

pub fn layer_norm_backward(x: Ft, gamma: Ft, eps: f64, grad: Ft) -> (Ft, Ft, Ft) {
    if !is_f32(&[&x, &gamma, &grad]) {
        return reference::layer_norm_backward::<Flex>(x, gamma, eps, grad);
    }
    let dims = x.shape().to_vec();
    let (x, gamma, g) = (contiguous(&x), contiguous(&gamma), contiguous(&grad));
    let (xv, gav, dyv) = (values(&x), values(&gamma), values(&g));
    let d = gav.len();
    let chunk = rows_per_task(d) * d;
    let (dx, partials) = par_filled_with(xv.len(), chunk, |task, dxc| {
        let start = task * chunk;
        let (xc, dyc) = (&xv[start..][..dxc.len()], &dyv[start..][..dxc.len()]);
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        layer_norm_backward_rows(xc, dyc, gav, eps as f32, dxc, &mut dgamma, &mut dbeta);
        (dgamma, dbeta)
    });
    let dgamma = add_up(partials.iter().map(|p| &p.0), d);
    let dbeta = add_up(partials.iter().map(|p| &p.1), d);
    (tensor(dx, &dims), tensor(dgamma, &[d]), tensor(dbeta, &[d]))
}

const ELEMENTS_PER_TASK: usize = 16_384;

multiversion! {
    fn gelu_slice(x: &[f32], y: &mut [f32]) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi = 0.5 * xi * (1.0 + math::erf(xi * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    fn gelu_backward_slice(x: &[f32], g: &[f32], dx: &mut [f32]) {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for ((di, &xi), &gi) in dx.iter_mut().zip(x).zip(g) {
            let cdf = 0.5 * (1.0 + math::erf(xi * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * math::exp(-0.5 * xi * xi);
            *di = gi * (cdf + xi * pdf);
        }
    }
}

pub fn gelu(x: Ft) -> Ft {
    if !is_f32(&[&x]) {
        return reference::gelu::<Flex>(x);
    }
    let dims = x.shape().to_vec();
    let x = contiguous(&x);
    let xv = values(&x);
    let y = par_filled(xv.len(), ELEMENTS_PER_TASK, |task, yc| {
        gelu_slice(&xv[task * ELEMENTS_PER_TASK..][..yc.len()], yc)
    });
    tensor(y, &dims)
}

pub fn gelu_backward(x: Ft, grad: Ft) -> Ft {
    if !is_f32(&[&x, &grad]) {
        return reference::gelu_backward::<Flex>(x, grad);
    }
    let dims = x.shape().to_vec();
    let (x, g) = (contiguous(&x), contiguous(&grad));
    let (xv, gv) = (values(&x), values(&g));
    let dx = par_filled(xv.len(), ELEMENTS_PER_TASK, |task, dc| {
        let range = task * ELEMENTS_PER_TASK..task * ELEMENTS_PER_TASK + dc.len();
        gelu_backward_slice(&xv[range.clone()], &gv[range], dc)
    });
    tensor(dx, &dims)
}

/// Each row's count of tokens, at least 1 (the mask holds 0 / 1, so any order sums exactly).
fn token_counts(mask: &[f32], length: usize) -> Vec<f32> {
    mask.chunks_exact(length)
        .map(|row| row.iter().sum::<f32>().max(1.0))
        .collect()
}

multiversion! {
    /// One batch row: Σₜ x·m (or Σₜ x) in position order, as burn-flex's middle-dimension sum
    /// adds rows, then the division, so the bits match burn's `mean_dim` / masked mean.
    fn mean_pool_row(x: &[f32], mask: Option<&[f32]>, divisor: f32, out: &mut [f32]) {
        let d = out.len();
        out.fill(0.0);
        for (t, row) in x.chunks_exact(d).enumerate() {
            match mask {
                Some(m) => {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += v * m[t];
                    }
                }
                None => {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += v;
                    }
                }
            }
        }
        for o in out.iter_mut() {
            *o /= divisor;
        }
    }
}

pub fn mean_pool(x: Ft, mask: Option<Ft>) -> Ft {
    let dims = x.shape().to_vec();
    let fits = dims.len() == 3
        && is_f32(&[&x])
        && mask
            .as_ref()
            .is_none_or(|m| is_f32(&[m]) && m.shape().to_vec() == dims[..2]);
    if !fits {
        return reference::mean_pool::<Flex>(x, mask);
    }
    let (b, l, d) = (dims[0], dims[1], dims[2]);
    let (x, mask) = (contiguous(&x), mask.map(|m| contiguous(&m)));
    let (xv, mv) = (values(&x), mask.as_ref().map(values));
    let counts = mv.map(|m| token_counts(m, l));
    let out = par_filled(b * d, d, |row, out| {
        let divisor = counts.as_ref().map_or(l as f32, |c| c[row]);
        let mask = mv.map(|m| &m[row * l..][..l]);
        mean_pool_row(&xv[row * l * d..][..l * d], mask, divisor, out)
    });
    tensor(out, &[b, d])
}

multiversion! {
    /// One batch row of dx: (1/l)·g, or (g·(1/count))·mₜ: burn-flex divides by a broadcast
    /// tensor through its reciprocal, and these are the bits of burn's backward passes.
    fn mean_pool_backward_row(g: &[f32], mask: Option<&[f32]>, factor: f32, dx: &mut [f32]) {
        let d = g.len();
        for (t, row) in dx.chunks_exact_mut(d).enumerate() {
            match mask {
                Some(m) => {
                    for (o, &gi) in row.iter_mut().zip(g) {
                        *o = (gi * factor) * m[t];
                    }
                }
                None => {
                    for (o, &gi) in row.iter_mut().zip(g) {
                        *o = factor * gi;
                    }
                }
            }
        }
    }
}

pub fn mean_pool_backward(mask: Option<Ft>, grad: Ft, length: usize) -> Ft {
    let dims = grad.shape().to_vec();
    let fits = dims.len() == 2
        && is_f32(&[&grad])
        && mask
            .as_ref()
            .is_none_or(|m| is_f32(&[m]) && m.shape().to_vec() == [dims[0], length]);
    if !fits {
        return reference::mean_pool_backward::<Flex>(mask, grad, length);
    }
    let (b, d) = (dims[0], dims[1]);
    let (g, mask) = (contiguous(&grad), mask.map(|m| contiguous(&m)));
    let (gv, mv) = (values(&g), mask.as_ref().map(values));
    let counts = mv.map(|m| token_counts(m, length));
    // burn multiplies a tensor of (1/l as f32) by the gradient.
    let inverse = (1.0 / length as f64) as f32;
    let dx = par_filled(b * length * d, length * d, |row, dx| {
        let factor = counts.as_ref().map_or(inverse, |c| 1.0 / c[row]);
        let mask = mv.map(|m| &m[row * length..][..length]);
        mean_pool_backward_row(&gv[row * d..][..d], mask, factor, dx)
    });
    tensor(dx, &[b, length, d])
}

multiversion! {
    fn relu_slice(x: &[f32], y: &mut [f32]) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi = xi.max(0.0);
        }
    }
}

multiversion! {
    fn relu_backward_slice(out: &[f32], g: &[f32], dx: &mut [f32]) {
        for ((di, &oi), &gi) in dx.iter_mut().zip(out).zip(g) {
            *di = if oi > 0.0 { gi } else { 0.0 };
        }
    }
}

pub fn relu(x: Ft) -> Ft {
    if !is_f32(&[&x]) {
        return Flex::relu(x);
    }
    let dims = x.shape().to_vec();
    let x = contiguous(&x);
    let xv = values(&x);
    let y = par_filled(xv.len(), ELEMENTS_PER_TASK, |task, yc| {
        relu_slice(&xv[task * ELEMENTS_PER_TASK..][..yc.len()], yc)
    });
    tensor(y, &dims)
}

pub fn relu_backward(output: Ft, grad: Ft) -> Ft {
    if !is_f32(&[&output, &grad]) || output.shape() != grad.shape() {
        return Flex::relu_backward(output, grad);
    }
    let dims = output.shape().to_vec();
    let (o, g) = (contiguous(&output), contiguous(&grad));
    let (ov, gv) = (values(&o), values(&g));
    let dx = par_filled(ov.len(), ELEMENTS_PER_TASK, |task, dc| {
        let range = task * ELEMENTS_PER_TASK..task * ELEMENTS_PER_TASK + dc.len();
        relu_backward_slice(&ov[range.clone()], &gv[range], dc)
    });
    tensor(dx, &dims)
}

multiversion! {
    fn residual_slice(x: &[f32], z: &[f32], mask: Option<&[f32]>, out: &mut [f32]) {
        match mask {
            Some(m) => {
                for (((o, &a), &b), &k) in out.iter_mut().zip(x).zip(z).zip(m) {
                    *o = a + b * k;
                }
            }
            None => {
                for ((o, &a), &b) in out.iter_mut().zip(x).zip(z) {
                    *o = a + b;
                }
            }
        }
    }
}

/// `x + z ⊙ mask` or `x + z`, in parallel.
pub fn residual(x: Ft, z: Ft, mask: Option<Ft>) -> Ft {
    let same = |t: &Ft| t.shape() == x.shape();
    if !is_f32(&[&x, &z]) || !same(&z) || mask.as_ref().is_some_and(|m| !same(m) || !is_f32(&[m])) {
        return reference::residual::<Flex>(x, z, mask);
    }
    let dims = x.shape().to_vec();
    let (x, z, mask) = (contiguous(&x), contiguous(&z), mask.map(|m| contiguous(&m)));
    let (xv, zv) = (values(&x), values(&z));
    let mv = mask.as_ref().map(values);
    let out = par_filled(xv.len(), ELEMENTS_PER_TASK, |task, o| {
        let range = task * ELEMENTS_PER_TASK..task * ELEMENTS_PER_TASK + o.len();
        residual_slice(
            &xv[range.clone()],
            &zv[range.clone()],
            mv.map(|m| &m[range]),
            o,
        )
    });
    tensor(out, &dims)
}

/// `a ⊙ b`, in parallel.
pub fn multiply_tensors(a: Ft, b: Ft) -> Ft {
    if !is_f32(&[&a, &b]) || a.shape() != b.shape() {
        return Flex::float_mul(a, b);
    }
    let dims = a.shape().to_vec();
    let (a, b) = (contiguous(&a), contiguous(&b));
    let (av, bv) = (values(&a), values(&b));
    let out = par_filled(av.len(), ELEMENTS_PER_TASK, |task, o| {
        let range = task * ELEMENTS_PER_TASK..task * ELEMENTS_PER_TASK + o.len();
        multiply_into(o, &av[range.clone()], &bv[range])
    });
    tensor(out, &dims)
}

/// A 32-bit mixing function (Wellons' lowbias32): good enough statistics for dropout masks,
/// and it vectorises.
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

multiversion! {
    fn dropout_mask_slice(out: &mut [f32], first: u32, seed: u64, threshold: u32, kept: f32) {
        let (lo, hi) = (seed as u32, (seed >> 32) as u32);
        for (i, m) in out.iter_mut().enumerate() {
            let counter = first.wrapping_add(i as u32);
            let r = mix(mix(counter ^ lo).wrapping_add(hi));
            *m = if r < threshold { kept } else { 0.0 };
        }
    }
}

/// Inverted-dropout keep mask {0, 1/(1−p)} with P(keep) = 1 − p, element i decided by
/// (seed, i) alone: the same seed gives the same mask on any number of threads.
pub fn dropout_mask(shape: &[usize], prob: f64, seed: u64) -> Ft {
    let keep = 1.0 - prob;
    let threshold = (keep * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let n: usize = shape.iter().product();
    let mut mask = vec![0.0f32; n];
    mask.par_chunks_mut(ELEMENTS_PER_TASK)
        .enumerate()
        .for_each(|(c, out)| {
            let first = (c * ELEMENTS_PER_TASK) as u32;
            dropout_mask_slice(out, first, seed, threshold, (1.0 / keep) as f32)
        });
    tensor(mask, shape)
}

impl PipeOps for Flex {
    fn fused_attention_forward(
        q: Ft,
        k: Ft,
        v: Ft,
        key_mask: Option<Ft>,
        dropout_mask: Option<Ft>,
        options: AttentionOptions,
    ) -> (Ft, Ft) {
        let (out, probs) = attention_forward(q, k, v, key_mask, dropout_mask, options, true);
        (out, probs.expect("kept"))
    }
    fn fused_attention(
        q: Ft,
        k: Ft,
        v: Ft,
        key_mask: Option<Ft>,
        dropout_mask: Option<Ft>,
        options: AttentionOptions,
    ) -> Ft {
        attention_forward(q, k, v, key_mask, dropout_mask, options, false).0
    }
    fn fused_attention_backward(
        q: Ft,
        k: Ft,
        v: Ft,
        probs: Ft,
        dropout_mask: Option<Ft>,
        grad: Ft,
        options: AttentionOptions,
    ) -> (Ft, Ft, Ft) {
        attention_backward(q, k, v, probs, dropout_mask, grad, options)
    }
    fn fused_linear(x: Ft, weight: Ft, bias: Ft) -> Ft {
        linear(x, weight, bias)
    }
    fn fused_linear_backward(x: Ft, weight: Ft, grad: Ft) -> (Ft, Ft, Ft) {
        linear_backward(x, weight, grad)
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
