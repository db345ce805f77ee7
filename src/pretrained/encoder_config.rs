//! A Hugging Face encoder's `config.json`, read by its `model_type` into one shape that the
//! `hf_encoder` layer builds from, whatever the family calls its keys.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// A transformer family whose checkpoints pipe loads, from config.json's `model_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `bert`: absolute positions, token types, pooler tanh(dense(h[:, 0])).
    Bert,
    /// `roberta`, `xlm-roberta`, `camembert`: BERT's layers; positions count from the padding
    /// id + 1 over real tokens; the classification head's tanh(dense(h[:, 0])) as the pooler.
    Roberta,
    /// `distilbert`: BERT's layers under other names, no token types; the pre-classifier's
    /// relu(dense(h[:, 0])) as the pooler.
    DistilBert,
    /// `electra` (the discriminator): embeddings `embedding_size` wide, projected to the hidden
    /// size; the classification head's gelu(dense(h[:, 0])) as the pooler.
    Electra,
    /// `deberta-v2` (DeBERTa-v2 and -v3): BERT's layers with disentangled attention over
    /// relative positions, masked embeddings; the context pooler act(dense(h[:, 0])).
    DebertaV2,
    /// `modernbert`: pre-LayerNorm layers without biases, rotary positions, GeGLU, local
    /// (sliding-window) and global attention in turn; the head norm(act(dense(pool))).
    ModernBert,
}

/// config.json's `model_type`s that pipe loads, in the order error messages list them.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "bert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "electra",
    "deberta-v2",
    "modernbert",
];

impl Family {
    /// The family of a `model_type`; `None` for one pipe does not load.
    pub fn of(model_type: &str) -> Option<Family> {
        match model_type {
            "bert" => Some(Family::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Family::Roberta),
            "distilbert" => Some(Family::DistilBert),
            "electra" => Some(Family::Electra),
            "deberta-v2" => Some(Family::DebertaV2),
            "modernbert" => Some(Family::ModernBert),
            _ => None,
        }
    }

    /// The prefix of the encoder's tensors in a `…ForSequenceClassification` checkpoint
    /// (`bert.embeddings…`); XLM-R and CamemBERT checkpoints use `roberta.` as well.
    pub fn base_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::Electra => "electra",
            Family::DebertaV2 => "deberta",
            Family::ModernBert => "model",
        }
    }
}

/// The activation of the pooler (the dense layer that makes the classifier's input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolerActivation {
    Tanh,
    Relu,
    Gelu,
}

/// DeBERTa's disentangled attention: content-to-position and position-to-content scores over
/// relative positions, from `rel_embeddings` (`2 × span` rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelativeAttention {
    /// Relative distances covered on each side: `position_buckets`, else
    /// `max_relative_positions` (`max_position_embeddings` when below 1).
    pub span: usize,
    /// `position_buckets` > 0: distances beyond half the buckets are log-bucketed up to
    /// `max_relative_positions` (`(bucket_size, max_position)`).
    pub log_buckets: Option<(usize, usize)>,
    /// `pos_att_type` holds `c2p` (content to position).
    pub c2p: bool,
    /// `pos_att_type` holds `p2c` (position to content).
    pub p2c: bool,
    /// The position projections are the layer's own query/key projections (`share_att_key`).
    pub share_att_key: bool,
    /// `norm_rel_ebd` holds `layer_norm`: the relative embeddings are normalised first.
    pub norm_rel_embeddings: bool,
}

/// ModernBERT's options beyond the shared sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModernBertOptions {
    /// Per layer: global (full) attention, else local (`layer_types`, or every
    /// `global_attn_every_n_layers`-th layer global from the first).
    pub global_layers: Vec<bool>,
    /// Rotary base of the global and of the local layers.
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// A local layer's query sees keys at most this far away (`local_attention` / 2).
    pub half_window: usize,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// The head's dense layer has a bias (`classifier_bias`).
    pub head_bias: bool,
    /// `classifier_pooling = "mean"`: the head reads the mean over real tokens, not h[:, 0].
    pub mean_pooling: bool,
}

/// An encoder's sizes and options, whatever its family names them.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub family: Family,
    /// config.json's `model_type` as written (`xlm-roberta`, not the family's name).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// The embeddings' width: the hidden size, except ELECTRA's `embedding_size`.
    pub embedding_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// 0: the family has no token-type embeddings (DistilBERT).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    /// The padding id: the vectorizer pads with it, and RoBERTa's positions start after it.
    pub pad_token_id: usize,
    /// Absolute position embeddings are added to the input (all but DeBERTa-v3).
    pub position_biased_input: bool,
    /// DeBERTa's relative attention (`relative_attention`).
    pub relative: Option<RelativeAttention>,
    /// The pooler's activation (DeBERTa: `pooler_hidden_act`).
    pub pooler_activation: PoolerActivation,
    /// ModernBERT's layout.
    pub modern: Option<ModernBertOptions>,
}

fn gelu() -> String {
    "gelu".into()
}
fn eps() -> f64 {
    1e-12
}
fn two() -> usize {
    2
}
fn dropout() -> f64 {
    0.1
}
fn absolute() -> String {
    "absolute".into()
}

/// config.json of BERT, RoBERTa / XLM-R / CamemBERT and ELECTRA (the same keys).
#[derive(Deserialize)]
struct BertStyle {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    /// ELECTRA and DeBERTa.
    #[serde(default)]
    embedding_size: Option<usize>,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn yes() -> bool {
    true
}
fn minus_one() -> i64 {
    -1
}
fn deberta_eps() -> f64 {
    1e-7
}
fn zero() -> usize {
    0
}

/// `pos_att_type`: a list, or one string with `|` between the types.
#[derive(Deserialize)]
#[serde(untagged)]
enum PosAttType {
    List(Vec<String>),
    Joined(String),
}

/// DeBERTa-v2's config.json (BERT's sizes; its own defaults and relative-attention keys).
#[derive(Deserialize)]
struct DebertaStyle {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "zero")]
    type_vocab_size: usize,
    #[serde(default = "deberta_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default)]
    embedding_size: Option<usize>,
    #[serde(default)]
    relative_attention: bool,
    #[serde(default = "minus_one")]
    max_relative_positions: i64,
    #[serde(default = "minus_one")]
    position_buckets: i64,
    #[serde(default = "yes")]
    position_biased_input: bool,
    #[serde(default)]
    pos_att_type: Option<PosAttType>,
    #[serde(default)]
    share_att_key: bool,
    #[serde(default)]
    norm_rel_ebd: Option<String>,
    #[serde(default = "gelu")]
    pooler_hidden_act: String,
    #[serde(default)]
    pooler_hidden_size: Option<usize>,
    #[serde(default)]
    conv_kernel_size: Option<usize>,
    #[serde(default)]
    attention_head_size: Option<usize>,
}

impl DebertaStyle {
    fn relative(&self) -> Result<Option<RelativeAttention>, String> {
        if !self.relative_attention {
            return Ok(None);
        }
        let types: Vec<String> = match &self.pos_att_type {
            None => Vec::new(),
            Some(PosAttType::List(l)) => l.iter().map(|t| t.trim().to_lowercase()).collect(),
            Some(PosAttType::Joined(s)) => s.split('|').map(|t| t.trim().to_lowercase()).collect(),
        };
        if let Some(other) = types.iter().find(|t| *t != "c2p" && *t != "p2c") {
            return Err(format!(
                "`pos_att_type` `{other}` is not supported (only \"c2p\" and \"p2c\")"
            ));
        }
        let max_relative = match self.max_relative_positions {
            m if m < 1 => self.max_position_embeddings,
            m => m as usize,
        };
        let buckets = usize::try_from(self.position_buckets)
            .ok()
            .filter(|&b| b > 0);
        Ok(Some(RelativeAttention {
            span: buckets.unwrap_or(max_relative),
            log_buckets: buckets.map(|b| (b, max_relative)),
            c2p: types.iter().any(|t| t == "c2p"),
            p2c: types.iter().any(|t| t == "p2c"),
            share_att_key: self.share_att_key,
            norm_rel_embeddings: (self.norm_rel_ebd.as_deref().unwrap_or("none"))
                .split('|')
                .any(|t| t.trim() == "layer_norm"),
        }))
    }
}

fn no() -> bool {
    false
}
fn modern_eps() -> f64 {
    1e-5
}
fn cls() -> String {
    "cls".into()
}
fn three() -> usize {
    3
}
fn window() -> usize {
    128
}

/// ModernBERT's config.json.
#[derive(Deserialize)]
struct ModernBertStyle {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "modern_eps")]
    norm_eps: f64,
    #[serde(default = "no")]
    norm_bias: bool,
    #[serde(default = "no")]
    attention_bias: bool,
    #[serde(default = "no")]
    mlp_bias: bool,
    #[serde(default = "no")]
    classifier_bias: bool,
    #[serde(default = "gelu")]
    hidden_activation: String,
    #[serde(default = "gelu")]
    classifier_activation: String,
    #[serde(default = "cls")]
    classifier_pooling: String,
    #[serde(default)]
    embedding_dropout: f64,
    #[serde(default)]
    attention_dropout: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default = "window")]
    local_attention: usize,
    #[serde(default = "three")]
    global_attn_every_n_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    global_rope_theta: Option<f64>,
    #[serde(default)]
    local_rope_theta: Option<f64>,
    #[serde(default)]
    rope_parameters: Option<Value>,
}

impl ModernBertStyle {
    fn options(&self) -> Result<ModernBertOptions, String> {
        let global_layers = match &self.layer_types {
            Some(types) => {
                if types.len() != self.num_hidden_layers {
                    return Err(format!(
                        "`layer_types` has {} entries for {} layers",
                        types.len(),
                        self.num_hidden_layers
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(true),
                        "sliding_attention" => Ok(false),
                        other => Err(format!("`layer_types`: unknown `{other}`")),
                    })
                    .collect::<Result<Vec<bool>, String>>()?
            }
            None => {
                let every = self.global_attn_every_n_layers.max(1);
                (0..self.num_hidden_layers)
                    .map(|i| i % every == 0)
                    .collect()
            }
        };
        // transformers 5 writes the rotary bases per layer type; older files as two keys.
        let theta = |kind: &str, old: Option<f64>, default: f64| {
            (self.rope_parameters.as_ref())
                .and_then(|r| r.get(kind)?.get("rope_theta")?.as_f64())
                .or(old)
                .unwrap_or(default)
        };
        if let Some(kind) = (self.rope_parameters.as_ref())
            .and_then(|r| r.as_object())
            .and_then(|r| {
                r.values()
                    .filter_map(|v| v.get("rope_type")?.as_str())
                    .find(|t| *t != "default")
            })
        {
            return Err(format!(
                "`rope_parameters`: rope_type `{kind}` is not supported (only \"default\")"
            ));
        }
        let mean_pooling = match self.classifier_pooling.as_str() {
            "cls" => false,
            "mean" => true,
            other => {
                return Err(format!(
                    "`classifier_pooling` `{other}` is not supported (\"cls\" or \"mean\")"
                ));
            }
        };
        Ok(ModernBertOptions {
            global_layers,
            global_rope_theta: theta("full_attention", self.global_rope_theta, 160_000.0),
            local_rope_theta: theta("sliding_attention", self.local_rope_theta, 10_000.0),
            half_window: self.local_attention / 2,
            norm_bias: self.norm_bias,
            attention_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            head_bias: self.classifier_bias,
            mean_pooling,
        })
    }
}

fn pooler_activation(name: &str) -> Result<PoolerActivation, String> {
    match name {
        "gelu" => Ok(PoolerActivation::Gelu),
        "tanh" => Ok(PoolerActivation::Tanh),
        "relu" => Ok(PoolerActivation::Relu),
        other => Err(format!("unsupported pooler_hidden_act `{other}`")),
    }
}

/// DistilBERT's config.json: its own names for the same sizes.
#[derive(Deserialize)]
struct DistilBertStyle {
    vocab_size: usize,
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    /// The feed-forward width (transformers' default: 4 × dim).
    #[serde(default)]
    hidden_dim: Option<usize>,
    max_position_embeddings: usize,
    #[serde(default = "gelu")]
    activation: String,
    #[serde(default = "dropout")]
    dropout: f64,
    #[serde(default = "dropout")]
    attention_dropout: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
}

impl EncoderConfig {
    /// `dir/config.json`, read by its `model_type` and checked. Errors name the file and the key.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let at = |e: String| format!("{}: {e}", path.display());
        let json: Value = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
        let config = Self::from_json(&json).map_err(at)?;
        config.check().map(|()| config).map_err(at)
    }

    /// A config.json's contents, by its `model_type`.
    pub fn from_json(json: &Value) -> Result<Self, String> {
        let supported = SUPPORTED_MODEL_TYPES.join(", ");
        let model_type = match json.get("model_type") {
            Some(Value::String(t)) => t.clone(),
            Some(other) => return Err(format!("`model_type` must be a string, got {other}")),
            None => {
                return Err(format!(
                    "no `model_type`: pipe reads the family from it (supported: {supported}); \
                     add e.g. \"model_type\": \"bert\" if this is a BERT checkpoint"
                ));
            }
        };
        let family = Family::of(&model_type).ok_or_else(|| {
            format!("model_type `{model_type}` is not supported (supported: {supported})")
        })?;
        let parse_error = |e: serde_json::Error| format!("model_type `{model_type}`: {e}");
        match family {
            Family::DistilBert => {
                let c: DistilBertStyle =
                    serde_json::from_value(json.clone()).map_err(parse_error)?;
                Ok(EncoderConfig {
                    family,
                    model_type,
                    vocab_size: c.vocab_size,
                    hidden_size: c.dim,
                    embedding_size: c.dim,
                    num_hidden_layers: c.n_layers,
                    num_attention_heads: c.n_heads,
                    intermediate_size: c.hidden_dim.unwrap_or(4 * c.dim),
                    max_position_embeddings: c.max_position_embeddings,
                    type_vocab_size: 0,
                    // transformers' DistilBERT builds its LayerNorms with eps 1e-12.
                    layer_norm_eps: 1e-12,
                    hidden_act: c.activation,
                    hidden_dropout_prob: c.dropout,
                    attention_probs_dropout_prob: c.attention_dropout,
                    pad_token_id: c.pad_token_id.unwrap_or(0),
                    position_biased_input: true,
                    relative: None,
                    pooler_activation: PoolerActivation::Relu,
                    modern: None,
                })
            }
            Family::ModernBert => {
                let c: ModernBertStyle =
                    serde_json::from_value(json.clone()).map_err(parse_error)?;
                Ok(EncoderConfig {
                    family,
                    modern: Some(c.options()?),
                    pooler_activation: pooler_activation(&c.classifier_activation)
                        .map_err(|e| e.replace("pooler_hidden_act", "classifier_activation"))?,
                    model_type,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    embedding_size: c.hidden_size,
                    num_hidden_layers: c.num_hidden_layers,
                    num_attention_heads: c.num_attention_heads,
                    intermediate_size: c.intermediate_size,
                    max_position_embeddings: c.max_position_embeddings,
                    type_vocab_size: 0,
                    layer_norm_eps: c.norm_eps,
                    hidden_act: c.hidden_activation,
                    hidden_dropout_prob: c.embedding_dropout,
                    attention_probs_dropout_prob: c.attention_dropout,
                    pad_token_id: c.pad_token_id.unwrap_or(0),
                    position_biased_input: false,
                    relative: None,
                })
            }
            Family::DebertaV2 => {
                let c: DebertaStyle = serde_json::from_value(json.clone()).map_err(parse_error)?;
                if c.conv_kernel_size.unwrap_or(0) > 0 {
                    return Err(
                        "`conv_kernel_size`: DeBERTa-v2's convolution layer is not supported"
                            .into(),
                    );
                }
                if c.attention_head_size
                    .is_some_and(|d| d * c.num_attention_heads != c.hidden_size)
                {
                    return Err(
                        "`attention_head_size` × `num_attention_heads` must equal `hidden_size`"
                            .into(),
                    );
                }
                if c.pooler_hidden_size.is_some_and(|p| p != c.hidden_size) {
                    return Err("`pooler_hidden_size` must equal `hidden_size`".into());
                }
                Ok(EncoderConfig {
                    family,
                    relative: c.relative()?,
                    pooler_activation: pooler_activation(&c.pooler_hidden_act)?,
                    model_type,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    embedding_size: c.embedding_size.unwrap_or(c.hidden_size),
                    num_hidden_layers: c.num_hidden_layers,
                    num_attention_heads: c.num_attention_heads,
                    intermediate_size: c.intermediate_size,
                    max_position_embeddings: c.max_position_embeddings,
                    type_vocab_size: c.type_vocab_size,
                    layer_norm_eps: c.layer_norm_eps,
                    hidden_act: c.hidden_act,
                    hidden_dropout_prob: c.hidden_dropout_prob,
                    attention_probs_dropout_prob: c.attention_probs_dropout_prob,
                    pad_token_id: c.pad_token_id.unwrap_or(0),
                    position_biased_input: c.position_biased_input,
                    modern: None,
                })
            }
            Family::Bert | Family::Roberta | Family::Electra => {
                let c: BertStyle = serde_json::from_value(json.clone()).map_err(parse_error)?;
                if c.position_embedding_type != "absolute" {
                    return Err(format!(
                        "`position_embedding_type` `{}` is not supported (only \"absolute\")",
                        c.position_embedding_type
                    ));
                }
                let embedding_size = match family {
                    Family::Electra => c.embedding_size.unwrap_or(c.hidden_size),
                    _ => c.hidden_size,
                };
                let default_pad = if family == Family::Roberta { 1 } else { 0 };
                Ok(EncoderConfig {
                    family,
                    model_type,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    embedding_size,
                    num_hidden_layers: c.num_hidden_layers,
                    num_attention_heads: c.num_attention_heads,
                    intermediate_size: c.intermediate_size,
                    max_position_embeddings: c.max_position_embeddings,
                    type_vocab_size: c.type_vocab_size,
                    layer_norm_eps: c.layer_norm_eps,
                    hidden_act: c.hidden_act,
                    hidden_dropout_prob: c.hidden_dropout_prob,
                    attention_probs_dropout_prob: c.attention_probs_dropout_prob,
                    pad_token_id: c.pad_token_id.unwrap_or(default_pad),
                    position_biased_input: true,
                    relative: None,
                    pooler_activation: match family {
                        Family::Electra => PoolerActivation::Gelu,
                        _ => PoolerActivation::Tanh,
                    },
                    modern: None,
                })
            }
        }
    }

    /// The longest sequence the positions cover: RoBERTa's first position is the padding id
    /// + 1, so `max_position_embeddings` - 2 for the usual padding id 1.
    pub fn max_sequence_length(&self) -> usize {
        match self.family {
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
            _ => self.max_position_embeddings,
        }
    }

    /// Sizes an encoder can be built with: every count at least 1 (a zero would build empty
    /// tables that the first batch indexes out of range), heads dividing the width,
    /// probabilities in [0, 1), a positive LayerNorm epsilon, a known activation.
    pub fn check(&self) -> Result<(), String> {
        let (size, heads, layers, ffn, vocab) = match self.family {
            Family::DistilBert => ("dim", "n_heads", "n_layers", "hidden_dim", "vocab_size"),
            _ => (
                "hidden_size",
                "num_attention_heads",
                "num_hidden_layers",
                "intermediate_size",
                "vocab_size",
            ),
        };
        let mut counts = vec![
            (vocab, self.vocab_size),
            (size, self.hidden_size),
            (layers, self.num_hidden_layers),
            (heads, self.num_attention_heads),
            (ffn, self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("embedding_size", self.embedding_size),
        ];
        if !matches!(
            self.family,
            Family::DistilBert | Family::DebertaV2 | Family::ModernBert
        ) {
            counts.push(("type_vocab_size", self.type_vocab_size));
        }
        if let Some(r) = &self.relative {
            counts.push(("position_buckets / max_relative_positions", r.span));
            if let Some((buckets, max_position)) = r.log_buckets
                && (buckets < 2 || max_position <= buckets / 2 + 1)
            {
                return Err(format!(
                    "position_buckets {buckets} needs max_relative_positions above {}, got {max_position}",
                    buckets / 2 + 1
                ));
            }
        }
        for (key, value) in counts {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1, got 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "{size} {} is not a multiple of {heads} {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(format!(
                "`pad_token_id` {} is not below vocab_size {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        if self.family == Family::Roberta && self.max_sequence_length() == 0 {
            return Err(format!(
                "max_position_embeddings {} leaves no position after the padding id {}",
                self.max_position_embeddings, self.pad_token_id
            ));
        }
        let (hidden_key, attention_key) = match self.family {
            Family::DistilBert => ("dropout", "attention_dropout"),
            _ => ("hidden_dropout_prob", "attention_probs_dropout_prob"),
        };
        for (key, p) in [
            (hidden_key, self.hidden_dropout_prob),
            (attention_key, self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`{key}` must be in [0, 1), got {p}"));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(format!(
                "`layer_norm_eps` must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        match self.hidden_act.as_str() {
            "gelu" | "relu" | "gelu_new" | "gelu_pytorch_tanh" => Ok(()),
            other => {
                let key = match self.family {
                    Family::DistilBert => "activation",
                    Family::ModernBert => "hidden_activation",
                    _ => "hidden_act",
                };
                Err(format!("unsupported {key} `{other}`"))
            }
        }
    }

    /// Parameters of the family's base model with the pooler pipe builds (BERT's pooler, or
    /// the head's dense layer that plays its part): the count `num_parameters()` gives for
    /// `…ForSequenceClassification` less its last linear layer. Counted from the tensors a
    /// checkpoint holds, so the count and the loader cannot disagree.
    pub fn param_count(&self) -> usize {
        let pooler = super::checkpoint::pooler_names(self.family)[0];
        (super::checkpoint::encoder_plan(self).iter())
            .chain(&super::checkpoint::pooler_plan(self, pooler))
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}
