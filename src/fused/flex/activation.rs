//! Element-wise activations, forward and backward: exact GELU (vectorised erf and exp) and
//! ReLU, a fixed block of elements per rayon task.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use burn::tensor::ops::ActivationOps;

use super::{ELEMENTS_PER_TASK, Ft, contiguous, is_f32, par_filled, tensor, values};
use crate::fused::math::{self, multiversion};
use crate::fused::reference;

multiversion! {
    pub(super) fn gelu_slice(x: &[f32], y: &mut [f32]) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi = 0.5 * xi * (1.0 + math::erf(xi * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// [`gelu_slice`] in place (the same formula, so the same values).
    pub(super) fn gelu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + math::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// [`gelu_in_place`] where the values are rounded to bf16 right after (a feed-forward's inner
/// activations under bf16-mixed): erf's division by a reciprocal and one Newton step, erf
/// within 2 f32 ulp of 1 of the division's, so GELU within 1.2e-7 · |x| of
/// [`gelu_in_place`]'s, where bf16's rounding right after is 2⁻⁹ relative. The division
/// was most of GELU's time. Without AVX-512, [`gelu_in_place`] itself.
pub(super) fn gelu_in_place_rounded_after(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if math::simd_level() == 2 {
        // SAFETY: the CPU has AVX-512F (checked).
        return unsafe { gelu_rounded_after_avx512(x) };
    }
    gelu_in_place(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_rounded_after_avx512(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let splat = _mm512_set1_ps;
    for chunk in x.chunks_mut(16) {
        let lanes: u16 = if chunk.len() == 16 {
            u16::MAX
        } else {
            (1u16 << chunk.len()) - 1
        };
        // SAFETY: the mask covers the chunk's values alone (masked-off lanes do not fault).
        let v = unsafe { _mm512_maskz_loadu_ps(lanes, chunk.as_ptr()) };
        // max/min with the bound first keep a NaN, as `f32::clamp` does.
        let t = _mm512_mul_ps(v, splat(std::f32::consts::FRAC_1_SQRT_2));
        let t = _mm512_min_ps(splat(4.0), _mm512_max_ps(splat(-4.0), t));
        let s = _mm512_mul_ps(t, t);
        let (mut p, mut q) = (splat(math::ERF_P[5]), splat(math::ERF_Q[5]));
        for i in (0..5).rev() {
            p = _mm512_fmadd_ps(p, s, splat(math::ERF_P[i]));
            q = _mm512_fmadd_ps(q, s, splat(math::ERF_Q[i]));
        }
        let r = _mm512_rcp14_ps(q);
        let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, splat(2.0)));
        let erf = _mm512_mul_ps(_mm512_mul_ps(t, p), r);
        let erf = _mm512_min_ps(splat(1.0), _mm512_max_ps(splat(-1.0), erf));
        let y = _mm512_mul_ps(_mm512_mul_ps(splat(0.5), v), _mm512_add_ps(splat(1.0), erf));
        // SAFETY: as the load.
        unsafe { _mm512_mask_storeu_ps(chunk.as_mut_ptr(), lanes, y) };
    }
}

multiversion! {
    pub(super) fn gelu_backward_slice(x: &[f32], g: &[f32], dx: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_rounded_after_is_within_erfs_two_ulp_and_keeps_nan() {
        // Every 1e-3 over [-9, 9] (both clamps of erf's argument), odd lengths for the tail.
        let xs: Vec<f32> = (-9_000..=9_001).map(|i| i as f32 * 1e-3).collect();
        let (mut fast, mut exact) = (xs.clone(), xs.clone());
        gelu_in_place_rounded_after(&mut fast);
        gelu_in_place(&mut exact);
        // erf within 2 ulp of 1 (2.4e-7) is GELU within 1.2e-7 · |x|: relatively more where
        // x < 0 and 1 + erf is small (2e-5 of GELU(-3)), against bf16's 2e-3 right after.
        for ((x, f), e) in xs.iter().zip(&fast).zip(&exact) {
            let bound = 2.0 * f32::EPSILON * e.abs() + 1.2e-7 * x.abs();
            assert!((f - e).abs() <= bound, "gelu({x}): {f} against {e}");
        }
        let mut edge = [f32::NAN, 0.0, -0.0, f32::INFINITY, 1e-20];
        gelu_in_place_rounded_after(&mut edge);
        assert!(edge[0].is_nan());
        assert_eq!(&edge[1..], &[0.0, -0.0, f32::INFINITY, 5e-21]);
    }
}
