//! `layer_normalization` over the last dimension (biased variance, Keras default eps 1e-3).

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;
use crate::onnx::{OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive_real, require_rank,
};

fn keras_epsilon() -> f64 {
    1e-3
}

/// Layer normalisation (Keras' `LayerNormalization`): each position's features shifted to
/// mean 0 and scaled to variance 1, then a learned scale and shift per feature.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerNormalizationConfig {
    /// Added to the variance before its square root, so that near-constant features do not
    /// divide by zero (default 0.001, Keras'; must be positive).
    #[serde(default = "keras_epsilon")]
    pub epsilon: f64,
}

#[derive(Module, Debug)]
pub struct LayerNormalization<B: Backend> {
    norm: LayerNorm<B>,
    epsilon: f64,
}

/// burn's `LayerNorm` over `dim` features (scale 1, shift 0) with this epsilon.
pub fn layer_norm<B: Backend>(dim: usize, epsilon: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim).with_epsilon(epsilon).init(device)
}

impl LayerDef for LayerNormalizationConfig {
    type Module<B: Backend> = LayerNormalization<B>;

    fn validate(&self) -> Result<(), String> {
        positive_real(self.epsilon, "epsilon")
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
    /// # Shapes
    /// - input: [batch, d] or [batch, length, d]; output: that shape
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        let eps = self.epsilon;
        vec![x.map_float(
            |t| fused::layer_norm_module(&self.norm, t, eps),
            |t| fused::layer_norm_module(&self.norm, t, eps),
        )]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = &inputs[0];
        let y = g.layer_norm(&x.name, &self.norm, self.epsilon);
        Ok(vec![OnnxValue::new(y, x.rank)])
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::layers::testing::{B, assert_close, forward_ctx, tensor, values};

    fn layer(d: usize, epsilon: f64) -> LayerNormalization<B> {
        let spec = [TensorSpec::float(vec![Some(d)])];
        LayerNormalizationConfig { epsilon }
            .init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap()
    }

    #[test]
    fn each_position_is_normalised_with_the_configured_epsilon() {
        let mut norm = layer(2, 1e-3);
        norm.norm.gamma = Param::from_tensor(tensor(&[2.0, 3.0], [2]));
        norm.norm.beta = Some(Param::from_tensor(tensor(&[0.5, -1.0], [2])));
        // [0, 0.1]: mean 0.05, variance 0.0025, so each is ±0.05 / sqrt(0.0035) before the
        // scale and shift; burn's default epsilon (1e-5) would give ±0.98.
        let z = 0.05 / (0.0025f32 + 1e-3).sqrt();
        // [1, 5]: ±2 / sqrt(4.001).
        let w = 2.0 / 4.001f32.sqrt();
        let expected = [0.5 - 2.0 * z, -1.0 + 3.0 * z, 0.5 - 2.0 * w, -1.0 + 3.0 * w];
        let x = [0.0, 0.1, 1.0, 5.0];
        let ctx = forward_ctx(&[&[1.0], &[1.0]]);
        let vector = norm.forward(vec![Value::Vector(tensor(&x, [2, 2]))], &ctx);
        assert_close(&values(vector[0].clone().vector()), &expected, 1e-5);
        let sequence = norm.forward(vec![Value::Sequence(tensor(&x, [1, 2, 2]))], &ctx);
        assert_close(&values(sequence[0].clone().sequence()), &expected, 1e-5);
    }

    #[test]
    fn parameter_count_and_shape_rule() {
        let c = LayerNormalizationConfig { epsilon: 1e-3 };
        let spec = [TensorSpec::float(vec![None, Some(6)])];
        let ctx = InferCtx::default();
        assert_eq!(c.param_count(&spec, &ctx), layer(6, 1e-3).num_params());
        assert_eq!(c.param_count(&spec, &ctx), 12);
        assert_eq!(c.infer(&spec, &ctx).unwrap()[0].1, spec[0]);
        let ids = c.infer(&[TensorSpec::ids(Some(3))], &ctx).unwrap_err();
        assert!(ids.contains("float features"), "{ids}");
        for epsilon in [0.0, -1e-3] {
            let err = LayerNormalizationConfig { epsilon }.validate().unwrap_err();
            assert!(err.contains("`epsilon` must be positive"));
        }
    }
}
