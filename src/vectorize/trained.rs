//! Subword tokenizers trained on the train rows: WordPiece (BERT's: whole words and `##`
//! continuation pieces, encoded greedily longest-first) and byte-level BPE (GPT-2's: merges
//! over each word's UTF-8 bytes, so no text is unknown).
//!
//! The merges are learned here, not by the tokenizers crate's trainers: those break ties
//! between equally frequent pairs in hash-map order (runtime-random keys), so two trainings
//! on the same rows gave the same pieces under other ids, and for BPE other merges. Here a
//! tie goes to the pair of lower ids, every other choice is made in a fixed order, and the
//! same rows always give the same tokenizer.json, byte for byte. The tokenizers crate still
//! normalises, splits words, encodes and writes the file, so the pieces the trainer counted
//! are the ones encoding sees.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use anyhow::{Result, anyhow};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{BertNormalizer, Lowercase, NormalizerWrapper};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer,
};

use crate::spec::vectorizer::TrainedTokenizerSpec;

/// Padding, id 0 in both kinds (as `text_vectorization`'s "").
pub const PAD: &str = "[PAD]";
/// WordPiece's piece for a word it cannot spell with its vocabulary.
pub const UNK: &str = "[UNK]";
const CONTINUATION: &str = "##";
/// Longer words are `[UNK]` in WordPiece (BERT's limit).
const MAX_WORD_CHARS: usize = 100;

/// Which subword model to learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubwordKind {
    WordPiece,
    Bpe,
}

/// The trained tokenizers-crate tokenizer (what the run folder's tokenizer.json holds).
pub fn train_tokenizer<'a>(
    kind: SubwordKind,
    spec: &TrainedTokenizerSpec,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Tokenizer> {
    trained_tokenizer(kind, spec, count_words(kind, spec.lowercase, texts)?)
}

/// The tokenizer trained on `words` (counted with `kind`'s text pipeline).
pub fn trained_tokenizer(
    kind: SubwordKind,
    spec: &TrainedTokenizerSpec,
    words: WordCounts,
) -> Result<Tokenizer> {
    let mut tokenizer = match kind {
        SubwordKind::WordPiece => wordpiece(&words.counts, spec)?,
        SubwordKind::Bpe => bpe(&words.counts, spec)?,
    };
    tokenizer
        .with_normalizer(words.normalizer)
        .with_pre_tokenizer(Some(words.pre_tokenizer));
    Ok(tokenizer)
}

/// How text becomes words, before the subword model: the same steps in training and encoding.
fn text_pipeline(
    kind: SubwordKind,
    lowercase: bool,
) -> (Option<NormalizerWrapper>, PreTokenizerWrapper) {
    match kind {
        // BERT's: control characters removed, CJK characters split, accents stripped with
        // the lowercasing; words split at whitespace and punctuation.
        SubwordKind::WordPiece => (
            Some(BertNormalizer::new(true, true, None, lowercase).into()),
            BertPreTokenizer.into(),
        ),
        // GPT-2's: words split by its regex, a leading space kept as part of the word, and
        // every byte mapped to a printable character.
        SubwordKind::Bpe => (
            lowercase.then(|| Lowercase.into()),
            ByteLevel::default().into(),
        ),
    }
}

/// How often each word (as the pre-tokenizer splits them) occurs, in a fixed order.
fn count_words<'a>(
    kind: SubwordKind,
    lowercase: bool,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<WordCounts> {
    let mut counts = WordCounts::new(kind, lowercase);
    for text in texts {
        counts.add(text)?;
    }
    Ok(counts)
}

/// The words of the texts seen so far, with their counts: what a subword vocabulary is
/// trained on, gathered one text at a time so that the texts need not be kept.
pub struct WordCounts {
    counts: BTreeMap<String, u64>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: PreTokenizerWrapper,
}

impl WordCounts {
    pub fn new(kind: SubwordKind, lowercase: bool) -> Self {
        let (normalizer, pre_tokenizer) = text_pipeline(kind, lowercase);
        WordCounts {
            counts: BTreeMap::new(),
            normalizer,
            pre_tokenizer,
        }
    }

    pub fn add(&mut self, text: &str) -> Result<()> {
        let mut split = PreTokenizedString::from(text);
        if let Some(n) = &self.normalizer {
            split
                .normalize(|s| n.normalize(s))
                .map_err(|e| anyhow!("normalising a train text: {e}"))?;
        }
        self.pre_tokenizer
            .pre_tokenize(&mut split)
            .map_err(|e| anyhow!("splitting a train text into words: {e}"))?;
        for (word, _, _) in split.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            *self.counts.entry(word.to_string()).or_insert(0) += 1;
        }
        Ok(())
    }
}

/// WordPiece: every character seen, alone and as a `##` continuation (so that a word is
/// spelled wherever its characters fall), then the learned merges.
fn wordpiece(words: &BTreeMap<String, u64>, spec: &TrainedTokenizerSpec) -> Result<Tokenizer> {
    let mut pieces = Pieces::new(&[PAD, UNK]);
    let alphabet = wordpiece_alphabet(words, spec.vocab_size.saturating_sub(2) / 2);
    for c in &alphabet {
        pieces.id(&c.to_string());
    }
    for c in &alphabet {
        pieces.id(&format!("{CONTINUATION}{c}"));
    }
    // Words with a character outside the alphabet are [UNK] whatever is merged.
    let spelled: Vec<(Vec<u32>, u64)> = (words.iter())
        .filter(|(w, _)| w.chars().count() <= MAX_WORD_CHARS)
        .filter_map(|(w, &n)| {
            let symbols = (w.chars().enumerate())
                .map(|(i, c)| match i {
                    0 => pieces.get(&c.to_string()),
                    _ => pieces.get(&format!("{CONTINUATION}{c}")),
                })
                .collect::<Option<Vec<u32>>>()?;
            Some((symbols, n))
        })
        .collect();
    let join = |a: &str, b: &str| format!("{a}{}", b.strip_prefix(CONTINUATION).unwrap_or(b));
    learn_merges(spelled, &mut pieces, spec, join);
    let model = WordPiece::builder()
        .vocab(pieces.vocab())
        .unk_token(UNK.into())
        .continuing_subword_prefix(CONTINUATION.into())
        .max_input_chars_per_word(MAX_WORD_CHARS)
        .build()
        .map_err(|e| anyhow!("building the WordPiece model: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    Ok(tokenizer)
}

/// The characters of the words, the most frequent `limit` of them (ties: the lower char),
/// in character order.
fn wordpiece_alphabet(words: &BTreeMap<String, u64>, limit: usize) -> Vec<char> {
    let mut counts: BTreeMap<char, u64> = BTreeMap::new();
    for (w, &n) in words {
        for c in w.chars() {
            *counts.entry(c).or_insert(0) += n;
        }
    }
    let mut by_count: Vec<(char, u64)> = counts.into_iter().collect();
    by_count.sort_by_key(|&(c, n)| (Reverse(n), c));
    by_count.truncate(limit);
    let mut alphabet: Vec<char> = by_count.into_iter().map(|(c, _)| c).collect();
    alphabet.sort_unstable();
    alphabet
}

/// Byte-level BPE: the 256 byte characters, then the learned merges.
fn bpe(words: &BTreeMap<String, u64>, spec: &TrainedTokenizerSpec) -> Result<Tokenizer> {
    let mut pieces = Pieces::new(&[PAD]);
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    for c in &alphabet {
        pieces.id(&c.to_string());
    }
    let spelled: Vec<(Vec<u32>, u64)> = (words.iter())
        .filter_map(|(w, &n)| {
            let symbols = (w.chars())
                .map(|c| pieces.get(&c.to_string()))
                .collect::<Option<Vec<u32>>>()?;
            Some((symbols, n))
        })
        .collect();
    let merges = learn_merges(spelled, &mut pieces, spec, |a, b| format!("{a}{b}"));
    let merges = (merges.into_iter())
        .map(|(a, b)| (pieces.name(a).to_string(), pieces.name(b).to_string()))
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(pieces.vocab(), merges)
        .build()
        .map_err(|e| anyhow!("building the BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// The vocabulary being built: ids in the order pieces were added.
struct Pieces {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Pieces {
    fn new(special: &[&str]) -> Self {
        let mut pieces = Pieces {
            names: Vec::new(),
            ids: HashMap::new(),
        };
        for s in special {
            pieces.id(s);
        }
        pieces
    }
    /// The id of `piece`, added at the end if new.
    fn id(&mut self, piece: &str) -> u32 {
        if let Some(&id) = self.ids.get(piece) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(piece.to_string());
        self.ids.insert(piece.to_string(), id);
        id
    }
    fn get(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }
    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
    fn len(&self) -> usize {
        self.names.len()
    }
    fn vocab(&self) -> tokenizers::models::bpe::Vocab {
        (self.names.iter().enumerate())
            .map(|(i, n)| (n.clone(), i as u32))
            .collect()
    }
}

/// Byte-pair merges: while the vocabulary has room, the most frequent adjacent pair (counted
/// over the words, weighted by their counts) becomes a new piece, if it occurs at least
/// `min_frequency` times. Ties go to the pair of lower ids, so the result depends only on
/// the words. Returns the merges in order.
fn learn_merges(
    mut words: Vec<(Vec<u32>, u64)>,
    pieces: &mut Pieces,
    spec: &TrainedTokenizerSpec,
    join: impl Fn(&str, &str) -> String,
) -> Vec<(u32, u32)> {
    let mut pairs = PairCounts::default();
    for (w, (symbols, n)) in words.iter().enumerate() {
        pairs.add_word(w, symbols, *n as i64, None);
    }
    let mut queue: BinaryHeap<(u64, Reverse<(u32, u32)>)> = (pairs.counts.iter())
        .map(|(&pair, &n)| (n, Reverse(pair)))
        .collect();
    let mut merges = Vec::new();
    let mut recorded = HashSet::new();
    while pieces.len() < spec.vocab_size {
        let Some((count, Reverse(pair))) = queue.pop() else {
            break;
        };
        // An entry is stale when its pair's count changed after the push (a risen count was
        // pushed again as well): put it back with its count now.
        let now = pairs.count(pair);
        if now != count {
            if now > 0 {
                queue.push((now, Reverse(pair)));
            }
            continue;
        }
        if count < spec.min_frequency.max(1) {
            break;
        }
        let merged = pieces.id(&join(pieces.name(pair.0), pieces.name(pair.1)));
        // A pair can come back when another merge spells an existing piece again.
        if recorded.insert(pair) {
            merges.push(pair);
        }
        let mut touched = HashSet::new();
        let mut holders = pairs.holders.remove(&pair).unwrap_or_default();
        holders.sort_unstable();
        holders.dedup();
        for w in holders {
            let (symbols, n) = &mut words[w as usize];
            let Some(replaced) = merge_pair(symbols, pair, merged) else {
                continue;
            };
            pairs.add_word(w as usize, symbols, -(*n as i64), None);
            *symbols = replaced;
            // Only the pairs with the new piece are new to the word; the others were there
            // before, with the same count, and still list it.
            pairs.add_word(w as usize, symbols, *n as i64, Some(merged));
            let new = |&(a, b): &(u32, u32)| a == merged || b == merged;
            touched.extend(symbols.windows(2).map(|p| (p[0], p[1])).filter(new));
        }
        for p in touched {
            let n = pairs.count(p);
            if n > 0 {
                queue.push((n, Reverse(p)));
            }
        }
    }
    merges
}

/// `symbols` with every non-overlapping occurrence of `pair` (left to right) replaced by
/// `merged`; `None` when it has none.
fn merge_pair(symbols: &[u32], pair: (u32, u32), merged: u32) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    let mut found = false;
    while i < symbols.len() {
        if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
            out.push(merged);
            i += 2;
            found = true;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    found.then_some(out)
}

/// Adjacent-pair counts over the words, and which words hold each pair (a superset: words
/// are listed again when counted again, and checked when merged).
#[derive(Default)]
struct PairCounts {
    counts: HashMap<(u32, u32), u64>,
    holders: HashMap<(u32, u32), Vec<u32>>,
}

impl PairCounts {
    fn count(&self, pair: (u32, u32)) -> u64 {
        self.counts.get(&pair).copied().unwrap_or(0)
    }
    /// Adds (or with a negative `n`, removes) the pairs of word `w` spelled `symbols`. Added
    /// pairs list the word as a holder: all of them, or with `new_piece` only those with it.
    fn add_word(&mut self, w: usize, symbols: &[u32], n: i64, new_piece: Option<u32>) {
        for p in symbols.windows(2) {
            let pair = (p[0], p[1]);
            let count = self.counts.entry(pair).or_insert(0);
            *count = (*count as i64 + n).max(0) as u64;
            if n > 0 {
                if new_piece.is_none_or(|m| pair.0 == m || pair.1 == m) {
                    self.holders.entry(pair).or_default().push(w as u32);
                }
            } else if *count == 0 {
                self.counts.remove(&pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::vectorizer::Padding;

    fn spec(vocab_size: usize, min_frequency: u64) -> TrainedTokenizerSpec {
        TrainedTokenizerSpec {
            vocab_size,
            min_frequency,
            lowercase: true,
            max_length: 16,
            padding: Padding::MaxLength,
        }
    }

    const TEXTS: [&str; 4] = [
        "Stocks rally as markets rebound",
        "Markets fall; stocks slide again",
        "Rebound: the market rallies",
        "Café owners rally",
    ];

    fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
        t.encode(text, false).unwrap().get_ids().to_vec()
    }

    #[test]
    fn the_same_rows_give_the_same_tokenizer_file() {
        for kind in [SubwordKind::WordPiece, SubwordKind::Bpe] {
            let files: Vec<String> = (0..3)
                .map(|_| {
                    let t = train_tokenizer(kind, &spec(300, 1), TEXTS).unwrap();
                    t.to_string(false).unwrap()
                })
                .collect();
            assert_eq!(files[0], files[1], "{kind:?}");
            assert_eq!(files[0], files[2], "{kind:?}");
        }
    }

    #[test]
    fn wordpiece_learns_whole_frequent_words_and_spells_the_rest() {
        let t = train_tokenizer(SubwordKind::WordPiece, &spec(200, 2), TEXTS).unwrap();
        let vocab = t.get_vocab(false);
        assert_eq!(vocab[PAD], 0);
        assert_eq!(vocab[UNK], 1);
        // "rally" occurs 2 times, as a word start: merged whole.
        for piece in ["rally", "stocks", "markets", "rebound"] {
            assert!(vocab.contains_key(piece), "{piece} missing");
        }
        // Lowercased and accents stripped (BERT uncased): "Café" is spelled "cafe".
        let tokens = t
            .encode("Café markets", false)
            .unwrap()
            .get_tokens()
            .to_vec();
        assert_eq!(tokens.last().unwrap(), "markets");
        assert_eq!(
            tokens[..tokens.len() - 1].concat().replace("##", ""),
            "cafe"
        );
        // A word of known characters in a new order is spelled, not unknown.
        let unseen = t.encode("tsar", false).unwrap().get_tokens().to_vec();
        assert!(!unseen.contains(&UNK.to_string()), "{unseen:?}");
        assert_eq!(unseen.concat().replace("##", ""), "tsar");
        // A character never seen is unknown.
        assert_eq!(ids(&t, "日"), vec![1]);
    }

    #[test]
    fn merges_stop_at_the_vocabulary_size_and_at_min_frequency() {
        let alphabet_and_specials = {
            let t = train_tokenizer(SubwordKind::WordPiece, &spec(10_000, 1_000), TEXTS);
            t.unwrap().get_vocab_size(false)
        };
        // min_frequency above every pair count: no merge at all.
        let chars: HashSet<char> = TEXTS
            .concat()
            .to_lowercase()
            .replace('é', "e")
            .chars()
            .collect();
        let letters = chars.iter().filter(|c| !c.is_whitespace()).count();
        assert_eq!(alphabet_and_specials, 2 + 2 * letters);
        let capped = train_tokenizer(
            SubwordKind::WordPiece,
            &spec(alphabet_and_specials + 5, 1),
            TEXTS,
        );
        assert_eq!(
            capped.unwrap().get_vocab_size(false),
            alphabet_and_specials + 5
        );
        let bpe = train_tokenizer(SubwordKind::Bpe, &spec(257 + 7, 1), TEXTS).unwrap();
        assert_eq!(bpe.get_vocab_size(false), 257 + 7);
    }

    #[test]
    fn byte_level_bpe_encodes_any_text_and_decodes_it_back() {
        let t = train_tokenizer(SubwordKind::Bpe, &spec(400, 2), TEXTS).unwrap();
        assert_eq!(t.get_vocab(false)[PAD], 0);
        for text in ["stocks rally", "日本 crème brûlée ☃", "markets"] {
            let enc = t.encode(text, false).unwrap();
            assert!(!enc.get_ids().contains(&0), "no padding id for real text");
            let back = t.decode(enc.get_ids(), false).unwrap();
            assert_eq!(back.trim(), text.to_lowercase());
        }
        // Frequent words became one piece (with GPT-2's leading-space marker).
        assert_eq!(ids(&t, "stocks").len(), 1);
        assert!(ids(&t, "xylophone").len() > 3);
    }

    #[test]
    fn merging_prefers_the_most_frequent_pair_then_the_lower_ids() {
        let mut pieces = Pieces::new(&[]);
        let (a, b, c) = (pieces.id("a"), pieces.id("b"), pieces.id("c"));
        // (a, b) and (b, c) tie at 3 (ab ×1 + abc ×2, abc ×2 + bc ×1): the lower ids go first.
        let words = vec![(vec![a, b], 1), (vec![a, b, c], 2), (vec![b, c], 1)];
        let merges = learn_merges(words, &mut pieces, &spec(6, 1), |x, y| format!("{x}{y}"));
        assert_eq!(merges[0], (a, b));
        assert_eq!(pieces.name(3), "ab");
        // After it, "abc" ×2 is (ab, c): count 2; "bc" ×1: count 1.
        assert_eq!(merges[1], (3, c));
        assert_eq!(pieces.name(4), "abc");
        assert_eq!(merge_pair(&[a, b, a, b, b], (a, b), 9), Some(vec![9, 9, b]));
        assert_eq!(merge_pair(&[b, a], (a, b), 9), None);
    }
}
