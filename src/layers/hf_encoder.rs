//! `hf_encoder` (also `bert`, its first name): a Hugging Face transformer encoder of the BERT
//! family, built from its `config.json` (any size; the family from `model_type`: BERT,
//! DistilBERT, RoBERTa / XLM-R / CamemBERT, ELECTRA) and, by default, loaded from its
//! safetensors under the family's own tensor names. One encoder core serves every family:
//! exact erf GELU, LayerNorm eps from the config, additive attention mask over keys. The
//! families differ in their embeddings (positions, token types, ELECTRA's projection) and in the
//! pooler that makes the classifier's input (BERT's tanh pooler, the heads of RoBERTa, ELECTRA
//! and DistilBERT), all set by `model_type`.
//!
//! Outputs: `pooled_output` (the family's classifier input), `sequence_output` (last hidden
//! states), `cls_output` (h[:, 0]), `mean_output` (masked mean, as sentence-transformers) and
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
use crate::pretrained::checkpoint::plan_load;
use crate::pretrained::encoder_config::ModernBertOptions;
use crate::pretrained::{
    EncoderConfig, Family, PoolerActivation, RelativeAttention, locate, locate_any,
};

mod disentangled;
mod modernbert;
mod onnx;

/// A `bert` layer's default output: what `input = "<the layer>"` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// `pooled_output`: the family's classifier input (BERT's pooler tanh(dense(h[:, 0]))).
    #[default]
    Cls,
    /// `mean_output`: mean of the last hidden states over real tokens.
    Mean,
    /// `sequence_output`: no pooling.
    None,
}

/// The outputs before `encoder_outputs.N`: `pooled_output`, `sequence_output`, `cls_output`,
/// `mean_output`.
const FIXED_OUTPUTS: usize = 4;

impl Pooling {
    /// Where the default output stands among the outputs in their fixed order
    /// (`pooled_output`, `sequence_output`, `cls_output`, `mean_output`, `encoder_outputs.N`).
    fn output_index(self) -> usize {
        match self {
            Pooling::Cls => 0,
            Pooling::None => 1,
            Pooling::Mean => 3,
        }
    }
}

fn yes() -> bool {
    true
}

/// A Hugging Face encoder of the BERT family (any size and family, from its config.json) on the
/// vectorizer's token ids, attention mask and token types. Outputs `pooled_output`,
/// `sequence_output`, `cls_output`, `mean_output` and `encoder_outputs.N`, read as
/// `<layer>.<output>`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HfEncoderConfig {
    /// The model: a folder holding config.json (and model.safetensors when `pretrained`), or
    /// a hub id such as `sentence-transformers/all-MiniLM-L6-v2`, found in `PIPE_MODEL_PATH`,
    /// `models/`, the Hugging Face cache, or downloaded when online.
    pub from: String,
    /// Which output `input = "<this layer>"` reads: `cls` (default; `pooled_output`, the
    /// family's classifier input: BERT's pooler, RoBERTa's and ELECTRA's head before its last
    /// layer, DistilBERT's pre-classifier), `mean` (`mean_output`, the mean over real tokens) or `none`
    /// (`sequence_output`, every position's last hidden state).
    #[serde(default)]
    pub pooling: Pooling,
    /// Load the pretrained weights from model.safetensors (default true); `false` starts
    /// from random weights of config.json's sizes (normal, std 0.02), as transformers does.
    #[serde(default = "yes")]
    pub pretrained: bool,
    /// Dropout inside the encoder while it trains, on the hidden states and the attention
    /// weights alike, a rate in [0, 1) (default: config.json's `hidden_dropout_prob` and
    /// `attention_probs_dropout_prob`, DistilBERT's `dropout` and `attention_dropout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

#[derive(Module, Debug)]
pub struct EncoderEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    /// Absent where positions enter only through attention (DeBERTa-v3).
    pub position_embeddings: Option<Embedding<B>>,
    /// Absent where the family has no token types (DistilBERT).
    pub token_type_embeddings: Option<Embedding<B>>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
    /// ELECTRA's `embeddings_project` (after the LayerNorm) or DeBERTa's `embed_proj` (before
    /// it, without a bias), from the embedding width to the hidden size.
    pub projection: Option<Linear<B>>,
}

#[derive(Module, Debug)]
pub struct EncoderSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub dropout: Dropout,
    /// DeBERTa's own projections of the relative positions where keys are not shared.
    pub pos_key: Option<Linear<B>>,
    pub pos_query: Option<Linear<B>>,
}

#[derive(Module, Debug)]
pub struct EncoderSublayerOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct EncoderAttention<B: Backend> {
    pub self_attention: EncoderSelfAttention<B>,
    pub output: EncoderSublayerOutput<B>,
}

#[derive(Module, Debug)]
pub struct EncoderIntermediate<B: Backend> {
    pub dense: Linear<B>,
}

#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    pub attention: EncoderAttention<B>,
    pub intermediate: EncoderIntermediate<B>,
    pub output: EncoderSublayerOutput<B>,
}

#[derive(Module, Debug)]
pub struct EncoderLayers<B: Backend> {
    pub layer: Vec<EncoderLayer<B>>,
    /// DeBERTa's relative-position embeddings, shared by every layer.
    pub rel_embeddings: Option<Embedding<B>>,
    /// DeBERTa's LayerNorm of `rel_embeddings` (`norm_rel_ebd`).
    pub layer_norm: Option<LayerNorm<B>>,
    /// ModernBERT's layers (pre-LayerNorm; `layer` is empty then).
    pub pre_norm_layer: Vec<modernbert::PreNormLayer<B>>,
    /// ModernBERT's `final_norm`.
    pub final_norm: Option<LayerNorm<B>>,
}

#[derive(Module, Debug)]
pub struct EncoderPooler<B: Backend> {
    pub dense: Linear<B>,
    /// ModernBERT's head normalises after the activation (`head.norm`).
    pub norm: Option<LayerNorm<B>>,
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
    /// The activation `hidden_act` names; `EncoderConfig::check` has refused any other name, and
    /// the tanh forms are the remaining ones.
    pub fn of(hidden_act: &str) -> Self {
        match hidden_act {
            "gelu" => HiddenActivation::Gelu,
            "relu" => HiddenActivation::Relu,
            _ => HiddenActivation::GeluApproximate,
        }
    }
}

/// How a family numbers positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// 0, 1, 2, … for every position, padding included (BERT, DistilBERT, ELECTRA).
    FromZero,
    /// RoBERTa's: padding id + 1, + 2, … over the real tokens; padded positions take the
    /// padding id's row.
    AfterPadding(usize),
}

/// The encoder and pooler, with field names that follow BERT's Hugging Face tensor names
/// (a run folder's model.safetensors uses them for every family).
#[derive(Module, Debug)]
pub struct HfEncoder<B: Backend> {
    pub embeddings: EncoderEmbeddings<B>,
    pub encoder: EncoderLayers<B>,
    pub pooler: EncoderPooler<B>,
    num_heads: usize,
    #[module(skip)]
    activation: HiddenActivation,
    #[module(skip)]
    positions: Positions,
    #[module(skip)]
    pooler_activation: PoolerActivation,
    #[module(skip)]
    family: Family,
    /// DeBERTa's disentangled attention; `None`: attention over content alone.
    #[module(skip)]
    relative: Option<RelativeAttention>,
    /// ModernBERT's layout; `None`: BERT's post-LayerNorm layers.
    #[module(skip)]
    modern: Option<ModernBertOptions>,
    /// LayerNorm epsilon from the config (burn's LayerNorm keeps its own private).
    layer_norm_eps: f64,
    #[module(skip)]
    pooling: Pooling,
}

impl HfEncoderConfig {
    /// The folder holding the model's config.json.
    pub fn model_dir(&self) -> Result<std::path::PathBuf, String> {
        locate(&self.from, &["config.json"])
    }
    /// The model's config.json, checked.
    pub fn encoder_config(&self) -> Result<EncoderConfig, String> {
        EncoderConfig::load(&self.model_dir()?)
    }
    /// The folder's weights, checked before any run starts as far as their headers tell: only a
    /// PyTorch pickle, or tensors that config.json contradicts (missing, unexpected or
    /// mis-shaped). A folder with config.json alone is fine until the weights are needed.
    fn check_weights(&self, c: &EncoderConfig) -> Result<(), String> {
        if !self.pretrained {
            return Ok(());
        }
        let dir = self.model_dir()?;
        let has = |f: &str| dir.join(f).is_file();
        if has("model.safetensors") || has("model.safetensors.index.json") {
            plan_load(&dir, c).map(|_| ())
        } else if has("pytorch_model.bin") || has("pytorch_model.bin.index.json") {
            crate::pretrained::checkpoint::weight_files(&dir).map(|_| ())
        } else {
            Ok(())
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

/// A LayerNorm of `d` features, ones and zeros, with or without its bias (beta).
fn norm_with_bias<B: Backend>(d: usize, eps: f64, bias: bool, device: &B::Device) -> LayerNorm<B> {
    let mut norm = layer_norm(d, eps, device);
    if !bias {
        norm.beta = None;
    }
    norm
}

fn disentangled_projections<B: Backend>(
    sa: &EncoderSelfAttention<B>,
) -> disentangled::Projections<'_, B> {
    disentangled::Projections {
        query: &sa.query,
        key: &sa.key,
        value: &sa.value,
        pos_query: sa.pos_query.as_ref(),
        pos_key: sa.pos_key.as_ref(),
    }
}

impl<B: Backend> HfEncoder<B> {
    /// Random weights as transformers initialises them (normal 0.02, zero biases, LayerNorm 1/0).
    pub fn init(
        c: &EncoderConfig,
        dropout: Option<f64>,
        pooling: Pooling,
        device: &B::Device,
    ) -> Self {
        let (h, e) = (c.hidden_size, c.embedding_size);
        let deberta = c.family == Family::DebertaV2;
        let own_positions = c.relative.filter(|r| !r.share_att_key);
        let hidden_dropout = || DropoutConfig::new(dropout.unwrap_or(c.hidden_dropout_prob)).init();
        let attention_dropout =
            || DropoutConfig::new(dropout.unwrap_or(c.attention_probs_dropout_prob)).init();
        let sub = |d_in: usize| EncoderSublayerOutput {
            dense: linear(d_in, h, device),
            layer_norm: layer_norm(h, c.layer_norm_eps, device),
            dropout: hidden_dropout(),
        };
        HfEncoder {
            embeddings: EncoderEmbeddings {
                word_embeddings: embedding(c.vocab_size, e, device),
                position_embeddings: (c.position_biased_input)
                    .then(|| embedding(c.max_position_embeddings, e, device)),
                token_type_embeddings: (c.type_vocab_size > 0)
                    .then(|| embedding(c.type_vocab_size, e, device)),
                layer_norm: norm_with_bias(
                    if deberta { h } else { e },
                    c.layer_norm_eps,
                    c.modern.as_ref().is_none_or(|m| m.norm_bias),
                    device,
                ),
                dropout: hidden_dropout(),
                projection: (e != h).then(|| {
                    let mut projection = linear(e, h, device);
                    if deberta {
                        projection.bias = None;
                    }
                    projection
                }),
            },
            encoder: EncoderLayers {
                layer: (0..c.num_hidden_layers)
                    .filter(|_| c.modern.is_none())
                    .map(|_| EncoderLayer {
                        attention: EncoderAttention {
                            self_attention: EncoderSelfAttention {
                                query: linear(h, h, device),
                                key: linear(h, h, device),
                                value: linear(h, h, device),
                                dropout: attention_dropout(),
                                pos_key: own_positions
                                    .filter(|r| r.c2p)
                                    .map(|_| linear(h, h, device)),
                                pos_query: own_positions
                                    .filter(|r| r.p2c)
                                    .map(|_| linear(h, h, device)),
                            },
                            output: sub(h),
                        },
                        intermediate: EncoderIntermediate {
                            dense: linear(h, c.intermediate_size, device),
                        },
                        output: sub(c.intermediate_size),
                    })
                    .collect(),
                rel_embeddings: c.relative.map(|r| embedding(2 * r.span, h, device)),
                layer_norm: (c.relative)
                    .filter(|r| r.norm_rel_embeddings)
                    .map(|_| layer_norm(h, c.layer_norm_eps, device)),
                pre_norm_layer: (c.modern.as_ref())
                    .map(|m| modernbert::init(c, m, dropout, device))
                    .unwrap_or_default(),
                final_norm: (c.modern.as_ref())
                    .map(|m| norm_with_bias(h, c.layer_norm_eps, m.norm_bias, device)),
            },
            pooler: EncoderPooler {
                dense: {
                    let mut dense = linear(h, h, device);
                    if c.modern.as_ref().is_some_and(|m| !m.head_bias) {
                        dense.bias = None;
                    }
                    dense
                },
                norm: (c.modern.as_ref())
                    .map(|m| norm_with_bias(h, c.layer_norm_eps, m.norm_bias, device)),
            },
            num_heads: c.num_attention_heads,
            activation: HiddenActivation::of(&c.hidden_act),
            positions: match c.family {
                Family::Roberta => Positions::AfterPadding(c.pad_token_id),
                _ => Positions::FromZero,
            },
            pooler_activation: c.pooler_activation,
            family: c.family,
            relative: c.relative,
            modern: c.modern.clone(),
            layer_norm_eps: c.layer_norm_eps,
            pooling,
        }
    }

    /// Loads the pretrained weights of the model folder `dir` (config.json `c`) by the
    /// family's Hugging Face tensor names, with or without the base model's prefix
    /// (`bert.`, `roberta.`, …), from model.safetensors or its shards: `[out, in]` Linear
    /// weights transposed, `LayerNorm.weight/bias` as gamma/beta. Buffers such as
    /// `embeddings.position_ids` and other heads (`classifier.out_proj`, `lm_head`) are ignored.
    /// A checkpoint without the family's pooler keeps this module's random one, as
    /// transformers does. Every tensor is checked against config.json first.
    pub fn load_pretrained(
        mut self,
        dir: &std::path::Path,
        c: &EncoderConfig,
    ) -> Result<Self, String> {
        let plan = plan_load(dir, c)?;
        if plan.new_pooler {
            tracing::warn!(
                "{}: no pooler weights ({}); the pooler starts from random weights, as in transformers",
                dir.display(),
                crate::pretrained::checkpoint::pooler_names(c.family).join(" or ")
            );
        }
        let mut loaded = std::collections::HashSet::new();
        for file in &plan.files {
            let mut store = SafetensorsStore::from_file(file)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true);
            for (stored, module_path) in &plan.tensors {
                let from = format!("^{}$", regex::escape(stored));
                store = store.with_key_remapping(&from, module_path.as_str());
            }
            let result = self
                .load_from(&mut store)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            if let Some(error) = result.errors.first() {
                return Err(format!("{}: {error}", file.display()));
            }
            // burn's LayerNorm names its parameters gamma and beta.
            loaded.extend(result.applied.into_iter().map(|path| {
                match (path.strip_suffix(".gamma"), path.strip_suffix(".beta")) {
                    (Some(norm), _) => format!("{norm}.weight"),
                    (_, Some(norm)) => format!("{norm}.bias"),
                    _ => path,
                }
            }));
        }
        // plan_load found every tensor with its shape; a miss here is a naming bug in pipe.
        if let Some((_, path)) = plan.tensors.iter().find(|(_, p)| !loaded.contains(p)) {
            return Err(format!(
                "{}: the encoder's `{path}` was not loaded (an internal naming error)",
                dir.display()
            ));
        }
        Ok(crate::run::checkpoint::in_device_float_dtype(self))
    }

    /// The feed-forward activation, elementwise.
    ///
    /// # Shapes
    /// - x: [batch, length, intermediate]; output: the shape of x
    fn act(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.activation {
            HiddenActivation::Gelu => fused::gelu(x),
            HiddenActivation::GeluApproximate => burn::tensor::activation::gelu_approximate(x),
            HiddenActivation::Relu => relu(x),
        }
    }

    /// Hidden states after each encoder layer (the last is `sequence_output`).
    ///
    /// # Shapes
    /// - ids, token_types, mask: [batch, length]
    /// - output: one [batch, length, hidden] per encoder layer
    pub fn encode(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
    ) -> Vec<Tensor<B, 3>> {
        self.encode_states(ids, token_types, mask, false)
    }

    /// [`encode`](Self::encode), with the last layer's output at the first position alone
    /// ([batch, 1, hidden]) where `first_only`: all its pooler reads, so the last layer's
    /// query, attention, projections and feed-forward run on one row in `length` instead of
    /// all (its keys and values still on every row). Only the families whose layers are
    /// [`layer_forward`](Self::layer_forward)'s take it; the others encode every position.
    ///
    /// # Shapes
    /// - ids, token_types, mask: [batch, length]
    /// - output: one [batch, length, hidden] per encoder layer (the last [batch, 1, hidden]
    ///   where `first_only` was taken)
    fn encode_states(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
        mask: Tensor<B, 2>,
        first_only: bool,
    ) -> Vec<Tensor<B, 3>> {
        let mut x = self.embed(ids, token_types, &mask);
        if let Some(m) = &self.modern {
            return self.encode_modern(m, x, mask);
        }
        let rel = self.relative_embeddings();
        let first_only = first_only && self.relative.is_none();
        let last = self.encoder.layer.len().saturating_sub(1);
        let mut states = Vec::with_capacity(self.encoder.layer.len());
        for (i, layer) in self.encoder.layer.iter().enumerate() {
            x = match first_only && i == last {
                true => self.first_position_forward(layer, x, &mask),
                false => self.layer_forward(layer, x, &mask, rel.as_ref()),
            };
            states.push(x.clone());
        }
        states
    }

    /// ModernBERT's layers on the normalised embeddings; the last output after `final_norm`.
    ///
    /// # Shapes
    /// - x: [batch, length, hidden]; mask: [batch, length]
    /// - output: one [batch, length, hidden] per layer
    fn encode_modern(
        &self,
        m: &ModernBertOptions,
        mut x: Tensor<B, 3>,
        mask: Tensor<B, 2>,
    ) -> Vec<Tensor<B, 3>> {
        let exact_gelu = self.activation == HiddenActivation::Gelu;
        let pass = modernbert::Pass::new(
            m,
            self.num_heads,
            x.dims()[2],
            self.layer_norm_eps,
            mask,
            exact_gelu,
        );
        let mut states = Vec::with_capacity(self.encoder.pre_norm_layer.len());
        for (i, layer) in self.encoder.pre_norm_layer.iter().enumerate() {
            x = pass.layer(layer, i, x, |t| self.act(t));
            states.push(x.clone());
        }
        if let (Some(norm), Some(last)) = (&self.encoder.final_norm, states.pop()) {
            states.push(self.norm(norm, last));
        }
        states
    }

    /// Word + position (+ token-type) embeddings, normalised (and projected to the hidden
    /// size where the family's embeddings are narrower).
    ///
    /// # Shapes
    /// - ids, token_types, mask: [batch, length]; output: [batch, length, hidden]
    fn embed(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
        mask: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = match self.positions {
            Positions::FromZero => Tensor::<B, 1, Int>::arange(0..l as i64, &device)
                .unsqueeze::<2>()
                .expand([b, l]),
            // transformers counts the non-padding ids; with right padding and a padding id
            // that no real token has, that is the mask's running count.
            Positions::AfterPadding(pad) => {
                let real = mask.clone().int();
                real.clone().cumsum(1) * real + pad as i64
            }
        };
        let e = &self.embeddings;
        let mut x = e.word_embeddings.forward(ids);
        if let Some(table) = &e.position_embeddings {
            x = x + table.forward(positions);
        }
        if let Some(types) = &e.token_type_embeddings {
            x = x + types.forward(token_types);
        }
        if self.family == Family::DebertaV2 {
            // DeBERTa projects before normalising, then zeroes the padded positions.
            if let Some(projection) = &e.projection {
                x = fused::linear_seq(projection, x);
            }
            let x = self.norm(&e.layer_norm, x) * mask.clone().unsqueeze_dim::<3>(2);
            return fused::dropout(x, e.dropout.prob);
        }
        let x = fused::dropout(self.norm(&e.layer_norm, x), e.dropout.prob);
        match &e.projection {
            Some(projection) => fused::linear_seq(projection, x),
            None => x,
        }
    }

    fn attention_options(&self, hidden: usize) -> AttentionOptions {
        let scale = 1.0 / ((hidden / self.num_heads) as f32).sqrt();
        // transformers adds the most negative f32 to padded keys' scores.
        AttentionOptions::new(self.num_heads, scale, f32::MIN)
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
        let mut x = self.embed(ids, token_types, &mask);
        if let Some(m) = &self.modern {
            let h = x.dims()[2];
            let exact_gelu = self.activation == HiddenActivation::Gelu;
            let pass =
                modernbert::Pass::new(m, self.num_heads, h, self.layer_norm_eps, mask, exact_gelu);
            let mut maps = Vec::new();
            for (i, layer) in self.encoder.pre_norm_layer.iter().enumerate() {
                maps.push(pass.attention_weights(layer, i, x.clone()));
                x = pass.layer(layer, i, x, |t| self.act(t));
            }
            return maps;
        }
        let rel = self.relative_embeddings();
        let mut maps = Vec::with_capacity(self.encoder.layer.len());
        for layer in &self.encoder.layer {
            let sa = &layer.attention.self_attention;
            maps.push(match (&self.relative, &rel) {
                (Some(r), Some(rel)) => {
                    let p = disentangled_projections(sa);
                    disentangled::weights(x.clone(), rel.clone(), &mask, &p, self.num_heads, r)
                }
                _ => attention_weights(
                    sa.query.forward(x.clone()),
                    sa.key.forward(x.clone()),
                    Some(mask.clone()),
                    self.attention_options(x.dims()[2]),
                ),
            });
            x = self.layer_forward(layer, x, &mask, rel.as_ref());
        }
        maps
    }

    fn norm(&self, norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        fused::layer_norm_module(norm, x, self.layer_norm_eps)
    }

    /// DeBERTa's relative-position embeddings as every layer reads them (normalised where
    /// `norm_rel_ebd` says); `None` for the other families.
    ///
    /// # Shapes
    /// - output: [2·span, hidden]
    fn relative_embeddings(&self) -> Option<Tensor<B, 2>> {
        let table = self.encoder.rel_embeddings.as_ref()?.weight.val();
        Some(match &self.encoder.layer_norm {
            Some(norm) => {
                let [rows, h] = table.dims();
                self.norm(norm, table.reshape([1, rows, h]))
                    .reshape([rows, h])
            }
            None => table,
        })
    }

    /// One encoder layer.
    ///
    /// # Shapes
    /// - x: [batch, length, hidden]; mask: [batch, length]; output: [batch, length, hidden]
    fn layer_forward(
        &self,
        layer: &EncoderLayer<B>,
        x: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
        rel: Option<&Tensor<B, 2>>,
    ) -> Tensor<B, 3> {
        let h = x.dims()[2];
        let sa = &layer.attention.self_attention;
        let context = match (&self.relative, rel) {
            (Some(r), Some(rel)) => disentangled::context(
                x.clone(),
                rel.clone(),
                mask,
                &disentangled_projections(sa),
                self.num_heads,
                r,
                sa.dropout.prob,
            ),
            _ => {
                let projections = [&sa.query, &sa.key, &sa.value];
                let [q, k, v] = <[_; 3]>::try_from(fused::linears_seq(&projections, x.clone()))
                    .unwrap_or_else(|_| unreachable!("three layers, three outputs"));
                let options = self.attention_options(h);
                fused::attention(q, k, v, Some(mask.clone()), sa.dropout.prob, options)
            }
        };
        self.after_attention(layer, context, x)
    }

    /// One encoder layer's output at the first position alone: the first position's query
    /// attends over every position's keys and values, and the rest of the layer runs on that
    /// one row. Each output row depends on its own row alone after attention, so the row is
    /// what [`layer_forward`](Self::layer_forward) gives at position 0.
    ///
    /// # Shapes
    /// - x: [batch, length, hidden]; mask: [batch, length]; output: [batch, 1, hidden]
    fn first_position_forward(
        &self,
        layer: &EncoderLayer<B>,
        x: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [b, _, h] = x.dims();
        let sa = &layer.attention.self_attention;
        let [k, v] = <[_; 2]>::try_from(fused::linears_seq(&[&sa.key, &sa.value], x.clone()))
            .unwrap_or_else(|_| unreachable!("two layers, two outputs"));
        let first = x.slice([0..b, 0..1, 0..h]);
        let q = fused::linear_seq(&sa.query, first.clone());
        let options = self.attention_options(h);
        let context = fused::attention(q, k, v, Some(mask.clone()), sa.dropout.prob, options);
        self.after_attention(layer, context, first)
    }

    /// The rest of an encoder layer after its self-attention: the output projection with the
    /// residual `x` and LayerNorm, then the feed-forward with its own.
    ///
    /// # Shapes
    /// - context, x: [batch, rows, hidden]; output: [batch, rows, hidden]
    fn after_attention(
        &self,
        layer: &EncoderLayer<B>,
        context: Tensor<B, 3>,
        x: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let ao = &layer.attention.output;
        let norm = (&ao.layer_norm, self.layer_norm_eps);
        let attended =
            fused::linear_residual_norm_seq(&ao.dense, context, x, norm, ao.dropout.prob);
        let (up, o) = (&layer.intermediate.dense, &layer.output);
        let norm = (&o.layer_norm, self.layer_norm_eps);
        if self.activation == HiddenActivation::Gelu {
            return fused::feed_forward_norm_seq((up, &o.dense), attended, norm, o.dropout.prob);
        }
        let inner = self.act(fused::linear_seq(up, attended.clone()));
        fused::linear_residual_norm_seq(&o.dense, inner, attended, norm, o.dropout.prob)
    }

    /// Encoder layers, whatever the family calls them.
    fn layer_count(&self) -> usize {
        self.encoder.layer.len() + self.encoder.pre_norm_layer.len()
    }

    /// Flags in [`forward`](LayerForward::forward)'s order (the default output first) put
    /// back in the outputs' fixed order.
    fn in_fixed_order(&self, read: &[bool]) -> Vec<bool> {
        assert_eq!(read.len(), FIXED_OUTPUTS + self.layer_count());
        let mut fixed = read.to_vec();
        let default = fixed.remove(0);
        fixed.insert(self.pooling.output_index(), default);
        fixed
    }

    /// The family's pooler: act(dense(h[:, 0])), the first position's hidden state
    /// transformed as the family's sequence classifier does before its last layer (tanh for
    /// BERT and RoBERTa, GELU for ELECTRA and DeBERTa, ReLU for DistilBERT); ModernBERT's head
    /// norm(act(dense(·))) on h[:, 0] or on the mean over real tokens (`classifier_pooling`).
    ///
    /// # Shapes
    /// - sequence: [batch, length, hidden]; mask: [batch, length]; output: [batch, hidden]
    pub fn pool(&self, sequence: &Tensor<B, 3>, mask: &Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, _, h] = sequence.dims();
        let first = match &self.modern {
            Some(m) if m.mean_pooling => masked_mean(sequence.clone(), mask.clone()),
            _ => sequence.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]),
        };
        let dense = self.pooler.dense.forward(first);
        let activated = match self.pooler_activation {
            PoolerActivation::Tanh => tanh(dense),
            PoolerActivation::Relu => relu(dense),
            PoolerActivation::Gelu => fused::gelu(dense),
        };
        match &self.pooler.norm {
            Some(norm) => self
                .norm(norm, activated.reshape([b, 1, h]))
                .reshape([b, h]),
            None => activated,
        }
    }
}

impl LayerDef for HfEncoderConfig {
    type Module<B: Backend> = HfEncoder<B>;

    fn validate(&self) -> Result<(), String> {
        match self.dropout {
            Some(p) if !(0.0..1.0).contains(&p) => {
                Err(format!("`dropout` must be in [0, 1), got {p}"))
            }
            // config.json is part of the layer's configuration: a bad one is reported as such,
            // not as a shape mismatch.
            _ => self.encoder_config().and_then(|c| self.check_weights(&c)),
        }
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        let s = &inputs[0];
        if s.kind != ValueKind::Ids || s.rank() != 1 {
            return Err(format!(
                "the encoder needs token ids (None, length), got {s}"
            ));
        }
        let c = self.encoder_config()?;
        let config = self.model_dir()?.join("config.json");
        let config = config.display();
        // A dynamically padded batch can still be as long as the vectorizer's maximum.
        if let Some(len) = s.dims[0].or(ctx.sequence_length)
            && len > c.max_sequence_length()
        {
            return Err(match c.family {
                Family::Roberta => format!(
                    "sequences of length {len} exceed the {} positions of max_position_embeddings {} in {config} ({} numbers positions from its padding id {} + 1)",
                    c.max_sequence_length(),
                    c.max_position_embeddings,
                    c.model_type,
                    c.pad_token_id
                ),
                _ => format!(
                    "sequences of length {len} exceed max_position_embeddings {} in {config}",
                    c.max_position_embeddings
                ),
            });
        }
        if ctx.vocab_size > c.vocab_size {
            return Err(format!(
                "the tokenizer has {} ids but the model only {} (`vocab_size` in {config})",
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
        let default = outputs.remove(self.pooling.output_index());
        outputs.insert(0, default);
        Ok(outputs)
    }
    fn parts(&self) -> Vec<String> {
        let layers = self.encoder_config().map_or(0, |c| c.num_hidden_layers);
        (std::iter::once("embeddings".to_string()))
            .chain((0..layers).map(|i| format!("layer.{i}")))
            .chain(std::iter::once("pooler".to_string()))
            .collect()
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        self.encoder_config().map(|c| c.param_count()).unwrap_or(0)
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        ctx: &InferCtx,
        device: &B::Device,
    ) -> Result<HfEncoder<B>, String> {
        let c = self.encoder_config()?;
        let bert = HfEncoder::init(&c, self.dropout, self.pooling, device);
        if !self.pretrained || !ctx.load_pretrained {
            return Ok(bert);
        }
        let dir = locate_any(
            &self.from,
            &[
                &["config.json", "model.safetensors"],
                &["config.json", "model.safetensors.index.json"],
            ],
        )?;
        // A sharded hub model: its shards are fetched (or found in the cache) beside the index.
        let index = dir.join("model.safetensors.index.json");
        if !dir.join("model.safetensors").is_file() && index.is_file() {
            let names = crate::pretrained::checkpoint::shard_names(&index)?;
            for name in names.iter().filter(|n| !dir.join(n).is_file()) {
                locate(&self.from, &["model.safetensors.index.json", name.as_str()])?;
            }
        }
        bert.load_pretrained(&dir, &c)
    }
}

impl<B: Backend> LayerForward<B> for HfEncoder<B> {
    /// `embeddings`, `layer.N` (encoder layer N, whatever the family calls its layers) and
    /// `pooler`; DeBERTa's relative-position embeddings go with `embeddings`.
    fn freeze_parts(mut self, parts: &[String]) -> Self {
        let frozen = |part: &str| parts.iter().any(|p| p == part);
        if frozen("embeddings") {
            self.embeddings = self.embeddings.no_grad();
            self.encoder.rel_embeddings = self.encoder.rel_embeddings.map(|e| e.no_grad());
            self.encoder.layer_norm = self.encoder.layer_norm.map(|n| n.no_grad());
        }
        self.encoder.layer = (self.encoder.layer.into_iter().enumerate())
            .map(|(i, l)| {
                if frozen(&format!("layer.{i}")) {
                    l.no_grad()
                } else {
                    l
                }
            })
            .collect();
        self.encoder.pre_norm_layer = (self.encoder.pre_norm_layer.into_iter().enumerate())
            .map(|(i, l)| {
                if frozen(&format!("layer.{i}")) {
                    l.no_grad()
                } else {
                    l
                }
            })
            .collect();
        if frozen("pooler") {
            self.pooler = self.pooler.no_grad();
            self.encoder.final_norm = self.encoder.final_norm.map(|n| n.no_grad());
        }
        self
    }

    /// The default output first (`pooling`), then the others in their fixed order.
    ///
    /// # Shapes
    /// - input: token ids [batch, length]; ctx.mask, ctx.token_type_ids: [batch, length]
    /// - output: `pooled_output`, `cls_output`, `mean_output` [batch, hidden];
    ///   `sequence_output`, `encoder_outputs.N` [batch, length, hidden]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let read = vec![true; FIXED_OUTPUTS + self.layer_count()];
        (self.forward_read(inputs, ctx, &read).into_iter())
            .map(|v| v.expect("every output read"))
            .collect()
    }

    /// Where only `pooled_output` (on h[:, 0]) and `cls_output` are read, the last layer runs
    /// for the first position alone ([`HfEncoder::encode_states`]): a classifier's usual
    /// graph, which needs one row of the last layer's output in `length`.
    ///
    /// # Shapes
    /// As [`forward`](LayerForward::forward), the outputs not read left out.
    fn forward_read(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
        read: &[bool],
    ) -> Vec<Option<Value<B>>> {
        let read = self.in_fixed_order(read);
        // The last hidden states are read whole by sequence_output, mean_output, the last
        // encoder_outputs.N, and ModernBERT's mean-pooling head.
        let mean_pooled = matches!(&self.modern, Some(m) if m.mean_pooling);
        let whole_last =
            read[1] || read[3] || read.last() == Some(&true) || (read[0] && mean_pooled);
        let ids = inputs.into_iter().next().expect("ids").ids();
        let (types, mask) = (ctx.token_type_ids.clone(), ctx.mask.clone());
        let states = self.encode_states(ids, types, mask, !whole_last);
        let sequence = states.last().expect("at least one layer").clone();
        let [b, _, h] = sequence.dims();
        let mut outputs = vec![
            read[0].then(|| Value::Vector(self.pool(&sequence, &ctx.mask))),
            read[1].then(|| Value::Sequence(sequence.clone())),
            read[2]
                .then(|| Value::Vector(sequence.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]))),
            read[3].then(|| Value::Vector(masked_mean(sequence, ctx.mask.clone()))),
        ];
        let each_layer = states.into_iter().zip(&read[FIXED_OUTPUTS..]);
        outputs.extend(each_layer.map(|(state, &r)| r.then(|| Value::Sequence(state))));
        let default = outputs.remove(self.pooling.output_index());
        outputs.insert(0, default);
        outputs
    }

    fn to_onnx(
        &self,
        g: &mut crate::onnx::OnnxGraph,
        inputs: Vec<crate::onnx::OnnxValue>,
        _: bool,
    ) -> Result<Vec<crate::onnx::OnnxValue>, String> {
        self.write_onnx(g, &inputs[0].name)
    }

    /// # Shapes
    /// - input: token ids [batch, length]; ctx.mask, ctx.token_type_ids: [batch, length]
    /// - output: `encoder.N`, one [batch, heads, length, length] per encoder layer
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

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::layers::testing::plain::{self, Affine, Norm, Rows};
    use crate::layers::testing::{
        B, assert_close, ids, pattern, set_linear, set_norm, tensor, values,
    };

    /// A two-layer BERT 4 wide with 2 heads: every size small, none 1.
    fn tiny_config(hidden_act: &str) -> EncoderConfig {
        EncoderConfig {
            family: Family::Bert,
            model_type: "bert".into(),
            position_biased_input: true,
            relative: None,
            pooler_activation: PoolerActivation::Tanh,
            modern: None,
            embedding_size: 4,
            pad_token_id: 0,
            vocab_size: 12,
            hidden_size: 4,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 6,
            max_position_embeddings: 8,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: hidden_act.into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
        }
    }

    /// A model folder holding a config.json (no weights).
    fn model_folder(num_attention_heads: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let c = tiny_config("gelu");
        let json = serde_json::json!({
            "model_type": "bert",
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "intermediate_size": c.intermediate_size,
            "max_position_embeddings": c.max_position_embeddings,
            "hidden_act": "gelu",
        });
        std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
        dir
    }

    fn layer_config(dir: &tempfile::TempDir, pooling: Pooling) -> HfEncoderConfig {
        HfEncoderConfig {
            from: dir.path().display().to_string(),
            pooling,
            pretrained: true,
            dropout: None,
        }
    }

    /// The tiny BERT with every weight hand-set.
    fn hand_set(c: &EncoderConfig, pooling: Pooling) -> HfEncoder<B> {
        let mut bert = HfEncoder::<B>::init(c, None, pooling, &Default::default());
        let e = &mut bert.embeddings;
        for (seed, table) in [
            (1, &mut e.word_embeddings),
            (
                3,
                e.position_embeddings.as_mut().expect("BERT has positions"),
            ),
            (
                5,
                e.token_type_embeddings
                    .as_mut()
                    .expect("BERT has token types"),
            ),
        ] {
            let [n, d] = table.weight.val().dims();
            table.weight = Param::from_tensor(tensor(&pattern(n * d, seed), [n, d]));
        }
        set_norm(&mut e.layer_norm, 7);
        for (i, layer) in bert.encoder.layer.iter_mut().enumerate() {
            let seed = 10 + 20 * i;
            let attention = &mut layer.attention;
            set_linear(&mut attention.self_attention.query, seed);
            set_linear(&mut attention.self_attention.key, seed + 2);
            set_linear(&mut attention.self_attention.value, seed + 4);
            set_linear(&mut attention.output.dense, seed + 6);
            set_norm(&mut attention.output.layer_norm, seed + 8);
            set_linear(&mut layer.intermediate.dense, seed + 10);
            set_linear(&mut layer.output.dense, seed + 12);
            set_norm(&mut layer.output.layer_norm, seed + 14);
        }
        set_linear(&mut bert.pooler.dense, 90);
        bert
    }

    const IDS: [&[i64]; 2] = [&[2, 7, 11, 0], &[5, 3, 9, 4]];
    const TYPES: [&[i64]; 2] = [&[0, 0, 1, 0], &[0, 1, 1, 1]];
    /// Row 0's last position is padding.
    const MASK: [&[f32]; 2] = [&[1.0, 1.0, 1.0, 0.0], &[1.0; 4]];

    fn forward_ctx(mask: &[&[f32]], types: &[&[i64]]) -> ForwardCtx<B> {
        ForwardCtx {
            mask: tensor(&mask.concat(), [mask.len(), mask[0].len()]),
            token_type_ids: ids(types),
        }
    }

    /// Every output's values, in the order `forward` returns them.
    fn outputs(
        bert: &HfEncoder<B>,
        rows: &[&[i64]],
        types: &[&[i64]],
        mask: &[&[f32]],
    ) -> Vec<Vec<f32>> {
        let out = bert.forward(vec![Value::Ids(ids(rows))], &forward_ctx(mask, types));
        (out.into_iter())
            .map(|v| match v {
                Value::Vector(t) => values(t),
                Value::Sequence(t) => values(t),
                Value::Ids(_) => panic!("bert outputs floats"),
            })
            .collect()
    }

    fn plain_activation(act: HiddenActivation, x: f32) -> f32 {
        match act {
            HiddenActivation::Gelu => (x as f64 * plain::normal_cdf(x as f64)) as f32,
            HiddenActivation::GeluApproximate => {
                let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
                0.5 * x * (1.0 + inner.tanh())
            }
            HiddenActivation::Relu => x.max(0.0),
        }
    }

    /// One example through the model in plain Rust, with activation `act`: each encoder
    /// layer's output and attention weights ([head][query][key]).
    fn plain_bert(
        bert: &HfEncoder<B>,
        act: HiddenActivation,
        (ids, types, mask): (&[i64], &[i64], &[f32]),
    ) -> (Vec<Rows>, Vec<Vec<Rows>>) {
        let (e, eps) = (&bert.embeddings, bert.layer_norm_eps);
        let h = e.layer_norm.gamma.val().dims()[0];
        let table = |t: &Embedding<B>| plain::rows(&values(t.weight.val()), h);
        let (word, position, token_type) = (
            table(&e.word_embeddings),
            table(e.position_embeddings.as_ref().expect("BERT has positions")),
            table(
                e.token_type_embeddings
                    .as_ref()
                    .expect("BERT has token types"),
            ),
        );
        let embedded: Rows = (0..ids.len())
            .map(|t| {
                let (w, p, k) = (
                    &word[ids[t] as usize],
                    &position[t],
                    &token_type[types[t] as usize],
                );
                (0..h).map(|j| w[j] + p[j] + k[j]).collect()
            })
            .collect();
        let mut x = Norm::of(&e.layer_norm, eps).apply_rows(&embedded);
        let (heads, mut states, mut maps) = (bert.num_heads, Vec::new(), Vec::new());
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        for layer in &bert.encoder.layer {
            let sa = &layer.attention.self_attention;
            let q = Affine::of(&sa.query).apply_rows(&x);
            let k = Affine::of(&sa.key).apply_rows(&x);
            let v = Affine::of(&sa.value).apply_rows(&x);
            maps.push(plain::attention_weights(&q, &k, mask, heads, scale));
            let context = plain::attention(&q, &k, &v, mask, heads, scale);
            let ao = &layer.attention.output;
            let projected = Affine::of(&ao.dense).apply_rows(&context);
            let attended = Norm::of(&ao.layer_norm, eps).apply_rows(&plain::add(&x, &projected));
            let inner: Rows = (Affine::of(&layer.intermediate.dense).apply_rows(&attended))
                .into_iter()
                .map(|r| r.into_iter().map(|v| plain_activation(act, v)).collect())
                .collect();
            let o = &layer.output;
            let output = Affine::of(&o.dense).apply_rows(&inner);
            x = Norm::of(&o.layer_norm, eps).apply_rows(&plain::add(&attended, &output));
            states.push(x.clone());
        }
        (states, maps)
    }

    #[test]
    fn hand_set_weights_match_a_plain_bert() {
        for (hidden_act, act) in [
            ("gelu", HiddenActivation::Gelu),
            ("gelu_new", HiddenActivation::GeluApproximate),
            ("relu", HiddenActivation::Relu),
        ] {
            let bert = hand_set(&tiny_config(hidden_act), Pooling::Cls);
            let got = outputs(&bert, &IDS, &TYPES, &MASK);
            // pooled, sequence, cls and mean output, then each encoder layer's.
            let mut expected = vec![Vec::new(); 6];
            for b in 0..2 {
                let (states, _) = plain_bert(&bert, act, (IDS[b], TYPES[b], MASK[b]));
                let last = &states[1];
                let pooler = Affine::of(&bert.pooler.dense).apply(&last[0]);
                expected[0].extend(pooler.iter().map(|v| v.tanh()));
                expected[1].extend(last.concat());
                expected[2].extend(&last[0]);
                let tokens: f32 = MASK[b].iter().sum();
                expected[3].extend(
                    (0..4).map(|j| (0..4).map(|t| last[t][j] * MASK[b][t]).sum::<f32>() / tokens),
                );
                expected[4].extend(states[0].concat());
                expected[5].extend(states[1].concat());
            }
            assert_eq!(got.len(), 6, "{hidden_act}");
            for (got, expected) in got.iter().zip(&expected) {
                assert_close(got, expected, 1e-4);
            }
        }
    }

    #[test]
    fn hidden_act_names_its_activation() {
        let x = [-3.0, -1.0, -0.5, 0.5, 1.0, 2.5];
        for (hidden_act, act) in [
            ("gelu", HiddenActivation::Gelu),
            ("gelu_new", HiddenActivation::GeluApproximate),
            ("gelu_pytorch_tanh", HiddenActivation::GeluApproximate),
            ("relu", HiddenActivation::Relu),
        ] {
            let bert = HfEncoder::<B>::init(
                &tiny_config(hidden_act),
                None,
                Pooling::Cls,
                &Default::default(),
            );
            assert_eq!(bert.activation, act, "{hidden_act}");
            let got = values(bert.act(tensor(&x, [1, 1, 6])));
            let expected: Vec<f32> = x.iter().map(|&v| plain_activation(act, v)).collect();
            assert_close(&got, &expected, 1e-6);
        }
        // The two GELUs differ by more than that tolerance: gelu(1) = 0.841345, its tanh
        // approximation 0.841192.
        let exact = plain_activation(HiddenActivation::Gelu, 1.0);
        let approximate = plain_activation(HiddenActivation::GeluApproximate, 1.0);
        assert_close(&[exact, approximate], &[0.841_345, 0.841_192], 1e-6);
    }

    #[test]
    fn padded_positions_change_no_real_output() {
        let bert = hand_set(&tiny_config("gelu"), Pooling::Cls);
        // Row 0's padded position gets another id and token type.
        let other_ids: [&[i64]; 2] = [&[2, 7, 11, 8], IDS[1]];
        let other_types: [&[i64]; 2] = [&[0, 0, 1, 1], TYPES[1]];
        let base = outputs(&bert, &IDS, &TYPES, &MASK);
        let changed = outputs(&bert, &other_ids, &other_types, &MASK);
        // The vectors (pooled, cls, mean) entirely; the sequences at the real positions
        // (row 0's first 3 of 4, row 1's 4, 4 features each).
        for i in [0, 2, 3] {
            assert_close(&changed[i], &base[i], 1e-6);
        }
        let real = |v: &[f32]| [&v[..12], &v[16..]].concat();
        for i in [1, 4, 5] {
            assert_close(&real(&changed[i]), &real(&base[i]), 1e-6);
        }
        // Unmasked, the same change reaches the other positions.
        let all: [&[f32]; 2] = [&[1.0; 4], &[1.0; 4]];
        let unmasked = outputs(&bert, &IDS, &TYPES, &all);
        let unmasked_changed = outputs(&bert, &other_ids, &other_types, &all);
        assert!((unmasked[0].iter().zip(&unmasked_changed[0])).any(|(a, b)| (a - b).abs() > 1e-4));
    }

    #[test]
    fn reading_only_the_first_position_gives_forwards_values_and_leaves_the_rest_out() {
        let c = tiny_config("gelu");
        let bert = hand_set(&c, Pooling::Cls);
        let all = outputs(&bert, &IDS, &TYPES, &MASK);
        let ctx = forward_ctx(&MASK, &TYPES);
        let read_only = |read: &[usize]| {
            let flags: Vec<bool> = (0..FIXED_OUTPUTS + c.num_hidden_layers)
                .map(|i| read.contains(&i))
                .collect();
            bert.forward_read(vec![Value::Ids(ids(&IDS))], &ctx, &flags)
        };
        // pooled_output and cls_output: the last layer on the first position alone.
        let first = read_only(&[0, 2]);
        for (i, value) in first.iter().enumerate() {
            match (i, value) {
                (0 | 2, Some(Value::Vector(t))) => assert_close(&values(t.clone()), &all[i], 1e-6),
                (0 | 2, _) => panic!("output {i} was read"),
                (_, v) => assert!(v.is_none(), "output {i} was not read"),
            }
        }
        let states = bert.encode_states(ids(&IDS), ids(&TYPES), ctx.mask.clone(), true);
        assert_eq!(states[0].dims(), [2, 4, 4]);
        assert_eq!(
            states[1].dims(),
            [2, 1, 4],
            "the last layer on one position"
        );
        // Whoever reads the last hidden states gets every position.
        for whole in [1, 3, FIXED_OUTPUTS + 1] {
            let out = read_only(&[0, whole]);
            let got = match &out[whole] {
                Some(Value::Sequence(t)) => values(t.clone()),
                Some(Value::Vector(t)) => values(t.clone()),
                _ => panic!("output {whole} was read"),
            };
            assert_eq!(got, all[whole], "output {whole}");
        }
    }

    #[test]
    fn attention_maps_are_each_layers_weights_with_none_on_padding() {
        let bert = hand_set(&tiny_config("gelu"), Pooling::Cls);
        let maps = bert.attention_maps(vec![Value::Ids(ids(&IDS))], &forward_ctx(&MASK, &TYPES));
        let names: Vec<&str> = maps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["encoder.0", "encoder.1"]);
        for (layer, (_, map)) in maps.iter().enumerate() {
            assert_eq!(map.dims(), [2, 2, 4, 4]);
            let got = values(map.clone());
            for b in 0..2 {
                let (_, weights) =
                    plain_bert(&bert, HiddenActivation::Gelu, (IDS[b], TYPES[b], MASK[b]));
                assert_close(
                    &got[b * 32..(b + 1) * 32],
                    &weights[layer].concat().concat(),
                    1e-5,
                );
            }
            // Row 0's padded key (every fourth weight) gets exactly none.
            assert!(got[..32].iter().skip(3).step_by(4).all(|&w| w == 0.0));
        }
    }

    #[test]
    fn infer_names_the_outputs_in_forwards_order_with_the_default_first() {
        let dir = model_folder(2);
        let ctx = InferCtx {
            vocab_size: 12,
            sequence_length: Some(4),
            ..Default::default()
        };
        let spec = [TensorSpec::ids(Some(4))];
        let (h, seq) = (
            TensorSpec::float(vec![Some(4)]),
            TensorSpec::float(vec![Some(4), Some(4)]),
        );
        let cls = layer_config(&dir, Pooling::Cls).infer(&spec, &ctx).unwrap();
        let expected = [
            ("pooled_output", &h),
            ("sequence_output", &seq),
            ("cls_output", &h),
            ("mean_output", &h),
            ("encoder_outputs.0", &seq),
            ("encoder_outputs.1", &seq),
        ];
        let named: Vec<(&str, &TensorSpec)> = cls.iter().map(|(n, s)| (n.as_str(), s)).collect();
        assert_eq!(named, expected);
        // For each pooling, the output infer names is the one forward returns in its place.
        let by_name: std::collections::HashMap<String, Vec<f32>> = (cls.iter())
            .map(|(n, _)| n.clone())
            .zip(outputs(
                &hand_set(&tiny_config("gelu"), Pooling::Cls),
                &IDS,
                &TYPES,
                &MASK,
            ))
            .collect();
        for (pooling, first) in [
            (Pooling::Mean, "mean_output"),
            (Pooling::None, "sequence_output"),
        ] {
            let names = layer_config(&dir, pooling).infer(&spec, &ctx).unwrap();
            assert_eq!(names[0].0, first);
            let bert = hand_set(&tiny_config("gelu"), pooling);
            for ((name, _), got) in names.iter().zip(outputs(&bert, &IDS, &TYPES, &MASK)) {
                assert_eq!(got, by_name[name], "{pooling:?}: {name}");
            }
        }
    }

    #[test]
    fn bad_inputs_and_configs_are_refused() {
        let dir = model_folder(2);
        let ctx = InferCtx {
            vocab_size: 12,
            sequence_length: Some(8),
            ..Default::default()
        };
        let c = layer_config(&dir, Pooling::Cls);
        let err = |spec: TensorSpec, ctx: &InferCtx| c.infer(&[spec], ctx).unwrap_err();
        let float = err(TensorSpec::float(vec![Some(8), Some(4)]), &ctx);
        assert!(float.contains("the encoder needs token ids"), "{float}");
        let long = err(TensorSpec::ids(Some(9)), &ctx);
        assert!(
            long.contains("sequences of length 9 exceed max_position_embeddings 8"),
            "{long}"
        );
        // A batch cut to its longest row can still reach the vectorizer's length.
        let dynamic = InferCtx {
            sequence_length: Some(9),
            dynamic_padding: true,
            ..ctx.clone()
        };
        assert!(err(TensorSpec::ids(None), &dynamic).contains("length 9 exceed"));
        let vocab = InferCtx {
            vocab_size: 13,
            ..ctx.clone()
        };
        let big = err(TensorSpec::ids(Some(8)), &vocab);
        assert!(
            big.contains("the tokenizer has 13 ids but the model only 12"),
            "{big}"
        );
        let bad_dropout = HfEncoderConfig {
            dropout: Some(1.0),
            ..c.clone()
        };
        assert!(
            bad_dropout
                .validate()
                .unwrap_err()
                .contains("`dropout` must be in [0, 1)")
        );
        assert!(c.validate().is_ok());
        let three_heads = model_folder(3);
        let err = layer_config(&three_heads, Pooling::Cls)
            .validate()
            .unwrap_err();
        assert!(
            err.contains("hidden_size 4 is not a multiple of num_attention_heads 3"),
            "{err}"
        );
    }

    #[test]
    fn parameter_count_matches_the_built_model() {
        let dir = model_folder(2);
        let ctx = InferCtx {
            vocab_size: 12,
            ..Default::default()
        };
        let spec = [TensorSpec::ids(Some(8))];
        // Loading is off in this context: `pretrained` builds random weights here.
        let c = layer_config(&dir, Pooling::Cls);
        let built = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
        assert_eq!(c.param_count(&spec, &ctx), built.num_params());
        // Embeddings (12 + 8 + 2)·4 + 8, two layers of 4·(16 + 4) + 8 + (24 + 6) + (24 + 4) + 8,
        // the pooler 16 + 4.
        assert_eq!(built.num_params(), 96 + 2 * 154 + 20);
    }
}
