//! `global_average_pooling_1d`: mean over the sequence. Unmasked by default, as in the lesson
//! (padding positions are averaged in); `masked = true` averages real tokens only.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_aligned,
    require_masked, require_rank,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePooling1dConfig {
    #[serde(default)]
    pub masked: bool,
}

#[derive(Module, Clone, Debug)]
pub struct GlobalAveragePooling1d {
    masked: bool,
}

impl LayerDef for GlobalAveragePooling1dConfig {
    type Module<B: Backend> = GlobalAveragePooling1d;

    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_masked(self.masked, ctx)?;
        require_aligned(self.masked, &inputs[0], ctx)?;
        require_rank(inputs, &[2], "global_average_pooling_1d")?;
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
    ) -> Result<GlobalAveragePooling1d, String> {
        Ok(GlobalAveragePooling1d {
            masked: self.masked,
        })
    }
}

/// Σ_t x·mask / max(Σ_t mask, 1): the sentence-transformers mean.
///
/// # Shapes
/// - x: [batch, length, d]; mask: [batch, length]; output: [batch, d]
pub fn masked_mean<B: Backend>(x: Tensor<B, 3>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
    crate::fused::mean_pool(x, Some(mask))
}

impl<B: Backend> LayerForward<B> for GlobalAveragePooling1d {
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        let pooled = if self.masked {
            masked_mean(x, ctx.mask.clone())
        } else {
            crate::fused::mean_pool(x, None)
        };
        vec![Value::Vector(pooled)]
    }
}
