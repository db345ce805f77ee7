//! Vectorizers: text to model inputs (ids, attention mask, token types).

mod fast_wordpiece;
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

/// One text's tokens, at most the vectorizer's length. `type_ids` is empty when all are 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// How a vectorizer pads its rows into a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Padded {
    /// The longest a row can be, and a fixed batch's length.
    pub len: usize,
    /// Batches are cut to their longest row instead of `len`.
    pub dynamic: bool,
    /// The id padded positions get (the tokenizer's `[PAD]` or `<pad>`; 0 for text_vectorization).
    pub pad_id: u32,
}

#[derive(Clone)]
pub enum Vectorizer {
    TextVectorization(TextVectorization),
    /// A pretrained model's tokenizer, or a WordPiece / BPE one trained on the train rows.
    Subword(SubwordTokenizer),
}

/// A vectorizer being fitted: the train texts are added one at a time (only counts are kept),
/// then [`Fitting::finish`] builds it.
pub enum Fitting {
    Adapt(
        text_vectorization::WordCounts,
        crate::spec::vectorizer::TextVectorizationSpec,
    ),
    Train(
        SubwordKind,
        Box<trained::WordCounts>,
        crate::spec::vectorizer::TrainedTokenizerSpec,
    ),
    Ready(Box<Vectorizer>),
}

impl Fitting {
    pub fn new(spec: &VectorizerSpec) -> Result<Self> {
        Ok(match spec {
            VectorizerSpec::TextVectorization(v) => Fitting::Adapt(Default::default(), v.clone()),
            VectorizerSpec::Pretrained(p) => Fitting::Ready(Box::new(Vectorizer::Subword(
                SubwordTokenizer::pretrained(p)?,
            ))),
            VectorizerSpec::Wordpiece(t) => Fitting::Train(
                SubwordKind::WordPiece,
                Box::new(trained::WordCounts::new(
                    SubwordKind::WordPiece,
                    t.lowercase,
                )),
                t.clone(),
            ),
            VectorizerSpec::Bpe(t) => Fitting::Train(
                SubwordKind::Bpe,
                Box::new(trained::WordCounts::new(SubwordKind::Bpe, t.lowercase)),
                t.clone(),
            ),
        })
    }

    /// Whether it learns from the train texts (else [`Fitting::add`] need not be called).
    pub fn needs_texts(&self) -> bool {
        !matches!(self, Fitting::Ready(_))
    }

    pub fn add(&mut self, text: &str) -> Result<()> {
        match self {
            Fitting::Adapt(counts, _) => counts.add(text),
            Fitting::Train(_, counts, _) => counts.add(text)?,
            Fitting::Ready(_) => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Vectorizer> {
        Ok(match self {
            Fitting::Adapt(counts, v) => Vectorizer::TextVectorization(
                counts
                    .adapt(v.max_tokens, v.output_sequence_length)
                    .with_padding(&v.padding),
            ),
            Fitting::Train(kind, counts, t) => Vectorizer::Subword(SubwordTokenizer::new(
                trained::trained_tokenizer(kind, &t, *counts)?,
                t.max_length,
                &t.padding,
            )?),
            Fitting::Ready(v) => *v,
        })
    }
}

impl Vectorizer {
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

    /// Each text's tokens at its real length (at most the padded length).
    pub fn tokenize(&self, texts: &[&str]) -> Vec<Tokens> {
        match self {
            Vectorizer::TextVectorization(v) => {
                use rayon::prelude::*;
                (texts.par_iter())
                    .map_init(String::new, |buf, text| Tokens {
                        ids: v.ids(text, buf),
                        type_ids: Vec::new(),
                    })
                    .collect()
            }
            Vectorizer::Subword(t) => t.tokenize(texts),
        }
    }

    /// How rows are padded into a batch.
    pub fn padding(&self) -> Padded {
        match self {
            Vectorizer::TextVectorization(v) => Padded {
                len: v.sequence_length(),
                dynamic: v.dynamic_padding(),
                pad_id: 0,
            },
            Vectorizer::Subword(t) => t.padding(),
        }
    }

    /// Identity of what [`Vectorizer::tokenize`] gives: BLAKE3 of the tokenizer's JSON and the
    /// padded length (the encoded cache's key).
    pub fn fingerprint(&self) -> [u8; 32] {
        let (tokenizer, len) = match self {
            Vectorizer::TextVectorization(v) => (v.tokenizer(), v.sequence_length()),
            Vectorizer::Subword(t) => (t.tokenizer(), t.padding().len),
        };
        let json = tokenizer.to_string(false).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(b"pipe vectorizer v1\0")
            .update(&(len as u64).to_le_bytes())
            .update(json.as_bytes());
        *h.finalize().as_bytes()
    }
}
