//! `global_average_pooling_1d`: mean over the sequence. Unmasked by default, as in the lesson
//! (padding positions are averaged in); `masked = true` averages real tokens only.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_aligned,
    require_masked, require_rank,
};

/// The mean of each feature over the sequence's positions (Keras' `GlobalAveragePooling1D`):
/// a sequence in, one vector out.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePooling1dConfig {
    /// Average the real tokens only, leaving padded positions out (default false: padding is
    /// averaged in, as in the lesson's model). Needed with `padding = "longest"`; needs the
    /// input's positions to be the tokens' (not after a `valid` or strided `conv1d`).
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
    /// # Shapes
    /// - input: [batch, length, d]; ctx.mask: [batch, length]; output: [batch, d]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        let pooled = if self.masked {
            masked_mean(x, ctx.mask.clone())
        } else {
            crate::fused::mean_pool(x, None)
        };
        vec![Value::Vector(pooled)]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let mask = self.masked.then(|| g.mask());
        let pooled = g.mean_over_positions(&inputs[0].name, mask.as_deref());
        Ok(vec![OnnxValue::new(pooled, 2)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    /// Rows of 3 positions × 2 features; row 0 has two real tokens, row 1 none.
    const X: [f32; 12] = [1.0, 2.0, 3.0, -4.0, 8.0, 5.0, 6.0, 0.0, 0.0, 3.0, 3.0, 3.0];
    const MASK: [&[f32]; 2] = [&[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]];

    fn pooled(masked: bool, x: &[f32]) -> Vec<f32> {
        let layer = GlobalAveragePooling1d { masked };
        let out = layer.forward(
            vec![Value::Sequence(tensor(x, [2, 3, 2]))],
            &forward_ctx(&MASK),
        );
        values(out[0].clone().vector())
    }

    #[test]
    fn the_mean_over_every_position_or_over_the_real_tokens() {
        // Unmasked: (1 + 3 + 8) / 3, (2 − 4 + 5) / 3, (6 + 0 + 3) / 3, (0 + 3 + 3) / 3.
        assert_eq!(pooled(false, &X), vec![4.0, 1.0, 3.0, 2.0]);
        // Masked: (1 + 3) / 2, (2 − 4) / 2; a row without tokens averages to zero.
        assert_eq!(pooled(true, &X), vec![2.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn masked_padding_gets_no_weight() {
        let mut changed = X;
        for i in [4, 5, 6, 7, 8, 9, 10, 11] {
            changed[i] = 100.0 + i as f32;
        }
        assert_eq!(pooled(true, &changed), pooled(true, &X));
        assert_ne!(pooled(false, &changed), pooled(false, &X));
    }

    #[test]
    fn a_sequence_becomes_a_vector_and_unmasked_dynamic_padding_is_refused() {
        let spec = [TensorSpec::float(vec![Some(6), Some(4)])];
        let ctx = InferCtx {
            sequence_length: Some(6),
            ..Default::default()
        };
        let c = |masked| GlobalAveragePooling1dConfig { masked };
        assert_eq!(
            c(false).infer(&spec, &ctx).unwrap()[0].1.dims,
            vec![Some(4)]
        );
        let vector = c(false)
            .infer(&[TensorSpec::float(vec![Some(4)])], &ctx)
            .unwrap_err();
        assert!(vector.contains("rank [2]"), "{vector}");
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..ctx.clone()
        };
        let unmasked = c(false).infer(&[TensorSpec::float(vec![None, Some(4)])], &dynamic);
        assert!(unmasked.unwrap_err().contains("set `masked = true`"));
        assert!(
            c(true)
                .infer(&[TensorSpec::float(vec![None, Some(4)])], &dynamic)
                .is_ok()
        );
        let shortened = [TensorSpec::float(vec![Some(4), Some(4)])];
        assert!(
            c(true)
                .infer(&shortened, &ctx)
                .unwrap_err()
                .contains("one position per token (6)")
        );
        assert!(c(false).infer(&shortened, &ctx).is_ok());
    }
}
