//! `add`: the elementwise sum of several inputs of one shape (Keras' `Add`), as in a residual
//! connection written out in the graph.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{OnnxGraph, OnnxValue};

use super::concatenate::require_mergeable;
use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value};

/// The elementwise sum of 2–16 inputs of one shape (Keras' `Add`), e.g. a residual
/// connection. No keys of its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddConfig {}

#[derive(Module, Clone, Debug)]
pub struct Add;

impl LayerDef for AddConfig {
    type Module<B: Backend> = Add;

    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        2..=16
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_mergeable(inputs, "add", false)?;
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
    ) -> Result<Add, String> {
        Ok(Add)
    }
}

impl<B: Backend> LayerForward<B> for Add {
    /// # Shapes
    /// - inputs: one shape, [batch, d] or [batch, length, d]; output: that shape
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let mut it = inputs.into_iter();
        let first = it.next().expect("at least two inputs");
        let sum = it.fold(first, |acc, v| match (acc, v) {
            (Value::Vector(a), Value::Vector(b)) => Value::Vector(a + b),
            (Value::Sequence(a), Value::Sequence(b)) => Value::Sequence(a + b),
            (a, b) => panic!("internal: add of {a:?} and {b:?} passed the shape check"),
        });
        vec![sum]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let rank = inputs[0].rank;
        let names: Vec<&str> = inputs.iter().map(|v| v.name.as_str()).collect();
        Ok(vec![OnnxValue::new(g.op("Sum", &names, vec![]), rank)])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    #[test]
    fn inputs_of_one_shape_are_summed() {
        let device = Default::default();
        let spec = TensorSpec::float(vec![Some(2)]);
        let config = AddConfig {};
        let ctx = InferCtx::default();
        assert_eq!(
            config.infer(&[spec.clone(), spec.clone()], &ctx).unwrap()[0].1,
            spec
        );
        let wider = TensorSpec::float(vec![Some(3)]);
        assert!(config.infer(&[spec, wider], &ctx).is_err());
        let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &device).reshape([1, 2]);
        let ctx = ForwardCtx {
            mask: Tensor::zeros([1, 1], &device),
            token_type_ids: Tensor::zeros([1, 1], &device),
        };
        let out = Add.forward(
            vec![
                Value::Vector(x.clone()),
                Value::Vector(x.clone()),
                Value::Vector(x),
            ],
            &ctx,
        );
        let v: Vec<f32> = out[0].clone().vector().into_data().to_vec().unwrap();
        assert_eq!(v, vec![3.0, 6.0]);
    }

    #[test]
    fn sequences_are_summed_elementwise() {
        let a = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 3, 2]);
        let b = tensor(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [1, 3, 2]);
        let out = Add.forward(
            vec![Value::Sequence(a), Value::Sequence(b)],
            &forward_ctx(&[&[1.0; 3]]),
        );
        assert_eq!(
            values(out[0].clone().sequence()),
            vec![11.0, 22.0, 33.0, 44.0, 55.0, 66.0]
        );
    }

    #[test]
    fn any_difference_in_shape_or_kind_is_refused() {
        let ctx = InferCtx::default();
        let c = AddConfig {};
        let seq = |l, d| TensorSpec::float(vec![l, Some(d)]);
        let err = c
            .infer(&[seq(Some(4), 3), seq(Some(5), 3)], &ctx)
            .unwrap_err();
        assert!(err.contains("add needs inputs of matching shapes: input 1 is (None, 4, 3), input 2 is (None, 5, 3)"), "{err}");
        let err = c
            .infer(&[seq(Some(4), 3), TensorSpec::ids(Some(4))], &ctx)
            .unwrap_err();
        assert!(err.contains("add merges vectors or sequences"), "{err}");
        assert_eq!(
            c.infer(&[seq(None, 3), seq(None, 3)], &ctx).unwrap()[0].1,
            seq(None, 3)
        );
    }
}
