//! Layer normalisation over the last dimension and its gradients (dx, dγ, dβ), a block of
//! rows per rayon task.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;

use super::{Ft, add_up, contiguous, is_f32, par_filled, par_filled_with, tensor, values};
use crate::fused::math::{self, multiversion};
use crate::fused::reference;

/// Rows per rayon task for the row-wise kernels: fixed by the data, not by the thread count,
/// so that partial sums (LayerNorm's dγ, dβ) add up in the same order on every machine.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// The rest of a row's normalisation once `yr` holds x − mean: y ← y·rstd·γ + β.
#[inline(always)]
fn scale_centred(yr: &mut [f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32) {
    let d = gamma.len();
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

multiversion! {
    fn layer_norm_rows(x: &[f32], y: &mut [f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32) {
        let d = gamma.len();
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = math::sum(xr) / d as f32;
            for (yi, &xi) in yr.iter_mut().zip(xr) {
                *yi = xi - mean;
            }
            scale_centred(yr, gamma, beta, eps);
        }
    }
}

multiversion! {
    /// LayerNorm(residual + row) in place: the same operations, in the same order, as
    /// [`super::residual`] and then [`layer_norm`], so the same values.
    pub(super) fn residual_norm_row(
        row: &mut [f32],
        residual: &[f32],
        gamma: &[f32],
        beta: Option<&[f32]>,
        eps: f32,
    ) {
        for (v, &r) in row.iter_mut().zip(residual) {
            *v += r; // r + v: addition commutes exactly
        }
        let mean = math::sum(row) / gamma.len() as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        scale_centred(row, gamma, beta, eps);
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
