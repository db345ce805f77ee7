//! Keras' default initialisers, so that models start where their Keras twins start.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::Distribution;

/// Glorot/Xavier uniform limit for Keras fans.
pub fn glorot_limit(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

pub fn uniform<B: Backend, const D: usize>(
    shape: [usize; D],
    limit: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Uniform(-limit, limit),
        device,
    ))
}

/// A `[d_in, d_out]` linear map with a Glorot-uniform kernel of the given Keras fans and a zero bias.
pub fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    fans: (usize, usize),
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: uniform([d_in, d_out], glorot_limit(fans.0, fans.1), device),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}
