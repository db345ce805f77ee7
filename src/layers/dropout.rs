//! `dropout`: active only while training (burn applies it on autodiff backends only).

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;
use crate::onnx::{OnnxGraph, OnnxValue};

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, rate};

/// Dropout (Keras' `Dropout`): while training, each value is zeroed with probability `rate`
/// and the others scaled by 1 / (1 − rate); at evaluation and prediction the identity.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropoutConfig {
    /// The fraction of values zeroed while training, a rate in [0, 1) (no default).
    pub rate: f64,
}

#[derive(Module, Clone, Debug)]
pub struct Dropout {
    inner: burn::nn::Dropout,
}

impl LayerDef for DropoutConfig {
    type Module<B: Backend> = Dropout;

    fn validate(&self) -> Result<(), String> {
        rate(self.rate, "rate")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        0
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        _: &InferCtx,
        _: &B::Device,
    ) -> Result<Dropout, String> {
        Ok(Dropout {
            inner: burn::nn::DropoutConfig::new(self.rate).init(),
        })
    }
}

impl<B: Backend> LayerForward<B> for Dropout {
    /// # Shapes
    /// - input: any float value, [batch, d] or [batch, length, d]; output: that shape
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        let p = self.inner.prob;
        vec![x.map_float(|t| fused::dropout(t, p), |t| fused::dropout(t, p))]
    }
    /// Identity: an exported model only predicts.
    fn to_onnx(
        &self,
        _: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        Ok(inputs)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;

    use super::*;
    use crate::layers::testing::{B, forward_ctx, tensor, values};

    fn layer(rate: f64) -> Dropout {
        let spec = [TensorSpec::float(vec![Some(4)])];
        DropoutConfig { rate }
            .init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap()
    }

    #[test]
    fn identity_outside_training() {
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 5.5).collect();
        let ctx = forward_ctx(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]]);
        let out = layer(0.5).forward(vec![Value::Sequence(tensor(&x, [2, 3, 2]))], &ctx);
        assert_eq!(values(out[0].clone().sequence()), x);
    }

    #[test]
    fn while_training_a_rate_of_the_values_is_zeroed_and_the_rest_scaled() {
        type Training = Autodiff<B>;
        let device = Default::default();
        let n = 4000;
        let x = Tensor::<Training, 2>::ones([1, n], &device);
        let ctx = ForwardCtx::<Training> {
            mask: Tensor::ones([1, 1], &device),
            token_type_ids: Tensor::zeros([1, 1], &device),
        };
        let out = layer(0.25).forward(vec![Value::Vector(x)], &ctx);
        let out: Vec<f32> = out[0].clone().vector().into_data().to_vec().unwrap();
        let zeroed = out.iter().filter(|&&v| v == 0.0).count();
        // Kept values are scaled by 1 / (1 − 0.25) so that the expected sum is unchanged.
        assert!(
            out.iter()
                .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6),
            "{out:?}"
        );
        let fraction = zeroed as f64 / n as f64;
        assert!((0.2..0.3).contains(&fraction), "{zeroed} of {n} zeroed");
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused_and_shapes_pass_through() {
        assert!(DropoutConfig { rate: 0.0 }.validate().is_ok());
        for rate in [1.0, -0.1, 1.5] {
            let err = DropoutConfig { rate }.validate().unwrap_err();
            assert!(err.contains("`rate` must be in [0, 1)"), "{err}");
        }
        let spec = TensorSpec::float(vec![None, Some(8)]);
        let c = DropoutConfig { rate: 0.1 };
        let out = c
            .infer(std::slice::from_ref(&spec), &InferCtx::default())
            .unwrap();
        assert_eq!(out[0].1, spec);
        assert_eq!(c.param_count(&[spec], &InferCtx::default()), 0);
    }
}
