//! `batch_normalization`: Keras' `BatchNormalization` over the last (feature) axis. In training
//! each feature is normalised by its mean and (biased) variance over the batch — over every
//! position of every row for a sequence — and the moving statistics move towards them; in
//! evaluation and prediction the moving statistics are used. burn-nn's `BatchNorm` does the
//! work on the channels-first layout.
//!
//! The parameter count is Keras': the learned scale γ and offset β plus the moving mean and
//! variance (4 · features), the moving half reported as non-trainable. The moving statistics
//! are saved with the weights, so checkpoints, resume and eval see them.
//!
//! Under data parallelism each worker normalises its own shard (as PyTorch's DDP does without
//! SyncBatchNorm), so a batch_normalization model is not bit-equal across worker counts; the
//! workers' updates of the moving statistics are averaged once per step (train/parallel.rs).

use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive_real, rate,
    require_rank,
};

fn keras_momentum() -> f64 {
    0.99
}
fn keras_epsilon() -> f64 {
    1e-3
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalizationConfig {
    /// How much of the moving statistics each training batch keeps, in [0, 1): they become
    /// `momentum · moving + (1 − momentum) · batch` (Keras' convention; default 0.99, which
    /// is PyTorch's momentum 0.01).
    #[serde(default = "keras_momentum")]
    pub momentum: f64,
    /// Added to the variance before its square root (default 0.001, as Keras).
    #[serde(default = "keras_epsilon")]
    pub epsilon: f64,
}

#[derive(Module, Debug)]
pub struct BatchNormalization<B: Backend> {
    norm: BatchNorm<B>,
}

impl LayerDef for BatchNormalizationConfig {
    type Module<B: Backend> = BatchNormalization<B>;

    fn validate(&self) -> Result<(), String> {
        rate(self.momentum, "momentum")?;
        positive_real(self.epsilon, "epsilon")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[1, 2], "batch_normalization")?;
        if inputs[0].rank() == 2 && ctx.dynamic_padding {
            return Err(
                "the statistics of a sequence include its padding positions, and \
                 `padding = \"longest\"` changes how many there are with the batch: use \
                 `padding = \"max_length\"`, or normalise after pooling"
                    .into(),
            );
        }
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        4 * inputs[0].features().unwrap_or(0)
    }
    fn state_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        2 * inputs[0].features().unwrap_or(0)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<BatchNormalization<B>, String> {
        let features = inputs[0].features().unwrap_or(0);
        let norm = BatchNormConfig::new(features)
            .with_epsilon(self.epsilon)
            .with_momentum(1.0 - self.momentum)
            .init(device);
        Ok(BatchNormalization { norm })
    }
}

impl<B: Backend> BatchNormalization<B> {
    /// Batch statistics while training (under autodiff, the layer not frozen), the moving ones
    /// otherwise: a frozen layer runs in inference mode and keeps its statistics, as a Keras
    /// layer with `trainable = False` does.
    ///
    /// # Shapes
    /// - x: [batch, features]; output: [batch, features]
    pub fn apply_vector(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.normalize(x)
    }

    /// # Shapes
    /// - x: [batch, length, features]; output: [batch, length, features]
    pub fn apply_sequence(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.normalize(x.swap_dims(1, 2)).swap_dims(1, 2)
    }

    /// # Shapes
    /// - x: [batch, features, ...]; output: the same
    fn normalize<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // Without autodiff nothing requires a gradient; a frozen layer's γ does not either.
        if self.norm.gamma.val().is_require_grad() {
            return self.norm.forward(x);
        }
        let mut shape = [1; D];
        shape[1] = x.dims()[1];
        let device = x.device();
        let per_feature = |t: Tensor<B, 1>| t.to_device(&device).reshape(shape);
        let mean = per_feature(self.norm.running_mean.value());
        let sd = per_feature(
            self.norm
                .running_var
                .value()
                .add_scalar(self.norm.epsilon)
                .sqrt(),
        );
        x.sub(mean)
            .div(sd)
            .mul(per_feature(self.norm.gamma.val()))
            .add(per_feature(self.norm.beta.val()))
    }
}

impl<B: Backend> LayerForward<B> for BatchNormalization<B> {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        vec![x.map_float(|t| self.apply_vector(t), |t| self.apply_sequence(t))]
    }
    /// As `normalize` in evaluation (the moving statistics), in its
    /// order of operations: (x − mean) / √(variance + ε) · γ + β on the last (feature) axis,
    /// the square root taken here as burn takes it.
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = inputs.into_iter().next().expect("one input");
        let norm = &self.norm;
        let mean = g.weight("moving_mean", &norm.running_mean.value());
        let sd = norm.running_var.value().add_scalar(norm.epsilon).sqrt();
        let sd = g.weight("moving_sd", &sd);
        let gamma = g.weight("gamma", &norm.gamma.val());
        let beta = g.weight("beta", &norm.beta.val());
        let y = g.op("Sub", &[&x.name, &mean], vec![]);
        let y = g.op("Div", &[&y, &sd], vec![]);
        let y = g.op("Mul", &[&y, &gamma], vec![]);
        let y = g.op("Add", &[&y, &beta], vec![]);
        Ok(vec![OnnxValue::new(y, x.rank)])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;

    use super::*;

    type Ad = Autodiff<Flex>;

    fn config() -> BatchNormalizationConfig {
        toml::from_str("").unwrap()
    }

    fn build<B: Backend>(features: usize) -> BatchNormalization<B> {
        let input = TensorSpec::float(vec![Some(features)]);
        config()
            .init::<B>(&[input], &InferCtx::default(), &Default::default())
            .unwrap()
    }

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    #[test]
    fn training_normalises_by_the_batch_and_moves_the_statistics_keras_style() {
        let layer = build::<Ad>(2);
        // Feature 0: 1, 2, 3, 6 (mean 3, biased variance 3.5); feature 1: all 5 (variance 0).
        let rows = [[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [6.0, 5.0]];
        let x = Tensor::<Ad, 2>::from_floats(rows, &Default::default());
        let y = values(layer.apply_vector(x));
        let eps = 1e-3_f32;
        for (r, row) in rows.iter().enumerate() {
            let want = (row[0] - 3.0) / (3.5 + eps).sqrt();
            assert!((y[2 * r] - want).abs() < 1e-5, "{} vs {want}", y[2 * r]);
            assert!(y[2 * r + 1].abs() < 1e-5, "a constant feature becomes 0");
        }
        // moving = 0.99 · moving + 0.01 · batch, from mean 0 and variance 1.
        let inner = layer.valid();
        let mean = values(inner.norm.running_mean.value());
        assert!(
            (mean[0] - 0.03).abs() < 1e-6 && (mean[1] - 0.05).abs() < 1e-6,
            "{mean:?}"
        );
        let var = values(inner.norm.running_var.value());
        assert!((var[0] - (0.99 + 0.035)).abs() < 1e-6, "{var:?}");
        assert!((var[1] - 0.99).abs() < 1e-6, "{var:?}");
    }

    #[test]
    fn a_frozen_layer_uses_and_keeps_its_moving_statistics() {
        let layer = build::<Ad>(2).no_grad();
        let x = Tensor::<Ad, 2>::from_floats([[1.0, -2.0], [3.0, 4.0]], &Default::default());
        let y = values(layer.apply_vector(x));
        let scale = 1.0 / (1.0_f32 + 1e-3).sqrt();
        assert!((y[2] - 3.0 * scale).abs() < 1e-6, "{y:?}");
        let inner = layer.valid();
        assert_eq!(values(inner.norm.running_mean.value()), vec![0.0, 0.0]);
        assert_eq!(values(inner.norm.running_var.value()), vec![1.0, 1.0]);
    }

    #[test]
    fn evaluation_uses_the_moving_statistics() {
        let layer = build::<Flex>(2);
        let x = Tensor::<Flex, 2>::from_floats([[1.0, -2.0], [3.0, 4.0]], &Default::default());
        // Fresh moving statistics: mean 0, variance 1, so y = x / sqrt(1 + eps), row by row.
        let y = values(layer.apply_vector(x));
        let scale = 1.0 / (1.0_f32 + 1e-3).sqrt();
        let want = [1.0 * scale, -2.0 * scale, 3.0 * scale, 4.0 * scale];
        for (got, want) in y.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn a_sequence_is_normalised_over_every_position_of_every_row() {
        let layer = build::<Ad>(1);
        // Two rows of two positions, one feature: 0, 2 | 4, 6 → mean 3, variance 5.
        let x = Tensor::<Ad, 3>::from_floats([[[0.0], [2.0]], [[4.0], [6.0]]], &Default::default());
        let y = values(layer.apply_sequence(x));
        let sd = (5.0_f32 + 1e-3).sqrt();
        let want = [-3.0 / sd, -1.0 / sd, 1.0 / sd, 3.0 / sd];
        for (got, want) in y.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn the_count_is_what_the_module_holds_and_half_of_it_is_state() {
        let input = [TensorSpec::float(vec![Some(16), Some(6)])];
        let ctx = InferCtx::default();
        let layer = config()
            .init::<Flex>(&input, &ctx, &Default::default())
            .unwrap();
        assert_eq!(config().param_count(&input, &ctx), layer.num_params());
        assert_eq!(config().param_count(&input, &ctx), 24);
        assert_eq!(config().state_count(&input, &ctx), 12);
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..Default::default()
        };
        assert!(config().infer(&input, &dynamic).is_err());
        let pooled = [TensorSpec::float(vec![Some(6)])];
        assert_eq!(config().infer(&pooled, &dynamic).unwrap()[0].1, pooled[0]);
        let bad: BatchNormalizationConfig = toml::from_str("momentum = 1.0").unwrap();
        assert!(bad.validate().unwrap_err().contains("momentum"));
    }
}
