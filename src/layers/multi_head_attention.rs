//! `multi_head_attention` with Keras semantics: `key_dim` is per head and independent of the
//! model width (2 heads × 32 on a 32-wide input project to 64), the query is scaled by
//! 1/sqrt(key_dim), and an output projection maps back to the query's width. burn's own
//! MultiHeadAttention ties the head size to the width, hence these projections.

use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused::{self, AttentionOptions};
use crate::onnx::{OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, positive, rate,
    require_aligned, require_masked, require_rank,
};

/// Multi-head attention (Keras' `MultiHeadAttention`): with one input, self-attention; with
/// two (`inputs = [query, value]`), the first attends over the second (keys = values). The
/// output has the query's shape.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadAttentionConfig {
    /// Attention heads: independent attentions side by side, each with its own projections.
    pub num_heads: usize,
    /// Features of each head's query and key (per head, independent of the input's width;
    /// the scores are scaled by 1/sqrt(key_dim)).
    pub key_dim: usize,
    /// Features of each head's value (default: `key_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_dim: Option<usize>,
    /// Dropout on the attention weights while training, a rate in [0, 1) (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Give padded keys no weight, from the vectorizer's mask (default false). Needed with
    /// `padding = "longest"`; needs the value input's positions to be the tokens' (not after
    /// a `valid` or strided `conv1d`).
    #[serde(default)]
    pub masked: bool,
}

#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// [d_q, heads·key_dim]
    pub(crate) query: Linear<B>,
    /// [d_kv, heads·key_dim]
    pub(crate) key: Linear<B>,
    /// [d_kv, heads·value_dim]
    pub(crate) value: Linear<B>,
    /// [heads·value_dim, d_q]
    pub(crate) attention_output: Linear<B>,
    dropout: Dropout,
    num_heads: usize,
    key_dim: usize,
    value_dim: usize,
    masked: bool,
}

impl MultiHeadAttentionConfig {
    /// Features of each head's value.
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

    /// The layer for query width `d_q` and key/value width `d_kv`, Keras-initialised.
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
        // The mask covers the keys: the value input's positions.
        require_aligned(self.masked, inputs.last().expect("an input"), ctx)?;
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
            self.options(),
        );
        fused::linear_seq(&self.attention_output, out)
    }
}

/// Attention weights `softmax(q·kᵀ·scale + penalty·(1 − mask))` with plain tensor ops (the
/// fused kernel never materialises them): what `pipe attention` draws. Padded keys get exactly
/// 0 where a mask is given, since `exp(penalty)` underflows.
///
/// # Shapes
/// - q: [batch, lq, heads·dim]; k: [batch, lk, heads·dim]; mask: [batch, lk]
/// - output: [batch, heads, lq, lk], each row summing to 1
pub fn attention_weights<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    options: AttentionOptions,
) -> Tensor<B, 4> {
    crate::fused::reference::attention_probs(q, k, mask, None, options)
}

impl<B: Backend> MultiHeadAttention<B> {
    /// [`attend`](Self::attend) as ONNX nodes.
    pub fn attend_onnx(&self, g: &mut OnnxGraph, query: &str, value: &str) -> String {
        let options = self.options();
        let q = g.linear(query, &self.query);
        let k = g.linear(value, &self.key);
        let v = g.linear(value, &self.value);
        let bias = self.masked.then(|| {
            let mask = g.mask();
            g.key_bias(&mask, options.mask_penalty)
        });
        let scores = g.attention_scores(&q, &k, self.num_heads, options.scale);
        let context = g.attend(&scores, &v, self.num_heads, bias.as_deref());
        g.linear(&context, &self.attention_output)
    }

    fn options(&self) -> AttentionOptions {
        // Keras' additive mask value for padded keys.
        AttentionOptions::new(self.num_heads, 1.0 / (self.key_dim as f32).sqrt(), -1e9)
    }

    /// The attention weights [`attend`](Self::attend) applies.
    ///
    /// # Shapes
    /// - query: [batch, lq, d_q]; value: [batch, lk, d_kv]; mask: [batch, lk]
    /// - output: [batch, heads, lq, lk]
    pub fn weights(
        &self,
        query: Tensor<B, 3>,
        value: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
    ) -> Tensor<B, 4> {
        attention_weights(
            self.query.forward(query),
            self.key.forward(value),
            self.masked.then(|| mask.clone()),
            self.options(),
        )
    }
}

impl<B: Backend> LayerForward<B> for MultiHeadAttention<B> {
    /// # Shapes
    /// - inputs: query [batch, lq, d_q] and optionally value [batch, lk, d_kv] (default: the
    ///   query); ctx.mask: [batch, lk]
    /// - output: one [batch, heads, lq, lk]
    fn attention_maps(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
    ) -> Vec<(String, Tensor<B, 4>)> {
        let mut it = inputs.into_iter();
        let query = it.next().expect("query").sequence();
        let value = it
            .next()
            .map(Value::sequence)
            .unwrap_or_else(|| query.clone());
        vec![(String::new(), self.weights(query, value, &ctx.mask))]
    }

    /// # Shapes
    /// - inputs: query [batch, lq, d_q] and optionally value [batch, lk, d_kv] (default: the
    ///   query); ctx.mask: [batch, lk]
    /// - output: [batch, lq, d_q]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let mut it = inputs.into_iter();
        let query = it.next().expect("query").sequence();
        let value = it
            .next()
            .map(Value::sequence)
            .unwrap_or_else(|| query.clone());
        vec![Value::Sequence(self.attend(query, value, &ctx.mask))]
    }
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let query = &inputs[0].name;
        let value = inputs.get(1).map_or(query, |v| &v.name);
        Ok(vec![OnnxValue::new(self.attend_onnx(g, query, value), 3)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::plain::{self, Affine};
    use crate::layers::testing::{
        B, assert_close, forward_ctx, pattern, set_linear, tensor, values,
    };

    fn config(masked: bool) -> MultiHeadAttentionConfig {
        MultiHeadAttentionConfig {
            num_heads: 2,
            key_dim: 3,
            value_dim: Some(2),
            dropout: 0.0,
            masked,
        }
    }

    /// Query width 4, value width 5, every projection hand-set.
    fn hand_set(masked: bool) -> MultiHeadAttention<B> {
        let mut layer = config(masked).build::<B>(4, 5, &Default::default());
        set_linear(&mut layer.query, 1);
        set_linear(&mut layer.key, 3);
        set_linear(&mut layer.value, 5);
        set_linear(&mut layer.attention_output, 7);
        layer
    }

    const MASK: [&[f32]; 2] = [&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0]];

    /// Queries [2, 2, 4] and values [2, 3, 5].
    fn inputs(value_seed: usize) -> (Vec<f32>, Vec<f32>) {
        let query: Vec<f32> = pattern(16, 11).iter().map(|v| 2.0 * v).collect();
        let value: Vec<f32> = pattern(30, value_seed).iter().map(|v| 2.0 * v).collect();
        (query, value)
    }

    fn attend(layer: &MultiHeadAttention<B>, query: &[f32], value: &[f32]) -> Vec<f32> {
        let inputs = vec![
            Value::Sequence(tensor(query, [2, 2, 4])),
            Value::Sequence(tensor(value, [2, 3, 5])),
        ];
        values(
            layer.forward(inputs, &forward_ctx(&MASK))[0]
                .clone()
                .sequence(),
        )
    }

    #[test]
    fn constant_weights_match_a_plain_calculation() {
        let (query, value) = inputs(13);
        for masked in [true, false] {
            let layer = hand_set(masked);
            let (q_map, k_map, v_map, o_map) = (
                Affine::of(&layer.query),
                Affine::of(&layer.key),
                Affine::of(&layer.value),
                Affine::of(&layer.attention_output),
            );
            let mut expected = Vec::new();
            for (b, key_mask) in MASK.iter().enumerate() {
                let q_rows = plain::rows(&query[b * 8..(b + 1) * 8], 4);
                let v_rows = plain::rows(&value[b * 15..(b + 1) * 15], 5);
                let key_mask = if masked {
                    key_mask.to_vec()
                } else {
                    vec![1.0; 3]
                };
                let context = plain::attention(
                    &q_map.apply_rows(&q_rows),
                    &k_map.apply_rows(&v_rows),
                    &v_map.apply_rows(&v_rows),
                    &key_mask,
                    2,
                    1.0 / 3f32.sqrt(),
                );
                expected.extend(o_map.apply_rows(&context).concat());
            }
            assert_close(&attend(&layer, &query, &value), &expected, 1e-5);
        }
    }

    #[test]
    fn masked_padded_keys_change_nothing() {
        let (query, value) = inputs(13);
        // The same values but for row 0's padded position (the third).
        let mut changed = value.clone();
        for (i, v) in changed[10..15].iter_mut().enumerate() {
            *v = 50.0 - i as f32;
        }
        let masked = hand_set(true);
        assert_eq!(
            attend(&masked, &query, &changed),
            attend(&masked, &query, &value)
        );
        let unmasked = hand_set(false);
        assert_ne!(
            attend(&unmasked, &query, &changed),
            attend(&unmasked, &query, &value)
        );
    }

    #[test]
    fn attention_maps_are_the_query_over_the_value_input() {
        let (query, value) = inputs(13);
        let layer = hand_set(true);
        let inputs = vec![
            Value::Sequence(tensor(&query, [2, 2, 4])),
            Value::Sequence(tensor(&value, [2, 3, 5])),
        ];
        let maps = layer.attention_maps(inputs, &forward_ctx(&MASK));
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].0, "");
        assert_eq!(maps[0].1.dims(), [2, 2, 2, 3]);
        let (q_map, k_map) = (Affine::of(&layer.query), Affine::of(&layer.key));
        let mut expected = Vec::new();
        for (b, key_mask) in MASK.iter().enumerate() {
            let q = q_map.apply_rows(&plain::rows(&query[b * 8..(b + 1) * 8], 4));
            let k = k_map.apply_rows(&plain::rows(&value[b * 15..(b + 1) * 15], 5));
            let weights = plain::attention_weights(&q, &k, key_mask, 2, 1.0 / 3f32.sqrt());
            expected.extend(weights.concat().concat());
        }
        assert_close(&values(maps[0].1.clone()), &expected, 1e-5);
    }

    #[test]
    fn parameter_count_matches_the_built_layer() {
        let ctx = InferCtx::default();
        let seq = |d| TensorSpec::float(vec![Some(3), Some(d)]);
        for (c, inputs) in [
            (config(false), vec![seq(6)]),
            (config(false), vec![seq(4), seq(5)]),
            (
                MultiHeadAttentionConfig {
                    value_dim: None,
                    ..config(false)
                },
                vec![seq(4), seq(5)],
            ),
        ] {
            let built = c.init::<B>(&inputs, &ctx, &Default::default()).unwrap();
            assert_eq!(
                c.param_count(&inputs, &ctx),
                built.num_params(),
                "{c:?} on {inputs:?}"
            );
        }
        // Keras: MultiHeadAttention(num_heads=2, key_dim=32) on a 32-wide input.
        let keras = MultiHeadAttentionConfig {
            num_heads: 2,
            key_dim: 32,
            value_dim: None,
            dropout: 0.0,
            masked: false,
        };
        assert_eq!(keras.param_count(&[seq(32)], &ctx), 8416);
    }

    #[test]
    fn the_output_has_the_query_shape_and_bad_inputs_are_refused() {
        let ctx = InferCtx {
            sequence_length: Some(3),
            ..Default::default()
        };
        let (query, value) = (
            TensorSpec::float(vec![Some(2), Some(4)]),
            TensorSpec::float(vec![Some(3), Some(5)]),
        );
        let out = config(true)
            .infer(&[query.clone(), value.clone()], &ctx)
            .unwrap();
        assert_eq!(out[0].1, query);
        let vector = TensorSpec::float(vec![Some(4)]);
        let err = config(false).infer(&[vector], &ctx).unwrap_err();
        assert!(
            err.contains("multi_head_attention (query) needs input of rank [2]"),
            "{err}"
        );
        let err = config(false)
            .infer(&[query.clone(), TensorSpec::ids(Some(3))], &ctx)
            .unwrap_err();
        assert!(err.contains("(value) needs float features"), "{err}");
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..ctx.clone()
        };
        assert!(
            config(false)
                .infer(std::slice::from_ref(&value), &dynamic)
                .unwrap_err()
                .contains("masked = true")
        );
        // The mask covers the value input's positions, which must be the tokens'.
        let err = config(true)
            .infer(&[value.clone(), query.clone()], &ctx)
            .unwrap_err();
        assert!(err.contains("one position per token (3)"), "{err}");
        let bad_dropout = MultiHeadAttentionConfig {
            dropout: 1.0,
            ..config(false)
        };
        assert!(bad_dropout.validate().unwrap_err().contains("`dropout`"));
        let no_heads = MultiHeadAttentionConfig {
            num_heads: 0,
            ..config(false)
        };
        assert!(no_heads.validate().unwrap_err().contains("`num_heads`"));
    }

    fn ctx_mask(rows: &[&[f32]]) -> Tensor<B, 2> {
        let (b, l) = (rows.len(), rows[0].len());
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([b, l])
    }

    #[test]
    fn weights_rows_sum_to_one_and_padded_keys_get_none() {
        let device = Default::default();
        let config = MultiHeadAttentionConfig {
            num_heads: 2,
            key_dim: 4,
            value_dim: None,
            dropout: 0.0,
            masked: true,
        };
        let layer = config.build::<B>(6, 6, &device);
        let x = Tensor::<B, 3>::random(
            [2, 5, 6],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mask = ctx_mask(&[&[1.0, 1.0, 1.0, 0.0, 0.0], &[1.0, 1.0, 1.0, 1.0, 1.0]]);
        let w = layer.weights(x.clone(), x.clone(), &mask);
        assert_eq!(w.dims(), [2, 2, 5, 5]);
        let sums: Vec<f32> = w.clone().sum_dim(3).into_data().to_vec().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let padded: Vec<f32> = w
            .clone()
            .slice([0..1, 0..2, 0..5, 3..5])
            .into_data()
            .to_vec()
            .unwrap();
        assert!(padded.iter().all(|&p| p == 0.0), "{padded:?}");

        // The same weights are what the fused kernel applies: weights · V, heads merged and
        // projected, is the layer's output.
        let [b, l, _] = x.dims();
        let v = layer
            .value
            .forward(x.clone())
            .reshape([b, l, 2, 4])
            .swap_dims(1, 2);
        let merged = w.matmul(v).swap_dims(1, 2).reshape([b, l, 8]);
        let expected = layer.attention_output.forward(merged);
        let got = layer.attend(x.clone(), x, &mask);
        let diff: f32 = (got - expected).abs().max().into_scalar();
        assert!(
            diff < 1e-5,
            "fused attention differs from its weights by {diff}"
        );
    }
}
