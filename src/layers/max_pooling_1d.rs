//! `max_pooling_1d`: the largest value of each feature in windows of `pool_size` positions,
//! every `strides` positions (Keras' `MaxPooling1D` with its default `padding = "valid"`:
//! whole windows only).

use burn::prelude::*;
use burn::tensor::module::max_pool1d;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive, require_rank,
};

fn two() -> usize {
    2
}

/// The largest value of each feature in windows along the sequence (Keras' `MaxPooling1D`,
/// `padding = "valid"`): a shorter sequence out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxPooling1dConfig {
    /// Window length, in positions (default 2).
    #[serde(default = "two")]
    pub pool_size: usize,
    /// Step between windows, in positions (default: `pool_size`, windows side by side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strides: Option<usize>,
}

#[derive(Module, Clone, Debug)]
pub struct MaxPooling1d {
    pool_size: usize,
    strides: usize,
}

impl MaxPooling1dConfig {
    fn strides(&self) -> usize {
        self.strides.unwrap_or(self.pool_size)
    }
}

impl LayerDef for MaxPooling1dConfig {
    type Module<B: Backend> = MaxPooling1d;

    fn validate(&self) -> Result<(), String> {
        positive(self.pool_size, "pool_size")?;
        positive(self.strides(), "strides")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[2], "max_pooling_1d")?;
        if ctx.dynamic_padding {
            return Err(
                "windows at a sequence's end take in its padding, and `padding = \"longest\"` \
                 changes how much there is with the batch: use `padding = \"max_length\"`"
                    .into(),
            );
        }
        let length = match inputs[0].dims[0] {
            Some(l) if l < self.pool_size => {
                return Err(format!(
                    "pool_size {} is longer than the sequence ({l} positions)",
                    self.pool_size
                ));
            }
            Some(l) => Some((l - self.pool_size) / self.strides() + 1),
            None => None,
        };
        Ok(vec![(
            "output".into(),
            TensorSpec::float(vec![length, inputs[0].dims[1]]),
        )])
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        0
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        _: &InferCtx,
        _: &B::Device,
    ) -> Result<MaxPooling1d, String> {
        Ok(MaxPooling1d {
            pool_size: self.pool_size,
            strides: self.strides(),
        })
    }
}

impl MaxPooling1d {
    /// # Shapes
    /// - x: [batch, length, d]; output: [batch, (length − pool_size) / strides + 1, d]
    pub fn apply<B: Backend>(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        max_pool1d(x.swap_dims(1, 2), self.pool_size, self.strides, 0, 1, false).swap_dims(1, 2)
    }
}

impl<B: Backend> LayerForward<B> for MaxPooling1d {
    /// # Shapes
    /// - input: [batch, length, d]; output: [batch, (length − pool_size) / strides + 1, d]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![Value::Sequence(self.apply(x))]
    }
    /// As [`MaxPooling1d::apply`]: an ONNX `MaxPool` on the channels-first layout, whole
    /// windows only.
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = inputs.into_iter().next().expect("one input");
        let channels_first = g.transpose(&x.name, &[0, 2, 1]);
        let pooled = g.op(
            "MaxPool",
            &[&channels_first],
            vec![
                ("kernel_shape", Attr::Ints(vec![self.pool_size as i64])),
                ("strides", Attr::Ints(vec![self.strides as i64])),
                ("pads", Attr::Ints(vec![0, 0])),
                ("ceil_mode", Attr::Int(0)),
            ],
        );
        Ok(vec![OnnxValue::new(g.transpose(&pooled, &[0, 2, 1]), 3)])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    #[test]
    fn windows_keep_their_largest_value() {
        let device = Default::default();
        let x =
            Tensor::<Flex, 1>::from_floats([1.0, 5.0, 2.0, 4.0, 3.0], &device).reshape([1, 5, 1]);
        let pool = MaxPooling1d {
            pool_size: 2,
            strides: 2,
        };
        assert_eq!(
            pool.apply(x.clone()).into_data().to_vec::<f32>().unwrap(),
            vec![5.0, 4.0]
        );
        let sliding = MaxPooling1d {
            pool_size: 3,
            strides: 1,
        };
        assert_eq!(
            sliding.apply(x).into_data().to_vec::<f32>().unwrap(),
            vec![5.0, 5.0, 4.0]
        );
        let config = MaxPooling1dConfig {
            pool_size: 2,
            strides: None,
        };
        let spec = [TensorSpec::float(vec![Some(5), Some(1)])];
        let out = config.infer(&spec, &InferCtx::default()).unwrap();
        assert_eq!(out[0].1.dims, vec![Some(2), Some(1)]);
    }

    #[test]
    fn each_feature_and_row_is_pooled_on_its_own() {
        // Two rows of 4 positions × 2 features.
        let x = [
            1.0, 8.0, 3.0, -1.0, 0.0, 2.0, -4.0, 5.0, //
            -1.0, -2.0, -3.0, -4.0, 6.0, 0.0, 7.0, 1.0,
        ];
        let pool = MaxPooling1d {
            pool_size: 2,
            strides: 2,
        };
        let ctx = forward_ctx(&[&[1.0; 4], &[1.0; 4]]);
        let out = pool.forward(vec![Value::Sequence(tensor(&x, [2, 4, 2]))], &ctx);
        let out = out[0].clone().sequence();
        assert_eq!(out.dims(), [2, 2, 2]);
        assert_eq!(values(out), vec![3.0, 8.0, 0.0, 5.0, -1.0, -2.0, 7.0, 1.0]);
    }

    #[test]
    fn too_short_sequences_and_dynamic_padding_are_refused() {
        let c = |pool_size, strides| MaxPooling1dConfig { pool_size, strides };
        let spec = [TensorSpec::float(vec![Some(7), Some(3)])];
        let ctx = InferCtx::default();
        // Whole windows only: (7 − 3) / 2 + 1 = 3.
        assert_eq!(
            c(3, Some(2)).infer(&spec, &ctx).unwrap()[0].1.dims,
            vec![Some(3), Some(3)]
        );
        assert_eq!(
            c(3, None).infer(&spec, &ctx).unwrap()[0].1.dims,
            vec![Some(2), Some(3)]
        );
        let err = c(8, None).infer(&spec, &ctx).unwrap_err();
        assert!(
            err.contains("pool_size 8 is longer than the sequence (7 positions)"),
            "{err}"
        );
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..Default::default()
        };
        let err = c(2, None).infer(&[TensorSpec::float(vec![None, Some(3)])], &dynamic);
        assert!(err.unwrap_err().contains("padding = \"max_length\""));
        assert!(c(2, Some(0)).validate().unwrap_err().contains("`strides`"));
        assert!(c(0, None).validate().unwrap_err().contains("`pool_size`"));
    }
}
