//! Dropout: the counter-based keep masks, the residual connection around a dropped-out
//! branch (`x + z ⊙ mask`), and the masked product its backward pass uses.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use burn::tensor::ops::FloatTensorOps;
use rayon::prelude::*;

use super::{ELEMENTS_PER_TASK, Ft, contiguous, is_f32, multiply_into, par_filled, tensor, values};
use crate::fused::math::multiversion;
use crate::fused::reference;

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
