//! `flatten`: a sequence of known length as one vector (Keras' `Flatten`), e.g. before a
//! `dense` head; a vector passes through.

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{OnnxGraph, OnnxValue};

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, require_rank};

/// A sequence of known length as one vector, its positions one after another (Keras'
/// `Flatten`); a vector passes through. No keys of its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

#[derive(Module, Clone, Debug)]
pub struct Flatten;

impl LayerDef for FlattenConfig {
    type Module<B: Backend> = Flatten;

    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[1, 2], "flatten")?;
        let s = &inputs[0];
        let width = match s.dims.as_slice() {
            [d] => *d,
            [Some(l), Some(d)] => Some(l * d),
            _ => {
                return Err(format!(
                    "flatten needs a sequence of known length, got {s}: `padding = \"longest\"` \
                     makes the length vary with the batch"
                ));
            }
        };
        Ok(vec![("output".into(), TensorSpec::float(vec![width]))])
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        0
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        _: &InferCtx,
        _: &B::Device,
    ) -> Result<Flatten, String> {
        Ok(Flatten)
    }
}

impl<B: Backend> LayerForward<B> for Flatten {
    /// # Shapes
    /// - input: [batch, length, d] (or [batch, d]); output: [batch, length·d]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let out = match inputs.into_iter().next().expect("one input") {
            Value::Sequence(x) => {
                let [b, l, d] = x.dims();
                Value::Vector(x.reshape([b, l * d]))
            }
            v => v,
        };
        vec![out]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = &inputs[0];
        let out = match x.rank {
            3 => g.reshape(&x.name, &[0, -1]),
            _ => x.name.clone(),
        };
        Ok(vec![OnnxValue::new(out, 2)])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::testing::{forward_ctx, tensor, values};

    #[test]
    fn a_sequence_becomes_its_rows_one_after_another() {
        let device = Default::default();
        let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &device)
            .reshape([1, 3, 2]);
        let ctx = ForwardCtx {
            mask: Tensor::zeros([1, 3], &device),
            token_type_ids: Tensor::zeros([1, 3], &device),
        };
        let out = Flatten.forward(vec![Value::Sequence(x)], &ctx);
        let v: Vec<f32> = out[0].clone().vector().into_data().to_vec().unwrap();
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let config = FlattenConfig {};
        let known = [TensorSpec::float(vec![Some(3), Some(2)])];
        assert_eq!(
            config.infer(&known, &InferCtx::default()).unwrap()[0]
                .1
                .dims,
            vec![Some(6)]
        );
        let unknown = [TensorSpec::float(vec![None, Some(2)])];
        assert!(
            config
                .infer(&unknown, &InferCtx::default())
                .unwrap_err()
                .contains("known length")
        );
    }

    #[test]
    fn rows_of_a_batch_stay_apart_and_vectors_pass_through() {
        let ctx = forward_ctx(&[&[1.0, 1.0], &[1.0, 1.0]]);
        let x = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [2, 2, 2]);
        let out = Flatten.forward(vec![Value::Sequence(x)], &ctx)[0]
            .clone()
            .vector();
        assert_eq!(out.dims(), [2, 4]);
        assert_eq!(values(out), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let v = tensor(&[1.0, 2.0, 3.0, 4.0], [2, 2]);
        let out = Flatten.forward(vec![Value::Vector(v)], &ctx)[0]
            .clone()
            .vector();
        assert_eq!(values(out), vec![1.0, 2.0, 3.0, 4.0]);
        let vector = [TensorSpec::float(vec![Some(5)])];
        let config = FlattenConfig {};
        assert_eq!(
            config.infer(&vector, &InferCtx::default()).unwrap()[0].1,
            vector[0]
        );
        let ids = config.infer(&[TensorSpec::ids(Some(3))], &InferCtx::default());
        assert!(ids.unwrap_err().contains("float features"));
    }
}
