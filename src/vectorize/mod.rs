//! Vectorizers: text to model inputs (ids, attention mask, token types).

pub mod pretrained;
pub mod subword;
pub mod text_vectorization;
pub mod trained;

use std::path::Path;

use anyhow::Result;

use crate::spec::VectorizerSpec;
pub use subword::SubwordTokenizer;
pub use text_vectorization::TextVectorization;
use trained::SubwordKind;

/// A batch of encoded texts, row-major [rows, len].
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    pub rows: usize,
    pub len: usize,
    pub ids: Vec<i32>,
    pub mask: Vec<f32>,
    pub token_type_ids: Vec<i32>,
    /// Real tokens per row (the rest is padding).
    pub lengths: Vec<usize>,
    /// Batches are cut to their longest row instead of `len`.
    pub dynamic: bool,
}

#[derive(Clone)]
pub enum Vectorizer {
    TextVectorization(TextVectorization),
    /// A pretrained model's tokenizer, or a WordPiece / BPE one trained on the train rows.
    Subword(SubwordTokenizer),
}

impl Vectorizer {
    /// Builds the vectorizer for a spec, adapting on the train texts where it learns a vocabulary.
    pub fn fit<'a>(
        spec: &VectorizerSpec,
        train_texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self> {
        match spec {
            VectorizerSpec::TextVectorization(v) => Ok(Vectorizer::TextVectorization(
                TextVectorization::adapt(train_texts, v.max_tokens, v.output_sequence_length)
                    .with_padding(&v.padding),
            )),
            VectorizerSpec::Pretrained(p) => {
                Ok(Vectorizer::Subword(SubwordTokenizer::pretrained(p)?))
            }
            VectorizerSpec::Wordpiece(t) => Ok(Vectorizer::Subword(SubwordTokenizer::train(
                SubwordKind::WordPiece,
                t,
                train_texts,
            )?)),
            VectorizerSpec::Bpe(t) => Ok(Vectorizer::Subword(SubwordTokenizer::train(
                SubwordKind::Bpe,
                t,
                train_texts,
            )?)),
        }
    }

    /// Loads what [`Vectorizer::save`] wrote into a run folder's `vectorizer/`.
    pub fn load(spec: &VectorizerSpec, dir: &Path) -> Result<Self> {
        match spec {
            VectorizerSpec::TextVectorization(v) => Ok(Vectorizer::TextVectorization(
                TextVectorization::load(dir)?.with_padding(&v.padding),
            )),
            VectorizerSpec::Pretrained(p) => Ok(Vectorizer::Subword(SubwordTokenizer::load(
                dir,
                p.max_length,
                &p.padding,
            )?)),
            VectorizerSpec::Wordpiece(t) | VectorizerSpec::Bpe(t) => Ok(Vectorizer::Subword(
                SubwordTokenizer::load(dir, t.max_length, &t.padding)?,
            )),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Vectorizer::TextVectorization(v) => v.save(dir),
            Vectorizer::Subword(t) => t.save(dir),
        }
    }

    /// The vocabulary entry of token id `id` (`[UNK]` for words outside a learned vocabulary).
    pub fn token(&self, id: i32) -> String {
        let id = u32::try_from(id).unwrap_or(0);
        match self {
            Vectorizer::TextVectorization(v) => {
                v.vocabulary().get(id as usize).cloned().unwrap_or_default()
            }
            Vectorizer::Subword(t) => t.tokenizer().id_to_token(id).unwrap_or_default(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Vectorizer::TextVectorization(v) => v.vocab_size(),
            Vectorizer::Subword(t) => t.vocab_size(),
        }
    }

    pub fn encode(&self, texts: &[&str]) -> Encoded {
        match self {
            Vectorizer::TextVectorization(v) => {
                let len = v.sequence_length();
                let mut out = Encoded {
                    rows: texts.len(),
                    len,
                    ids: Vec::with_capacity(texts.len() * len),
                    mask: Vec::with_capacity(texts.len() * len),
                    token_type_ids: vec![0; texts.len() * len],
                    lengths: Vec::with_capacity(texts.len()),
                    dynamic: v.dynamic_padding(),
                };
                for row in v.encode_batch(texts) {
                    out.lengths.push(row.iter().filter(|&&id| id != 0).count());
                    for id in row {
                        out.ids.push(id as i32);
                        // Padding is id 0; Keras' mask_zero semantics.
                        out.mask.push(if id == 0 { 0.0 } else { 1.0 });
                    }
                }
                out
            }
            Vectorizer::Subword(t) => t.encode(texts),
        }
    }
}
