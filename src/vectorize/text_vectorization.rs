//! Keras 3 `TextVectorization(max_tokens, output_sequence_length)` with the default
//! settings (`standardize="lower_and_strip_punctuation"`, `split="whitespace"`,
//! `output_mode="int"`), reproduced id for id.
//!
//! Encoding runs through a real HF `tokenizers::Tokenizer`, so the `tokenizer.json` written by
//! [`TextVectorization::save`] is exactly what produced the ids, and other runtimes can load it.
//!
//! Keras details that are easy to get wrong (see `shared/fixtures/README.md`, section 3):
//! - `tf.strings.lower` without an encoding lowercases ASCII `A`..`Z` only (`"ÉCOLE"` -> `"École"`).
//! - The 32 ASCII punctuation characters are deleted, not replaced by a space, so `"e-mail"`
//!   becomes `"email"` and AG News' `\` line breaks glue words together.
//! - Tokens are separated only by runs of U+0009..U+000D and U+0020; NBSP, U+0085, U+3000 and
//!   friends stay inside tokens.
//! - The vocabulary is sorted by count descending, ties by token bytes *descending*; the cut at
//!   `max_tokens` usually falls inside a tie group, so the tie rule decides membership.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail, ensure};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{NormalizerWrapper, Replace, Sequence};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Keras' padding token: the empty string, id 0.
pub const PAD_TOKEN: &str = "";
/// Keras' out-of-vocabulary token, id 1.
pub const UNK_TOKEN: &str = "[UNK]";
pub const PAD_ID: u32 = 0;
pub const UNK_ID: u32 = 1;

const TOKENIZER_FILE: &str = "tokenizer.json";
const VOCAB_FILE: &str = "vocab.txt";

/// Python's `string.punctuation`, i.e. Keras' `[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']`,
/// written as code-point ranges because the same pattern must mean the same thing to
/// fancy-regex here and to Oniguruma when Python loads `tokenizer.json`; hex ranges sidestep
/// every escaping difference between the engines. `+` deletes a whole run in one replacement.
const PUNCTUATION_RUN: &str = r"[\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E]+";
/// `tf.strings.split` separators: exactly these six, not Unicode White_Space.
const SEPARATOR_RUN: &str = r"[\x09-\x0D\x20]+";

fn is_separator(c: char) -> bool {
    matches!(c, '\u{09}'..='\u{0D}' | ' ')
}

/// Keras' standardisation of one text: ASCII-only lowercasing, then deleting the 32 ASCII
/// punctuation characters (`char::is_ascii_punctuation` is exactly that set).
fn standardize_into(text: &str, out: &mut String) {
    out.clear();
    out.extend(
        text.chars()
            .filter(|c| !c.is_ascii_punctuation())
            .map(|c| c.to_ascii_lowercase()),
    );
}

/// Plain-Rust twin of the tokenizer's normalizer + pre-tokenizer, used by `adapt` so that
/// counting does not pay for offset tracking; a test checks that both agree on every row.
fn split_tokens(standardized: &str) -> impl Iterator<Item = &str> {
    standardized.split(is_separator).filter(|t| !t.is_empty())
}

/// Keras ordering (`IndexLookup.finalize_state`: `np.lexsort((tokens, counts))[::-1]`): count
/// descending, ties by token bytes descending. `str`'s `Ord` is byte order.
fn keras_vocabulary(counts: HashMap<String, u64>, max_tokens: usize) -> Vec<String> {
    let mut by_count: Vec<(String, u64)> = counts.into_iter().collect();
    by_count.sort_unstable_by(|(ta, ca), (tb, cb)| cb.cmp(ca).then_with(|| tb.cmp(ta)));
    by_count.truncate(max_tokens - 2);
    [PAD_TOKEN.to_owned(), UNK_TOKEN.to_owned()]
        .into_iter()
        .chain(by_count.into_iter().map(|(t, _)| t))
        .collect()
}

fn build_tokenizer(vocabulary: &[String], sequence_length: usize) -> anyhow::Result<Tokenizer> {
    // `Lowercase` would also lowercase non-ASCII letters, which Keras leaves alone, so map the
    // 26 letters one by one; `Replace` is linear, and 26 passes still encode AG News at well
    // over 10k texts per second.
    let mut normalizers = Vec::with_capacity(27);
    normalizers.push(NormalizerWrapper::Replace(
        Replace::new(ReplacePattern::Regex(PUNCTUATION_RUN.into()), "").map_err(|e| anyhow!(e))?,
    ));
    for upper in 'A'..='Z' {
        let lower = upper.to_ascii_lowercase().to_string();
        normalizers.push(NormalizerWrapper::Replace(
            Replace::new(upper.to_string(), lower).map_err(|e| anyhow!(e))?,
        ));
    }

    // `Removed` drops the separator runs and the tokenizer drops the empty pieces around them,
    // which matches `tf.strings.split` ignoring leading and trailing runs.
    let pre_tokenizer = Split::new(
        SplitPattern::Regex(SEPARATOR_RUN.into()),
        SplitDelimiterBehavior::Removed,
        false,
    )
    .map_err(|e| anyhow!(e))?;

    // Ids are line numbers, so they are unique and hole-free, as WordLevel's serializer
    // expects. The padding token "" at id 0 is harmless in the model: the pre-tokenizer never
    // yields an empty word, so no input can look it up. "[UNK]" is deliberately *not* an added
    // special token: Keras standardises a literal "[UNK]" in the input to "unk", and an added
    // token would be matched before normalisation and turned into id 1.
    let model = WordLevel::builder()
        .vocab(
            vocabulary
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
        )
        .unk_token(UNK_TOKEN.to_owned())
        .build()
        .map_err(|e| anyhow!(e))?;

    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(Sequence::new(normalizers)))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_truncation(Some(TruncationParams {
            max_length: sequence_length,
            strategy: TruncationStrategy::LongestFirst,
            // Keras keeps the head of the sequence.
            direction: TruncationDirection::Right,
            stride: 0,
        }))
        .map_err(|e| anyhow!(e))?
        .with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(sequence_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: PAD_ID,
            pad_type_id: 0,
            pad_token: PAD_TOKEN.to_owned(),
        }));
    Ok(tokenizer)
}

#[derive(Debug, Clone)]
pub struct TextVectorization {
    tokenizer: Tokenizer,
    vocabulary: Vec<String>,
    sequence_length: usize,
    /// Batches are cut to their longest row (`padding = "longest"`).
    dynamic_padding: bool,
    /// Token → id, built on first use by [`TextVectorization::ids`].
    index: std::sync::OnceLock<HashMap<String, u32>>,
}

impl TextVectorization {
    /// Adapt on texts (Keras `adapt`). max_tokens includes "" and "[UNK]".
    pub fn adapt<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        max_tokens: usize,
        output_sequence_length: usize,
    ) -> Self {
        let mut counts = WordCounts::default();
        for text in texts {
            counts.add(text);
        }
        counts.adapt(max_tokens, output_sequence_length)
    }
}

/// How often each word occurs in the texts seen so far: what `adapt` learns from, gathered
/// one text at a time so that the texts need not be kept.
#[derive(Default)]
pub struct WordCounts {
    counts: HashMap<String, u64>,
    buf: String,
}

impl WordCounts {
    pub fn add(&mut self, text: &str) {
        standardize_into(text, &mut self.buf);
        for token in split_tokens(&self.buf) {
            match self.counts.get_mut(token) {
                Some(c) => *c += 1,
                None => {
                    self.counts.insert(token.to_owned(), 1);
                }
            }
        }
    }

    /// The vectorizer adapted on the texts added.
    pub fn adapt(self, max_tokens: usize, output_sequence_length: usize) -> TextVectorization {
        assert!(
            max_tokens >= 2,
            "max_tokens counts \"\" and \"[UNK]\", so it must be at least 2"
        );
        assert!(
            output_sequence_length > 0,
            "output_sequence_length must be positive"
        );
        let vocabulary = keras_vocabulary(self.counts, max_tokens);
        let tokenizer = build_tokenizer(&vocabulary, output_sequence_length)
            .expect("the tokenizer pipeline is built from constant, valid patterns");
        TextVectorization {
            tokenizer,
            vocabulary,
            sequence_length: output_sequence_length,
            dynamic_padding: false,
            index: Default::default(),
        }
    }
}

impl TextVectorization {
    /// Sets how batches are padded (the spec's choice; not part of the saved tokenizer).
    pub fn with_padding(mut self, padding: &crate::spec::vectorizer::Padding) -> Self {
        self.dynamic_padding = *padding == crate::spec::vectorizer::Padding::Longest;
        self
    }

    pub fn dynamic_padding(&self) -> bool {
        self.dynamic_padding
    }

    /// number of vocabulary entries incl. "" and [UNK]
    pub fn vocab_size(&self) -> usize {
        self.vocabulary.len()
    }

    pub fn sequence_length(&self) -> usize {
        self.sequence_length
    }

    pub fn vocabulary(&self) -> &[String] {
        &self.vocabulary
    }

    /// The underlying HF tokenizer (the one `save` writes).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// ids of one text, truncated to sequence_length and right-padded with 0
    pub fn encode(&self, text: &str) -> Vec<u32> {
        // `encode_fast` skips char-offset bookkeeping we never read.
        self.tokenizer
            .encode_fast(text, false)
            .expect("WordLevel with an unk token cannot fail on any input")
            .get_ids()
            .to_vec()
    }

    /// The ids of one text's words, at most `sequence_length` of them, unpadded: the ids
    /// [`TextVectorization::encode`] gives before its padding, found by the plain-Rust twin of
    /// the tokenizer's pipeline (what `adapt` counts with) and a hash lookup, several times
    /// faster than the tokenizer (a test checks both on all of AG News).
    pub fn ids(&self, text: &str, standardized: &mut String) -> Vec<u32> {
        let index = self.index.get_or_init(|| {
            (self.vocabulary.iter().enumerate())
                .map(|(id, token)| (token.clone(), id as u32))
                .collect()
        });
        standardize_into(text, standardized);
        split_tokens(standardized)
            .take(self.sequence_length)
            .map(|token| index.get(token).copied().unwrap_or(UNK_ID))
            .collect()
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        self.tokenizer
            .encode_batch_fast(texts.to_vec(), false)
            .expect("WordLevel with an unk token cannot fail on any input")
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect()
    }

    /// Writes `tokenizer.json` (HF tokenizers format) and `vocab.txt` (one token per line,
    /// line number = id, like Keras' `get_vocabulary()`) into `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer_json = self
            .tokenizer
            .to_string(true)
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("serialising {}", tokenizer_path.display()))?;
        crate::run::atomic_write(&tokenizer_path, tokenizer_json.as_bytes())?;
        let mut vocab = String::new();
        for token in &self.vocabulary {
            vocab.push_str(token);
            vocab.push('\n');
        }
        let vocab_path = dir.join(VOCAB_FILE);
        crate::run::atomic_write(&vocab_path, vocab.as_bytes())?;
        Ok(())
    }

    /// Loads what `save` wrote. `tokenizer.json` is authoritative; `vocab.txt` must agree with it,
    /// so a hand-edited pair is caught instead of silently disagreeing.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("reading {}", tokenizer_path.display()))?;

        let sequence_length = match tokenizer.get_padding().map(|p| &p.strategy) {
            Some(PaddingStrategy::Fixed(n)) => *n,
            _ => bail!("{} has no fixed-length padding", tokenizer_path.display()),
        };
        ensure!(
            tokenizer.get_truncation().map(|t| t.max_length) == Some(sequence_length),
            "{}: truncation length differs from padding length",
            tokenizer_path.display()
        );

        let by_token = tokenizer.get_vocab(false);
        let mut vocabulary = vec![None; by_token.len()];
        for (token, id) in by_token {
            let slot = vocabulary
                .get_mut(id as usize)
                .with_context(|| format!("vocabulary id {id} out of range"))?;
            *slot = Some(token);
        }
        let vocabulary: Vec<String> = vocabulary
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.with_context(|| format!("vocabulary has no token for id {i}")))
            .collect::<anyhow::Result<_>>()?;
        ensure!(
            vocabulary.len() >= 2
                && vocabulary[PAD_ID as usize] == PAD_TOKEN
                && vocabulary[UNK_ID as usize] == UNK_TOKEN,
            "vocabulary must start with \"\" and \"[UNK]\""
        );

        let vocab_path = dir.join(VOCAB_FILE);
        let vocab_txt = std::fs::read_to_string(&vocab_path)
            .with_context(|| format!("reading {}", vocab_path.display()))?;
        ensure!(
            parse_vocab_txt(&vocab_txt).eq(vocabulary.iter().map(String::as_str)),
            "{} disagrees with {}",
            vocab_path.display(),
            tokenizer_path.display()
        );

        Ok(Self {
            tokenizer,
            vocabulary,
            sequence_length,
            dynamic_padding: false,
            index: Default::default(),
        })
    }
}

/// Splits on '\n' only: line 0 is the empty padding token, so blank lines are meaningful and
/// `str::lines` semantics (which also eat '\r') are not wanted.
fn parse_vocab_txt(text: &str) -> impl Iterator<Item = &str> {
    text.strip_suffix('\n').unwrap_or(text).split('\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Instant;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString};

    const MAX_TOKENS: usize = 20_000;
    const SEQ_LEN: usize = 256;

    /// The fixtures live in the project's `shared/`; `PIPE_SHARED_DIR` overrides the lookup.
    fn shared_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("PIPE_SHARED_DIR") {
            return PathBuf::from(dir);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        [
            manifest.join("shared"),
            manifest.join("../shared"),
            PathBuf::from("/work/shared"),
        ]
        .into_iter()
        .find(|p| p.join("fixtures/keras_text_vectorization").is_dir())
        .expect("shared/ with fixtures not found; set PIPE_SHARED_DIR")
    }

    fn fixture_dir() -> PathBuf {
        shared_dir().join("fixtures/keras_text_vectorization")
    }

    #[derive(Deserialize)]
    struct Cases {
        inputs: Vec<String>,
        tokens: Vec<Vec<String>>,
        token_ids: Vec<Vec<u32>>,
    }

    #[derive(Deserialize)]
    struct Expected {
        inputs: Vec<String>,
        tokens: Vec<Vec<String>>,
        token_ids: Vec<Vec<u32>>,
        extra_cases: Cases,
    }

    fn expected() -> &'static Expected {
        static E: OnceLock<Expected> = OnceLock::new();
        E.get_or_init(|| {
            let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
            serde_json::from_str(&text).unwrap()
        })
    }

    /// Minimal RFC 4180 reader: quoted fields, `""` escapes, newlines inside quotes.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut in_quotes = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (in_quotes, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => in_quotes = false,
                (true, c) => field.push(c),
                (false, '"') => in_quotes = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') => {}
                (false, '\n') => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        if !field.is_empty() || !row.is_empty() {
            row.push(field);
            rows.push(row);
        }
        rows
    }

    /// `title + " " + description`, exactly as stored.
    fn ag_news_texts(split: &str) -> Vec<String> {
        let path = shared_dir().join(format!("data/ag_news/{split}.csv"));
        parse_csv(&std::fs::read_to_string(path).unwrap())
            .into_iter()
            .map(|r| {
                assert_eq!(r.len(), 3, "{r:?}");
                format!("{} {}", r[1], r[2])
            })
            .collect()
    }

    fn train_texts() -> &'static [String] {
        static T: OnceLock<Vec<String>> = OnceLock::new();
        T.get_or_init(|| ag_news_texts("train"))
    }

    fn adapted() -> &'static TextVectorization {
        static TV: OnceLock<TextVectorization> = OnceLock::new();
        TV.get_or_init(|| {
            TextVectorization::adapt(
                train_texts().iter().map(String::as_str),
                MAX_TOKENS,
                SEQ_LEN,
            )
        })
    }

    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn csv_reader_handles_escaped_quotes() {
        let rows = parse_csv("\"1\",\"a \"\"b\"\"\",\"c,\nd\"\n\"2\",\"x\",\"y\"\n");
        assert_eq!(
            rows,
            vec![vec!["1", "a \"b\"", "c,\nd"], vec!["2", "x", "y"]]
        );
        assert_eq!(train_texts().len(), 9_999);
    }

    #[test]
    fn vocabulary_equals_keras() {
        let tv = adapted();
        let text = std::fs::read_to_string(fixture_dir().join("vocab.txt")).unwrap();
        let want: Vec<&str> = parse_vocab_txt(&text).collect();
        assert_eq!(want.len(), MAX_TOKENS);
        assert_eq!(tv.vocab_size(), MAX_TOKENS);
        assert_eq!(tv.sequence_length(), SEQ_LEN);
        for (i, (got, want)) in tv.vocabulary().iter().zip(&want).enumerate() {
            assert_eq!(got, want, "vocabulary line {i}");
        }
    }

    #[test]
    fn standardize_and_split_match_keras_tokens() {
        let e = expected();
        for (inputs, tokens) in [
            (&e.inputs, &e.tokens),
            (&e.extra_cases.inputs, &e.extra_cases.tokens),
        ] {
            for (input, want) in inputs.iter().zip(tokens) {
                let mut buf = String::new();
                standardize_into(input, &mut buf);
                assert_eq!(&split_tokens(&buf).collect::<Vec<_>>(), want, "{input:?}");
            }
        }
    }

    #[test]
    fn token_ids_equal_keras() {
        let tv = adapted();
        let e = expected();
        assert_eq!(e.inputs.len(), 20);
        for (input, want) in e.inputs.iter().zip(&e.token_ids) {
            assert_eq!(&tv.encode(input), want, "{input:?}");
        }
        assert_eq!(tv.encode_batch(&as_strs(&e.inputs)), e.token_ids);
    }

    #[test]
    fn extra_cases_equal_keras() {
        let tv = adapted();
        let c = &expected().extra_cases;
        assert!(!c.inputs.is_empty());
        for (input, want) in c.inputs.iter().zip(&c.token_ids) {
            assert_eq!(&tv.encode(input), want, "{input:?}");
        }
        assert_eq!(tv.encode_batch(&as_strs(&c.inputs)), c.token_ids);
    }

    /// The fast path that encodes a run's rows gives the tokenizer's ids, without the padding.
    #[test]
    fn ids_are_the_tokenizers_without_padding_on_all_of_ag_news() {
        let tv = adapted();
        let test_texts = ag_news_texts("test");
        let texts: Vec<&str> = (train_texts().iter().chain(&test_texts))
            .map(String::as_str)
            .chain(["", "  ", "[UNK] unk", "ÀÉ ßẞ ǅ Ω K"])
            .collect();
        let mut buf = String::new();
        for (text, mut padded) in texts.iter().zip(tv.encode_batch(&texts)) {
            padded.truncate(
                padded
                    .iter()
                    .position(|&id| id == PAD_ID)
                    .unwrap_or(padded.len()),
            );
            assert_eq!(tv.ids(text, &mut buf), padded, "{text:?}");
        }
    }

    /// `adapt` counts with the plain-Rust splitter; this proves the tokenizer pipeline, which
    /// `encode` and the saved file use, yields the very same words on all of AG News.
    #[test]
    fn tokenizer_pipeline_agrees_with_rust_splitter() {
        let tok = adapted().tokenizer();
        let normalizer = tok.get_normalizer().unwrap();
        let pre_tokenizer = tok.get_pre_tokenizer().unwrap();
        let e = expected();
        let test_texts = ag_news_texts("test");
        let texts = train_texts()
            .iter()
            .chain(&test_texts)
            .chain(&e.inputs)
            .chain(&e.extra_cases.inputs)
            .map(String::as_str)
            .chain([
                "\u{0B}a\u{0C}b\u{1C}c\u{1F}d\u{85}e\u{2028}f ",
                "ÀÉ ßẞ ǅ Ω K",
            ]);
        let mut buf = String::new();
        let mut n = 0;
        for text in texts {
            standardize_into(text, &mut buf);
            let want: Vec<&str> = split_tokens(&buf).collect();
            let mut pre = PreTokenizedString::from(text);
            pre.normalize(|n| tokenizers::Normalizer::normalize(normalizer, n))
                .unwrap();
            tokenizers::PreTokenizer::pre_tokenize(pre_tokenizer, &mut pre).unwrap();
            let got: Vec<&str> = pre
                .get_splits(OffsetReferential::Normalized, OffsetType::Byte)
                .into_iter()
                .map(|(s, _, _)| s)
                .collect();
            assert_eq!(got, want, "{text:?}");
            n += 1;
        }
        assert!(n > 17_000);
    }

    #[test]
    fn saved_tokenizer_round_trips() {
        let tv = adapted();
        let e = expected();
        let dir = std::env::temp_dir().join(format!("tv-save-{}", std::process::id()));
        tv.save(&dir).unwrap();

        // The saved vocab.txt is byte-identical to Keras' get_vocabulary() dump.
        assert_eq!(
            std::fs::read(dir.join("vocab.txt")).unwrap(),
            std::fs::read(fixture_dir().join("vocab.txt")).unwrap()
        );

        let raw = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let ids: Vec<Vec<u32>> = raw
            .encode_batch(as_strs(&e.inputs), false)
            .unwrap()
            .iter()
            .map(|enc| enc.get_ids().to_vec())
            .collect();
        assert_eq!(ids, e.token_ids);
        for (input, want) in e.extra_cases.inputs.iter().zip(&e.extra_cases.token_ids) {
            assert_eq!(
                raw.encode(input.as_str(), true).unwrap().get_ids(),
                &want[..]
            );
        }

        let loaded = TextVectorization::load(&dir).unwrap();
        assert_eq!(loaded.vocabulary(), tv.vocabulary());
        assert_eq!(loaded.sequence_length(), SEQ_LEN);
        assert_eq!(loaded.encode_batch(&as_strs(&e.inputs)), e.token_ids);

        // A vocab.txt that disagrees with tokenizer.json is refused.
        std::fs::write(dir.join("vocab.txt"), "\n[UNK]\nthe\n").unwrap();
        assert!(TextVectorization::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_vocabulary_ties_and_padding() {
        // a, b and c tie at 2 and order by bytes descending, so max_tokens 4 (2 learned) keeps
        // c and b and cuts a although a occurs first.
        let tv = TextVectorization::adapt(["b A", "a. B c", "c-c c"], 4, 3);
        assert_eq!(tv.vocabulary(), ["", "[UNK]", "c", "b"].map(String::from));
        let tv = TextVectorization::adapt(["b A", "a. B c"], 10, 3);
        assert_eq!(
            tv.vocabulary(),
            ["", "[UNK]", "b", "a", "c"].map(String::from)
        );
        assert_eq!(tv.encode("C zz a b"), vec![4, 1, 3]);
        assert_eq!(tv.encode("[UNK]"), vec![1, 0, 0]);
        assert_eq!(tv.encode(" \t,"), vec![0, 0, 0]);
        assert_eq!(
            tv.encode_batch(&["", "a"]),
            vec![vec![0, 0, 0], vec![3, 0, 0]]
        );
    }

    #[test]
    fn encodes_ag_news_test_quickly() {
        let tv = adapted();
        let texts = ag_news_texts("test");
        let texts = as_strs(&texts);
        assert_eq!(texts.len(), 7_600);

        let start = Instant::now();
        let batch = tv.encode_batch(&texts);
        let batch_time = start.elapsed();
        let start = Instant::now();
        let single: Vec<Vec<u32>> = texts.iter().map(|t| tv.encode(t)).collect();
        let single_time = start.elapsed();
        errln!(
            "encoded {} AG News test rows: encode_batch {batch_time:?}, encode loop {single_time:?}",
            texts.len()
        );
        assert_eq!(batch, single);
        assert!(batch.iter().all(|ids| ids.len() == SEQ_LEN));
        if !cfg!(debug_assertions) {
            assert!(single_time.as_secs_f64() < 5.0, "{single_time:?}");
        }
    }
}
