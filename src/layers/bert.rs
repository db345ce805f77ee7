//! `bert`: a Hugging Face BERT encoder built from `config.json` (any size) and, by default,
//! loaded from `model.safetensors`. Exact erf GELU, LayerNorm eps from the config, additive
//! attention mask over keys, pooler = tanh(dense(h[:, 0])).
//!
//! Outputs: `pooled_output` (the pooler), `sequence_output` (last hidden states),
//! `cls_output` (h[:, 0]), `mean_output` (masked mean, as sentence-transformers) and
//! `encoder_outputs.N` (each encoder layer's output). `pooling` picks the default output.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Distribution;
use burn::tensor::activation::{relu, tanh};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::global_average_pooling_1d::masked_mean;
use super::layer_normalization::layer_norm;
use super::multi_head_attention::attention_weights;
use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, ValueKind};
use crate::fused::{self, AttentionOptions};
use crate::pretrained::{BertConfig, locate};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// `pooled_output`: tanh(dense(h[:, 0])), BERT's pooler.
    #[default]
    Cls,
    /// `mean_output`: mean of the last hidden states over real tokens.
    Mean,
    /// `sequence_output`: no pooling.
    None,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BertLayerConfig {
    /// A model folder or hub id (config.json, model.safetensors).
    pub from: String,
    /// Which output `input = "<this layer>"` refers to.
    #[serde(default)]
    pub pooling: Pooling,
    /// Load the pretrained weights (else: random init from the config, std 0.02).
    #[serde(default = "yes")]
    pub pretrained: bool,
    /// Dropout inside the encoder while it trains (default: the config's hidden_dropout_prob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertSublayerOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attention: BertSelfAttention<B>,
    pub output: BertSublayerOutput<B>,
}

#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertSublayerOutput<B>,
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

/// The feed-forward activation inside each encoder layer, from config.json's `hidden_act`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenActivation {
    /// `gelu`: exact (erf) GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: GELU's tanh approximation.
    GeluApproximate,
    /// `relu`.
    Relu,
}

impl HiddenActivation {
    /// The activation `hidden_act` names; `BertConfig::check` has refused any other name, and
    /// the tanh forms are the remaining ones.
    pub fn of(hidden_act: &str) -> Self {
        match hidden_act {
            "gelu" => HiddenActivation::Gelu,
            "relu" => HiddenActivation::Relu,
            _ => HiddenActivation::GeluApproximate,
        }
    }
}

/// The encoder and pooler, with field names that follow the Hugging Face tensor names.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: BertPooler<B>,
    num_heads: usize,
    #[module(skip)]
    activation: HiddenActivation,
    /// LayerNorm epsilon from the config (burn's LayerNorm keeps its own private).
    layer_norm_eps: f64,
    #[module(skip)]
    pooling: Pooling,
}

impl BertLayerConfig {
    pub fn model_dir(&self) -> Result<std::path::PathBuf, String> {
        locate(&self.from, &["config.json"])
    }
    pub fn bert_config(&self) -> Result<BertConfig, String> {
        BertConfig::load(&self.model_dir()?)
    }
    fn default_output(&self) -> usize {
        match self.pooling {
            Pooling::Cls => 0,
            Pooling::None => 1,
            Pooling::Mean => 3,
        }
    }
}

fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, 0.02),
        device,
    ))
}

fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    Linear {
        weight: normal([d_in, d_out], device),
        bias: Some(Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

fn embedding<B: Backend>(n: usize, d: usize, device: &B::Device) -> Embedding<B> {
    Embedding {
        weight: normal([n, d], device),
    }
}

impl<B: Backend> Bert<B> {
    /// Random weights as transformers initialises them (normal 0.02, zero biases, LayerNorm 1/0).
    pub fn init(
        c: &BertConfig,
        dropout: Option<f64>,
        pooling: Pooling,
        device: &B::Device,
    ) -> Self {
        let h = c.hidden_size;
        let hidden_dropout = || DropoutConfig::new(dropout.unwrap_or(c.hidden_dropout_prob)).init();
        let attention_dropout =
            || DropoutConfig::new(dropout.unwrap_or(c.attention_probs_dropout_prob)).init();
        let sub = |d_in: usize| BertSublayerOutput {
            dense: linear(d_in, h, device),
            layer_norm: layer_norm(h, c.layer_norm_eps, device),
            dropout: hidden_dropout(),
        };
        Bert {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(c.vocab_size, h, device),
                position_embeddings: embedding(c.max_position_embeddings, h, device),
                token_type_embeddings: embedding(c.type_vocab_size, h, device),
                layer_norm: layer_norm(h, c.layer_norm_eps, device),
                dropout: hidden_dropout(),
            },
            encoder: BertEncoder {
                layer: (0..c.num_hidden_layers)
                    .map(|_| BertLayer {
                        attention: BertAttention {
                            self_attention: BertSelfAttention {
                                query: linear(h, h, device),
                                key: linear(h, h, device),
                                value: linear(h, h, device),
                                dropout: attention_dropout(),
                            },
                            output: sub(h),
                        },
                        intermediate: BertIntermediate {
                            dense: linear(h, c.intermediate_size, device),
                        },
                        output: sub(c.intermediate_size),
                    })
                    .collect(),
            },
            pooler: BertPooler {
                dense: linear(h, h, device),
            },
            num_heads: c.num_attention_heads,
            activation: HiddenActivation::of(&c.hidden_act),
            layer_norm_eps: c.layer_norm_eps,
            pooling,
        }
    }

    /// Loads Hugging Face weights: with or without a `bert.` prefix, `[out, in]` Linear
    /// weights transposed, `LayerNorm.weight/bias` as gamma/beta; buffers such as
    /// `embeddings.position_ids` and heads such as `classifier.*` are ignored.
    pub fn load_safetensors(mut self, path: &std::path::Path) -> Result<Self, String> {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"^bert\.", "")
            .with_key_remapping(r"\.LayerNorm\.", ".layer_norm.")
            .with_key_remapping(r"\.attention\.self\.", ".attention.self_attention.")
            .allow_partial(true);
        let result = self
            .load_from(&mut store)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !result.missing.is_empty() || !result.errors.is_empty() {
            return Err(format!(
                "{}: not a BERT checkpoint for this config (missing: {:?}; errors: {:?})",
                path.display(),
                result.missing,
                result.errors
            ));
        }
        Ok(self)
    }

    fn act(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.activation {
            HiddenActivation::Gelu => fused::gelu(x),
            HiddenActivation::GeluApproximate => burn::tensor::activation::gelu_approximate(x),
            HiddenActivation::Relu => relu(x),
        }
    }

    /// Hidden states after each encoder layer (the last is `sequence_output`).
    pub fn encode(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
    ) -> Vec<Tensor<B, 3>> {
        let mut x = self.embed(ids, token_types);
        let mut states = Vec::with_capacity(self.encoder.layer.len());
        for layer in &self.encoder.layer {
            x = self.layer_forward(layer, x, &mask);
            states.push(x.clone());
        }
        states
    }

    /// Word + position + token-type embeddings, normalised.
    ///
    /// # Shapes
    /// - ids, token_types: [batch, length]; output: [batch, length, hidden]
    fn embed(&self, ids: Tensor<B, 2, Int>, token_types: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..l as i64, &device)
            .unsqueeze::<2>()
            .expand([b, l]);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(token_types);
        fused::dropout(self.norm(&e.layer_norm, x), e.dropout.prob)
    }

    fn attention_options(&self, hidden: usize) -> AttentionOptions {
        AttentionOptions {
            num_heads: self.num_heads,
            scale: 1.0 / ((hidden / self.num_heads) as f32).sqrt(),
            // transformers adds the most negative f32 to padded keys' scores.
            mask_penalty: f32::MIN,
        }
    }

    /// Each encoder layer's self-attention weights, `encoder.0` first.
    ///
    /// # Shapes
    /// - ids, token_types, mask: [batch, length]
    /// - output: one [batch, heads, length, length] per encoder layer
    pub fn attention(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
    ) -> Vec<Tensor<B, 4>> {
        let mut x = self.embed(ids, token_types);
        let mut maps = Vec::with_capacity(self.encoder.layer.len());
        for layer in &self.encoder.layer {
            let sa = &layer.attention.self_attention;
            maps.push(attention_weights(
                sa.query.forward(x.clone()),
                sa.key.forward(x.clone()),
                Some(mask.clone()),
                self.attention_options(x.dims()[2]),
            ));
            x = self.layer_forward(layer, x, &mask);
        }
        maps
    }

    fn norm(&self, norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        fused::layer_norm_module(norm, x, self.layer_norm_eps)
    }

    /// One encoder layer.
    ///
    /// # Shapes
    /// - x: [batch, length, hidden]; mask: [batch, length]; output: [batch, length, hidden]
    fn layer_forward(
        &self,
        layer: &BertLayer<B>,
        x: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let h = x.dims()[2];
        let sa = &layer.attention.self_attention;
        let context = fused::attention(
            fused::linear_seq(&sa.query, x.clone()),
            fused::linear_seq(&sa.key, x.clone()),
            fused::linear_seq(&sa.value, x.clone()),
            Some(mask.clone()),
            sa.dropout.prob,
            self.attention_options(h),
        );
        let ao = &layer.attention.output;
        let projected = fused::linear_seq(&ao.dense, context);
        let attended = self.norm(
            &ao.layer_norm,
            fused::residual_dropout(x, projected, ao.dropout.prob),
        );
        let inner = self.act(fused::linear_seq(
            &layer.intermediate.dense,
            attended.clone(),
        ));
        let o = &layer.output;
        let output = fused::linear_seq(&o.dense, inner);
        self.norm(
            &o.layer_norm,
            fused::residual_dropout(attended, output, o.dropout.prob),
        )
    }

    pub fn pool(&self, sequence: &Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, h] = sequence.dims();
        let first = sequence.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]);
        tanh(self.pooler.dense.forward(first))
    }
}

impl LayerDef for BertLayerConfig {
    type Module<B: Backend> = Bert<B>;

    fn validate(&self) -> Result<(), String> {
        match self.dropout {
            Some(p) if !(0.0..1.0).contains(&p) => {
                Err(format!("`dropout` must be in [0, 1), got {p}"))
            }
            // config.json is part of the layer's configuration: a bad one is reported as such,
            // not as a shape mismatch.
            _ => self.bert_config().map(|_| ()),
        }
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        let s = &inputs[0];
        if s.kind != ValueKind::Ids || s.rank() != 1 {
            return Err(format!("bert needs token ids (None, length), got {s}"));
        }
        let c = self.bert_config()?;
        // A dynamically padded batch can still be as long as the vectorizer's maximum.
        if let Some(len) = s.dims[0].or(ctx.sequence_length)
            && len > c.max_position_embeddings
        {
            return Err(format!(
                "sequences of length {len} exceed max_position_embeddings {}",
                c.max_position_embeddings
            ));
        }
        if ctx.vocab_size > c.vocab_size {
            return Err(format!(
                "the tokenizer has {} ids but the model only {}",
                ctx.vocab_size, c.vocab_size
            ));
        }
        let h = Some(c.hidden_size);
        let mut outputs = vec![
            ("pooled_output".to_string(), TensorSpec::float(vec![h])),
            (
                "sequence_output".to_string(),
                TensorSpec::float(vec![s.dims[0], h]),
            ),
            ("cls_output".to_string(), TensorSpec::float(vec![h])),
            ("mean_output".to_string(), TensorSpec::float(vec![h])),
        ];
        for i in 0..c.num_hidden_layers {
            outputs.push((
                format!("encoder_outputs.{i}"),
                TensorSpec::float(vec![s.dims[0], h]),
            ));
        }
        // The default output comes first.
        let default = outputs.remove(self.default_output());
        outputs.insert(0, default);
        Ok(outputs)
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        self.bert_config().map(|c| c.param_count()).unwrap_or(0)
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        ctx: &InferCtx,
        device: &B::Device,
    ) -> Result<Bert<B>, String> {
        let c = self.bert_config()?;
        let bert = Bert::init(&c, self.dropout, self.pooling, device);
        if !self.pretrained || !ctx.load_pretrained {
            return Ok(bert);
        }
        let dir = locate(&self.from, &["config.json", "model.safetensors"])?;
        bert.load_safetensors(&dir.join("model.safetensors"))
    }
}

impl<B: Backend> LayerForward<B> for Bert<B> {
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let ids = inputs.into_iter().next().expect("ids").ids();
        let states = self.encode(ids, ctx.token_type_ids.clone(), ctx.mask.clone());
        let sequence = states.last().expect("at least one layer").clone();
        let [b, _, h] = sequence.dims();
        let mut outputs = vec![
            Value::Vector(self.pool(&sequence)),
            Value::Sequence(sequence.clone()),
            Value::Vector(sequence.clone().slice([0..b, 0..1, 0..h]).reshape([b, h])),
            Value::Vector(masked_mean(sequence, ctx.mask.clone())),
        ];
        outputs.extend(states.into_iter().map(Value::Sequence));
        let default = outputs.remove(match self.pooling {
            Pooling::Cls => 0,
            Pooling::None => 1,
            Pooling::Mean => 3,
        });
        outputs.insert(0, default);
        outputs
    }

    fn attention_maps(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
    ) -> Vec<(String, Tensor<B, 4>)> {
        let ids = inputs.into_iter().next().expect("ids").ids();
        let maps = self.attention(ids, ctx.token_type_ids.clone(), ctx.mask.clone());
        (maps.into_iter().enumerate())
            .map(|(i, m)| (format!("encoder.{i}"), m))
            .collect()
    }
}
