//! `dense`: a fully connected layer on the last dimension, with an activation.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;
use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, require_rank};

/// A function applied to each output of a layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// None: the outputs as they are.
    #[default]
    Linear,
    /// max(x, 0).
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh(x), in (−1, 1).
    Tanh,
    /// 1 / (1 + e^−x), in (0, 1).
    Sigmoid,
    /// Over the last dimension: the outputs become probabilities that sum to 1. In a
    /// classifier's last layer the loss reads the values before it (a stable log-softmax).
    Softmax,
}

fn yes() -> bool {
    true
}

/// A fully connected layer (Keras' `Dense`): each output is a weighted sum of the input's
/// last dimension plus a bias, then the activation. On a sequence it applies at every position.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseConfig {
    /// Output features: the size of the new last dimension. The model's last layer may leave
    /// it out: it then has one unit per class.
    #[serde(default)]
    pub units: usize,
    /// Applied to each output (default `linear`: none).
    #[serde(default)]
    pub activation: Activation,
    /// Add a learned bias to each output (default true).
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// `glorot_uniform` (default; Keras: Glorot kernel, zero bias) or `pytorch`
    /// (torch.nn.Linear: kernel and bias uniform in ±1/sqrt(inputs)), to start where a
    /// reference model starts.
    #[serde(default)]
    pub initializer: Initializer,
}

/// How a `dense` layer's weights start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// Keras: kernel uniform in ±sqrt(6 / (inputs + units)), bias zero.
    #[default]
    GlorotUniform,
    /// torch.nn.Linear: kernel and bias uniform in ±1/sqrt(inputs).
    Pytorch,
}

#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    linear: Linear<B>,
    #[module(skip)]
    activation: Activation,
}

impl LayerDef for DenseConfig {
    type Module<B: Backend> = Dense<B>;

    fn validate(&self) -> Result<(), String> {
        if self.units == 0 {
            // 0 is also what a left-out `units` reads as; only the last layer fills it in.
            return Err(
                "`units` must be at least 1 (only the model's last layer may leave it \
                 out, to get one unit per class)"
                    .to_string(),
            );
        }
        Ok(())
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[1, 2], "dense")?;
        Ok(vec![("output".into(), inputs[0].with_last(self.units))])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        let d_in = inputs[0].features().unwrap_or(0);
        d_in * self.units + if self.use_bias { self.units } else { 0 }
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<Dense<B>, String> {
        let d_in = inputs[0].features().unwrap_or(0);
        let linear = match self.initializer {
            Initializer::GlorotUniform => {
                init::linear(d_in, self.units, (d_in, self.units), self.use_bias, device)
            }
            Initializer::Pytorch => {
                let bound = 1.0 / (d_in.max(1) as f64).sqrt();
                burn::nn::Linear {
                    weight: init::uniform([d_in, self.units], bound, device),
                    bias: self
                        .use_bias
                        .then(|| init::uniform([self.units], bound, device)),
                }
            }
        };
        Ok(Dense {
            linear,
            activation: self.activation,
        })
    }
}

/// `a` applied elementwise (softmax: over the last dimension).
///
/// # Shapes
/// - x: any; output: the shape of x
pub fn activate<B: Backend, const D: usize>(x: Tensor<B, D>, a: Activation) -> Tensor<B, D> {
    match a {
        Activation::Linear => x,
        Activation::Relu => fused::relu(x),
        Activation::Gelu => activation::gelu(x),
        Activation::Tanh => activation::tanh(x),
        Activation::Sigmoid => activation::sigmoid(x),
        Activation::Softmax => activation::softmax(x, D - 1),
    }
}

impl<B: Backend> Dense<B> {
    /// The affine map, then `activation`.
    ///
    /// # Shapes
    /// - input: [batch, d_in] or [batch, length, d_in]; output: [batch, units] or
    ///   [batch, length, units]
    fn apply(&self, inputs: Vec<Value<B>>, activation: Activation) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        vec![x.map_float(
            |t| activate(fused::linear(&self.linear, t), activation),
            |t| activate(fused::linear_seq(&self.linear, t), activation),
        )]
    }
}

impl<B: Backend> LayerForward<B> for Dense<B> {
    /// # Shapes
    /// - input: [batch, d_in] or [batch, length, d_in]; output: [batch, units] or
    ///   [batch, length, units]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        self.apply(inputs, self.activation)
    }
    /// The forward pass without a final softmax: the logits the loss takes.
    ///
    /// # Shapes
    /// - as [`forward`](Self::forward)
    fn forward_logits(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let activation = match self.activation {
            Activation::Softmax => Activation::Linear,
            a => a,
        };
        self.apply(inputs, activation)
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        head: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = inputs.into_iter().next().expect("one input");
        let y = g.linear(&x.name, &self.linear);
        let activation = match (self.activation, head) {
            (Activation::Softmax, true) => Activation::Linear,
            (a, _) => a,
        };
        Ok(vec![OnnxValue::new(
            activate_onnx(g, &y, activation),
            x.rank,
        )])
    }
}

/// [`activate`] as ONNX nodes.
pub fn activate_onnx(g: &mut OnnxGraph, x: &str, a: Activation) -> String {
    match a {
        Activation::Linear => x.to_string(),
        Activation::Relu => g.op("Relu", &[x], vec![]),
        Activation::Gelu => g.gelu(x),
        Activation::Tanh => g.op("Tanh", &[x], vec![]),
        Activation::Sigmoid => g.op("Sigmoid", &[x], vec![]),
        Activation::Softmax => g.op("Softmax", &[x], vec![("axis", Attr::Int(-1))]),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::layers::testing::{B, assert_close, forward_ctx, tensor, values};

    fn config(units: usize, activation: Activation) -> DenseConfig {
        DenseConfig {
            units,
            activation,
            use_bias: true,
            initializer: Initializer::GlorotUniform,
        }
    }

    /// A 2 → 3 layer with kernel [[1, 2, −3], [4, −5, 6]] and bias [0.5, −1, 2].
    fn hand_set(activation: Activation) -> Dense<B> {
        let spec = [TensorSpec::float(vec![Some(2)])];
        let mut layer = config(3, activation)
            .init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap();
        layer.linear.weight = Param::from_tensor(tensor(&[1.0, 2.0, -3.0, 4.0, -5.0, 6.0], [2, 3]));
        layer.linear.bias = Some(Param::from_tensor(tensor(&[0.5, -1.0, 2.0], [3])));
        layer
    }

    fn vector_out(layer: &Dense<B>, x: &[f32], logits: bool) -> Vec<f32> {
        let input = vec![Value::Vector(tensor(x, [x.len() / 2, 2]))];
        let ctx = forward_ctx(&[&[1.0]]);
        let out = match logits {
            true => layer.forward_logits(input, &ctx),
            false => layer.forward(input, &ctx),
        };
        values(out.into_iter().next().unwrap().vector())
    }

    #[test]
    fn constant_weights_give_the_hand_computed_affine_map() {
        // x = [1, 2]: [1·1 + 2·4 + 0.5, 1·2 − 2·5 − 1, −1·3 + 2·6 + 2] = [9.5, −9, 11].
        assert_eq!(
            vector_out(&hand_set(Activation::Linear), &[1.0, 2.0], false),
            vec![9.5, -9.0, 11.0]
        );
        assert_eq!(
            vector_out(&hand_set(Activation::Relu), &[1.0, 2.0], false),
            vec![9.5, 0.0, 11.0]
        );
        // A sequence takes the same map at every position (and the batch rows stay apart).
        let layer = hand_set(Activation::Linear);
        let x = tensor(&[1.0, 2.0, 0.0, 0.0, -1.0, 1.0, 2.0, 0.0], [2, 2, 2]);
        let out = layer.forward(
            vec![Value::Sequence(x)],
            &forward_ctx(&[&[1.0, 1.0], &[1.0, 1.0]]),
        );
        assert_eq!(
            values(out[0].clone().sequence()),
            vec![
                9.5, -9.0, 11.0, 0.5, -1.0, 2.0, 3.5, -8.0, 11.0, 2.5, 3.0, -4.0
            ]
        );
    }

    #[test]
    fn forward_logits_leave_out_only_a_final_softmax() {
        let x = [1.0, -1.0, 0.5, 0.25];
        let softmax = hand_set(Activation::Softmax);
        let logits = vector_out(&softmax, &x, true);
        assert_eq!(logits, vector_out(&hand_set(Activation::Linear), &x, false));
        let expected: Vec<f32> = logits
            .chunks(3)
            .flat_map(|row| {
                let e: Vec<f32> = row.iter().map(|v| v.exp()).collect();
                let sum: f32 = e.iter().sum();
                e.into_iter().map(move |v| v / sum)
            })
            .collect();
        assert_close(&vector_out(&softmax, &x, false), &expected, 1e-6);
        // Any other activation stays in the logits.
        for activation in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            let layer = hand_set(activation);
            assert_eq!(
                vector_out(&layer, &x, true),
                vector_out(&layer, &x, false),
                "{activation:?}"
            );
        }
    }

    #[test]
    fn parameter_count_matches_the_built_layer() {
        let spec = [TensorSpec::float(vec![Some(7), Some(5)])];
        let ctx = InferCtx::default();
        for use_bias in [true, false] {
            for initializer in [Initializer::GlorotUniform, Initializer::Pytorch] {
                let c = DenseConfig {
                    use_bias,
                    initializer,
                    ..config(3, Activation::Linear)
                };
                let built = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
                assert_eq!(c.param_count(&spec, &ctx), built.num_params(), "{c:?}");
            }
        }
        assert_eq!(
            config(3, Activation::Linear).param_count(&spec, &ctx),
            5 * 3 + 3
        );
    }

    #[test]
    fn initializers_start_as_keras_and_pytorch_do() {
        let spec = [TensorSpec::float(vec![Some(16)])];
        let ctx = InferCtx::default();
        let init = |initializer| {
            let c = DenseConfig {
                initializer,
                ..config(4, Activation::Linear)
            };
            let layer = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
            let bias = values(layer.linear.bias.unwrap().val());
            (values(layer.linear.weight.val()), bias)
        };
        let (kernel, bias) = init(Initializer::GlorotUniform);
        let limit = (6.0f32 / 20.0).sqrt();
        assert!(
            kernel.iter().all(|w| w.abs() <= limit) && kernel.iter().any(|w| w.abs() > 0.5 * limit)
        );
        assert!(bias.iter().all(|&b| b == 0.0));
        let (kernel, bias) = init(Initializer::Pytorch);
        assert!(kernel.iter().chain(&bias).all(|w| w.abs() <= 0.25));
        assert!(bias.iter().any(|&b| b != 0.0));
    }

    #[test]
    fn the_last_dimension_becomes_units_and_ids_are_refused() {
        let c = config(3, Activation::Linear);
        let ctx = InferCtx::default();
        let out = |dims: Vec<Option<usize>>| c.infer(&[TensorSpec::float(dims)], &ctx);
        assert_eq!(out(vec![Some(5)]).unwrap()[0].1.dims, vec![Some(3)]);
        assert_eq!(
            out(vec![None, Some(5)]).unwrap()[0].1.dims,
            vec![None, Some(3)]
        );
        assert!(
            out(vec![Some(2), Some(2), Some(5)])
                .unwrap_err()
                .contains("rank [1, 2]")
        );
        assert!(
            out(vec![Some(4), None])
                .unwrap_err()
                .contains("known feature size")
        );
        let ids = c.infer(&[TensorSpec::ids(Some(4))], &ctx).unwrap_err();
        assert!(ids.contains("float features"), "{ids}");
        assert!(
            config(0, Activation::Linear)
                .validate()
                .unwrap_err()
                .contains("`units`")
        );
    }
}
