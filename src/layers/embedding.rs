//! `embedding`: token ids to vectors (Keras `Embedding`, uniform ±0.05 init).

use burn::nn::Embedding as BurnEmbedding;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, ValueKind, init, positive,
};

/// Keras' `embeddings_initializer="uniform"` range.
pub const EMBEDDING_INIT: f64 = 0.05;

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Vector size.
    pub output_dim: usize,
    /// Vocabulary size; defaults to the vectorizer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_dim: Option<usize>,
}

#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    embedding: BurnEmbedding<B>,
}

pub(crate) fn require_ids(inputs: &[TensorSpec], what: &str) -> Result<(), String> {
    if inputs[0].kind != ValueKind::Ids || inputs[0].rank() != 1 {
        return Err(format!(
            "{what} needs token ids (None, length), got {}",
            inputs[0]
        ));
    }
    Ok(())
}

pub(crate) fn table<B: Backend>(rows: usize, dim: usize, device: &B::Device) -> BurnEmbedding<B> {
    BurnEmbedding {
        weight: init::uniform([rows, dim], EMBEDDING_INIT, device),
    }
}

impl EmbeddingConfig {
    fn vocab(&self, ctx: &InferCtx) -> usize {
        self.input_dim.unwrap_or(ctx.vocab_size)
    }
}

impl LayerDef for EmbeddingConfig {
    type Module<B: Backend> = Embedding<B>;

    fn validate(&self) -> Result<(), String> {
        positive(self.output_dim, "output_dim")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_ids(inputs, "embedding")?;
        if self.vocab(ctx) < ctx.vocab_size {
            return Err(format!(
                "input_dim {} is smaller than the vectorizer's vocabulary ({})",
                self.vocab(ctx),
                ctx.vocab_size
            ));
        }
        Ok(vec![(
            "output".into(),
            TensorSpec::float(vec![inputs[0].dims[0], Some(self.output_dim)]),
        )])
    }
    fn param_count(&self, _: &[TensorSpec], ctx: &InferCtx) -> usize {
        self.vocab(ctx) * self.output_dim
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        ctx: &InferCtx,
        device: &B::Device,
    ) -> Result<Embedding<B>, String> {
        Ok(Embedding {
            embedding: table(self.vocab(ctx), self.output_dim, device),
        })
    }
}

impl<B: Backend> LayerForward<B> for Embedding<B> {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let ids = inputs.into_iter().next().expect("one input").ids();
        vec![Value::Sequence(self.embedding.forward(ids))]
    }
}
