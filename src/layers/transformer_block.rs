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

fn lesson_dropout() -> f64 {
    0.1
}
fn lesson_epsilon() -> f64 {
    1e-6
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformerBlockConfig {
    pub num_heads: usize,
    /// Per-head query/key size (default: the input width, as the lesson passes `key_dim=embed_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_dim: Option<usize>,
    /// Hidden size of the feed-forward network.
    pub ff_dim: usize,
    #[serde(default = "lesson_dropout")]
    pub dropout: f64,
    #[serde(default = "lesson_epsilon")]
    pub epsilon: f64,
    /// Attention ignores padded keys.
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
    fn attention_maps(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
    ) -> Vec<(String, Tensor<B, 4>)> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![(String::new(), self.att.weights(x.clone(), x, &ctx.mask))]
    }
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
}
