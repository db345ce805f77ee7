//! `transformer_block`: the lesson's post-norm block — self-attention, dropout, residual +
//! LayerNorm, then a ReLU feed-forward, dropout, residual + LayerNorm (eps 1e-6).

use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::layer_normalization::layer_norm;
use super::multi_head_attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, positive, rate,
    require_aligned, require_masked, require_rank,
};
use crate::fused;
use crate::onnx::{OnnxGraph, OnnxValue};

fn lesson_dropout() -> f64 {
    0.1
}
fn lesson_epsilon() -> f64 {
    1e-6
}

/// The Keras transformer lesson's `TransformerBlock` (post-norm): self-attention, then a
/// two-layer ReLU feed-forward network, each added back to its input and layer-normalised.
/// The output has the input's shape.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformerBlockConfig {
    /// Attention heads of the self-attention.
    pub num_heads: usize,
    /// Features of each head's query and key (default: the input's width, as the lesson
    /// passes `key_dim=embed_dim`). Values are as wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_dim: Option<usize>,
    /// Hidden features of the feed-forward network (its first, ReLU layer).
    pub ff_dim: usize,
    /// Dropout on the attention's and the feed-forward network's outputs while training, a
    /// rate in [0, 1) (default 0.1, the lesson's).
    #[serde(default = "lesson_dropout")]
    pub dropout: f64,
    /// The two layer norms' epsilon, added to the variance (default 1e-6, the lesson's).
    #[serde(default = "lesson_epsilon")]
    pub epsilon: f64,
    /// Give padded keys no attention weight, from the vectorizer's mask (default false).
    /// Needed with `padding = "longest"`; needs the input's positions to be the tokens'.
    #[serde(default)]
    pub masked: bool,
}

#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    att: MultiHeadAttention<B>,
    ffn_1: Linear<B>,
    ffn_2: Linear<B>,
    layernorm1: LayerNorm<B>,
    layernorm2: LayerNorm<B>,
    dropout1: Dropout,
    dropout2: Dropout,
    /// LayerNorm epsilon (burn's LayerNorm keeps its own private).
    epsilon: f64,
}

impl TransformerBlockConfig {
    /// The self-attention's keys for an input `width` features wide.
    fn attention(&self, width: usize) -> MultiHeadAttentionConfig {
        MultiHeadAttentionConfig {
            num_heads: self.num_heads,
            key_dim: self.key_dim.unwrap_or(width),
            value_dim: None,
            dropout: 0.0,
            masked: self.masked,
        }
    }
}

impl LayerDef for TransformerBlockConfig {
    type Module<B: Backend> = TransformerBlock<B>;

    fn validate(&self) -> Result<(), String> {
        positive(self.num_heads, "num_heads")?;
        positive(self.ff_dim, "ff_dim")?;
        if let Some(k) = self.key_dim {
            positive(k, "key_dim")?;
        }
        rate(self.dropout, "dropout")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_masked(self.masked, ctx)?;
        require_aligned(self.masked, &inputs[0], ctx)?;
        require_rank(inputs, &[2], "transformer_block")?;
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        let d = inputs[0].features().unwrap_or(0);
        self.attention(d).count(d, d)
            + (d * self.ff_dim + self.ff_dim)
            + (self.ff_dim * d + d)
            + 4 * d
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<TransformerBlock<B>, String> {
        let d = inputs[0].features().unwrap_or(0);
        Ok(TransformerBlock {
            att: self.attention(d).build(d, d, device),
            ffn_1: init::linear(d, self.ff_dim, (d, self.ff_dim), true, device),
            ffn_2: init::linear(self.ff_dim, d, (self.ff_dim, d), true, device),
            layernorm1: layer_norm(d, self.epsilon, device),
            layernorm2: layer_norm(d, self.epsilon, device),
            dropout1: DropoutConfig::new(self.dropout).init(),
            dropout2: DropoutConfig::new(self.dropout).init(),
            epsilon: self.epsilon,
        })
    }
}

impl<B: Backend> LayerForward<B> for TransformerBlock<B> {
    /// # Shapes
    /// - input: [batch, length, d]; ctx.mask: [batch, length]
    /// - output: one [batch, heads, length, length]
    fn attention_maps(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
    ) -> Vec<(String, Tensor<B, 4>)> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![(String::new(), self.att.weights(x.clone(), x, &ctx.mask))]
    }
    /// # Shapes
    /// - input: [batch, length, d]; ctx.mask: [batch, length]; output: [batch, length, d]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        let attn = self.att.attend(x.clone(), x.clone(), &ctx.mask);
        let sum1 = fused::residual_dropout(x, attn, self.dropout1.prob);
        let out1 = fused::layer_norm_module(&self.layernorm1, sum1, self.epsilon);
        let ffn = fused::linear_seq(
            &self.ffn_2,
            fused::relu(fused::linear_seq(&self.ffn_1, out1.clone())),
        );
        let sum2 = fused::residual_dropout(out1, ffn, self.dropout2.prob);
        vec![Value::Sequence(fused::layer_norm_module(
            &self.layernorm2,
            sum2,
            self.epsilon,
        ))]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = &inputs[0].name;
        let attn = self.att.attend_onnx(g, x, x);
        let sum1 = g.op("Add", &[x, &attn], vec![]);
        let out1 = g.layer_norm(&sum1, &self.layernorm1, self.epsilon);
        let hidden = g.linear(&out1, &self.ffn_1);
        let hidden = g.op("Relu", &[&hidden], vec![]);
        let ffn = g.linear(&hidden, &self.ffn_2);
        let sum2 = g.op("Add", &[&out1, &ffn], vec![]);
        let out = g.layer_norm(&sum2, &self.layernorm2, self.epsilon);
        Ok(vec![OnnxValue::new(out, 3)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::plain::{self, Affine, Norm};
    use crate::layers::testing::{
        B, assert_close, forward_ctx, pattern, set_linear, set_norm, tensor, values,
    };

    fn config(key_dim: Option<usize>, masked: bool) -> TransformerBlockConfig {
        TransformerBlockConfig {
            num_heads: 2,
            key_dim,
            ff_dim: 3,
            dropout: 0.1,
            epsilon: 1e-6,
            masked,
        }
    }

    const MASK: [&[f32]; 2] = [&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0]];

    /// A block on 4 features with every weight hand-set.
    fn hand_set(masked: bool) -> TransformerBlock<B> {
        let spec = [TensorSpec::float(vec![Some(3), Some(4)])];
        let ctx = InferCtx {
            sequence_length: Some(3),
            ..Default::default()
        };
        let mut block = config(None, masked)
            .init::<B>(&spec, &ctx, &Default::default())
            .unwrap();
        for (i, linear) in [
            &mut block.att.query,
            &mut block.att.key,
            &mut block.att.value,
            &mut block.att.attention_output,
            &mut block.ffn_1,
            &mut block.ffn_2,
        ]
        .into_iter()
        .enumerate()
        {
            set_linear(linear, 2 * i);
        }
        set_norm(&mut block.layernorm1, 20);
        set_norm(&mut block.layernorm2, 22);
        block
    }

    fn forward(block: &TransformerBlock<B>, x: &[f32]) -> Vec<f32> {
        let out = block.forward(
            vec![Value::Sequence(tensor(x, [2, 3, 4]))],
            &forward_ctx(&MASK),
        );
        values(out[0].clone().sequence())
    }

    /// The block one example at a time, in plain Rust.
    fn plain_block(block: &TransformerBlock<B>, x: &plain::Rows, key_mask: &[f32]) -> plain::Rows {
        let att = &block.att;
        let context = plain::attention(
            &Affine::of(&att.query).apply_rows(x),
            &Affine::of(&att.key).apply_rows(x),
            &Affine::of(&att.value).apply_rows(x),
            key_mask,
            2,
            // key_dim defaults to the width, 4.
            0.5,
        );
        let attended = Affine::of(&att.attention_output).apply_rows(&context);
        let out1 = Norm::of(&block.layernorm1, 1e-6).apply_rows(&plain::add(x, &attended));
        let hidden: plain::Rows = (Affine::of(&block.ffn_1).apply_rows(&out1).into_iter())
            .map(|r| r.into_iter().map(|v| v.max(0.0)).collect())
            .collect();
        let ffn = Affine::of(&block.ffn_2).apply_rows(&hidden);
        Norm::of(&block.layernorm2, 1e-6).apply_rows(&plain::add(&out1, &ffn))
    }

    #[test]
    fn constant_weights_match_a_plain_calculation() {
        let x: Vec<f32> = pattern(24, 5).iter().map(|v| 3.0 * v).collect();
        for masked in [true, false] {
            let block = hand_set(masked);
            let mut expected = Vec::new();
            for (b, key_mask) in MASK.iter().enumerate() {
                let key_mask = if masked {
                    key_mask.to_vec()
                } else {
                    vec![1.0; 3]
                };
                let rows = plain::rows(&x[b * 12..(b + 1) * 12], 4);
                expected.extend(plain_block(&block, &rows, &key_mask).concat());
            }
            assert_close(&forward(&block, &x), &expected, 1e-4);
        }
    }

    #[test]
    fn masked_padding_does_not_reach_the_real_positions() {
        let x: Vec<f32> = pattern(24, 5).iter().map(|v| 3.0 * v).collect();
        // Row 0's third position is padding.
        let mut changed = x.clone();
        changed[8..12].copy_from_slice(&[9.0, -9.0, 4.0, 1.0]);
        let real = |out: Vec<f32>| [&out[..8], &out[12..]].concat();
        let masked = hand_set(true);
        assert_eq!(real(forward(&masked, &changed)), real(forward(&masked, &x)));
        let unmasked = hand_set(false);
        assert_ne!(
            real(forward(&unmasked, &changed)),
            real(forward(&unmasked, &x))
        );
    }

    #[test]
    fn attention_maps_are_the_self_attention_weights() {
        let x: Vec<f32> = pattern(24, 5).iter().map(|v| 3.0 * v).collect();
        let block = hand_set(true);
        let maps = block.attention_maps(
            vec![Value::Sequence(tensor(&x, [2, 3, 4]))],
            &forward_ctx(&MASK),
        );
        assert_eq!(maps[0].1.dims(), [2, 2, 3, 3]);
        let mut expected = Vec::new();
        for (b, key_mask) in MASK.iter().enumerate() {
            let rows = plain::rows(&x[b * 12..(b + 1) * 12], 4);
            let q = Affine::of(&block.att.query).apply_rows(&rows);
            let k = Affine::of(&block.att.key).apply_rows(&rows);
            expected.extend(
                plain::attention_weights(&q, &k, key_mask, 2, 0.5)
                    .concat()
                    .concat(),
            );
        }
        assert_close(&values(maps[0].1.clone()), &expected, 1e-5);
    }

    #[test]
    fn parameter_count_matches_the_built_block() {
        let spec = [TensorSpec::float(vec![Some(3), Some(4)])];
        let ctx = InferCtx::default();
        for key_dim in [None, Some(5)] {
            let c = config(key_dim, false);
            let built = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
            assert_eq!(
                c.param_count(&spec, &ctx),
                built.num_params(),
                "key_dim {key_dim:?}"
            );
        }
    }

    #[test]
    fn the_output_keeps_the_input_shape_and_bad_inputs_are_refused() {
        let ctx = InferCtx {
            sequence_length: Some(3),
            ..Default::default()
        };
        let spec = TensorSpec::float(vec![Some(3), Some(4)]);
        let out = config(None, true)
            .infer(std::slice::from_ref(&spec), &ctx)
            .unwrap();
        assert_eq!(out[0].1, spec);
        let err = config(None, false).infer(&[TensorSpec::float(vec![Some(4)])], &ctx);
        assert!(
            err.unwrap_err()
                .contains("transformer_block needs input of rank [2]")
        );
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..ctx.clone()
        };
        let err = config(None, false).infer(&[TensorSpec::float(vec![None, Some(4)])], &dynamic);
        assert!(err.unwrap_err().contains("set `masked = true`"));
        let no_ff = TransformerBlockConfig {
            ff_dim: 0,
            ..config(None, false)
        };
        assert!(no_ff.validate().unwrap_err().contains("`ff_dim`"));
        let bad_dropout = TransformerBlockConfig {
            dropout: 1.0,
            ..config(None, false)
        };
        assert!(bad_dropout.validate().unwrap_err().contains("`dropout`"));
    }
}
