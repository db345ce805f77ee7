//! `lstm`: a long short-term memory layer over a sequence (Keras' `LSTM`, optionally wrapped
//! in `Bidirectional`), on burn-nn's `Lstm`. Masked by default: each row is read up to its last
//! real token, so padding changes neither direction's final state.
//!
//! Parameters: burn's LSTM, like PyTorch's, keeps two bias vectors per gate (one on the input
//! and one on the hidden transform), so a layer holds `4·(d_in·u + u·u + 2u)` per direction
//! where Keras' holds `4·(d_in·u + u·u + u)`. The weights start as burn's do (Xavier normal),
//! not as Keras' (Glorot uniform, orthogonal recurrent kernel, unit forget bias).

use burn::nn::{Lstm as BurnLstm, LstmConfig as BurnLstmConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{require_aligned, 
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive, rate,
    recurrent, require_masked, require_rank,
};

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Size of the hidden state (per direction).
    pub units: usize,
    /// Return the output at every step, [length, units·directions], instead of the final
    /// state, [units·directions] (default false, as Keras).
    #[serde(default)]
    pub return_sequences: bool,
    /// Also run backwards over the sequence; the two directions' outputs are concatenated,
    /// forward first (default false).
    #[serde(default)]
    pub bidirectional: bool,
    /// Dropout on the inputs of every step while training (Keras' `dropout`; default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Read each row only up to its last real token (default true).
    #[serde(default = "yes")]
    pub masked: bool,
}

#[derive(Module, Debug)]
pub struct Lstm<B: Backend> {
    forward: BurnLstm<B>,
    backward: Option<BurnLstm<B>>,
    #[module(skip)]
    return_sequences: bool,
    #[module(skip)]
    dropout: f64,
    #[module(skip)]
    masked: bool,
}

impl LstmConfig {
    fn directions(&self) -> usize {
        1 + usize::from(self.bidirectional)
    }
}

impl LayerDef for LstmConfig {
    type Module<B: Backend> = Lstm<B>;

    fn validate(&self) -> Result<(), String> {
        positive(self.units, "units")?;
        rate(self.dropout, "dropout")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_masked(self.masked, ctx)?;
        require_aligned(self.masked, &inputs[0], ctx)?;
        require_rank(inputs, &[2], "lstm")?;
        let width = self.units * self.directions();
        Ok(recurrent::output(inputs, width, self.return_sequences))
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        let (d, u) = (inputs[0].features().unwrap_or(0), self.units);
        self.directions() * 4 * (d * u + u * u + 2 * u)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<Lstm<B>, String> {
        let d = inputs[0].features().unwrap_or(0);
        let build = || BurnLstmConfig::new(d, self.units, true).init(device);
        Ok(Lstm {
            forward: build(),
            backward: self.bidirectional.then(build),
            return_sequences: self.return_sequences,
            dropout: self.dropout,
            masked: self.masked,
        })
    }
}

impl<B: Backend> LayerForward<B> for Lstm<B> {
    /// # Shapes
    /// - input: [batch, length, d]; output: [batch, units·directions] or, with
    ///   `return_sequences`, [batch, length, units·directions]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        let x = crate::fused::dropout(x, self.dropout);
        let backward = self
            .backward
            .as_ref()
            .map(|m| move |x: Tensor<B, 3>| m.forward(x, None).0);
        let out = recurrent::run(
            x,
            self.masked.then_some(&ctx.mask),
            self.return_sequences,
            |x| self.forward.forward(x, None).0,
            backward.as_ref().map(|f| f as &dyn Fn(Tensor<B, 3>) -> Tensor<B, 3>),
        );
        vec![out]
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Module;

    use super::*;

    type B = Flex;

    fn config(bidirectional: bool, return_sequences: bool) -> LstmConfig {
        LstmConfig {
            units: 3,
            return_sequences,
            bidirectional,
            dropout: 0.0,
            masked: true,
        }
    }

    #[test]
    fn parameter_count_is_burns_two_biases_per_gate() {
        let spec = [TensorSpec::float(vec![Some(6), Some(4)])];
        let ctx = InferCtx {
            sequence_length: Some(6),
            ..Default::default()
        };
        for bidirectional in [false, true] {
            let c = config(bidirectional, false);
            let built = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
            assert_eq!(built.num_params(), c.param_count(&spec, &ctx));
        }
        assert_eq!(config(false, false).param_count(&spec, &ctx), 4 * (4 * 3 + 3 * 3 + 6));
        let out = config(true, true).infer(&spec, &ctx).unwrap();
        assert_eq!(out[0].1.dims, vec![Some(6), Some(6)]);
    }

    #[test]
    fn padding_changes_neither_final_state() {
        let device = Default::default();
        let spec = [TensorSpec::float(vec![None, Some(2)])];
        let layer = config(true, false).init::<B>(&spec, &InferCtx::default(), &device).unwrap();
        let ctx = |len: usize, pad: usize| ForwardCtx {
            mask: Tensor::<B, 1>::from_floats(
                [vec![1.0; len], vec![0.0; pad]].concat().as_slice(),
                &device,
            )
            .reshape([1, len + pad]),
            token_type_ids: Tensor::zeros([1, len + pad], &device),
        };
        let real = Tensor::<B, 3>::random([1, 4, 2], burn::tensor::Distribution::Default, &device);
        let padded = Tensor::cat(vec![real.clone(), Tensor::ones([1, 3, 2], &device) * 7.0], 1);
        let a = layer.forward(vec![Value::Sequence(real)], &ctx(4, 0));
        let b = layer.forward(vec![Value::Sequence(padded)], &ctx(4, 3));
        let diff: f32 = (a[0].clone().vector() - b[0].clone().vector()).abs().max().into_scalar();
        assert!(diff < 1e-6, "padding moved the final state by {diff}");
    }
}
