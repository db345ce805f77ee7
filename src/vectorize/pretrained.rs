//! The tokenizer of a pretrained model: its tokenizer.json, or its vocab.txt as BERT WordPiece.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model, Tokenizer};

use super::SubwordTokenizer;
use crate::pretrained::locate_any;
use crate::spec::vectorizer::PretrainedVectorizerSpec;

impl SubwordTokenizer {
    /// The tokenizer of the model folder `spec.from` names: its tokenizer.json, or its
    /// vocab.txt as BERT WordPiece.
    pub fn pretrained(spec: &PretrainedVectorizerSpec) -> Result<Self> {
        let dir = locate_any(&spec.from, &[&["tokenizer.json"], &["vocab.txt"]])
            .map_err(|e| anyhow!(e))?;
        let tokenizer = if dir.join("tokenizer.json").is_file() {
            Tokenizer::from_file(dir.join("tokenizer.json"))
                .map_err(|e| anyhow!("{}: {e}", dir.join("tokenizer.json").display()))?
        } else {
            wordpiece(&dir)?
        };
        Self::new(tokenizer, spec.max_length, &spec.padding)
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
