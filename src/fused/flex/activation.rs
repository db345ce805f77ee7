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
