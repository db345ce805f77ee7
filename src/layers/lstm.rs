//! `lstm`: a long short-term memory layer over a sequence (Keras' `LSTM`, optionally wrapped
//! in `Bidirectional`), on burn-nn's `Lstm`. Masked by default: each row is read up to its last
//! real token, so padding changes neither direction's final state. Its keys, module and
//! forward pass are those of `gru` (src/layers/recurrent.rs); only the cell differs.
//!
//! Parameters: burn's LSTM, like PyTorch's, keeps two bias vectors per gate (one on the input
//! and one on the hidden transform), so a layer holds `4·(d_in·u + u·u + 2u)` per direction
//! where Keras' holds `4·(d_in·u + u·u + u)`. The weights start as burn's do (Xavier normal),
//! not as Keras' (Glorot uniform, orthogonal recurrent kernel, unit forget bias).

use burn::nn::activation::Activation;
use burn::nn::{Lstm as BurnLstm, LstmConfig as BurnLstmConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph};

use super::recurrent::{Recurrent, RecurrentConfig, Steps, onnx_gate_weights, onnx_one_direction};
use super::{InferCtx, LayerDef, TensorSpec};

// `lstm`'s keys: those of `RecurrentConfig` (a plain comment: a doc comment would wrap
// the schema in `allOf`, which the schema generator does not resolve).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LstmConfig(pub RecurrentConfig);

pub type Lstm<B> = Recurrent<B, BurnLstm<B>>;

impl<B: Backend> Steps<B> for BurnLstm<B> {
    /// The LSTM's hidden state after each step, from a zero state.
    ///
    /// # Shapes
    /// - x: [batch, length, d]; output: [batch, length, units]
    fn steps(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x, None).0
    }
    /// ONNX's `LSTM` (forward, no `sequence_lens`: every step, as burn runs them), its gates in
    /// the op's order input, output, forget, cell; sigmoid gates and tanh cell and hidden
    /// activations are the op's defaults, as burn's.
    fn steps_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, String> {
        let default_cell = !self.reverse
            && self.batch_first
            && self.clip.is_none()
            && !self.input_forget
            && matches!(self.gate_activation, Activation::Sigmoid(_))
            && matches!(self.cell_activation, Activation::Tanh(_))
            && matches!(self.hidden_activation, Activation::Tanh(_));
        if !default_cell {
            return Err(
                "an lstm cell with clip, input_forget, reverse or other activations \
                 than burn's defaults has no ONNX form in pipe"
                    .into(),
            );
        }
        let gates = [
            &self.input_gate,
            &self.output_gate,
            &self.forget_gate,
            &self.cell_gate,
        ];
        let [w, r, b] = onnx_gate_weights(g, &gates);
        let y = g.op(
            "LSTM",
            &[x, &w, &r, &b],
            vec![("hidden_size", Attr::Int(self.d_hidden as i64))],
        );
        Ok(onnx_one_direction(g, &y))
    }
}

impl LayerDef for LstmConfig {
    type Module<B: Backend> = Lstm<B>;

    fn validate(&self) -> Result<(), String> {
        self.0.validate()
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        self.0.infer(inputs, ctx, "lstm")
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        self.0.param_count(inputs, 4)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<Lstm<B>, String> {
        let d = inputs[0].features().unwrap_or(0);
        Ok(self
            .0
            .build(|| BurnLstmConfig::new(d, self.0.units, true).init(device)))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::recurrent::checks;
    use crate::layers::testing::plain::{self, sigmoid};
    use crate::layers::testing::{assert_close, forward_ctx, pattern, set_linear, tensor, values};
    use crate::layers::{LayerForward, Value};

    type B = Flex;

    fn config(bidirectional: bool, return_sequences: bool) -> LstmConfig {
        LstmConfig(checks::config(bidirectional, return_sequences))
    }

    #[test]
    fn parameter_count_is_burns_two_biases_per_gate() {
        checks::counts_match_the_module(LstmConfig, 4);
    }

    #[test]
    fn padding_changes_neither_final_state() {
        checks::padding_changes_neither_final_state(LstmConfig);
    }

    /// Burn's (and PyTorch's) LSTM step in plain Rust: input, forget and output gates
    /// σ(x·W + b + h·U + c), candidate tanh(...), c' = f·c + i·g, h' = o·tanh(c').
    fn plain_lstm(cell: &BurnLstm<B>, steps: &plain::Rows) -> plain::Rows {
        let [input, forget, output, candidate] = [
            &cell.input_gate,
            &cell.forget_gate,
            &cell.output_gate,
            &cell.cell_gate,
        ]
        .map(plain::Gate::of);
        let units = input.input.bias.len();
        let (mut h, mut c) = (vec![0.0; units], vec![0.0; units]);
        let mut outputs = Vec::new();
        for x in steps {
            let i = input.pre(x, &h);
            let f = forget.pre(x, &h);
            let o = output.pre(x, &h);
            let g = candidate.pre(x, &h);
            for u in 0..units {
                c[u] = sigmoid(f[u]) * c[u] + sigmoid(i[u]) * g[u].tanh();
                h[u] = sigmoid(o[u]) * c[u].tanh();
            }
            outputs.push(h.clone());
        }
        outputs
    }

    /// A bidirectional layer on 2 features with every weight hand-set.
    fn hand_set(return_sequences: bool) -> Lstm<B> {
        let spec = [TensorSpec::float(vec![None, Some(2)])];
        let mut layer = config(true, return_sequences)
            .init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap();
        let backward = layer.backward.as_mut().unwrap();
        for (seed, cell) in [(0, &mut layer.forward), (40, backward)] {
            let gates = [
                &mut cell.input_gate,
                &mut cell.forget_gate,
                &mut cell.output_gate,
                &mut cell.cell_gate,
            ];
            for (i, gate) in gates.into_iter().enumerate() {
                set_linear(&mut gate.input_transform, seed + 4 * i);
                set_linear(&mut gate.hidden_transform, seed + 4 * i + 2);
            }
        }
        layer
    }

    #[test]
    fn hand_set_weights_match_a_plain_lstm_over_the_real_tokens() {
        // Row 0: 3 real steps and one padded; row 1: 4 real steps.
        let x: Vec<f32> = pattern(16, 9).iter().map(|v| 4.0 * v).collect();
        let mask: [&[f32]; 2] = [&[1.0, 1.0, 1.0, 0.0], &[1.0; 4]];
        let input = || vec![Value::Sequence(tensor(&x, [2, 4, 2]))];
        let last = hand_set(false).forward(input(), &forward_ctx(&mask));
        let steps = hand_set(true).forward(input(), &forward_ctx(&mask));
        let (last, steps) = (
            values(last[0].clone().vector()),
            values(steps[0].clone().sequence()),
        );
        let layer = hand_set(false);
        let cell = |s: &plain::Rows| plain_lstm(&layer.forward, s);
        let cell_back = |s: &plain::Rows| plain_lstm(layer.backward.as_ref().unwrap(), s);
        for (b, tokens) in [(0, 3), (1, 4)] {
            let rows = plain::rows(&x[b * 8..(b + 1) * 8], 2);
            let (expected_last, expected_steps) =
                plain::bidirectional(&rows, tokens, cell, cell_back);
            assert_close(&last[b * 6..(b + 1) * 6], &expected_last, 1e-5);
            for (t, expected) in expected_steps.iter().enumerate() {
                let at = (b * 4 + t) * 6;
                assert_close(&steps[at..at + 6], expected, 1e-5);
            }
        }
    }
}
