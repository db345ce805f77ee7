//! A tokenizers-crate tokenizer (a pretrained model's, or one trained on the train rows) with
//! pipe's truncation and padding: the file's own padding and truncation presets are replaced
//! by the spec's.

use std::path::Path;

use anyhow::{Result, anyhow};
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use super::{Padded, Tokens};
use crate::spec::vectorizer::Padding;

#[derive(Clone)]
pub struct SubwordTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
    padding: Padding,
    /// The id padded positions get: the tokenizer's `[PAD]` or `<pad>` (RoBERTa's is 1), so
    /// that padded rows are what the model's own tokenizer would give.
    pad_id: i32,
    /// The plain-Rust twin of a BERT WordPiece tokenizer, for ASCII texts.
    pub(super) fast: Option<std::sync::Arc<super::fast_wordpiece::FastWordPiece>>,
}

/// The padding token's id: `[PAD]` (BERT's family) or `<pad>` (RoBERTa's, SentencePiece
/// models'), else 0.
fn pad_id(tokenizer: &Tokenizer) -> i32 {
    ["[PAD]", "<pad>"]
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .map_or(0, |id| id as i32)
}

impl SubwordTokenizer {
    /// Loads the tokenizer.json a run saved.
    pub fn load(dir: &Path, max_length: usize, padding: &Padding) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Self::new(tokenizer, max_length, padding)
    }

    /// `tokenizer` truncating to `max_length` pieces, padded by pipe as `padding` says.
    pub fn new(mut tokenizer: Tokenizer, max_length: usize, padding: &Padding) -> Result<Self> {
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("truncation: {e}"))?;
        // pipe pads itself: to the batch's longest sequence, or to max_length.
        tokenizer.with_padding(None);
        Ok(SubwordTokenizer {
            pad_id: pad_id(&tokenizer),
            fast: super::fast_wordpiece::FastWordPiece::of(&tokenizer).map(std::sync::Arc::new),
            tokenizer,
            max_length,
            padding: padding.clone(),
        })
    }

    /// The HF tokenizer (the one `save` writes).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("tokenizer.json");
        let json = self
            .tokenizer
            .to_string(true)
            .map_err(|e| anyhow!("serialising {}: {e}", path.display()))?;
        Ok(crate::run::atomic_write(&path, json.as_bytes())?)
    }

    /// How rows are padded into a batch: with the tokenizer's padding id.
    pub fn padding(&self) -> Padded {
        Padded {
            len: self.max_length,
            dynamic: self.padding == Padding::Longest,
            pad_id: self.pad_id as u32,
        }
    }

    /// Each text's pieces (truncated to `max_length`) and their token types. ASCII texts of a
    /// BERT WordPiece tokenizer go through its plain-Rust twin, on all cores; the others
    /// through the tokenizer.
    pub fn tokenize(&self, texts: &[&str]) -> Vec<Tokens> {
        use rayon::prelude::*;
        let Some(fast) = &self.fast else {
            return self.tokenize_slowly(texts);
        };
        let mut out: Vec<Option<Tokens>> = (texts.par_iter())
            .map_init(String::new, |buf, text| {
                let ids = fast.ids(text, self.max_length, buf)?;
                Some(Tokens {
                    ids,
                    type_ids: Vec::new(),
                })
            })
            .collect();
        let left: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !left.is_empty() {
            let slow = self.tokenize_slowly(&left.iter().map(|&i| texts[i]).collect::<Vec<_>>());
            for (i, tokens) in left.into_iter().zip(slow) {
                out[i] = Some(tokens);
            }
        }
        out.into_iter()
            .map(|t| t.expect("every text encoded"))
            .collect()
    }

    /// [`SubwordTokenizer::tokenize`] through the tokenizers crate.
    pub fn tokenize_slowly(&self, texts: &[&str]) -> Vec<Tokens> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .expect("encoding plain text with a loaded tokenizer does not fail");
        (encodings.iter())
            .map(|e| {
                let n = e.get_ids().len().min(self.max_length);
                let type_ids = &e.get_type_ids()[..n];
                Tokens {
                    ids: e.get_ids()[..n].to_vec(),
                    type_ids: match type_ids.iter().any(|&t| t != 0) {
                        true => type_ids.to_vec(),
                        false => Vec::new(),
                    },
                }
            })
            .collect()
    }
}
