//! Multi-head scaled dot-product attention, forward and backward: one rayon task per
//! (batch row, head) block, `gemm` on the strided per-head views of q, k, v, the softmax
//! and its gradient in place in per-thread block buffers.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;
use std::cell::RefCell;

use super::{Ft, Written, contiguous, is_f32, mm, multiply_into, tensor, values};
use crate::fused::math::{self, multiversion};
use crate::fused::{AttentionOptions, reference};

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
