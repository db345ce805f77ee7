//! `lstm`: a long short-term memory layer over a sequence (Keras' `LSTM`, optionally wrapped
//! in `Bidirectional`), on burn-nn's `Lstm`. Masked by default: each row is read up to its last
//! real token, so padding changes neither direction's final state. Its keys, module and
//! forward pass are those of `gru` (src/layers/recurrent.rs); only the cell differs.
//!
//! Parameters: burn's LSTM, like PyTorch's, keeps two bias vectors per gate (one on the input
//! and one on the hidden transform), so a layer holds `4·(d_in·u + u·u + 2u)` per direction
//! where Keras' holds `4·(d_in·u + u·u + u)`. The weights start as burn's do (Xavier normal),
//! not as Keras' (Glorot uniform, orthogonal recurrent kernel, unit forget bias).

use burn::nn::{Lstm as BurnLstm, LstmConfig as BurnLstmConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recurrent::{Recurrent, RecurrentConfig, Steps};
use super::{InferCtx, LayerDef, TensorSpec};

// `lstm`'s keys: those of `RecurrentConfig` (a plain comment: a doc comment would wrap
// the schema in `allOf`, which the schema generator does not resolve).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LstmConfig(pub RecurrentConfig);

pub type Lstm<B> = Recurrent<B, BurnLstm<B>>;

impl<B: Backend> Steps<B> for BurnLstm<B> {
    fn steps(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x, None).0
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
    use burn::module::Module;

    use super::*;
    use crate::layers::{ForwardCtx, LayerForward, Value};

    type B = Flex;

    fn config(bidirectional: bool, return_sequences: bool) -> LstmConfig {
        LstmConfig(RecurrentConfig {
            units: 3,
            return_sequences,
            bidirectional,
            dropout: 0.0,
            masked: true,
        })
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
        assert_eq!(
            config(false, false).param_count(&spec, &ctx),
            4 * (4 * 3 + 3 * 3 + 6)
        );
        let out = config(true, true).infer(&spec, &ctx).unwrap();
        assert_eq!(out[0].1.dims, vec![Some(6), Some(6)]);
    }

    #[test]
    fn padding_changes_neither_final_state() {
        let device = Default::default();
        let spec = [TensorSpec::float(vec![None, Some(2)])];
        let layer = config(true, false)
            .init::<B>(&spec, &InferCtx::default(), &device)
            .unwrap();
        let ctx = |len: usize, pad: usize| ForwardCtx {
            mask: Tensor::<B, 1>::from_floats(
                [vec![1.0; len], vec![0.0; pad]].concat().as_slice(),
                &device,
            )
            .reshape([1, len + pad]),
            token_type_ids: Tensor::zeros([1, len + pad], &device),
        };
        let real = Tensor::<B, 3>::random([1, 4, 2], burn::tensor::Distribution::Default, &device);
        let padded = Tensor::cat(
            vec![real.clone(), Tensor::ones([1, 3, 2], &device) * 7.0],
            1,
        );
        let a = layer.forward(vec![Value::Sequence(real)], &ctx(4, 0));
        let b = layer.forward(vec![Value::Sequence(padded)], &ctx(4, 3));
        let diff: f32 = (a[0].clone().vector() - b[0].clone().vector())
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-6, "padding moved the final state by {diff}");
    }
}
