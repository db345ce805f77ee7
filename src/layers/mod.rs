//! Layer types. Each file holds one layer: its `Config` (the spec keys, shape rule, parameter
//! count and initialisation) and its burn module (the forward pass). The `registry!` list
//! below is the one place that maps a `type` name to them.

// Layers (and the records burn derives for them) are built once and moved rarely, so the size
// difference between a BERT and a dropout variant does not matter.
#![allow(clippy::large_enum_variant)]

pub mod init;
mod recurrent;
mod registry;
/// Helpers and plain-Rust reference calculations for the layer files' tests.
#[cfg(test)]
pub(crate) mod testing;

// The layer registry: `"type name" => module::Config as Variant`. A new layer type is a new
// file in this folder plus one line here.
registry::registry! {
    "add" => add::AddConfig as Add,
    "batch_normalization" => batch_normalization::BatchNormalizationConfig as BatchNormalization,
    "bert" => bert::HfEncoderConfig as Bert,
    "concatenate" => concatenate::ConcatenateConfig as Concatenate,
    "conv1d" => conv1d::Conv1dConfig as Conv1d,
    "dense" => dense::DenseConfig as Dense,
    "dropout" => dropout::DropoutConfig as Dropout,
    "embedding" => embedding::EmbeddingConfig as Embedding,
    "flatten" => flatten::FlattenConfig as Flatten,
    "global_average_pooling_1d" => global_average_pooling_1d::GlobalAveragePooling1dConfig as GlobalAveragePooling1d,
    "global_max_pooling_1d" => global_max_pooling_1d::GlobalMaxPooling1dConfig as GlobalMaxPooling1d,
    "gru" => gru::GruConfig as Gru,
    "hf_encoder" => hf_encoder::HfEncoderConfig as HfEncoder,
    "layer_normalization" => layer_normalization::LayerNormalizationConfig as LayerNormalization,
    "lstm" => lstm::LstmConfig as Lstm,
    "max_pooling_1d" => max_pooling_1d::MaxPooling1dConfig as MaxPooling1d,
    "multi_head_attention" => multi_head_attention::MultiHeadAttentionConfig as MultiHeadAttention,
    "token_and_position_embedding" => token_and_position_embedding::TokenAndPositionEmbeddingConfig as TokenAndPositionEmbedding,
    "transformer_block" => transformer_block::TransformerBlockConfig as TransformerBlock,
}

use std::fmt;

use burn::prelude::*;
use schemars::JsonSchema;

use crate::onnx::{OnnxGraph, OnnxValue};
use serde::{Serialize, de::DeserializeOwned};

/// Element kind of a value flowing between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Integer token ids.
    Ids,
    Float,
}

/// The shape of one example's value (the batch dimension is implicit); `None` = decided per batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub kind: ValueKind,
    pub dims: Vec<Option<usize>>,
}

impl TensorSpec {
    pub fn ids(len: Option<usize>) -> Self {
        TensorSpec {
            kind: ValueKind::Ids,
            dims: vec![len],
        }
    }
    pub fn float(dims: Vec<Option<usize>>) -> Self {
        TensorSpec {
            kind: ValueKind::Float,
            dims,
        }
    }
    /// The size of the last (feature) dimension, when known.
    pub fn features(&self) -> Option<usize> {
        self.dims.last().copied().flatten()
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    pub fn with_last(&self, last: usize) -> Self {
        let mut dims = self.dims.clone();
        if let Some(l) = dims.last_mut() {
            *l = Some(last);
        }
        TensorSpec::float(dims)
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(None")?;
        for d in &self.dims {
            match d {
                Some(n) => write!(f, ", {n}")?,
                None => write!(f, ", None")?,
            }
        }
        write!(f, ")")?;
        if self.kind == ValueKind::Ids {
            write!(f, " int")?;
        }
        Ok(())
    }
}

/// What shape rules may know beyond their inputs: the vectorizer's vocabulary and length.
#[derive(Clone, Debug, Default)]
pub struct InferCtx {
    pub vocab_size: usize,
    pub sequence_length: Option<usize>,
    /// Pretrained layers load their weights at init; off when a checkpoint will replace them.
    pub load_pretrained: bool,
    /// Batches are cut to their longest row: layers that mix positions must ignore padding.
    pub dynamic_padding: bool,
}

/// The error for an unmasked position-mixing layer under `padding = "longest"`.
pub fn require_masked(masked: bool, ctx: &InferCtx) -> Result<(), String> {
    if ctx.dynamic_padding && !masked {
        return Err(
            "the vectorizer pads each batch to its longest row (`padding = \"longest\"`), \
             which changes what an unmasked layer sees: set `masked = true` here or use \
             `padding = \"max_length\"`"
                .into(),
        );
    }
    Ok(())
}

/// The error for a masked layer whose positions are no longer the tokens' (the mask has one
/// entry per token): after a `valid` or strided `conv1d`, or a `max_pooling_1d`.
pub fn require_aligned(masked: bool, input: &TensorSpec, ctx: &InferCtx) -> Result<(), String> {
    let tokens = (!ctx.dynamic_padding)
        .then_some(ctx.sequence_length)
        .flatten();
    if masked && input.dims.first().copied().flatten() != tokens {
        return Err(format!(
            "`masked = true` needs one position per token ({}), got {input}: a `valid` or \
             strided conv1d or a max_pooling_1d before it shifts the positions",
            tokens.map_or("None".to_string(), |t| t.to_string()),
        ));
    }
    Ok(())
}

/// A batch of values flowing between layers.
#[derive(Clone, Debug)]
pub enum Value<B: Backend> {
    Ids(Tensor<B, 2, Int>),
    /// [batch, features]
    Vector(Tensor<B, 2>),
    /// [batch, length, features]
    Sequence(Tensor<B, 3>),
}

impl<B: Backend> Value<B> {
    // Shape inference ran before anything executes, so a kind mismatch here is a pipe bug.
    pub fn ids(self) -> Tensor<B, 2, Int> {
        match self {
            Value::Ids(t) => t,
            other => panic!("internal: expected token ids, got {other:?}"),
        }
    }
    pub fn sequence(self) -> Tensor<B, 3> {
        match self {
            Value::Sequence(t) => t,
            other => panic!("internal: expected a sequence, got {other:?}"),
        }
    }
    pub fn vector(self) -> Tensor<B, 2> {
        match self {
            Value::Vector(t) => t,
            other => panic!("internal: expected a vector, got {other:?}"),
        }
    }
    pub fn to_device(self, device: &B::Device) -> Self {
        match self {
            Value::Ids(t) => Value::Ids(t.to_device(device)),
            Value::Vector(t) => Value::Vector(t.to_device(device)),
            Value::Sequence(t) => Value::Sequence(t.to_device(device)),
        }
    }
    /// Applies an elementwise function whatever the rank.
    pub fn map_float(
        self,
        f2: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
        f3: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Self {
        match self {
            Value::Vector(t) => Value::Vector(f2(t)),
            Value::Sequence(t) => Value::Sequence(f3(t)),
            ids => ids,
        }
    }
}

/// Per-batch inputs every layer may read besides its own inputs.
#[derive(Clone, Debug)]
pub struct ForwardCtx<B: Backend> {
    /// [batch, length], 1.0 for real tokens and 0.0 for padding.
    pub mask: Tensor<B, 2>,
    pub token_type_ids: Tensor<B, 2, Int>,
}

/// A layer type's configuration: the keys of its `[[model.layers]]` table.
pub trait LayerDef: DeserializeOwned + Serialize + JsonSchema + Clone + fmt::Debug {
    type Module<B: Backend>: Module<B> + LayerForward<B>;

    /// How many inputs the layer takes (most take one).
    fn arity(&self) -> std::ops::RangeInclusive<usize> {
        1..=1
    }
    /// Named outputs, the default output first. Errors say what is wrong with the inputs.
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String>;
    /// Parameter count for these inputs, without allocating the weights.
    fn param_count(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> usize;
    /// How many of those are running statistics that no optimizer trains (batch
    /// normalization's moving mean and variance): non-trainable in `pipe summary`.
    fn state_count(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> usize {
        let _ = (inputs, ctx);
        0
    }
    /// Fresh weights, drawn from the backend's seeded RNG (pretrained layers load theirs
    /// unless `ctx.load_pretrained` is off). Errors say what could not be loaded.
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
        device: &B::Device,
    ) -> Result<Self::Module<B>, String>;
    /// Sanity checks on the configuration itself (positive sizes, rates in range).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// The parts a stage can freeze on their own, as `<layer>.<part>` (an encoder's
    /// `embeddings`, `layer.N`, `pooler`); none for most layers.
    fn parts(&self) -> Vec<String> {
        Vec::new()
    }
}

pub trait LayerForward<B: Backend> {
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>>;
    /// The layer with the named [`LayerDef::parts`] frozen (no gradients); the others as
    /// they were.
    fn freeze_parts(self, parts: &[String]) -> Self
    where
        Self: Sized,
    {
        let _ = parts;
        self
    }
    /// The forward pass when only the outputs marked in `read` (one flag per output, in
    /// [`forward`]'s order) are read afterwards: those are `Some`, the others may be `None`,
    /// so that a layer can leave out work that only they need (an encoder whose pooler reads
    /// the first position alone). By default every output, as [`forward`].
    ///
    /// [`forward`]: LayerForward::forward
    fn forward_read(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
        read: &[bool],
    ) -> Vec<Option<Value<B>>> {
        let _ = read;
        self.forward(inputs, ctx).into_iter().map(Some).collect()
    }
    /// The forward pass as a classification head: pre-softmax logits where the layer ends in a
    /// softmax, so that the loss can use a stable log-softmax (as Keras does).
    fn forward_logits(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        self.forward(inputs, ctx)
    }
    /// The forward pass as ONNX nodes appended to `g` (as [`forward_logits`] where `head`:
    /// the model's last layer), reading `inputs` and [`OnnxGraph::mask`] for the mask; the
    /// outputs in [`forward`]'s order. Errors say why this layer cannot be written in ONNX.
    ///
    /// [`forward_logits`]: LayerForward::forward_logits
    /// [`forward`]: LayerForward::forward
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        head: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let _ = (g, inputs, head);
        Err("has no ONNX form in pipe".into())
    }
    /// The weights of the layer's attention for these inputs, [batch, heads, queries, keys],
    /// each named within the layer (`""` for the layer's own, `encoder.N` in a BERT); none for
    /// layers that do not attend. `pipe attention` draws them.
    fn attention_maps(
        &self,
        inputs: Vec<Value<B>>,
        ctx: &ForwardCtx<B>,
    ) -> Vec<(String, Tensor<B, 4>)> {
        let _ = (inputs, ctx);
        Vec::new()
    }
}

pub(crate) fn require_rank(
    inputs: &[TensorSpec],
    ranks: &[usize],
    what: &str,
) -> Result<(), String> {
    let s = &inputs[0];
    if s.kind != ValueKind::Float {
        return Err(format!("{what} needs float features, got token ids {s}"));
    }
    if !ranks.contains(&s.rank()) {
        return Err(format!(
            "{what} needs input of rank {:?} (without batch), got {s}",
            ranks
        ));
    }
    if s.features().is_none() {
        return Err(format!("{what} needs a known feature size, got {s}"));
    }
    Ok(())
}

pub(crate) fn positive(value: usize, key: &str) -> Result<(), String> {
    if value == 0 {
        Err(format!("`{key}` must be at least 1"))
    } else {
        Ok(())
    }
}

/// A real that must be above zero (a normalisation's `epsilon`).
pub(crate) fn positive_real(value: f64, key: &str) -> Result<(), String> {
    if value > 0.0 {
        Ok(())
    } else {
        Err(format!("`{key}` must be positive"))
    }
}

pub(crate) fn rate(value: f64, key: &str) -> Result<(), String> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("`{key}` must be in [0, 1), got {value}"))
    }
}
