//! A `Linear` layer's x·W + b and its gradients (dx, dW, db): split by rows over rayon's
//! pool for small weights, one product that `gemm` threads itself for large ones.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use gemm::Parallelism;
use rayon::prelude::*;

use super::activation::{gelu, gelu_in_place};
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

pub fn linear(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
    linear_then(x, weight, bias, None)
}

/// GELU(x·W + b): under bf16-mixed with a large weight, GELU runs on each 32-row block of the
/// product as soon as it is written (still in the core's caches), instead of reading the
/// [n, d_out] output back from memory; otherwise the two operations one after the other.
pub fn linear_gelu(x: Ft, weight: Ft, bias: Option<Ft>) -> Ft {
    let (d_in, d_out) = (weight.shape()[0], weight.shape()[1]);
    let f32_bias = bias.as_ref().is_none_or(|b| is_f32(&[b]));
    // The same conditions as linear_then's AMX path, which alone applies `then`.
    match amx::mixed() && gemm_threads_itself(d_in, d_out) && is_f32(&[&x, &weight]) && f32_bias {
        true => linear_then(x, weight, bias, Some(&gelu_in_place)),
        false => gelu(linear(x, weight, bias)),
    }
}

/// x·W + b, then `then` on each row where given (only by [`linear_gelu`], which has checked
/// the conditions of the AMX path: a `then` takes that path whatever `mixed()` says by now).
fn linear_then(x: Ft, weight: Ft, bias: Option<Ft>, then: Option<amx::RowsThen>) -> Ft {
    if !is_f32(&[&x, &weight]) || bias.as_ref().is_some_and(|b| !is_f32(&[b])) {
        return reference::linear::<Flex>(x, weight, bias);
    }
    let (x, w) = (contiguous(&x), contiguous(&weight));
    let b = bias.map(|b| contiguous(&b));
    let (xv, wv, bv) = (values(&x), values(&w), b.as_ref().map(values));
    let (n, d_in, d_out) = (x.shape()[0], x.shape()[1], w.shape()[1]);
    let whole = gemm_threads_itself(d_in, d_out);
    let mut out = Written::new(n * d_out);
    let out_ptr = out.ptr();
    if whole && (then.is_some() || amx::mixed()) {
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
                Some(bv) => {
                    for r in 0..rows.len() {
                        std::ptr::copy_nonoverlapping(bv.as_ptr(), dst.add(r * d_out), d_out);
                    }
                }
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
