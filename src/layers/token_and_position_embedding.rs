//! `token_and_position_embedding`: the lesson's learned token + position embeddings, summed.

use burn::nn::Embedding as BurnEmbedding;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{OnnxGraph, OnnxValue};

use super::embedding::{gather_rows, require_ids, table};
use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, positive};

/// A learned vector per token id plus a learned vector per position (the Keras transformer
/// lesson's `TokenAndPositionEmbedding`): token ids in, a sequence of vectors out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenAndPositionEmbeddingConfig {
    /// The size of each token's (and position's) vector: the features of the output sequence.
    pub embed_dim: usize,
    /// Rows in the token table: how many token ids it covers (default: the vectorizer's
    /// vocabulary size; never smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Rows in the position table, in tokens: the longest sequence it reads (default: the
    /// vectorizer's `output_sequence_length`; needed when that is not fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<usize>,
}

#[derive(Module, Debug)]
pub struct TokenAndPositionEmbedding<B: Backend> {
    token_emb: BurnEmbedding<B>,
    pos_emb: BurnEmbedding<B>,
}

impl TokenAndPositionEmbeddingConfig {
    /// The token and position tables' row counts.
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
    /// # Shapes
    /// - input: token ids [batch, length], length ≤ maxlen; output: [batch, length, embed_dim]
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
    /// The position table's first `length` rows, added to every row of the batch.
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let ids = &inputs[0].name;
        let tokens = gather_rows(g, &self.token_emb, ids);
        let length = g.length_of(ids);
        let table = g.weight("position_embeddings", &self.pos_emb.weight.val());
        let positions = g.first_rows(&table, &length, 0);
        Ok(vec![OnnxValue::new(
            g.op("Add", &[&tokens, &positions], vec![]),
            3,
        )])
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::layers::testing::{B, forward_ctx, ids, tensor, values};

    fn config(vocab_size: Option<usize>, maxlen: Option<usize>) -> TokenAndPositionEmbeddingConfig {
        TokenAndPositionEmbeddingConfig {
            embed_dim: 2,
            vocab_size,
            maxlen,
        }
    }

    fn ctx(vocab_size: usize, sequence_length: Option<usize>) -> InferCtx {
        InferCtx {
            vocab_size,
            sequence_length,
            ..Default::default()
        }
    }

    #[test]
    fn each_token_vector_gets_its_positions_vector_added() {
        let spec = [TensorSpec::ids(Some(3))];
        let mut layer = config(None, None)
            .init::<B>(&spec, &ctx(4, Some(3)), &Default::default())
            .unwrap();
        // Token i: [i, 10·i]; position p: [100·p, −p].
        layer.token_emb.weight =
            Param::from_tensor(tensor(&[0.0, 0.0, 1.0, 10.0, 2.0, 20.0, 3.0, 30.0], [4, 2]));
        layer.pos_emb.weight =
            Param::from_tensor(tensor(&[0.0, 0.0, 100.0, -1.0, 200.0, -2.0], [3, 2]));
        let out = layer.forward(
            vec![Value::Ids(ids(&[&[3, 1, 0], &[2, 2, 2]]))],
            &forward_ctx(&[&[1.0, 1.0, 0.0], &[1.0; 3]]),
        );
        assert_eq!(
            values(out[0].clone().sequence()),
            vec![
                3.0, 30.0, 101.0, 9.0, 200.0, -2.0, 2.0, 20.0, 102.0, 19.0, 202.0, 18.0
            ]
        );
        // A shorter batch (`padding = "longest"`) reads the first positions.
        let short = layer.forward(
            vec![Value::Ids(ids(&[&[1, 2]]))],
            &forward_ctx(&[&[1.0, 1.0]]),
        );
        assert_eq!(
            values(short[0].clone().sequence()),
            vec![1.0, 10.0, 102.0, 19.0]
        );
    }

    #[test]
    fn parameter_count_matches_the_built_tables() {
        let spec = [TensorSpec::ids(Some(3))];
        let context = ctx(5, Some(3));
        for c in [config(None, None), config(Some(8), Some(6))] {
            let built = c.init::<B>(&spec, &context, &Default::default()).unwrap();
            assert_eq!(c.param_count(&spec, &context), built.num_params(), "{c:?}");
        }
        assert_eq!(
            config(Some(8), Some(6)).param_count(&spec, &context),
            (8 + 6) * 2
        );
    }

    #[test]
    fn shape_rule_and_its_refusals() {
        let c = config(None, None);
        let out = c
            .infer(&[TensorSpec::ids(Some(3))], &ctx(5, Some(3)))
            .unwrap();
        assert_eq!(out[0].1, TensorSpec::float(vec![Some(3), Some(2)]));
        let err = c
            .infer(&[TensorSpec::ids(None)], &ctx(5, None))
            .unwrap_err();
        assert!(err.contains("`maxlen` is needed"), "{err}");
        let err = config(None, Some(2)).infer(&[TensorSpec::ids(Some(3))], &ctx(5, Some(3)));
        assert!(
            err.unwrap_err()
                .contains("sequences of length 3 exceed maxlen 2")
        );
        let err = config(Some(4), None).infer(&[TensorSpec::ids(Some(3))], &ctx(5, Some(3)));
        assert!(
            err.unwrap_err()
                .contains("vocab_size 4 is smaller than the vectorizer's vocabulary (5)")
        );
        let float = [TensorSpec::float(vec![Some(3), Some(2)])];
        assert!(
            c.infer(&float, &ctx(5, Some(3)))
                .unwrap_err()
                .contains("needs token ids")
        );
    }
}
