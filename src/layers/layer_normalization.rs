//! `layer_normalization` over the last dimension (biased variance, Keras default eps 1e-3).

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_rank};

fn keras_epsilon() -> f64 {
    1e-3
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerNormalizationConfig {
    #[serde(default = "keras_epsilon")]
    pub epsilon: f64,
}

#[derive(Module, Debug)]
pub struct LayerNormalization<B: Backend> {
    norm: LayerNorm<B>,
    epsilon: f64,
}

pub fn layer_norm<B: Backend>(dim: usize, epsilon: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim).with_epsilon(epsilon).init(device)
}

impl LayerDef for LayerNormalizationConfig {
    type Module<B: Backend> = LayerNormalization<B>;

    fn validate(&self) -> Result<(), String> {
        if self.epsilon > 0.0 {
            Ok(())
        } else {
            Err("`epsilon` must be positive".into())
        }
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[1, 2], "layer_normalization")?;
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        2 * inputs[0].features().unwrap_or(0)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<LayerNormalization<B>, String> {
        Ok(LayerNormalization {
            norm: layer_norm(inputs[0].features().unwrap_or(0), self.epsilon, device),
            epsilon: self.epsilon,
        })
    }
}

impl<B: Backend> LayerForward<B> for LayerNormalization<B> {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        let eps = self.epsilon;
        vec![x.map_float(
            |t| fused::layer_norm_module(&self.norm, t, eps),
            |t| fused::layer_norm_module(&self.norm, t, eps),
        )]
    }
}
