//! `global_max_pooling_1d`: the largest value of each feature over the sequence (Keras'
//! `GlobalMaxPooling1D`). With `masked = true`, padded positions are left out.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_aligned, require_rank,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalMaxPooling1dConfig {
    /// Leave padded positions out (default false, as Keras). Needs the input's positions to be
    /// the tokens' (not after a `valid` or strided `conv1d`).
    #[serde(default)]
    pub masked: bool,
}

#[derive(Module, Clone, Debug)]
pub struct GlobalMaxPooling1d {
    masked: bool,
}

impl LayerDef for GlobalMaxPooling1dConfig {
    type Module<B: Backend> = GlobalMaxPooling1d;

    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[2], "global_max_pooling_1d")?;
        require_aligned(self.masked, &inputs[0], ctx)?;
        Ok(vec![(
            "output".into(),
            TensorSpec::float(vec![inputs[0].dims[1]]),
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
    ) -> Result<GlobalMaxPooling1d, String> {
        Ok(GlobalMaxPooling1d {
            masked: self.masked,
        })
    }
}

impl GlobalMaxPooling1d {
    /// # Shapes
    /// - x: [batch, length, d]; mask: [batch, length]; output: [batch, d]
    pub fn apply<B: Backend>(&self, x: Tensor<B, 3>, mask: &Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, l, d] = x.dims();
        let x = if self.masked {
            // Padded positions drop below any real value; a row without real tokens keeps them.
            let padded = mask.clone().neg().add_scalar(1.0).reshape([b, l, 1]);
            x - padded * 1e9
        } else {
            x
        };
        x.max_dim(1).reshape([b, d])
    }
}

impl<B: Backend> LayerForward<B> for GlobalMaxPooling1d {
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![Value::Vector(self.apply(x, &ctx.mask))]
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn the_maximum_per_feature_without_the_padding_when_masked() {
        let device = Default::default();
        let x = Tensor::<Flex, 1>::from_floats([1.0, -5.0, 3.0, -2.0, 9.0, 4.0], &device)
            .reshape([1, 3, 2]);
        let mask = Tensor::<Flex, 1>::from_floats([1.0, 1.0, 0.0], &device).reshape([1, 3]);
        let plain = GlobalMaxPooling1d { masked: false }.apply(x.clone(), &mask);
        assert_eq!(plain.into_data().to_vec::<f32>().unwrap(), vec![9.0, 4.0]);
        let masked = GlobalMaxPooling1d { masked: true }.apply(x, &mask);
        assert_eq!(masked.into_data().to_vec::<f32>().unwrap(), vec![3.0, -2.0]);
        let spec = [TensorSpec::float(vec![Some(8), Some(2)])];
        let ctx = InferCtx {
            sequence_length: Some(10),
            ..Default::default()
        };
        let config = GlobalMaxPooling1dConfig { masked: true };
        assert!(
            config
                .infer(&spec, &ctx)
                .unwrap_err()
                .contains("one position per token (10)")
        );
    }
}
