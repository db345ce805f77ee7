//! `gru`: a gated recurrent unit layer over a sequence (Keras' `GRU`, optionally wrapped in
//! `Bidirectional`), on burn-nn's `Gru` (the reset gate after the matrix product, as PyTorch
//! and Keras' default). Masked by default: each row is read up to its last
//! real token, so padding changes neither direction's final state. Its keys, module and
//! forward pass are those of `lstm` (src/layers/recurrent.rs); only the cell differs.
//!
//! Parameters: burn's GRU, like PyTorch's (and Keras' `reset_after`), keeps two bias vectors
//! per gate (one on the input and one on the hidden transform), so a layer holds
//! `3·(d_in·u + u·u + 2u)` per direction, as Keras' with `reset_after = True` does. The weights
//! start as burn's do (Xavier normal), not as Keras' (Glorot uniform, orthogonal recurrent kernel).

use burn::nn::activation::Activation;
use burn::nn::gru::{Gru as BurnGru, GruConfig as BurnGruConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph};

use super::recurrent::{Recurrent, RecurrentConfig, Steps, onnx_gate_weights, onnx_one_direction};
use super::{InferCtx, LayerDef, TensorSpec};

// `gru`'s keys: those of `RecurrentConfig` (a plain comment: a doc comment would wrap
// the schema in `allOf`, which the schema generator does not resolve).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GruConfig(pub RecurrentConfig);

pub type Gru<B> = Recurrent<B, BurnGru<B>>;

impl<B: Backend> Steps<B> for BurnGru<B> {
    /// The GRU's hidden state after each step, from a zero state.
    ///
    /// # Shapes
    /// - x: [batch, length, d]; output: [batch, length, units]
    fn steps(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x, None)
    }
    /// ONNX's `GRU` (forward, no `sequence_lens`: every step, as burn runs them), its gates in
    /// the op's order update, reset, new; `linear_before_reset` is burn's `reset_after` (the
    /// reset gate applied to the hidden transform with its bias, as here); sigmoid gates and a
    /// tanh candidate are the op's defaults, as burn's.
    fn steps_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, String> {
        let default_cell = self.clip.is_none()
            && matches!(self.gate_activation, Activation::Sigmoid(_))
            && matches!(self.hidden_activation, Activation::Tanh(_));
        if !default_cell {
            return Err(
                "a gru cell with clip or other activations than burn's defaults has \
                 no ONNX form in pipe"
                    .into(),
            );
        }
        let gates = [&self.update_gate, &self.reset_gate, &self.new_gate];
        let [w, r, b] = onnx_gate_weights(g, &gates);
        let y = g.op(
            "GRU",
            &[x, &w, &r, &b],
            vec![
                ("hidden_size", Attr::Int(self.d_hidden as i64)),
                (
                    "linear_before_reset",
                    Attr::Int(i64::from(self.reset_after)),
                ),
            ],
        );
        Ok(onnx_one_direction(g, &y))
    }
}

impl LayerDef for GruConfig {
    type Module<B: Backend> = Gru<B>;

    fn validate(&self) -> Result<(), String> {
        self.0.validate()
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        self.0.infer(inputs, ctx, "gru")
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        self.0.param_count(inputs, 3)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<Gru<B>, String> {
        let d = inputs[0].features().unwrap_or(0);
        Ok(self
            .0
            .build(|| BurnGruConfig::new(d, self.0.units, true).init(device)))
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

    fn config(bidirectional: bool, return_sequences: bool) -> GruConfig {
        GruConfig(checks::config(bidirectional, return_sequences))
    }

    #[test]
    fn parameter_count_is_burns_two_biases_per_gate_of_three() {
        checks::counts_match_the_module(GruConfig, 3);
    }

    #[test]
    fn padding_changes_neither_final_state() {
        checks::padding_changes_neither_final_state(GruConfig);
    }

    /// Burn's (and PyTorch's, Keras' `reset_after`) GRU step in plain Rust: update and reset
    /// gates z, r = σ(x·W + b + h·U + c), candidate n = tanh(x·W + b + r·(h·U + c)),
    /// h' = (1 − z)·n + z·h.
    fn plain_gru(cell: &BurnGru<B>, steps: &plain::Rows) -> plain::Rows {
        let [update, reset, new] =
            [&cell.update_gate, &cell.reset_gate, &cell.new_gate].map(plain::Gate::of);
        let units = update.input.bias.len();
        let mut h = vec![0.0; units];
        let mut outputs = Vec::new();
        for x in steps {
            let z = update.pre(x, &h);
            let r = reset.pre(x, &h);
            let (n_in, n_hidden) = (new.input.apply(x), new.hidden.apply(&h));
            for u in 0..units {
                let n = (n_in[u] + sigmoid(r[u]) * n_hidden[u]).tanh();
                h[u] = (1.0 - sigmoid(z[u])) * n + sigmoid(z[u]) * h[u];
            }
            outputs.push(h.clone());
        }
        outputs
    }

    /// A bidirectional layer on 2 features with every weight hand-set.
    fn hand_set(return_sequences: bool) -> Gru<B> {
        let spec = [TensorSpec::float(vec![None, Some(2)])];
        let mut layer = config(true, return_sequences)
            .init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap();
        let backward = layer.backward.as_mut().unwrap();
        for (seed, cell) in [(0, &mut layer.forward), (40, backward)] {
            let gates = [
                &mut cell.update_gate,
                &mut cell.reset_gate,
                &mut cell.new_gate,
            ];
            for (i, gate) in gates.into_iter().enumerate() {
                set_linear(&mut gate.input_transform, seed + 4 * i);
                set_linear(&mut gate.hidden_transform, seed + 4 * i + 2);
            }
        }
        layer
    }

    #[test]
    fn hand_set_weights_match_a_plain_gru_over_the_real_tokens() {
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
        let cell = |s: &plain::Rows| plain_gru(&layer.forward, s);
        let cell_back = |s: &plain::Rows| plain_gru(layer.backward.as_ref().unwrap(), s);
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
