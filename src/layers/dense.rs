//! `dense`: a fully connected layer on the last dimension, with an activation.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, positive, require_rank,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    Tanh,
    Sigmoid,
    Softmax,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseConfig {
    pub units: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// `glorot_uniform` (Keras: Glorot kernel, zero bias) or `pytorch` (torch.nn.Linear:
    /// kernel and bias uniform in ±1/sqrt(inputs)), to start where a reference model starts.
    #[serde(default)]
    pub initializer: Initializer,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    #[default]
    GlorotUniform,
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
        positive(self.units, "units")
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
    fn apply(&self, inputs: Vec<Value<B>>, activation: Activation) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        vec![x.map_float(
            |t| activate(fused::linear(&self.linear, t), activation),
            |t| activate(fused::linear_seq(&self.linear, t), activation),
        )]
    }
}

impl<B: Backend> LayerForward<B> for Dense<B> {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        self.apply(inputs, self.activation)
    }
    fn forward_logits(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let activation = match self.activation {
            Activation::Softmax => Activation::Linear,
            a => a,
        };
        self.apply(inputs, activation)
    }
}
