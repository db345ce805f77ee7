//! `add`: the elementwise sum of several inputs of one shape (Keras' `Add`), as in a residual
//! connection written out in the graph.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::concatenate::require_mergeable;
use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value};

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
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

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
}
