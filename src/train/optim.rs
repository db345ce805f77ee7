//! The stage optimizer: burn's SGD / Adam / AdamW, configured with the defaults the spec
//! documents (Keras for `adam`, PyTorch for `adamw`), behind one type the engine can hold.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, GradientsParams, Optimizer, Sgd, SgdConfig,
};
use burn::tensor::backend::AutodiffBackend;

use crate::spec::OptimizerSpec;

pub enum StageOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    Adam(OptimizerAdaptor<Adam, M, B>),
    AdamW(OptimizerAdaptor<AdamW, M, B>),
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
                let decay =
                    (*weight_decay > 0.0).then(|| WeightDecayConfig::new(*weight_decay as f32));
                let config = AdamConfig::new()
                    .with_beta_1(*beta_1 as f32)
                    .with_beta_2(*beta_2 as f32)
                    .with_epsilon(*epsilon as f32)
                    .with_weight_decay(decay)
                    .with_grad_clipping(clip);
                StageOptimizer::Adam(config.init())
            }
            OptimizerSpec::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                ..
            } => {
                let config = AdamWConfig::new()
                    .with_beta_1(*beta_1 as f32)
                    .with_beta_2(*beta_2 as f32)
                    .with_epsilon(*epsilon as f32)
                    .with_weight_decay(*weight_decay as f32)
                    .with_grad_clipping(clip);
                StageOptimizer::AdamW(config.init())
            }
        }
    }

    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            StageOptimizer::Sgd(o) => o.step(lr, module, grads),
            StageOptimizer::Adam(o) => o.step(lr, module, grads),
            StageOptimizer::AdamW(o) => o.step(lr, module, grads),
        }
    }
}
