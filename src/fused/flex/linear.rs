//! A `Linear` layer's x·W + b and its gradients (dx, dW, db): split by rows over rayon's
//! pool for small weights, one product that `gemm` threads itself for large ones.

use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{Shape, TensorMetadata};
use gemm::Parallelism;
use rayon::prelude::*;

use super::activation::{gelu, gelu_in_place};
use super::norm::{layer_norm, residual_norm_row};
use super::{Ft, Written, add_up, contiguous, is_f32, mm, mm_with, tensor, values};
use crate::fused::{amx, reference};

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

/// Whether x·W (n rows) runs on AMX tiles under bf16-mixed: a large weight, or a small one
/// (at least one whole k-tile wide) over rows enough. Model A's 32×64 projections over 65,536
/// rows ran its inference 5 % faster on the tiles than gemm's f32 (4 alternated pairs,
/// docs/benchmarks.md); its 32×20 layer after pooling (256 rows) stays in f32.
pub(super) fn on_tiles(n: usize, d_in: usize, d_out: usize) -> bool {
    gemm_threads_itself(d_in, d_out) || (d_in >= 32 && n * d_in * d_out >= 1 << 24)
}

pub fn linear(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
    linear_then(x, weight, bias, None)
}

/// Whether x·W + b takes the AMX path, the one that applies a `then` to each row block:
/// bf16-mixed, a weight large enough, every operand in f32.
pub(super) fn rows_fuse(x: &Ft, weight: &Ft, bias: Option<&Ft>) -> bool {
    let (d_in, d_out) = (weight.shape()[0], weight.shape()[1]);
    let f32_bias = bias.is_none_or(|b| is_f32(&[b]));
    amx::mixed() && on_tiles(x.shape()[0], d_in, d_out) && is_f32(&[x, weight]) && f32_bias
}

/// GELU(x·W + b): under bf16-mixed with a large weight, GELU runs on each 32-row block of the
/// product as soon as it is written (still in the core's caches), instead of reading the
/// [n, d_out] output back from memory; otherwise the two operations one after the other.
pub fn linear_gelu(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
    match rows_fuse(&x, &weight, bias.as_ref()) {
        true => linear_then(x, weight, bias, Some(&|_, row| gelu_in_place(row))),
        false => gelu(linear(x, weight, bias)),
    }
}

/// LayerNorm(residual + x·W + b) over rows of d_out: under bf16-mixed with a large weight,
/// the residual is added and each row normalised as soon as its product is written (the
/// projection's output is never read back from memory, and the sum never written); otherwise
/// the three operations one after the other. The same values either way.
pub fn linear_residual_norm(
    (x, weight, bias): (Ft, Ft, Option<Ft>),
    residual: Ft,
    (gamma, beta): (Ft, Option<Ft>),
    eps: f64,
) -> Ft {
    let d_out = weight.shape()[1];
    let rows = x.shape()[0];
    let fits = residual.shape().num_elements() == rows * d_out && gamma.shape()[0] == d_out;
    let norm_f32 = is_f32(&[&residual, &gamma]) && beta.as_ref().is_none_or(|b| is_f32(&[b]));
    let dims = Shape::from(residual.shape().to_vec());
    if !(fits && norm_f32 && rows_fuse(&x, &weight, bias.as_ref())) {
        let projected = Flex::float_reshape(linear(x, weight, bias), dims);
        return layer_norm(super::residual(residual, projected, None), gamma, beta, eps);
    }
    normalised_on_rows((x, weight, bias), residual, (gamma, beta), eps)
}

/// [`linear_residual_norm`]'s fused path: the AMX product, each row finished by
/// [`residual_norm_row`]. Needs AMX and f32 operands of matching sizes.
pub(super) fn normalised_on_rows(
    (x, weight, bias): (Ft, Ft, Option<Ft>),
    residual: Ft,
    (gamma, beta): (Ft, Option<Ft>),
    eps: f64,
) -> Ft {
    let d_out = weight.shape()[1];
    let dims = Shape::from(residual.shape().to_vec());
    let (residual, gamma) = (contiguous(&residual), contiguous(&gamma));
    let beta = beta.map(|b| contiguous(&b));
    let (rv, gv, bv) = (values(&residual), values(&gamma), beta.as_ref().map(values));
    let then = |i: usize, row: &mut [f32]| {
        residual_norm_row(row, &rv[i * d_out..][..d_out], gv, bv, eps as f32)
    };
    let out = linear_then(x, weight, bias, Some(&then));
    Flex::float_reshape(out, dims)
}

/// x·W_i + b_i for several `Linear` layers of the same input width: under bf16-mixed with
/// large weights, one pass over x's rows, each task rounding and packing its rows once for
/// every product (a layer's query, key and value projections); otherwise one [`linear`] each.
pub fn linears(x: Ft, layers: Vec<(Ft, Option<Ft>)>) -> Vec<Ft> {
    let d_in = x.shape()[1];
    let shared = layers
        .iter()
        .all(|(w, b)| w.shape()[0] == d_in && rows_fuse(&x, w, b.as_ref()));
    if !shared || layers.len() < 2 {
        return layers
            .into_iter()
            .map(|(w, b)| linear(x.clone(), w, b))
            .collect();
    }
    sharing_input(x, layers)
}

/// [`linears`]' AMX path: [`amx::products_sharing_left`] into fresh outputs. Needs AMX and f32
/// operands, every weight d_in rows.
fn sharing_input(x: Ft, layers: Vec<(Ft, Option<Ft>)>) -> Vec<Ft> {
    let (n, d_in) = (x.shape()[0], x.shape()[1]);
    let x = contiguous(&x);
    let layers: Vec<(Ft, Option<Ft>)> = layers
        .into_iter()
        .map(|(w, b)| (contiguous(&w), b.map(|b| contiguous(&b))))
        .collect();
    let mut outs: Vec<Written> = layers
        .iter()
        .map(|(w, _)| Written::new(n * w.shape()[1]))
        .collect();
    let products: Vec<amx::OfSharedLeft> = layers
        .iter()
        .zip(outs.iter_mut())
        .map(|((w, b), out)| amx::OfSharedLeft {
            c: out.ptr().get(),
            b: values(w),
            n: w.shape()[1],
            start: b
                .as_ref()
                .map(values)
                .map_or(amx::Start::Zero, amx::Start::Bias),
        })
        .collect();
    // SAFETY: each output has room for n × d_out values, all written by its product.
    unsafe {
        amx::products_sharing_left(amx::Source::rows(values(&x)), (n, d_in), &products);
        outs.into_iter()
            .zip(&layers)
            .map(|(out, (w, _))| tensor(out.assume_written(), &[n, w.shape()[1]]))
            .collect()
    }
}

/// x·W + b, then `then` on each row where given: a `then` takes the AMX path whatever
/// `mixed()` says by now, so its callers ([`linear_gelu`], [`linear_residual_norm`]) check
/// [`rows_fuse`] first; without the AMX path's operands it is refused, not left out.
pub(super) fn linear_then(x: Ft, weight: Ft, bias: Option<Ft>, then: Option<amx::RowsThen>) -> Ft {
    let f32_operands = is_f32(&[&x, &weight]) && bias.as_ref().is_none_or(|b| is_f32(&[b]));
    let (d_in, d_out) = (weight.shape()[0], weight.shape()[1]);
    assert!(
        then.is_none() || (f32_operands && on_tiles(x.shape()[0], d_in, d_out)),
        "a row function needs the AMX path's operands (see rows_fuse)"
    );
    if !f32_operands {
        return reference::linear::<Flex>(x, weight, bias);
    }
    let (x, w) = (contiguous(&x), contiguous(&weight));
    let b = bias.map(|b| contiguous(&b));
    let (xv, wv, bv) = (values(&x), values(&w), b.as_ref().map(values));
    let n = x.shape()[0];
    let whole = gemm_threads_itself(d_in, d_out);
    let mut out = Written::new(n * d_out);
    let out_ptr = out.ptr();
    if on_tiles(n, d_in, d_out) && (then.is_some() || amx::mixed()) {
        // bf16-mixed: the product on AMX tiles, its tiles starting from the bias (or zero).
        let start = bv.map_or(amx::Start::Zero, amx::Start::Bias);
        let x = amx::Source::rows(xv);
        // SAFETY: `out` has room for n × d_out values, all written by the product.
        unsafe {
            amx::matmul_raw((out_ptr.get(), then), start, x, wv, (n, d_in, d_out), false);
            return tensor(out.assume_written(), &[n, d_out]);
        }
    }
    let per = linear_rows(n);
    (0..n.div_ceil(per)).into_par_iter().for_each(|c| {
        let rows = c * per..((c + 1) * per).min(n);
        // SAFETY: this task writes (the bias or zeros, then the product onto them) only its
        // own rows.
        unsafe {
            let dst = out_ptr.get().add(rows.start * d_out);
            match bv {
                Some(bv) => bias_rows(dst, bv, rows.len()),
                None => std::ptr::write_bytes(dst, 0, rows.len() * d_out),
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
        // SAFETY: every row holds the bias or zeros now; the product is added onto all of them.
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

/// Values in a block of bias rows: copied from the rows already written, so that the rows
/// take a few large copies (one copy per row made 65,536 memcpy calls of 32–64 values per
/// layer of model A, where memcpy took 13 % of its inference step).
const BIAS_BLOCK: usize = 4096;

/// `bias` in each of `rows` rows at `dst` (rows `bias.len()` apart): one row, then copies of
/// the rows written so far, doubling up to a block of at most [`BIAS_BLOCK`] values (in the
/// core's L1), then that block copied along.
///
/// # Safety
/// `dst` has room for `rows` × `bias.len()` values that nothing else reads or writes.
unsafe fn bias_rows(dst: *mut f32, bias: &[f32], rows: usize) {
    let width = bias.len();
    if rows == 0 || width == 0 {
        return;
    }
    let block_rows = (BIAS_BLOCK / width).max(1);
    // SAFETY (the whole block): every copy reads rows written before it and writes rows below
    // `rows`, never overlapping what it reads.
    unsafe {
        std::ptr::copy_nonoverlapping(bias.as_ptr(), dst, width);
        let mut done = 1;
        while done < rows {
            let n = done.min(block_rows).min(rows - done);
            std::ptr::copy_nonoverlapping(dst, dst.add(done * width), n * width);
            done += n;
        }
    }
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
    let dw = if whole && amx::mixed() {
        // bf16-mixed: dx = g·Wᵀ and dW = xᵀ·g on AMX tiles.
        let g = amx::Source::rows(gv);
        // SAFETY: dx has room for n × d_in values, all written by the product.
        unsafe {
            amx::matmul_raw(
                (dx_ptr.get(), None),
                amx::Start::Zero,
                g,
                wv,
                (n, d_out, d_in),
                true,
            )
        };
        amx::matmul_left_transposed(xv, gv, d_in, n, d_out)
    } else if whole {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fused::amx::tests::no_amx;

    /// Values in [-1, 1) spread by a multiplicative hash, another spread for each seed.
    pub(crate) fn pattern(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn bias_rows_fill_every_row_through_the_doubling_and_the_blocks() {
        // Widths below, at and above a block; row counts below, at and past one block.
        for width in [1, 7, 300, BIAS_BLOCK, BIAS_BLOCK + 3] {
            let bias = pattern(width, 5);
            for rows in [0, 1, 2, 13, 14, 1000] {
                let mut out = vec![f32::NAN; rows * width];
                // SAFETY: `out` holds rows × width values.
                unsafe { bias_rows(out.as_mut_ptr(), &bias, rows) };
                for (r, row) in out.chunks(width).enumerate() {
                    assert_eq!(row, &bias[..], "width {width}, row {r} of {rows}");
                }
            }
        }
    }

    #[test]
    fn residual_and_norm_on_the_products_rows_equal_the_three_operations() {
        if no_amx() {
            return;
        }
        // 70 rows: two whole 32-row blocks and an edge one; 300 columns: an edge tile column.
        let (b, l, d_in, d_out) = (2, 35, 256, 300);
        let n = b * l;
        let x = || tensor(pattern(n * d_in, 1), &[n, d_in]);
        let w = || tensor(pattern(d_in * d_out, 2), &[d_in, d_out]);
        let bias = || Some(tensor(pattern(d_out, 3), &[d_out]));
        let residual = || tensor(pattern(n * d_out, 4), &[b, l, d_out]);
        let gamma = || tensor(pattern(d_out, 5), &[d_out]);
        for beta in [None, Some(tensor(pattern(d_out, 6), &[d_out]))] {
            let got = normalised_on_rows(
                (x(), w(), bias()),
                residual(),
                (gamma(), beta.clone()),
                1e-5,
            );
            // The same AMX product (a `then` that does nothing takes the AMX path), then the
            // two row-wise operations on their own.
            let projected = linear_then(x(), w(), bias(), Some(&|_, _| {}));
            let projected = Flex::float_reshape(projected, Shape::from(vec![b, l, d_out]));
            let sum = super::super::residual(residual(), projected, None);
            let want = layer_norm(sum, gamma(), beta, 1e-5);
            assert_eq!(got.shape(), want.shape());
            assert_eq!(values(&got), values(&want));
        }
    }

    #[test]
    fn products_sharing_their_input_equal_one_product_each() {
        if no_amx() {
            return;
        }
        let (n, d_in) = (70, 256);
        let x = tensor(pattern(n * d_in, 1), &[n, d_in]);
        let layer = |d_out: usize, seed: u32, bias: bool| {
            let w = tensor(pattern(d_in * d_out, seed), &[d_in, d_out]);
            (w, bias.then(|| tensor(pattern(d_out, seed + 1), &[d_out])))
        };
        let layers = || {
            vec![
                layer(300, 2, true),
                layer(256, 4, false),
                layer(290, 6, true),
            ]
        };
        let outs = sharing_input(x.clone(), layers());
        assert_eq!(outs.len(), 3);
        for (got, (w, b)) in outs.iter().zip(layers()) {
            // One product on AMX (a row function that does nothing takes that path).
            let want = linear_then(x.clone(), w, b, Some(&|_, _| {}));
            assert_eq!(got.shape(), want.shape());
            assert_eq!(values(got), values(&want));
        }
    }
}
