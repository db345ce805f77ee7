//! The tokenizer of a pretrained model: its tokenizer.json, or its vocab.txt as BERT WordPiece.
//! The file's own padding and truncation presets are replaced by the spec's.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model, Tokenizer, TruncationParams, TruncationStrategy};

use super::Encoded;
use crate::pretrained::locate_any;
use crate::spec::vectorizer::{Padding, PretrainedVectorizerSpec};

#[derive(Clone)]
pub struct PretrainedTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
    padding: Padding,
}

impl PretrainedTokenizer {
    pub fn from_spec(spec: &PretrainedVectorizerSpec) -> Result<Self> {
        let dir = locate_any(&spec.from, &[&["tokenizer.json"], &["vocab.txt"]])
            .map_err(|e| anyhow!(e))?;
        let tokenizer = if dir.join("tokenizer.json").is_file() {
            Tokenizer::from_file(dir.join("tokenizer.json"))
                .map_err(|e| anyhow!("{}: {e}", dir.join("tokenizer.json").display()))?
        } else {
            wordpiece(&dir)?
        };
        Self::new(tokenizer, spec)
    }

    /// Loads the tokenizer.json a run saved.
    pub fn load(dir: &Path, spec: &PretrainedVectorizerSpec) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Self::new(tokenizer, spec)
    }

    fn new(mut tokenizer: Tokenizer, spec: &PretrainedVectorizerSpec) -> Result<Self> {
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_length,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("truncation: {e}"))?;
        // pipe pads itself: to the batch's longest sequence, or to max_length.
        tokenizer.with_padding(None);
        Ok(PretrainedTokenizer {
            tokenizer,
            max_length: spec.max_length,
            padding: spec.padding.clone(),
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

    /// Rows padded to `max_length` with their real lengths, so batches can be cut to their
    /// longest row (dynamic padding) or kept at `max_length`.
    pub fn encode(&self, texts: &[&str]) -> Encoded {
        let len = self.max_length;
        let mut out = Encoded {
            rows: texts.len(),
            len,
            ids: vec![0; texts.len() * len],
            mask: vec![0.0; texts.len() * len],
            token_type_ids: vec![0; texts.len() * len],
            lengths: vec![len; texts.len()],
            dynamic: self.padding == Padding::Longest,
        };
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .expect("encoding plain text with a loaded tokenizer does not fail");
        for (r, e) in encodings.iter().enumerate() {
            let n = e.get_ids().len().min(len);
            let base = r * len;
            for i in 0..n {
                out.ids[base + i] = e.get_ids()[i] as i32;
                out.token_type_ids[base + i] = e.get_type_ids()[i] as i32;
                out.mask[base + i] = e.get_attention_mask()[i] as f32;
            }
            out.lengths[r] = n;
        }
        out
    }
}

/// BERT WordPiece from a bare vocab.txt (lowercasing as `do_lower_case` in tokenizer_config.json, default on).
fn wordpiece(dir: &Path) -> Result<Tokenizer> {
    let vocab = dir.join("vocab.txt");
    let lowercase = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true);
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow!("{}: {e}", vocab.display()))?;
    let id = |t: &str| {
        model
            .get_vocab()
            .get(t)
            .copied()
            .with_context(|| format!("{}: no {t} token", vocab.display()))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
    Ok(tokenizer)
}
