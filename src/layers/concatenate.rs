//! `concatenate`: several inputs joined along the last (feature) dimension, as Keras'
//! `Concatenate(axis=-1)`: the branches of a DAG merged into one.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, ValueKind};

/// Joins 2–16 inputs along their last (feature) dimension, in the order of `inputs`
/// (Keras' `Concatenate(axis=-1)`). The inputs agree on every other dimension. No keys of
/// its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcatenateConfig {}

#[derive(Module, Clone, Debug)]
pub struct Concatenate;

/// The check both merges make: float inputs of one rank whose dimensions agree, the feature
/// dimension aside where `join_features`.
pub(crate) fn require_mergeable(
    inputs: &[TensorSpec],
    what: &str,
    join_features: bool,
) -> Result<(), String> {
    let first = &inputs[0];
    for (i, s) in inputs.iter().enumerate() {
        if s.kind != ValueKind::Float || !(1..=2).contains(&s.rank()) {
            return Err(format!(
                "{what} merges vectors or sequences; input {} is {s}",
                i + 1
            ));
        }
        let same = s.rank() == first.rank()
            && match join_features {
                true => s.dims[..s.rank() - 1] == first.dims[..first.rank() - 1],
                false => s.dims == first.dims,
            };
        if !same || s.features().is_none() {
            return Err(format!(
                "{what} needs inputs of matching shapes{}: input 1 is {first}, input {} is {s}",
                if join_features {
                    " but for the last dimension"
                } else {
                    ""
                },
                i + 1
            ));
        }
    }
    Ok(())
}

impl LayerDef for ConcatenateConfig {
    type Module<B: Backend> = Concatenate;

    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        2..=16
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_mergeable(inputs, "concatenate", true)?;
        let width = inputs.iter().filter_map(TensorSpec::features).sum();
        Ok(vec![("output".into(), inputs[0].with_last(width))])
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        0
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        _: &InferCtx,
        _: &B::Device,
    ) -> Result<Concatenate, String> {
        Ok(Concatenate)
    }
}

impl<B: Backend> LayerForward<B> for Concatenate {
    /// # Shapes
    /// - inputs: [batch, d_i] each, or [batch, length, d_i] each; output: [batch, (length,) Σ d_i]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let out = match &inputs[0] {
            Value::Vector(_) => Value::Vector(Tensor::cat(
                inputs.into_iter().map(Value::vector).collect(),
                1,
            )),
            _ => Value::Sequence(Tensor::cat(
                inputs.into_iter().map(Value::sequence).collect(),
                2,
            )),
        };
        vec![out]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let rank = inputs[0].rank;
        let names: Vec<&str> = inputs.iter().map(|v| v.name.as_str()).collect();
        let out = g.op("Concat", &names, vec![("axis", Attr::Int(rank as i64 - 1))]);
        Ok(vec![OnnxValue::new(out, rank)])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    #[test]
    fn features_are_joined_in_input_order_and_shapes_checked() {
        let device = Default::default();
        let ctx = InferCtx::default();
        let (a, b) = (
            TensorSpec::float(vec![Some(5), Some(3)]),
            TensorSpec::float(vec![Some(5), Some(4)]),
        );
        let config = ConcatenateConfig {};
        let out = config.infer(&[a.clone(), b], &ctx).unwrap();
        assert_eq!(out[0].1.dims, vec![Some(5), Some(7)]);
        let shorter = TensorSpec::float(vec![Some(4), Some(4)]);
        assert!(
            config
                .infer(&[a, shorter], &ctx)
                .unwrap_err()
                .contains("matching shapes")
        );
        let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &device).reshape([1, 2]);
        let y = Tensor::<Flex, 1>::from_floats([3.0], &device).reshape([1, 1]);
        let ctx = ForwardCtx {
            mask: Tensor::zeros([1, 1], &device),
            token_type_ids: Tensor::zeros([1, 1], &device),
        };
        let out = Concatenate.forward(vec![Value::Vector(x), Value::Vector(y)], &ctx);
        let v: Vec<f32> = out[0].clone().vector().into_data().to_vec().unwrap();
        assert_eq!(v, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn sequences_are_joined_position_by_position() {
        // [1, 2, 2] and [1, 2, 1]: each position gets its own features side by side.
        let a = tensor(&[1.0, 2.0, 3.0, 4.0], [1, 2, 2]);
        let b = tensor(&[-1.0, -2.0], [1, 2, 1]);
        let out = Concatenate.forward(
            vec![Value::Sequence(a), Value::Sequence(b)],
            &forward_ctx(&[&[1.0, 1.0]]),
        );
        let out = out[0].clone().sequence();
        assert_eq!(out.dims(), [1, 2, 3]);
        assert_eq!(values(out), vec![1.0, 2.0, -1.0, 3.0, 4.0, -2.0]);
    }

    #[test]
    fn widths_add_up_and_other_kinds_or_ranks_are_refused() {
        let ctx = InferCtx::default();
        let c = ConcatenateConfig {};
        let v = |d| TensorSpec::float(vec![Some(d)]);
        let out = c.infer(&[v(2), v(3), v(4)], &ctx).unwrap();
        assert_eq!(out[0].1, v(9));
        let seq = TensorSpec::float(vec![Some(5), Some(3)]);
        let err = c.infer(&[v(3), seq], &ctx).unwrap_err();
        assert!(
            err.contains("matching shapes but for the last dimension"),
            "{err}"
        );
        let err = c
            .infer(&[v(3), TensorSpec::ids(Some(3))], &ctx)
            .unwrap_err();
        assert!(err.contains("input 2 is (None, 3) int"), "{err}");
        assert_eq!(c.arity(), 2..=16);
    }
}
