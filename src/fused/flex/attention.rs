//! Multi-head scaled dot-product attention, forward and backward: one rayon task per
//! (batch row, head) block, `gemm` (or AMX tiles under bf16-mixed, see `mm_mixed`) on the
//! strided per-head views of q, k, v, the softmax and its gradient in place in per-thread
//! block buffers.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;
use std::cell::RefCell;

use super::{
    Ft, MIXED_MIN_PRODUCT, Written, contiguous, is_f32, mm_mixed, multiply_into, tensor, values,
};
use crate::fused::amx;
use crate::fused::math::{self, multiversion};
use crate::fused::{AttentionGrads, AttentionMasks, AttentionOptions, reference};

/// Which scores of a (batch row, head) block are masked, besides what the scores say.
#[derive(Clone, Copy)]
struct RowMasks<'a> {
    /// (1 − mask)·penalty per key of this batch row.
    key_penalty: Option<&'a [f32]>,
    penalty: f32,
    /// Keys farther than this from the query get `penalty` (once).
    window: Option<usize>,
    /// This batch row's mask over the queries when padded queries attend evenly.
    even_queries: Option<&'a [f32]>,
}

impl RowMasks<'_> {
    /// Nothing beyond the key penalties: the path model A and BERT take, bits unchanged.
    fn keys_only(&self) -> bool {
        self.window.is_none() && self.even_queries.is_none()
    }
}

/// Scores row → e^(s − max) in place, with the key-padding penalty added first; each row's
/// 1 / Σ goes to `inv_sums`. Normalising is left to the caller, who may scale the much
/// narrower output rows instead.
fn exp_rows(scores: &mut [f32], lk: usize, penalty: Option<&[f32]>, inv_sums: &mut [f32]) {
    assert_eq!(
        scores.len(),
        lk * inv_sums.len(),
        "whole rows, one 1/Σ each"
    );
    assert!(
        penalty.is_none_or(|p| p.len() >= lk),
        "a penalty for every key"
    );
    #[cfg(target_arch = "x86_64")]
    if math::simd_level() == 2 {
        // SAFETY: the CPU has AVX-512 (checked); the sizes are checked above.
        return unsafe { exp_rows_avx512(scores, lk, penalty, inv_sums) };
    }
    exp_rows_portable(scores, lk, penalty, inv_sums)
}

/// [`exp_rows`] in AVX-512 registers, the same values as the portable loop: the penalty
/// added in the pass that finds the maximum (one pass less over each row), and e^x's 2^n
/// applied by one VSCALEFPS, zero-masked below the smallest normal result, where
/// [`math::exp`] builds 2^n from integer bits, multiplies and selects. Softmax's exp was
/// 9–10 % of a bf16-mixed MiniLM inference step.
///
/// # Safety
/// AVX-512F; `scores` is whole rows of `lk`, one per `inv_sums`; `penalty` holds `lk` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn exp_rows_avx512(
    scores: &mut [f32],
    lk: usize,
    penalty: Option<&[f32]>,
    inv_sums: &mut [f32],
) {
    use std::arch::x86_64::*;
    let whole = lk / 16 * 16;
    for (row, inv) in scores.chunks_exact_mut(lk).zip(inv_sums.iter_mut()) {
        // SAFETY: AVX-512F (the caller's contract); the penalty holds lk values.
        let m = unsafe { penalised_max_avx512(row, penalty) };
        let at = row.as_mut_ptr();
        // SAFETY (the whole block): vectors at j < whole lie inside the row.
        unsafe {
            let mut sum = _mm512_setzero_ps();
            for j in (0..whole).step_by(16) {
                let x = _mm512_sub_ps(_mm512_loadu_ps(at.add(j)), _mm512_set1_ps(m));
                let e = exp16(x);
                _mm512_storeu_ps(at.add(j), e);
                sum = _mm512_add_ps(sum, e);
            }
            let mut rest = 0.0;
            for x in &mut row[whole..] {
                *x = math::exp(*x - m);
                rest += *x;
            }
            *inv = 1.0 / (fold_sum(sum) + rest);
        }
    }
}

/// The row's largest score after its penalty is added (and written back), as the first pass
/// of [`exp_rows_avx512`].
///
/// # Safety
/// AVX-512F; `penalty` holds at least `row.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn penalised_max_avx512(row: &mut [f32], penalty: Option<&[f32]>) -> f32 {
    use std::arch::x86_64::*;
    let (lk, at) = (row.len(), row.as_mut_ptr());
    let whole = lk / 16 * 16;
    // SAFETY: vectors at j < whole lie inside the row (and the penalty).
    unsafe {
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for j in (0..whole).step_by(16) {
            let mut v = _mm512_loadu_ps(at.add(j));
            if let Some(p) = penalty {
                v = _mm512_add_ps(v, _mm512_loadu_ps(p.as_ptr().add(j)));
                _mm512_storeu_ps(at.add(j), v);
            }
            max = _mm512_max_ps(v, max);
        }
        let mut m = _mm512_reduce_max_ps(max);
        for j in whole..lk {
            if let Some(p) = penalty {
                row[j] += p[j];
            }
            m = m.max(row[j]);
        }
        m
    }
}

/// [`exp_rows`] for rows a multiple of 32 long, with the weights e^(s − max) rounded to bf16
/// straight into the left operand of P·V (row i, keys 32·kb .. into its line (i, kb)) instead
/// of written back in f32: [`exp_rows_avx512`]'s sums in its order, of an exp good to 4e-6
/// ([`exp16_rounded_after`]: the weights are rounded to bf16 next, 2e-3), rounded as packing
/// them would. The scores are left penalised.
///
/// # Safety
/// AVX-512F and AVX512-BF16; `scores` is whole rows of `lk` (a multiple of 32), one per
/// `inv_sums`, and `probs` a left operand of at least as many rows and lk columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma")]
unsafe fn exp_rows_into_tiles(
    scores: &mut [f32],
    lk: usize,
    penalty: Option<&[f32]>,
    (inv_sums, probs): (&mut [f32], &mut amx::Packed),
) {
    use std::arch::x86_64::*;
    assert!(lk.is_multiple_of(32) && scores.len() == lk * inv_sums.len());
    assert!(penalty.is_none_or(|p| p.len() >= lk));
    for (i, (row, inv)) in scores
        .chunks_exact_mut(lk)
        .zip(inv_sums.iter_mut())
        .enumerate()
    {
        // SAFETY: AVX-512F; the penalty holds lk values (asserted).
        let m = unsafe { penalised_max_avx512(row, penalty) };
        let at = row.as_ptr();
        // SAFETY: the 16-value vectors at j, j + 16 < lk lie inside the row.
        unsafe {
            let mut sum = _mm512_setzero_ps();
            for j in (0..lk).step_by(32) {
                let shifted =
                    |j: usize| _mm512_sub_ps(_mm512_loadu_ps(at.add(j)), _mm512_set1_ps(m));
                let (low, high) = (
                    exp16_rounded_after(shifted(j)),
                    exp16_rounded_after(shifted(j + 16)),
                );
                sum = _mm512_add_ps(_mm512_add_ps(sum, low), high);
                let line: [u16; 32] = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
                *probs.line_mut(i, j / 32) = line;
            }
            // No scalar remainder to add: lk is whole vectors (exp_rows_avx512 adds +0.0).
            *inv = 1.0 / fold_sum(sum);
        }
    }
}

/// [`math::exp`] of 16 lanes, the same operations up to the scale: VSCALEFPS by n, zeroed
/// where the input is below the smallest normal result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    const LOW: f32 = -87.336_55;
    let input = x;
    // The bound first: MAXPS/MINPS return their second operand when one is NaN, and a NaN
    // must stay one, as f32::clamp keeps it.
    let x = _mm512_min_ps(
        _mm512_set1_ps(88.376_26),
        _mm512_max_ps(_mm512_set1_ps(LOW), x),
    );
    // x·log2(e) rounded to an integer by adding and subtracting 1.5·2^23, as math::exp does.
    let round = _mm512_set1_ps(12_582_912.0);
    let t = _mm512_add_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        round,
    );
    let n = _mm512_sub_ps(t, round);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let e = _mm512_add_ps(
        _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
        _mm512_set1_ps(1.0),
    );
    let normal = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(input, _mm512_set1_ps(LOW));
    _mm512_maskz_scalef_ps(normal, e, n)
}

/// e^x of 16 lanes x ≤ 0 (softmax's shifted scores) to a relative 4e-6, for weights rounded to
/// bf16 right after (half its ulp: 2e-3): a degree-4 polynomial after a one-constant reduction,
/// 10 operations where [`exp16`]'s f32 accuracy takes 16. Zero below the smallest normal
/// result, as [`exp16`]; a NaN stays one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp16_rounded_after(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    const LOW: f32 = -87.336_55;
    // MAXPS returns its second operand where one is NaN: the NaN.
    let clamped = _mm512_max_ps(_mm512_set1_ps(LOW), x);
    let round = _mm512_set1_ps(12_582_912.0);
    let t = _mm512_fmadd_ps(clamped, _mm512_set1_ps(std::f32::consts::LOG2_E), round);
    let n = _mm512_sub_ps(t, round);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(std::f32::consts::LN_2), clamped);
    // Relative-error minimax fit of e^r on [−ln 2 / 2, ln 2 / 2]: 2.9e-6 evaluated in f32.
    let mut p = _mm512_set1_ps(0.041_513_75);
    for c in [0.167_874_6, 0.500_030_16, 0.999_966_86, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let normal = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(LOW));
    _mm512_maskz_scalef_ps(normal, p, n)
}

/// The 16 lanes' sum in [`math::sum`]'s order: 8 + 8, 4 + 4, 2 + 2, 1 + 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_sum(v: std::arch::x86_64::__m512) -> f32 {
    let mut lanes = [0.0f32; 16];
    // SAFETY: 16 f32.
    unsafe { std::arch::x86_64::_mm512_storeu_ps(lanes.as_mut_ptr(), v) };
    let mut width = 8;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

multiversion! {
    /// [`exp_rows`] on any CPU, vectorised by the compiler.
    fn exp_rows_portable(scores: &mut [f32], lk: usize, penalty: Option<&[f32]>, inv_sums: &mut [f32]) {
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

/// [`exp_rows`] with a window around each query and evenly attending padded queries.
fn exp_rows_masked(scores: &mut [f32], lk: usize, masks: RowMasks, inv_sums: &mut [f32]) {
    for (i, (row, inv)) in scores
        .chunks_exact_mut(lk)
        .zip(inv_sums.iter_mut())
        .enumerate()
    {
        if masks.even_queries.is_some_and(|q| q[i] < 0.5) {
            row.fill(1.0);
            *inv = 1.0 / lk as f32;
            continue;
        }
        if let Some(p) = masks.key_penalty {
            for (s, &pen) in row.iter_mut().zip(p) {
                *s += pen;
            }
        }
        if let Some(w) = masks.window {
            for (j, s) in row.iter_mut().enumerate() {
                let padded = masks.key_penalty.is_some_and(|p| p[j] != 0.0);
                if i.abs_diff(j) > w && !padded {
                    *s += masks.penalty;
                }
            }
        }
        exp_rows(row, lk, None, std::slice::from_mut(inv));
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

/// The key mask as the query mask [b, lq] where padded queries attend evenly.
fn even_query_mask(key_mask: &Option<Ft>, d: &Dims, o: AttentionOptions) -> Option<Vec<f32>> {
    if !o.even_padded_queries {
        return None;
    }
    let m = contiguous(key_mask.as_ref()?);
    assert_eq!(
        d.lq, d.lk,
        "evenly attending padded queries need self-attention"
    );
    Some(values(&m).to_vec())
}

/// Zeroes the score-gradient rows of padded queries: their even rows do not depend on the
/// scores.
fn zero_padded_rows(ds: &mut [f32], lk: usize, queries: &[f32]) {
    for (row, &m) in ds.chunks_exact_mut(lk).zip(queries) {
        if m < 0.5 {
            row.fill(0.0);
        }
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

/// How a block's scores become the weights of P·V.
#[derive(Clone, Copy)]
struct BlockWeights<'a> {
    masks: RowMasks<'a>,
    /// The block's dropout mask (already scaled), while training.
    dropout: Option<&'a [f32]>,
    /// Normalise the weights themselves (kept for the backward pass, or dropped out), not the
    /// output rows after.
    normalise: bool,
}

/// O [lq, dv] (rows `stride` apart) = weights · V for one block's scores S [lq, lk] in
/// `scores` (`kept`: room for the dropped-out weights): softmax's e^(S − max) with each row's
/// 1 / Σ to `inv_sums`, normalised and dropped out as `weights` says; unnormalised otherwise
/// (the caller scales the output rows). V [lk, dv] is `v`, rows `stride` apart.
///
/// # Safety
/// `out` has lq rows of dv values `stride` apart that no other task reads or writes.
unsafe fn softmax_times_values(
    (scores, kept, inv_sums): (&mut [f32], &mut [f32], &mut [f32]),
    weights: BlockWeights,
    v: &[f32],
    (out, stride): (*mut f32, usize),
    d: &Dims,
) {
    let masks = weights.masks;
    if !weights.normalise && masks.keys_only() && weights_in_tiles(d) {
        let v = amx::Source::transposed(v).with_stride(stride);
        // SAFETY: `weights_in_tiles` checked AMX and AVX-512; the caller's contract.
        unsafe { weights_times_values((scores, masks.key_penalty, inv_sums), v, (out, stride), d) };
        return;
    }
    match masks.keys_only() {
        true => exp_rows(scores, d.lk, masks.key_penalty, inv_sums),
        false => exp_rows_masked(scores, d.lk, masks, inv_sums),
    }
    if weights.normalise {
        scale_rows(scores, d.lk, d.lk, inv_sums);
    }
    let p = dropped(scores, weights.dropout, kept);
    // SAFETY: the caller's contract; V's rows lie inside `v`.
    unsafe {
        mm_mixed(
            (d.lq, d.dv, d.lk),
            (out, stride as isize, 1),
            (p.as_ptr(), d.lk as isize, 1),
            (v.as_ptr(), stride as isize, 1),
            1.0,
            false,
        )
    };
}

/// Whether a block's softmax weights go straight into AMX tiles for P·V
/// ([`weights_times_values`]): bf16-mixed, P·V large enough for the tiles (as [`mm_mixed`]
/// decides), whole 32-key lines, AVX-512.
fn weights_in_tiles(d: &Dims) -> bool {
    #[cfg(target_arch = "x86_64")]
    let avx512 = math::simd_level() == 2;
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    amx::mixed() && avx512 && d.lk.is_multiple_of(32) && d.lq * d.dv * d.lk >= MIXED_MIN_PRODUCT
}

/// O [lq, dv] (rows `stride` apart) = e^(S − max) · V for one block's scores S [lq, lk] with
/// their key penalties: the weights rounded to bf16 into the left operand of P·V as they are
/// computed ([`exp_rows_into_tiles`]), each row's 1 / Σ to `inv_sums`; the rows are left
/// unnormalised, as the caller scales them. [`exp_rows`] then [`mm_mixed`] on AMX give the
/// same within the exp's 4e-6.
///
/// # Safety
/// AMX and AVX-512 are available ([`weights_in_tiles`]); `out` has lq rows of dv values
/// `stride` apart that no other task reads or writes; `v` is V [lk, dv] as the packer's Bᵀ
/// source.
unsafe fn weights_times_values(
    (scores, penalty, inv_sums): (&mut [f32], Option<&[f32]>, &mut [f32]),
    v: amx::Source,
    out: (*mut f32, usize),
    d: &Dims,
) {
    amx::with_left_rows((d.lq, d.lk), |probs| {
        // SAFETY: the caller's contract (AVX-512 and AVX512-BF16 come with AMX here; the
        // kernels assert the sizes); `out` as the caller's.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            exp_rows_into_tiles(scores, d.lk, penalty, (inv_sums, probs));
            amx::block_product_left_packed(out, probs, v, (d.lq, d.lk, d.dv));
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (scores, penalty, inv_sums, probs, v, out);
            unreachable!("weights_in_tiles is false off x86-64");
        }
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
    masks: AttentionMasks<Ft>,
    o: AttentionOptions,
    keep_probs: bool,
) -> (Ft, Option<Ft>) {
    let bias_f32 = masks.bias.as_ref().is_none_or(|b| is_f32(&[b]));
    if !is_f32(&[&q, &k, &v]) || !bias_f32 {
        let (out, probs) = reference::attention_forward::<Flex>(q, k, v, masks, o);
        return (out, Some(probs));
    }
    let d = Dims::of(&q, &k, &v, o.num_heads);
    let (q, k, v) = (contiguous(&q), contiguous(&k), contiguous(&v));
    let (qv, kv, vv) = (values(&q), values(&k), values(&v));
    let drop = masks.dropout_mask.map(|m| contiguous(&m));
    let drop = drop.as_ref().map(values);
    let bias = masks.bias.map(|m| contiguous(&m));
    let bias = bias.as_ref().map(values);
    if let Some(bias) = bias {
        assert_eq!(
            bias.len(),
            d.b * d.h * d.lq * d.lk,
            "score bias must be [b, heads, lq, lk]"
        );
    }
    let query_mask = even_query_mask(&masks.key_mask, &d, o);
    let pen = key_penalties(masks.key_mask.as_ref(), d.b, d.lk, o.mask_penalty);
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
        let row_masks = RowMasks {
            key_penalty: pen.as_ref().map(|x| &x[bi * d.lk..(bi + 1) * d.lk]),
            penalty: o.mask_penalty,
            window: o.window,
            even_queries: query_mask.as_ref().map(|x| &x[bi * d.lq..(bi + 1) * d.lq]),
        };
        let mask = drop.map(|m| &m[bh * block..(bh + 1) * block]);
        let bias = bias.map(|m| &m[bh * block..(bh + 1) * block]);
        let mut inv_sums = vec![0.0f32; d.lq];
        with_blocks(block, |scores, kept| {
            // SAFETY: views stay inside q, k, v and this task's probability block; the
            // output columns of head `hi` in batch row `bi` belong to this task alone.
            unsafe {
                let p0 = match probs_ptr {
                    Some(all) => all.get().add(bh * block),
                    None => scores.as_mut_ptr(),
                };
                if let Some(bias) = bias {
                    std::ptr::copy_nonoverlapping(bias.as_ptr(), p0, block);
                }
                mm_mixed(
                    (d.lq, d.lk, d.dk),
                    (p0, d.lk as isize, 1),
                    (q0, qw, 1),
                    (k0, 1, kw),
                    o.scale,
                    bias.is_some(),
                );
                // The product has written every element of this block.
                let p = std::slice::from_raw_parts_mut(p0, block);
                // Weights kept for the backward pass or dropped out must be the true
                // softmax; otherwise the rows of P·V are scaled instead (32 wide, not 256).
                let normalise_scores = probs_ptr.is_some() || mask.is_some();
                let o0 = out_ptr.get().add(bi * d.lq * d.h * d.dv + hi * d.dv);
                let v =
                    &vv[bi * d.lk * d.h * d.dv + hi * d.dv..][..(d.lk - 1) * vw as usize + d.dv];
                let weights = BlockWeights {
                    masks: row_masks,
                    dropout: mask,
                    normalise: normalise_scores,
                };
                softmax_times_values((p, kept, &mut inv_sums), weights, v, (o0, vw as usize), &d);
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
    masks: AttentionMasks<Ft>,
    grad: Ft,
    o: AttentionOptions,
    bias_grad: bool,
) -> AttentionGrads<Ft> {
    if !is_f32(&[&q, &k, &v, &grad]) {
        return reference::attention_backward::<Flex>(q, k, v, probs, masks, grad, o, bias_grad);
    }
    let d = Dims::of(&q, &k, &v, o.num_heads);
    let query_mask = even_query_mask(&masks.key_mask, &d, o);
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
    let drop = masks.dropout_mask.map(|m| contiguous(&m));
    let drop = drop.as_ref().map(values);
    let block = d.lq * d.lk;
    let mut dbias = bias_grad.then(|| Written::new(d.b * d.h * block));
    let dbias_ptr = dbias.as_mut().map(Written::ptr);
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
        let query_mask = query_mask.as_ref().map(|x| &x[bi * d.lq..(bi + 1) * d.lq]);
        with_blocks(block, |kept, ds| {
            let weights = dropped(p, m, kept);
            // SAFETY: as in the forward pass, each task touches its own (batch row, head) block
            // (of dbias too, where the score gradient is written straight into it).
            unsafe {
                let ds = match dbias_ptr {
                    Some(all) => std::slice::from_raw_parts_mut(all.get().add(bh * block), block),
                    None => ds,
                };
                // dV = Wᵀ · dO
                mm_mixed(
                    (d.lk, d.dv, d.lq),
                    (dv_ptr.get().add(v_off), vw, 1),
                    (weights.as_ptr(), 1, d.lk as isize),
                    (gv[g_off..].as_ptr(), vw, 1),
                    1.0,
                    false,
                );
                // dW = dO · Vᵀ
                mm_mixed(
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
                if let Some(queries) = query_mask {
                    zero_padded_rows(ds, d.lk, queries);
                }
                // dQ = scale · dS · K ; dK = scale · dSᵀ · Q
                mm_mixed(
                    (d.lq, d.dk, d.lk),
                    (dq_ptr.get().add(q_off), qw, 1),
                    (ds.as_ptr(), d.lk as isize, 1),
                    (kv[k_off..].as_ptr(), qw, 1),
                    o.scale,
                    false,
                );
                mm_mixed(
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
    // SAFETY: each task wrote its head's columns of its batch row in all three, and its whole
    // block of dbias (the dW product wrote every element before the in-place steps).
    let (dq, dk, dv, dbias) = unsafe {
        (
            dq.assume_written(),
            dk.assume_written(),
            dv.assume_written(),
            dbias.map(|x| x.assume_written()),
        )
    };
    AttentionGrads {
        q: tensor(dq, &[d.b, d.lq, d.h * d.dk]),
        k: tensor(dk, &[d.b, d.lk, d.h * d.dk]),
        v: tensor(dv, &[d.b, d.lk, d.h * d.dv]),
        bias: dbias.map(|x| tensor(x, &[d.b, d.h, d.lq, d.lk])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn exp_rows_in_avx512_equal_the_portable_loop() {
        if math::simd_level() < 2 {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        for lk in [128, 37, 16, 5] {
            let rows = 9;
            // Scores from −120 to +40, some far below the others (masked keys), one −∞.
            let mut scores: Vec<f32> = (0..rows * lk)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 16_000) as f32 / 100.0 - 120.0)
                .collect();
            // One −∞, a NaN and a +∞ score, and a row of −∞ only (its maximum: −∞ − −∞ = NaN).
            scores[3] = f32::NEG_INFINITY;
            scores[lk + 1] = f32::NAN;
            scores[2 * lk + 2] = f32::INFINITY;
            scores[3 * lk..4 * lk].fill(f32::NEG_INFINITY);
            let penalty: Vec<f32> = (0..lk)
                .map(|j| if j % 7 == 3 { -10_000.0 } else { 0.0 })
                .collect();
            for pen in [None, Some(&penalty[..])] {
                let (mut fast, mut plain) = (scores.clone(), scores.clone());
                let (mut fast_inv, mut plain_inv) = (vec![0.0; rows], vec![0.0; rows]);
                // SAFETY: AVX-512 checked above; whole rows and a penalty of lk values.
                unsafe { exp_rows_avx512(&mut fast, lk, pen, &mut fast_inv) };
                exp_rows_portable(&mut plain, lk, pen, &mut plain_inv);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&plain), "lk {lk}");
                assert_eq!(bits(&fast_inv), bits(&plain_inv), "lk {lk}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_exp_rounded_after_is_within_4e_6_and_keeps_zeros_and_nan() {
        if math::simd_level() < 2 {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        let exp = |x: [f32; 16]| -> [f32; 16] {
            // SAFETY: AVX-512 checked above.
            unsafe {
                use std::arch::x86_64::*;
                let v = exp16_rounded_after(_mm512_loadu_ps(x.as_ptr()));
                std::mem::transmute::<__m512, [f32; 16]>(v)
            }
        };
        let mut worst = 0.0f64;
        for i in 0..100_000 {
            // Softmax's shifted scores: from −87 up to 0.
            let x0 = -87.0 * i as f32 / 100_000.0;
            let x: [f32; 16] = std::array::from_fn(|j| x0 - j as f32 * 1e-4);
            for (got, xi) in exp(x).iter().zip(x) {
                let want = (xi as f64).exp();
                worst = worst.max(((*got as f64 - want) / want).abs());
            }
        }
        assert!(worst <= 4e-6, "worst relative error {worst}");
        let mut edges = [0.0f32; 16];
        edges[..6].copy_from_slice(&[0.0, -1e4, f32::NEG_INFINITY, f32::NAN, -88.0, -87.3]);
        let edges = exp(edges);
        assert_eq!(edges[0], 1.0);
        assert_eq!(&edges[1..3], &[0.0, 0.0], "masked keys weigh nothing");
        assert!(edges[3].is_nan());
        assert_eq!(edges[4], 0.0, "below the smallest normal result");
        assert!(edges[5] > 0.0 && edges[5].is_normal());
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn weights_rounded_into_tiles_give_the_packed_products_values() {
        if crate::fused::amx::tests::no_amx() || math::simd_level() < 2 {
            return;
        }
        // 40 queries: a whole 32-row block and an edge one; V's rows 3 values apart from a
        // head's 2 columns, as in [batch, length, heads · dv].
        let (lq, lk, dv, stride) = (40, 96, 2, 5);
        let d = Dims {
            b: 1,
            h: 1,
            lq,
            lk,
            dk: 1,
            dv,
        };
        let scores: Vec<f32> = (0..lq * lk)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 2_000) as f32 / 100.0 - 10.0)
            .collect();
        let v: Vec<f32> = (0..(lk - 1) * stride + dv)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let v = amx::Source::transposed(&v).with_stride(stride);
        let penalty: Vec<f32> = (0..lk)
            .map(|j| if j % 5 == 1 { -1e4 } else { 0.0 })
            .collect();
        // NaN in every line of this thread's reused operand first: rows 40–63 stay so, and must
        // not reach the output.
        amx::with_left_rows((64, lk), |stale| {
            for row in 0..64 {
                for kb in 0..lk / 32 {
                    *stale.line_mut(row, kb) = [0x7fc0; 32];
                }
            }
        });
        for pen in [None, Some(&penalty[..])] {
            let (mut tiled, mut plain) = (scores.clone(), scores.clone());
            let (mut tiled_inv, mut plain_inv) = (vec![0.0; lq], vec![0.0; lq]);
            let (mut got, mut want) = (vec![0.0; lq * 7], vec![0.0; lq * 7]);
            // SAFETY: AMX and AVX-512 checked above; outputs of lq rows of dv, 7 apart.
            unsafe {
                let out = (got.as_mut_ptr(), 7);
                weights_times_values((&mut tiled, pen, &mut tiled_inv), v, out, &d);
                exp_rows(&mut plain, lk, pen, &mut plain_inv);
                let probs = amx::Source::rows(&plain);
                amx::block_product(
                    (want.as_mut_ptr(), 7),
                    amx::Start::Zero,
                    probs,
                    v,
                    (lq, lk, dv),
                );
            }
            // The tiles' exp is good to 4e-6 (the weights are rounded to bf16 after it): the
            // sums within that, and the products within a bf16 rounding of the weights.
            for (a, b) in tiled_inv.iter().zip(&plain_inv) {
                assert!((a - b).abs() <= 4e-6 * b.abs(), "1/Σ {a} vs {b}");
            }
            let scale: f32 = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 4e-3 * scale, "{a} vs {b}");
            }
            assert_ne!(got, vec![0.0; got.len()]);
            // The rows past 40 held NaN: none reached the output.
            assert!(got.iter().all(|x| x.is_finite()));
        }
    }
}
