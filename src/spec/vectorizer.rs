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
    /// A WordPiece tokenizer (BERT's: whole words and `##` continuation pieces, encoded
    /// greedily longest-first) trained on the train rows.
    Wordpiece(TrainedTokenizerSpec),
    /// A byte-level BPE tokenizer (GPT-2's: merges over each word's UTF-8 bytes, so no text
    /// is unknown) trained on the train rows.
    Bpe(TrainedTokenizerSpec),
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

fn default_trained_vocab_size() -> usize {
    8_000
}
fn default_min_frequency() -> u64 {
    2
}
fn default_true() -> bool {
    true
}

/// A subword tokenizer learned from the train rows. Id 0 is `[PAD]`; the same rows always
/// give the same tokenizer (ties between equally frequent merges go to the earlier pieces).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainedTokenizerSpec {
    /// The most pieces the vocabulary holds, special tokens included (default 8000). Fewer
    /// when the train rows run out of merges at `min_frequency`. A `bpe` vocabulary holds at
    /// least the 256 bytes and `[PAD]`.
    #[serde(default = "default_trained_vocab_size")]
    pub vocab_size: usize,
    /// A pair of pieces is merged into a new one only when it occurs at least this many times
    /// in the train rows (default 2).
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Lowercase the text before it is split (default true; WordPiece also strips accents
    /// then, as BERT's uncased models do).
    #[serde(default = "default_true")]
    pub lowercase: bool,
    /// Each text is truncated to this many pieces (default 128).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// `max_length` (default): every batch is `max_length` long, as convolutions and unmasked
    /// layers need. `longest`: each batch is cut to its longest row.
    #[serde(default = "fixed_padding")]
    pub padding: Padding,
}

impl VectorizerSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            VectorizerSpec::TextVectorization(_) => "text_vectorization",
            VectorizerSpec::Pretrained(_) => "pretrained",
            VectorizerSpec::Wordpiece(_) => "wordpiece",
            VectorizerSpec::Bpe(_) => "bpe",
        }
    }
}
