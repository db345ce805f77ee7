//! The encoder written as ONNX nodes: the same embeddings, layers and pooler as
//! [`HfEncoder::encode`] and [`HfEncoder::pool`], family by family, for `pipe export --format
//! onnx`.

use burn::prelude::*;

use super::{EncoderLayer, HfEncoder, HiddenActivation, Positions, disentangled, modernbert};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::{Attr, GraphInput, OnnxGraph, OnnxValue};
use crate::pretrained::encoder_config::ModernBertOptions;
use crate::pretrained::{Family, PoolerActivation, RelativeAttention};

impl<B: Backend> HfEncoder<B> {
    /// The outputs in [`forward`](super::LayerForward::forward)'s order, from the token ids.
    pub(super) fn write_onnx(
        &self,
        g: &mut OnnxGraph,
        ids: &str,
    ) -> Result<Vec<OnnxValue>, String> {
        let mask = g.mask();
        let mut x = self.embed_onnx(g, ids, &mask)?;
        let mut states = Vec::new();
        if let Some(m) = &self.modern {
            states = self.encode_modern_onnx(g, m, x, &mask)?;
        } else {
            let rel = self.relative_embeddings_onnx(g);
            // transformers adds the most negative f32 to padded keys' scores.
            let bias = g.key_bias(&mask, f32::MIN);
            for (i, layer) in self.encoder.layer.iter().enumerate() {
                g.push_scope(&format!("layer.{i}"));
                x = self.layer_onnx(g, layer, &x, &bias, &mask, rel.as_deref())?;
                g.pop_scope();
                states.push(x.clone());
            }
        }
        let sequence = states.last().expect("at least one layer").clone();
        let pooled = self.pool_onnx(g, &sequence, &mask);
        let cls = g.take_position(&sequence, 0);
        let mean = g.mean_over_positions(&sequence, Some(&mask));
        let mut outputs = vec![
            OnnxValue::new(pooled, 2),
            OnnxValue::new(sequence, 3),
            OnnxValue::new(cls, 2),
            OnnxValue::new(mean, 2),
        ];
        outputs.extend(states.into_iter().map(|s| OnnxValue::new(s, 3)));
        let default = outputs.remove(self.pooling.output_index());
        outputs.insert(0, default);
        Ok(outputs)
    }

    /// The feed-forward activation.
    pub(super) fn act_onnx(&self, g: &mut OnnxGraph, x: &str) -> String {
        match self.activation {
            HiddenActivation::Gelu => g.gelu(x),
            HiddenActivation::GeluApproximate => gelu_tanh(g, x),
            HiddenActivation::Relu => g.op("Relu", &[x], vec![]),
        }
    }

    /// As [`HfEncoder::embed`].
    fn embed_onnx(&self, g: &mut OnnxGraph, ids: &str, mask: &str) -> Result<String, String> {
        g.push_scope("embeddings");
        let e = &self.embeddings;
        let words = g.weight("word_embeddings", &e.word_embeddings.weight.val());
        let mut x = g.op("Gather", &[&words, ids], vec![("axis", Attr::Int(0))]);
        if let Some(table) = &e.position_embeddings {
            let table = g.weight("position_embeddings", &table.weight.val());
            let positions = match self.positions {
                Positions::FromZero => {
                    let length = g.length_of(ids);
                    g.first_rows(&table, &length, 0)
                }
                Positions::AfterPadding(pad) => {
                    // The mask's running count over real tokens, after the padding id.
                    let real = g.input(GraphInput::AttentionMask);
                    let axis = g.int_scalar(1);
                    let count = g.op("CumSum", &[&real, &axis], vec![]);
                    let count = g.op("Mul", &[&count, &real], vec![]);
                    let pad = g.int_scalar(pad as i64);
                    let index = g.op("Add", &[&count, &pad], vec![]);
                    g.op("Gather", &[&table, &index], vec![("axis", Attr::Int(0))])
                }
            };
            x = g.op("Add", &[&x, &positions], vec![]);
        }
        if let Some(types) = &e.token_type_embeddings {
            let table = types.weight.val();
            let rows = table.dims()[0];
            let typed = if rows == 1 {
                // One type (RoBERTa's): its row for every token, so no `token_type_ids` input.
                g.weight("token_type_embeddings", &table)
            } else {
                let table = g.weight("token_type_embeddings", &table);
                let types = g.input(GraphInput::TokenTypeIds);
                g.op("Gather", &[&table, &types], vec![("axis", Attr::Int(0))])
            };
            x = g.op("Add", &[&x, &typed], vec![]);
        }
        let eps = self.layer_norm_eps;
        if self.family == Family::DebertaV2 {
            if let Some(projection) = &e.projection {
                x = g.linear(&x, projection);
            }
            let normed = g.layer_norm(&x, &e.layer_norm, eps);
            let m = g.unsqueeze(mask, &[2]);
            x = g.op("Mul", &[&normed, &m], vec![]);
        } else {
            x = g.layer_norm(&x, &e.layer_norm, eps);
            if let Some(projection) = &e.projection {
                x = g.linear(&x, projection);
            }
        }
        g.pop_scope();
        Ok(x)
    }

    /// As [`HfEncoder::layer_forward`]: attention over content (or DeBERTa's disentangled
    /// attention with `rel`), then the post-LayerNorm sublayers.
    fn layer_onnx(
        &self,
        g: &mut OnnxGraph,
        layer: &EncoderLayer<B>,
        x: &str,
        bias: &str,
        mask: &str,
        rel: Option<&str>,
    ) -> Result<String, String> {
        let sa = &layer.attention.self_attention;
        let context = match (&self.relative, rel) {
            (Some(r), Some(rel)) => self.disentangled_onnx(g, sa, r, x, rel, mask)?,
            _ => {
                let options = self.attention_options(self.hidden_size());
                let q = g.linear(x, &sa.query);
                let k = g.linear(x, &sa.key);
                let v = g.linear(x, &sa.value);
                let scores = g.attention_scores(&q, &k, self.num_heads, options.scale);
                g.attend(&scores, &v, self.num_heads, Some(bias))
            }
        };
        let eps = self.layer_norm_eps;
        let ao = &layer.attention.output;
        let projected = g.linear(&context, &ao.dense);
        let sum = g.op("Add", &[x, &projected], vec![]);
        let attended = g.layer_norm(&sum, &ao.layer_norm, eps);
        let inner = g.linear(&attended, &layer.intermediate.dense);
        let inner = self.act_onnx(g, &inner);
        let output = g.linear(&inner, &layer.output.dense);
        let sum = g.op("Add", &[&attended, &output], vec![]);
        Ok(g.layer_norm(&sum, &layer.output.layer_norm, eps))
    }

    /// As [`HfEncoder::pool`].
    fn pool_onnx(&self, g: &mut OnnxGraph, sequence: &str, mask: &str) -> String {
        g.push_scope("pooler");
        let first = match &self.modern {
            Some(m) if m.mean_pooling => g.mean_over_positions(sequence, Some(mask)),
            _ => g.take_position(sequence, 0),
        };
        let dense = g.linear(&first, &self.pooler.dense);
        let activated = match self.pooler_activation {
            PoolerActivation::Tanh => g.op("Tanh", &[&dense], vec![]),
            PoolerActivation::Relu => g.op("Relu", &[&dense], vec![]),
            PoolerActivation::Gelu => g.gelu(&dense),
        };
        let out = match &self.pooler.norm {
            Some(norm) => g.layer_norm(&activated, norm, self.layer_norm_eps),
            None => activated,
        };
        g.pop_scope();
        out
    }

    /// As [`HfEncoder::relative_embeddings`]: DeBERTa's table, normalised where configured.
    fn relative_embeddings_onnx(&self, g: &mut OnnxGraph) -> Option<String> {
        let table = self.encoder.rel_embeddings.as_ref()?.weight.val();
        g.push_scope("rel_embeddings");
        let table = g.weight("weight", &table);
        let out = match &self.encoder.layer_norm {
            Some(norm) => g.layer_norm(&table, norm, self.layer_norm_eps),
            None => table,
        };
        g.pop_scope();
        Some(out)
    }

    /// As [`disentangled::context`]: content scores
    /// plus content-to-position and position-to-content scores read at each pair's relative
    /// row, padded pairs set to the lowest f32.
    fn disentangled_onnx(
        &self,
        g: &mut OnnxGraph,
        sa: &super::EncoderSelfAttention<B>,
        r: &RelativeAttention,
        x: &str,
        rel: &str,
        mask: &str,
    ) -> Result<String, String> {
        let heads = self.num_heads;
        let d = self.hidden_size() / heads;
        let q_proj = g.linear(x, &sa.query);
        let k_proj = g.linear(x, &sa.key);
        let v = g.linear(x, &sa.value);
        let q = g.split_heads(&q_proj, heads);
        let k = g.split_heads(&k_proj, heads);
        let k_t = g.transpose(&k, &[0, 1, 3, 2]);
        let mut scores = g.op("MatMul", &[&q, &k_t], vec![]);
        // index[i, j]: the relative row of distance i − j, from a table by distance.
        let rows = disentangled::relative_rows_by_distance(g.max_length, r);
        let table = g.int_table("relative_rows", &rows);
        let distance = g.distances(x);
        let offset = g.int_scalar(g.max_length as i64 - 1);
        let distance = g.op("Add", &[&distance, &offset], vec![]);
        let index = g.op("Gather", &[&table, &distance], vec![("axis", Attr::Int(0))]);
        let shape = g.op("Shape", &[&scores], vec![]);
        let rel = g.unsqueeze(rel, &[0]);
        let positions_by = |g: &mut OnnxGraph, projection: &burn::nn::Linear<B>| {
            let p = g.linear(&rel, projection);
            let p = g.split_heads(&p, heads);
            g.transpose(&p, &[0, 1, 3, 2])
        };
        if r.c2p {
            let pos_key = positions_by(g, sa.pos_key.as_ref().unwrap_or(&sa.key));
            let all = g.op("MatMul", &[&q, &pos_key], vec![]);
            let at = g.op("Expand", &[&index, &shape], vec![]);
            let c2p = g.op("GatherElements", &[&all, &at], vec![("axis", Attr::Int(3))]);
            scores = g.op("Add", &[&scores, &c2p], vec![]);
        }
        if r.p2c {
            let pos_query = positions_by(g, sa.pos_query.as_ref().unwrap_or(&sa.query));
            let all = g.op("MatMul", &[&k, &pos_query], vec![]);
            let index_t = g.transpose(&index, &[1, 0]);
            let at = g.op("Expand", &[&index_t, &shape], vec![]);
            let p2c = g.op("GatherElements", &[&all, &at], vec![("axis", Attr::Int(3))]);
            let p2c = g.transpose(&p2c, &[0, 1, 3, 2]);
            scores = g.op("Add", &[&scores, &p2c], vec![]);
        }
        let factor = 1 + usize::from(r.c2p) + usize::from(r.p2c);
        let scores = g.with_scalar("Div", &scores, ((d * factor) as f32).sqrt());
        let (mq, mk) = (g.unsqueeze(mask, &[1, 3]), g.unsqueeze(mask, &[1, 2]));
        let valid = g.op("Mul", &[&mq, &mk], vec![]);
        let half = g.scalar(0.5);
        let padded = g.op("Less", &[&valid, &half], vec![]);
        let lowest = g.scalar(f32::MIN);
        let scores = g.op("Where", &[&padded, &lowest, &scores], vec![]);
        Ok(g.attend(&scores, &v, heads, None))
    }

    /// As [`HfEncoder::encode_modern`]: ModernBERT's pre-LayerNorm layers, the last output
    /// normalised.
    fn encode_modern_onnx(
        &self,
        g: &mut OnnxGraph,
        m: &ModernBertOptions,
        mut x: String,
        mask: &str,
    ) -> Result<Vec<String>, String> {
        let heads = self.num_heads;
        let head_dim = self.hidden_size() / heads;
        let tables = |g: &mut OnnxGraph, what: &str, base: f64| {
            let (cos, sin) = modernbert::rotary_values(g.max_length, head_dim, base);
            let dims = [g.max_length as i64, head_dim as i64];
            let cos = g.floats(&format!("{what}_cos"), &dims, &cos);
            let sin = g.floats(&format!("{what}_sin"), &dims, &sin);
            let length = g.length_of(mask);
            (
                g.first_rows(&cos, &length, 0),
                g.first_rows(&sin, &length, 0),
            )
        };
        let global = tables(g, "global_rotary", m.global_rope_theta);
        let local = tables(g, "local_rotary", m.local_rope_theta);
        let global_bias = g.key_bias(mask, f32::MIN);
        let local_bias = window_bias(g, mask, m.half_window);
        let mut states = Vec::new();
        for (i, layer) in self.encoder.pre_norm_layer.iter().enumerate() {
            g.push_scope(&format!("layer.{i}"));
            let (rotary, bias) = match m.global_layers[i] {
                true => (&global, &global_bias),
                false => (&local, &local_bias),
            };
            x = self.modern_layer_onnx(g, layer, &x, rotary, bias);
            g.pop_scope();
            states.push(x.clone());
        }
        if let (Some(norm), Some(last)) = (&self.encoder.final_norm, states.pop()) {
            states.push(g.layer_norm(&last, norm, self.layer_norm_eps));
        }
        Ok(states)
    }

    /// One ModernBERT layer: x + attention(attn_norm(x)), then + GeGLU(mlp_norm(x)).
    fn modern_layer_onnx(
        &self,
        g: &mut OnnxGraph,
        layer: &modernbert::PreNormLayer<B>,
        x: &str,
        (cos, sin): &(String, String),
        bias: &str,
    ) -> String {
        let eps = self.layer_norm_eps;
        let heads = self.num_heads;
        let h = self.hidden_size() as i64;
        let input = match &layer.attn_norm {
            Some(norm) => g.layer_norm(x, norm, eps),
            None => x.to_string(),
        };
        let qkv = g.linear(&input, &layer.qkv);
        let sizes = g.ints(&[h, h, h]);
        let parts = g.op_n("Split", &[&qkv, &sizes], 3, vec![("axis", Attr::Int(2))]);
        let mut rotated = Vec::new();
        for part in &parts[..2] {
            let p = g.split_heads(part, heads);
            let halves = g.op_n("Split", &[&p], 2, vec![("axis", Attr::Int(3))]);
            let negated = g.op("Neg", &[&halves[1]], vec![]);
            let turned = g.op(
                "Concat",
                &[&negated, &halves[0]],
                vec![("axis", Attr::Int(3))],
            );
            let a = g.op("Mul", &[&p, cos], vec![]);
            let b = g.op("Mul", &[&turned, sin], vec![]);
            rotated.push(g.op("Add", &[&a, &b], vec![]));
        }
        let k_t = g.transpose(&rotated[1], &[0, 1, 3, 2]);
        let scores = g.op("MatMul", &[&rotated[0], &k_t], vec![]);
        let head_dim = (h as usize / heads) as f32;
        let scores = g.with_scalar("Div", &scores, head_dim.sqrt());
        let context = g.attend(&scores, &parts[2], heads, Some(bias));
        let attended = g.linear(&context, &layer.attention_output);
        let x = g.op("Add", &[x, &attended], vec![]);
        let normed = g.layer_norm(&x, &layer.mlp_norm, eps);
        let both = g.linear(&normed, &layer.mlp_input);
        let halves = g.op_n("Split", &[&both], 2, vec![("axis", Attr::Int(2))]);
        let activated = self.act_onnx(g, &halves[0]);
        let inner = g.op("Mul", &[&activated, &halves[1]], vec![]);
        let out = g.linear(&inner, &layer.mlp_output);
        g.op("Add", &[&x, &out], vec![])
    }

    /// The hidden size, from the word embeddings' projection or width.
    fn hidden_size(&self) -> usize {
        let e = &self.embeddings;
        match &e.projection {
            Some(p) => p.weight.dims()[1],
            None => e.word_embeddings.weight.dims()[1],
        }
    }
}

/// A local layer's additive mask [batch, 1, length, length]: the lowest f32 where the key is
/// padding or more than `half_window` positions from the query, else 0.
fn window_bias(g: &mut OnnxGraph, mask: &str, half_window: usize) -> String {
    let distance = g.distances(mask);
    let distance = g.op("Abs", &[&distance], vec![]);
    let window = g.int_scalar(half_window as i64);
    let inside = g.op("LessOrEqual", &[&distance, &window], vec![]);
    let inside = g.op(
        "Cast",
        &[&inside],
        vec![("to", Attr::Int(DataType::Float as i64))],
    );
    let inside = g.unsqueeze(&inside, &[0, 1]);
    let keys = g.unsqueeze(mask, &[1, 2]);
    let keep = g.op("Mul", &[&inside, &keys], vec![]);
    let one = g.scalar(1.0);
    let dropped = g.op("Sub", &[&one, &keep], vec![]);
    g.with_scalar("Mul", &dropped, f32::MIN)
}

/// GELU's tanh approximation: x · (1 + tanh(√(2/π) · (x + 0.044715·x³))) / 2.
fn gelu_tanh(g: &mut OnnxGraph, x: &str) -> String {
    let cube = {
        let sq = g.op("Mul", &[x, x], vec![]);
        g.op("Mul", &[&sq, x], vec![])
    };
    let cube = g.with_scalar("Mul", &cube, 0.044715);
    let inner = g.op("Add", &[x, &cube], vec![]);
    let inner = g.with_scalar("Mul", &inner, (2.0 / std::f32::consts::PI).sqrt());
    let t = g.op("Tanh", &[&inner], vec![]);
    let one_plus = g.with_scalar("Add", &t, 1.0);
    let y = g.op("Mul", &[x, &one_plus], vec![]);
    g.with_scalar("Mul", &y, 0.5)
}
