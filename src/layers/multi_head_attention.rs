//! `multi_head_attention` with Keras semantics: `key_dim` is per head and independent of the
//! model width (2 heads × 32 on a 32-wide input project to 64), the query is scaled by
//! 1/sqrt(key_dim), and an output projection maps back to the query's width. burn's own
//! MultiHeadAttention ties the head size to the width, hence these projections.

use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused::{self, AttentionOptions};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, positive, rate,
    require_masked, require_rank,
};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadAttentionConfig {
    pub num_heads: usize,
    /// Size of each head's query and key.
    pub key_dim: usize,
    /// Size of each head's value (default `key_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_dim: Option<usize>,
    /// Dropout on the attention weights.
    #[serde(default)]
    pub dropout: f64,
    /// Ignore padded keys (the vectorizer's mask).
    #[serde(default)]
    pub masked: bool,
}

#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attention_output: Linear<B>,
    dropout: Dropout,
    num_heads: usize,
    key_dim: usize,
    value_dim: usize,
    masked: bool,
}

impl MultiHeadAttentionConfig {
    pub fn value_dim(&self) -> usize {
        self.value_dim.unwrap_or(self.key_dim)
    }

    /// Parameters of the four projections for query width `d_q` and key/value width `d_kv`.
    pub fn count(&self, d_q: usize, d_kv: usize) -> usize {
        let (h, k, v) = (self.num_heads, self.key_dim, self.value_dim());
        (d_q * h * k + h * k)
            + (d_kv * h * k + h * k)
            + (d_kv * h * v + h * v)
            + (h * v * d_q + d_q)
    }

    pub fn build<B: Backend>(
        &self,
        d_q: usize,
        d_kv: usize,
        device: &B::Device,
    ) -> MultiHeadAttention<B> {
        let (h, k, v) = (self.num_heads, self.key_dim, self.value_dim());
        // Keras draws the EinsumDense kernels [d, heads, dim] / [heads, dim, d] with fans
        // computed over those 3-d shapes, not over the flattened matrices.
        MultiHeadAttention {
            query: init::linear(d_q, h * k, (h * d_q, k * d_q), true, device),
            key: init::linear(d_kv, h * k, (h * d_kv, k * d_kv), true, device),
            value: init::linear(d_kv, h * v, (h * d_kv, v * d_kv), true, device),
            attention_output: init::linear(h * v, d_q, (h * v, h * d_q), true, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            num_heads: h,
            key_dim: k,
            value_dim: v,
            masked: self.masked,
        }
    }

    fn widths(inputs: &[TensorSpec]) -> (usize, usize) {
        let d_q = inputs[0].features().unwrap_or(0);
        let d_kv = inputs.get(1).and_then(|s| s.features()).unwrap_or(d_q);
        (d_q, d_kv)
    }
}

impl LayerDef for MultiHeadAttentionConfig {
    type Module<B: Backend> = MultiHeadAttention<B>;

    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        1..=2
    }
    fn validate(&self) -> Result<(), String> {
        positive(self.num_heads, "num_heads")?;
        positive(self.key_dim, "key_dim")?;
        positive(self.value_dim(), "value_dim")?;
        rate(self.dropout, "dropout")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_masked(self.masked, ctx)?;
        require_rank(inputs, &[2], "multi_head_attention (query)")?;
        if inputs.len() == 2 {
            require_rank(&inputs[1..], &[2], "multi_head_attention (value)")?;
        }
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        let (d_q, d_kv) = Self::widths(inputs);
        self.count(d_q, d_kv)
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<MultiHeadAttention<B>, String> {
        let (d_q, d_kv) = Self::widths(inputs);
        Ok(self.build(d_q, d_kv, device))
    }
}

impl<B: Backend> MultiHeadAttention<B> {
    /// Attention of `query` over `value` (keys = values), through the fused kernel: the
    /// projections stay [b, l, heads·dim] and the kernel reads each head in place.
    ///
    /// # Shapes
    /// - query: [batch, lq, d_q]; value: [batch, lk, d_kv]; mask: [batch, lk]
    /// - output: [batch, lq, d_q]
    pub fn attend(
        &self,
        query: Tensor<B, 3>,
        value: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let q = fused::linear_seq(&self.query, query);
        let k = fused::linear_seq(&self.key, value.clone());
        let v = fused::linear_seq(&self.value, value);
        let out = fused::attention(
            q,
            k,
            v,
            self.masked.then(|| mask.clone()),
            self.dropout.prob,
            AttentionOptions {
                num_heads: self.num_heads,
                scale: 1.0 / (self.key_dim as f32).sqrt(),
                // Keras' additive mask value for padded keys.
                mask_penalty: -1e9,
            },
        );
        fused::linear_seq(&self.attention_output, out)
    }
}

impl<B: Backend> LayerForward<B> for MultiHeadAttention<B> {
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let mut it = inputs.into_iter();
        let query = it.next().expect("query").sequence();
        let value = it
            .next()
            .map(Value::sequence)
            .unwrap_or_else(|| query.clone());
        vec![Value::Sequence(self.attend(query, value, &ctx.mask))]
    }
}
