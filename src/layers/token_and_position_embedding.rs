//! `token_and_position_embedding`: the lesson's learned token + position embeddings, summed.

use burn::nn::Embedding as BurnEmbedding;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::embedding::{require_ids, table};
use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenAndPositionEmbeddingConfig {
    pub embed_dim: usize,
    /// Vocabulary size; defaults to the vectorizer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Number of positions; defaults to the vectorizer's sequence length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<usize>,
}

#[derive(Module, Debug)]
pub struct TokenAndPositionEmbedding<B: Backend> {
    token_emb: BurnEmbedding<B>,
    pos_emb: BurnEmbedding<B>,
}

impl TokenAndPositionEmbeddingConfig {
    fn sizes(&self, ctx: &InferCtx) -> (usize, usize) {
        (
            self.vocab_size.unwrap_or(ctx.vocab_size),
            self.maxlen.or(ctx.sequence_length).unwrap_or(0),
        )
    }
}

impl LayerDef for TokenAndPositionEmbeddingConfig {
    type Module<B: Backend> = TokenAndPositionEmbedding<B>;

    fn validate(&self) -> Result<(), String> {
        positive(self.embed_dim, "embed_dim")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_ids(inputs, "token_and_position_embedding")?;
        let (vocab, maxlen) = self.sizes(ctx);
        if maxlen == 0 {
            return Err(
                "`maxlen` is needed when the vectorizer has no fixed sequence length".into(),
            );
        }
        if vocab < ctx.vocab_size {
            return Err(format!(
                "vocab_size {vocab} is smaller than the vectorizer's vocabulary ({})",
                ctx.vocab_size
            ));
        }
        match inputs[0].dims[0] {
            Some(len) if len > maxlen => {
                return Err(format!("sequences of length {len} exceed maxlen {maxlen}"));
            }
            _ => {}
        }
        Ok(vec![(
            "output".into(),
            TensorSpec::float(vec![inputs[0].dims[0], Some(self.embed_dim)]),
        )])
    }
    fn param_count(&self, _: &[TensorSpec], ctx: &InferCtx) -> usize {
        let (vocab, maxlen) = self.sizes(ctx);
        (vocab + maxlen) * self.embed_dim
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        ctx: &InferCtx,
        device: &B::Device,
    ) -> Result<TokenAndPositionEmbedding<B>, String> {
        let (vocab, maxlen) = self.sizes(ctx);
        Ok(TokenAndPositionEmbedding {
            token_emb: table(vocab, self.embed_dim, device),
            pos_emb: table(maxlen, self.embed_dim, device),
        })
    }
}

impl<B: Backend> LayerForward<B> for TokenAndPositionEmbedding<B> {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let ids = inputs.into_iter().next().expect("one input").ids();
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..len as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, len]);
        vec![Value::Sequence(
            self.token_emb.forward(ids) + self.pos_emb.forward(positions),
        )]
    }
}
