//! `embedding`: token ids to vectors (Keras `Embedding`, uniform ±0.05 init).

use burn::nn::Embedding as BurnEmbedding;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, ValueKind, init, positive,
};

/// Keras' `embeddings_initializer="uniform"` range.
pub const EMBEDDING_INIT: f64 = 0.05;

/// A learned vector per token id (Keras' `Embedding`): token ids in, a sequence of vectors out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// The size of each token's vector: the features of the output sequence.
    pub output_dim: usize,
    /// Rows in the table: how many token ids it covers (default: the vectorizer's vocabulary
    /// size; never smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_dim: Option<usize>,
}

#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    embedding: BurnEmbedding<B>,
}

/// The table's rows of `ids` [batch, length] (int64): [batch, length, d].
pub(crate) fn gather_rows<B: Backend>(
    g: &mut OnnxGraph,
    table: &BurnEmbedding<B>,
    ids: &str,
) -> String {
    let weight = g.weight("embeddings", &table.weight.val());
    g.op("Gather", &[&weight, ids], vec![("axis", Attr::Int(0))])
}

/// The check of the layers that read token ids: `inputs[0]` is (None, length) ids.
pub(crate) fn require_ids(inputs: &[TensorSpec], what: &str) -> Result<(), String> {
    if inputs[0].kind != ValueKind::Ids || inputs[0].rank() != 1 {
        return Err(format!(
            "{what} needs token ids (None, length), got {}",
            inputs[0]
        ));
    }
    Ok(())
}

/// A `rows` × `dim` table, uniform in ±[`EMBEDDING_INIT`] as Keras starts one.
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
    /// # Shapes
    /// - input: token ids [batch, length]; output: [batch, length, output_dim]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let ids = inputs.into_iter().next().expect("one input").ids();
        vec![Value::Sequence(self.embedding.forward(ids))]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let ids = &inputs[0].name;
        Ok(vec![OnnxValue::new(
            gather_rows(g, &self.embedding, ids),
            3,
        )])
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::layers::testing::{B, forward_ctx, ids, tensor, values};

    fn ctx(vocab_size: usize) -> InferCtx {
        InferCtx {
            vocab_size,
            sequence_length: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn each_id_looks_up_its_own_row() {
        let c = EmbeddingConfig {
            output_dim: 2,
            input_dim: None,
        };
        let spec = [TensorSpec::ids(Some(3))];
        let mut layer = c.init::<B>(&spec, &ctx(4), &Default::default()).unwrap();
        // Row i holds [10·i, 10·i + 1].
        let table = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0];
        layer.embedding.weight = Param::from_tensor(tensor(&table, [4, 2]));
        let out = layer.forward(
            vec![Value::Ids(ids(&[&[2, 0, 3], &[1, 1, 0]]))],
            &forward_ctx(&[&[1.0; 3], &[1.0; 3]]),
        );
        assert_eq!(
            values(out[0].clone().sequence()),
            vec![
                20.0, 21.0, 0.0, 1.0, 30.0, 31.0, 10.0, 11.0, 10.0, 11.0, 0.0, 1.0
            ]
        );
    }

    #[test]
    fn parameter_count_matches_the_built_table() {
        let spec = [TensorSpec::ids(Some(3))];
        for input_dim in [None, Some(9)] {
            let c = EmbeddingConfig {
                output_dim: 5,
                input_dim,
            };
            let built = c.init::<B>(&spec, &ctx(7), &Default::default()).unwrap();
            assert_eq!(c.param_count(&spec, &ctx(7)), built.num_params());
            assert_eq!(built.num_params(), input_dim.unwrap_or(7) * 5);
        }
    }

    #[test]
    fn ids_become_a_sequence_and_a_short_table_is_refused() {
        let c = EmbeddingConfig {
            output_dim: 5,
            input_dim: Some(6),
        };
        let out = c.infer(&[TensorSpec::ids(None)], &ctx(6)).unwrap();
        assert_eq!(out[0].1, TensorSpec::float(vec![None, Some(5)]));
        let short = c.infer(&[TensorSpec::ids(Some(3))], &ctx(8)).unwrap_err();
        assert!(
            short.contains("input_dim 6 is smaller than the vectorizer's vocabulary (8)"),
            "{short}"
        );
        let float = c
            .infer(&[TensorSpec::float(vec![Some(3), Some(2)])], &ctx(6))
            .unwrap_err();
        assert!(float.contains("needs token ids"), "{float}");
        let zero = EmbeddingConfig {
            output_dim: 0,
            input_dim: None,
        };
        assert!(zero.validate().unwrap_err().contains("`output_dim`"));
    }
}
