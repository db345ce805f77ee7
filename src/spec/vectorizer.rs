//! `[vectorizer]`: text to token ids.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VectorizerSpec {
    /// Keras 3 `TextVectorization`: lowercase ASCII, strip punctuation, whitespace split,
    /// vocabulary adapted on the train rows.
    TextVectorization(TextVectorizationSpec),
    /// The tokenizer of a pretrained model (tokenizer.json or vocab.txt).
    Pretrained(PretrainedVectorizerSpec),
}

fn default_max_tokens() -> usize {
    20_000
}
fn default_sequence_length() -> usize {
    256
}
fn default_max_length() -> usize {
    128
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextVectorizationSpec {
    /// Vocabulary size including the padding "" and "[UNK]" entries.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Every sequence is truncated or zero-padded to this length.
    #[serde(default = "default_sequence_length")]
    pub output_sequence_length: usize,
    /// `max_length` (default, as Keras): every batch is `output_sequence_length` long.
    /// `longest`: each batch is cut to its longest row (at most `output_sequence_length`), which
    /// changes no result of a masked model, only its cost; `pipe check` refuses it where an
    /// unmasked layer would see a different number of positions.
    #[serde(default = "fixed_padding")]
    pub padding: Padding,
}

fn fixed_padding() -> Padding {
    Padding::MaxLength
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Pad each batch to its longest sequence.
    #[default]
    Longest,
    /// Pad every sequence to `max_length`.
    MaxLength,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainedVectorizerSpec {
    /// A folder path, or a hub id found in the Hugging Face cache / `PIPE_MODEL_PATH`.
    pub from: String,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default)]
    pub padding: Padding,
}

impl VectorizerSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            VectorizerSpec::TextVectorization(_) => "text_vectorization",
            VectorizerSpec::Pretrained(_) => "pretrained",
        }
    }
}
