//! `global_max_pooling_1d`: the largest value of each feature over the sequence (Keras'
//! `GlobalMaxPooling1D`). With `masked = true`, padded positions are left out.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_aligned,
    require_masked, require_rank,
};

/// The largest value of each feature over the sequence's positions (Keras'
/// `GlobalMaxPooling1D`): a sequence in, one vector out.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalMaxPooling1dConfig {
    /// Leave padded positions out (default false, as Keras); a row without real tokens keeps
    /// them all. Needs the input's positions to be the tokens' (not after a `valid` or strided
    /// `conv1d`, or a `max_pooling_1d`).
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
        // Unmasked, a row's maximum would include padding or not depending on its batch.
        require_masked(self.masked, ctx)?;
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
            // Padded positions drop below any real value; a row without real tokens (an empty
            // text) keeps them all, as unmasked, instead of a maximum near −1e9.
            let padded = mask.clone().neg().add_scalar(1.0).reshape([b, l, 1]);
            let has_tokens = mask.clone().sum_dim(1).clamp_max(1.0).reshape([b, 1, 1]);
            let penalty = crate::fused::finite_in(x.dtype(), 1e9);
            x - padded * has_tokens * penalty
        } else {
            x
        };
        x.max_dim(1).reshape([b, d])
    }
}

impl<B: Backend> LayerForward<B> for GlobalMaxPooling1d {
    /// # Shapes
    /// - input: [batch, length, d]; ctx.mask: [batch, length]; output: [batch, d]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![Value::Vector(self.apply(x, &ctx.mask))]
    }
    /// As [`GlobalMaxPooling1d::apply`].
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let mut x = inputs[0].name.clone();
        if self.masked {
            let mask = g.mask();
            let one = g.scalar(1.0);
            let padded = g.op("Sub", &[&one, &mask], vec![]);
            let padded = g.unsqueeze(&padded, &[2]);
            let axis = g.ints(&[1]);
            let count = g.op(
                "ReduceSum",
                &[&mask, &axis],
                vec![("keepdims", Attr::Int(1))],
            );
            let has_tokens = g.op("Min", &[&count, &one], vec![]);
            let has_tokens = g.unsqueeze(&has_tokens, &[2]);
            let penalty = g.op("Mul", &[&padded, &has_tokens], vec![]);
            let penalty = g.with_scalar("Mul", &penalty, 1e9);
            x = g.op("Sub", &[&x, &penalty], vec![]);
        }
        let pooled = g.op(
            "ReduceMax",
            &[&x],
            vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
        );
        Ok(vec![OnnxValue::new(pooled, 2)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    /// Rows of 3 positions × 2 features; row 0's last position is padding, row 1 has no tokens.
    const X: [f32; 12] = [
        1.0, -5.0, 3.0, -2.0, 9.0, 4.0, -1.0, 2.0, -3.0, 7.0, -2.0, 0.0,
    ];
    const MASK: [&[f32]; 2] = [&[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]];

    fn pooled(masked: bool, x: &[f32]) -> Vec<f32> {
        let layer = GlobalMaxPooling1d { masked };
        let out = layer.forward(
            vec![Value::Sequence(tensor(x, [2, 3, 2]))],
            &forward_ctx(&MASK),
        );
        values(out[0].clone().vector())
    }

    #[test]
    fn the_maximum_per_feature_without_the_padding_when_masked() {
        assert_eq!(pooled(false, &X), vec![9.0, 4.0, -1.0, 7.0]);
        // Row 0 without its padded position; row 1 has no tokens to prefer, so all its
        // positions count, as unmasked.
        assert_eq!(pooled(true, &X), vec![3.0, -2.0, -1.0, 7.0]);
    }

    #[test]
    fn masked_padding_gets_no_weight() {
        let mut changed = X;
        changed[4..6].copy_from_slice(&[50.0, 60.0]);
        assert_eq!(pooled(true, &changed)[..2], pooled(true, &X)[..2]);
        assert_ne!(pooled(false, &changed)[..2], pooled(false, &X)[..2]);
    }

    #[test]
    fn a_sequence_becomes_a_vector_whose_positions_must_be_the_tokens_when_masked() {
        let ctx = InferCtx {
            sequence_length: Some(10),
            ..Default::default()
        };
        let c = |masked| GlobalMaxPooling1dConfig { masked };
        let full = [TensorSpec::float(vec![Some(10), Some(2)])];
        assert_eq!(c(true).infer(&full, &ctx).unwrap()[0].1.dims, vec![Some(2)]);
        let shortened = [TensorSpec::float(vec![Some(8), Some(2)])];
        let err = c(true).infer(&shortened, &ctx).unwrap_err();
        assert!(err.contains("one position per token (10)"), "{err}");
        assert!(c(false).infer(&shortened, &ctx).is_ok());
        let vector = [TensorSpec::float(vec![Some(2)])];
        assert!(
            c(false)
                .infer(&vector, &ctx)
                .unwrap_err()
                .contains("rank [2]")
        );
        assert_eq!(c(true).param_count(&full, &ctx), 0);
        // Batches cut to their longest row: a row's maximum would take in padding in one
        // batch and not in another, so only the masked pooling is allowed.
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..ctx
        };
        let open = [TensorSpec::float(vec![None, Some(2)])];
        assert!(c(true).infer(&open, &dynamic).is_ok());
        let err = c(false).infer(&open, &dynamic).unwrap_err();
        assert!(err.contains("set `masked = true`"), "{err}");
    }
}
