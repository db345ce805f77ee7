//! A post-norm encoder's feed-forward sublayer, LayerNorm(x + GELU(x·W1 + b1)·W2 + b2), as
//! inference runs it (no dropout).

use burn::tensor::TensorMetadata;

use super::activation::gelu_in_place_rounded_after;
use super::linear::{linear_gelu, linear_residual_norm, on_tiles, rows_fuse};
use super::norm::residual_norm_row;
use super::{Ft, Written, contiguous, is_f32, tensor, values};
use crate::fused::amx;

/// LayerNorm(x + GELU(x·W1 + b1)·W2 + b2) over rows of x [n, d]. Under bf16-mixed with both
/// weights on the tiles, the inner activations [n, d_ff] are never read back in f32: each
/// 32-row block of the first product gets its GELU and is rounded into the second product's
/// tiles while still in the core's caches, and the second product adds the residual and
/// normalises each row as it writes it. Otherwise the two operations one after the other.
/// The fused path rounds as the packer does, after a GELU within 1.2e-7 · |x| of
/// [`linear_gelu`]'s ([`gelu_in_place_rounded_after`]).
pub fn feed_forward_norm(
    x: Ft,
    (w1, b1): (Ft, Option<Ft>),
    (w2, b2): (Ft, Option<Ft>),
    (gamma, beta): (Ft, Option<Ft>),
    eps: f64,
) -> Ft {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let (d_ff, d_out) = (w1.shape()[1], w2.shape()[1]);
    let second = [Some(&w2), b2.as_ref(), Some(&gamma), beta.as_ref()];
    let fused = rows_fuse(&x, &w1, b1.as_ref())
        && (w2.shape()[0], d_out, gamma.shape()[0]) == (d_ff, d, d)
        && on_tiles(n, d_ff, d_out)
        && is_f32(&second.into_iter().flatten().collect::<Vec<_>>());
    match fused {
        true => inner_in_tiles(x, (w1, b1), (w2, b2), (gamma, beta), eps),
        false => {
            let inner = linear_gelu(x.clone(), w1, b1);
            linear_residual_norm((inner, w2, b2), x, (gamma, beta), eps)
        }
    }
}

/// [`feed_forward_norm`]'s fused path, with the inner activations rounded straight into the
/// second product's tiles. Needs AMX and f32 operands of matching sizes.
fn inner_in_tiles(
    x: Ft,
    (w1, b1): (Ft, Option<Ft>),
    (w2, b2): (Ft, Option<Ft>),
    (gamma, beta): (Ft, Option<Ft>),
    eps: f64,
) -> Ft {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let (d_ff, d_out) = (w1.shape()[1], w2.shape()[1]);
    let [x, w1, w2, gamma] = [x, w1, w2, gamma].map(|t| contiguous(&t));
    let [b1, b2, beta] = [b1, b2, beta].map(|b| b.map(|b| contiguous(&b)));
    let (xv, w1v, w2v, gv) = (values(&x), values(&w1), values(&w2), values(&gamma));
    let (b1v, b2v, bv) = (
        b1.as_ref().map(values),
        b2.as_ref().map(values),
        beta.as_ref().map(values),
    );
    amx::with_left_operand((n, d_ff), |inner| {
        let rows = inner.rows_writer(d_ff);
        let gelu_rounded = |i: usize, row: &mut [f32]| {
            gelu_in_place_rounded_after(row);
            // SAFETY: row i is this task's alone; `inner` is not used otherwise until the
            // first product returns.
            unsafe { rows.write(i, row) };
        };
        // The f32 rows stay in each task's scratch: the rounded ones are what goes on.
        let start = b1v.map_or(amx::Start::Zero, amx::Start::Bias);
        amx::matmul_rows_then(
            &gelu_rounded,
            start,
            amx::Source::rows(xv),
            w1v,
            (n, d, d_ff),
        );
        let norm = |i: usize, row: &mut [f32]| {
            residual_norm_row(row, &xv[i * d..][..d], gv, bv, eps as f32)
        };
        let start = b2v.map_or(amx::Start::Zero, amx::Start::Bias);
        let mut out = Written::new(n * d_out);
        // SAFETY: `out` has room for n × d_out values, all written by the product; the first
        // product wrote every row of `inner` below n.
        unsafe {
            let c = (out.ptr().get(), Some(&norm as amx::RowsThen));
            amx::matmul_raw_left_packed(c, start, inner, w2v, (n, d_ff, d_out));
            tensor(out.assume_written(), &[n, d_out])
        }
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::Shape;
    use burn::tensor::ops::FloatTensorOps;

    use super::*;
    use crate::fused::amx::tests::no_amx;
    use crate::fused::flex::activation::gelu_in_place_rounded_after;
    use crate::fused::flex::linear::tests::pattern;
    use crate::fused::flex::linear::{linear_then, normalised_on_rows};

    #[test]
    fn inner_rows_rounded_into_tiles_equal_the_two_operations() {
        if no_amx() {
            return;
        }
        // 70 rows: two whole 32-row blocks and an edge one; d_ff 300: the inner rows' last
        // k-tile is part padding; d 272: an edge tile column in both products (and weights
        // large enough for the tiles).
        let (n, d, d_ff) = (70, 272, 300);
        let t = |len: usize, seed: u32, dims: &[usize]| tensor(pattern(len, seed), dims);
        let x = || t(n * d, 1, &[n, d]);
        let up = || (t(d * d_ff, 2, &[d, d_ff]), Some(t(d_ff, 3, &[d_ff])));
        let gamma = || t(d, 5, &[d]);
        for (b2, beta) in [(None, None), (Some(t(d, 4, &[d])), Some(t(d, 6, &[d])))] {
            let down = || (t(d_ff * d, 7, &[d_ff, d]), b2.clone());
            let got = inner_in_tiles(x(), up(), down(), (gamma(), beta.clone()), 1e-5);
            // The AMX products with their row functions, the inner activations in f32 between.
            let (w1, b1) = up();
            let gelu = |_: usize, row: &mut [f32]| gelu_in_place_rounded_after(row);
            let inner = linear_then(x(), w1, b1, Some(&gelu));
            let (w2, b2) = down();
            let residual = Flex::float_reshape(x(), Shape::from(vec![n, d]));
            let want = normalised_on_rows((inner, w2, b2), residual, (gamma(), beta), 1e-5);
            assert_eq!(got.shape(), want.shape());
            assert_eq!(values(&got), values(&want));
        }
    }
}
