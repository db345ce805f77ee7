//! The stage optimizer: burn's SGD / Adam / AdamW, configured with the defaults the spec
//! documents (Keras for `adam`, PyTorch for `adamw`), behind one type the engine can hold.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, Sgd, SgdConfig};
use burn::tensor::backend::AutodiffBackend;

use super::adam::FusedAdam;
use super::resume::{load_record, save_record};
use crate::spec::OptimizerSpec;

pub enum StageOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    /// Adam and AdamW (one type: the rule is in [`FusedAdam`]).
    Adam(OptimizerAdaptor<FusedAdam, M, B>),
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> StageOptimizer<M, B> {
    pub fn new(spec: &OptimizerSpec, clip_norm: Option<f64>) -> Self {
        let clip = clip_norm.map(|c| GradientClippingConfig::Norm(c as f32));
        match spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let momentum = (*momentum > 0.0).then(|| {
                    // PyTorch and Keras use no dampening; burn's default is 0.1.
                    MomentumConfig::new()
                        .with_momentum(*momentum)
                        .with_dampening(0.0)
                        .with_nesterov(*nesterov)
                });
                let decay =
                    (*weight_decay > 0.0).then(|| WeightDecayConfig::new(*weight_decay as f32));
                let config = SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .with_gradient_clipping(clip);
                StageOptimizer::Sgd(config.init())
            }
            OptimizerSpec::Adam {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                ..
            } => {
                let decay = (*weight_decay > 0.0).then_some(*weight_decay as f32);
                let adam = FusedAdam::adam(*beta_1 as f32, *beta_2 as f32, *epsilon as f32, decay);
                StageOptimizer::Adam(with_clipping(adam, clip))
            }
            OptimizerSpec::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                ..
            } => {
                let adamw = FusedAdam::adamw(
                    *beta_1 as f32,
                    *beta_2 as f32,
                    *epsilon as f32,
                    *weight_decay as f32,
                );
                StageOptimizer::Adam(with_clipping(adamw, clip))
            }
        }
    }

    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            StageOptimizer::Sgd(o) => o.step(lr, module, grads),
            StageOptimizer::Adam(o) => o.step(lr, module, grads),
        }
    }

    /// Writes the optimizer state (moments, step counts) for resuming.
    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        match self {
            StageOptimizer::Sgd(o) => save_record::<B, _>(o.to_record(), path),
            StageOptimizer::Adam(o) => save_record::<B, _>(o.to_record(), path),
        }
    }

    pub fn load(self, path: &std::path::Path, device: &B::Device) -> anyhow::Result<Self> {
        Ok(match self {
            StageOptimizer::Sgd(o) => {
                StageOptimizer::Sgd(o.load_record(load_record::<B, _>(path, device)?))
            }
            StageOptimizer::Adam(o) => {
                StageOptimizer::Adam(o.load_record(load_record::<B, _>(path, device)?))
            }
        })
    }
}

fn with_clipping<M: AutodiffModule<B>, B: AutodiffBackend>(
    optim: FusedAdam,
    clip: Option<GradientClippingConfig>,
) -> OptimizerAdaptor<FusedAdam, M, B> {
    let optim = OptimizerAdaptor::from(optim);
    match clip {
        Some(config) => optim.with_grad_clipping(config.init()),
        None => optim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::prelude::*;

    type Ad = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Scalar<B: Backend> {
        w: Param<Tensor<B, 1>>,
    }

    /// Minimises (w - 3)² from w = 1 for a few steps and returns the w values after each step.
    fn descend(spec: OptimizerSpec, steps: usize) -> Vec<f64> {
        let device = Default::default();
        let mut m = Scalar::<Ad> {
            w: Param::from_tensor(Tensor::from_floats([1.0], &device)),
        };
        let mut optim = StageOptimizer::<Scalar<Ad>, Ad>::new(&spec, None);
        let mut out = Vec::new();
        for _ in 0..steps {
            let loss = (m.w.val() - 3.0).powf_scalar(2.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(spec.learning_rate(), m, grads);
            out.push(m.w.val().into_scalar().elem::<f64>());
        }
        out
    }

    #[test]
    fn sgd_with_momentum_matches_hand_derivation() {
        // g = 2(w-3). PyTorch/Keras momentum without dampening: v = μv + g, w -= lr·v.
        // w0=1: g=-4, v=-4, w=1.4; g=-3.2, v=-6.8, w=2.08; g=-1.84, v=-7.96, w=2.876.
        let w = descend(
            OptimizerSpec::Sgd {
                learning_rate: 0.1,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            3,
        );
        for (got, want) in w.iter().zip([1.4, 2.08, 2.876]) {
            assert!((got - want).abs() < 1e-5, "{w:?}");
        }
    }

    #[test]
    fn adam_first_step_moves_by_the_learning_rate() {
        // Bias-corrected m̂ = g, v̂ = g², so the first step is lr·g/(|g| + ε) ≈ lr in the sign of -g.
        let w = descend(
            OptimizerSpec::Adam {
                learning_rate: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                weight_decay: 0.0,
            },
            2,
        );
        assert!((w[0] - 1.01).abs() < 1e-6, "{w:?}");
        // Second step: g2 = 2(1.01-3) = -3.98; m = 0.9·(0.1·-4) + 0.1·g2 = -0.758; v = 0.999·(0.001·16) + 0.001·g2²;
        let g2: f64 = -3.98;
        let m = 0.9 * 0.1 * -4.0 + 0.1 * g2;
        let v = 0.999 * 0.001 * 16.0 + 0.001 * g2 * g2;
        let step = 0.01 * (m / (1.0 - 0.81)) / ((v / (1.0 - 0.998001)).sqrt() + 1e-7);
        assert!(
            (w[1] - (w[0] - step)).abs() < 1e-5,
            "{w:?} vs {}",
            w[0] - step
        );
    }

    #[test]
    fn adamw_decays_weights_decoupled() {
        // With a zero gradient direction the decoupled decay alone shrinks w: w·(1 - lr·wd).
        let w = descend(
            OptimizerSpec::AdamW {
                learning_rate: 0.1,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.5,
            },
            1,
        );
        // Adam part moves +lr (g < 0), decay part multiplies by 0.95 first: 1·0.95 + 0.1.
        assert!((w[0] - 1.05).abs() < 1e-5, "{w:?}");
    }
}
