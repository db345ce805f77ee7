//! A plain-Rust twin of a BERT WordPiece tokenizer.json (BertNormalizer, BertPreTokenizer,
//! WordPiece, `[CLS] … [SEP]`) for ASCII texts: the same ids as the tokenizers crate, without
//! building an `Encoding` per text (token strings, offsets, masks), which is most of its cost.
//! A text that is not ASCII, or that holds an added token's text, is left to the tokenizer
//! (`None`). A test checks the twin against the tokenizer on all of AG News.

use std::collections::HashMap;

use tokenizers::Tokenizer;

pub struct FastWordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    prefix: String,
    max_chars: usize,
    lowercase: bool,
    /// `[CLS]` and `[SEP]` around each text, when the post-processor adds them.
    specials: Option<(u32, u32)>,
    /// Added tokens (matched in the raw text by the tokenizer), lowercased.
    added: Vec<String>,
}

impl FastWordPiece {
    /// The twin of `tokenizer`, if it is exactly the BERT pipeline this file reproduces.
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        let json = |v: Option<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
        let normalizer = json(
            tokenizer
                .get_normalizer()
                .and_then(|n| serde_json::to_value(n).ok()),
        );
        let lowercase = match (
            normalizer["type"].as_str(),
            normalizer["lowercase"].as_bool(),
        ) {
            (Some("BertNormalizer"), Some(l)) if normalizer["clean_text"] == true => l,
            _ => return None,
        };
        // Accents are stripped only from non-ASCII letters, which this twin never sees.
        let pre = json(
            tokenizer
                .get_pre_tokenizer()
                .and_then(|p| serde_json::to_value(p).ok()),
        );
        if pre["type"] != "BertPreTokenizer" {
            return None;
        }
        let model = serde_json::to_value(tokenizer.get_model()).ok()?;
        if model["type"] != "WordPiece" {
            return None;
        }
        let vocab = tokenizer.get_vocab(false);
        let unk = *vocab.get(model["unk_token"].as_str()?)?;
        let specials = specials(tokenizer)?;
        let added = (tokenizer.get_added_tokens_decoder().values())
            .map(|t| t.content.to_lowercase())
            .collect();
        Some(FastWordPiece {
            vocab,
            unk,
            prefix: model["continuing_subword_prefix"].as_str()?.to_string(),
            max_chars: model["max_input_chars_per_word"].as_u64()? as usize,
            lowercase,
            specials,
            added,
        })
    }

    /// The ids of `text` (at most `max_length`, the specials included), or `None` when it is
    /// not plain ASCII or holds an added token: the tokenizer must encode it.
    pub fn ids(&self, text: &str, max_length: usize, normalized: &mut String) -> Option<Vec<u32>> {
        if !text.is_ascii() {
            return None;
        }
        normalized.clear();
        for b in text.bytes() {
            match b {
                // BertNormalizer's clean_text: control characters go, whitespace becomes ' '.
                b'\t' | b'\n' | b'\r' => normalized.push(' '),
                0..=0x1f | 0x7f => {}
                _ if self.lowercase => normalized.push(b.to_ascii_lowercase() as char),
                _ => normalized.push(b as char),
            }
        }
        // The tokenizer finds added tokens ([CLS], [MASK], …) in the text before anything
        // else; any text that might hold one, in any case, is left to it.
        let lowered = text.to_ascii_lowercase();
        if self.added.iter().any(|a| lowered.contains(a.as_str())) {
            return None;
        }
        let room = match self.specials {
            Some(_) => max_length.saturating_sub(2),
            None => max_length,
        };
        let mut ids = Vec::new();
        if let Some((cls, _)) = self.specials {
            ids.push(cls);
        }
        let mut piece = String::new();
        'words: for word in normalized.split(' ').filter(|w| !w.is_empty()) {
            // BertPreTokenizer: every punctuation character is a word of its own.
            let mut start = 0;
            let bytes = word.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b.is_ascii_punctuation() {
                    if start < i && self.push_word(&word[start..i], &mut ids, room + 1, &mut piece)
                    {
                        break 'words;
                    }
                    if self.push_word(&word[i..=i], &mut ids, room + 1, &mut piece) {
                        break 'words;
                    }
                    start = i + 1;
                }
            }
            if start < bytes.len() && self.push_word(&word[start..], &mut ids, room + 1, &mut piece)
            {
                break;
            }
        }
        let content_end = match self.specials {
            Some(_) => (room + 1).min(ids.len()),
            None => room.min(ids.len()),
        };
        ids.truncate(content_end);
        if let Some((_, sep)) = self.specials {
            ids.push(sep);
        }
        Some(ids)
    }

    /// WordPiece's greedy longest match of one word, appended to `ids`; true once `ids` holds
    /// `full` ids (the rest would be truncated away).
    fn push_word(&self, word: &str, ids: &mut Vec<u32>, full: usize, piece: &mut String) -> bool {
        if word.len() > self.max_chars {
            ids.push(self.unk);
            return ids.len() >= full;
        }
        let before = ids.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => ids.push(id),
                None => {
                    ids.truncate(before);
                    ids.push(self.unk);
                    return ids.len() >= full;
                }
            }
            start = end;
        }
        ids.len() >= full
    }
}

/// `[CLS]`, `[SEP]` of a post-processor that puts them around a single text (all type ids 0);
/// `Some(None)` without a post-processor; `None` for any other.
fn specials(tokenizer: &Tokenizer) -> Option<Option<(u32, u32)>> {
    let Some(post) = tokenizer.get_post_processor() else {
        return Some(None);
    };
    let post = serde_json::to_value(post).ok()?;
    let id = |token: &serde_json::Value| -> Option<u32> {
        let name = token.as_str()?;
        tokenizer.token_to_id(name)
    };
    match post["type"].as_str()? {
        "BertProcessing" => Some(Some((id(&post["cls"][0])?, id(&post["sep"][0])?))),
        "TemplateProcessing" => {
            let single = post["single"].as_array()?;
            let part = |i: usize, kind: &str| -> Option<&serde_json::Value> {
                let p = single.get(i)?.get(kind)?;
                (p["type_id"] == 0).then_some(p)
            };
            if single.len() != 3 || part(1, "Sequence")?["id"] != "A" {
                return None;
            }
            let cls = part(0, "SpecialToken")?["id"].as_str()?;
            let sep = part(2, "SpecialToken")?["id"].as_str()?;
            let ids = |name: &str| -> Option<u32> {
                let ids = post["special_tokens"][name]["ids"].as_array()?;
                (ids.len() == 1).then(|| ids[0].as_u64().map(|i| i as u32))?
            };
            Some(Some((ids(cls)?, ids(sep)?)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::SubwordTokenizer;
    use super::super::trained::{SubwordKind, train_tokenizer};
    use crate::spec::vectorizer::{Padding, TrainedTokenizerSpec};

    /// AG News' train and test rows as pipe reads them (title and description), with the
    /// cases the twin must hand over or get right: added tokens, control characters, long
    /// words, punctuation runs, texts longer than the length, empty texts.
    fn texts() -> Vec<String> {
        let mut out = Vec::new();
        for split in ["train", "test"] {
            let path = format!("{}/data/ag_news/{split}.csv", env!("CARGO_MANIFEST_DIR"));
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_path(path)
                .unwrap();
            for row in reader.records() {
                let row = row.unwrap();
                out.push(format!("{} {}", &row[1], &row[2]));
            }
        }
        let long_word = "x".repeat(150);
        out.extend(
            [
                "",
                "   ",
                "[CLS] a [sep] b [MASK]",
                "tab\there\r\nand\x0bvertical\x0cfeed\x01\x7f end",
                "punctuation!!! runs...,;:'\"()[]{}<>$%^&*-_=+|\\/~`@#",
                "Ünïcödé text falls back",
                long_word.as_str(),
                "supercalifragilisticexpialidocious antidisestablishmentarianism",
            ]
            .map(String::from),
        );
        out.push("word ".repeat(400));
        out
    }

    fn agree(tokenizer: tokenizers::Tokenizer, what: &str) {
        for max_length in [128, 16] {
            let t =
                SubwordTokenizer::new(tokenizer.clone(), max_length, &Padding::Longest).unwrap();
            let fast = t
                .fast
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no fast path"));
            let texts = texts();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let slow = t.tokenize_slowly(&refs);
            let mut buf = String::new();
            let mut fast_rows = 0;
            for (text, want) in refs.iter().zip(&slow) {
                if let Some(ids) = fast.ids(text, max_length, &mut buf) {
                    assert_eq!(ids, want.ids, "{what}, {max_length}: {text:?}");
                    fast_rows += 1;
                }
            }
            assert_eq!(t.tokenize(&refs), slow, "{what}: the mixed path");
            assert!(
                fast_rows * 10 > refs.len() * 9,
                "{what}: {fast_rows} of {}",
                refs.len()
            );
        }
    }

    #[test]
    fn the_twin_gives_the_tokenizers_ids_on_all_of_ag_news() {
        let texts = texts();
        let spec = TrainedTokenizerSpec {
            vocab_size: 4000,
            min_frequency: 2,
            lowercase: true,
            max_length: 128,
            padding: Padding::Longest,
        };
        let trained = train_tokenizer(
            SubwordKind::WordPiece,
            &spec,
            texts.iter().map(String::as_str),
        )
        .unwrap();
        agree(trained, "pipe's own WordPiece");
        let minilm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/models/all-MiniLM-L6-v2/tokenizer.json");
        match tokenizers::Tokenizer::from_file(&minilm) {
            Ok(t) => agree(t, "MiniLM's tokenizer.json"),
            Err(_) => eprintln!("skipped: MiniLM's tokenizer.json is not in ../shared"),
        }
    }
}
