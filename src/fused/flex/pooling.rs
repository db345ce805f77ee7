//! The mean over a sequence's positions (padding left out with a key mask) and its
//! gradient, one batch row per rayon task, with the bits of burn's `mean_dim` / masked mean.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;

use super::{Ft, contiguous, is_f32, par_filled, tensor, values};
use crate::fused::math::multiversion;
use crate::fused::reference;

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
