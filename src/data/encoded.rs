//! Encoded rows: every row's token ids at its real length, at the narrowest width that holds
//! the vocabulary, with its label. Padded, the attention mask and token types are made when a
//! batch is cut ([`EncodedSplit::batch`]), so a row costs its tokens and 12 bytes, not three
//! padded arrays.
//!
//! The bytes are laid out as the encoded cache file is (see [`super::cache`]), whether they live
//! in memory or in a memory-mapped file:
//!
//! ```text
//! header   HEADER_BYTES: magic, format version, id width, flags, rows, tokens, key, checksum
//! ids      tokens × width (2 or 4), little-endian
//! types    tokens × 1, only when some token type is not 0
//! labels   rows × i32, from the next multiple of 8
//! offsets  (rows + 1) × u64: row r is tokens offsets[r]..offsets[r + 1]
//! ```

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorData;

use super::batch::Inputs;
pub use crate::vectorize::{Padded, Tokens};

/// "PIPEROWS", then the format version: a file of another version is rebuilt, never read.
pub const MAGIC: &[u8; 8] = b"PIPEROWS";
pub const FORMAT_VERSION: u32 = 1;
/// magic 8, version 4, width 1, flags 1, reserved 2, rows 8, tokens 8, key 32, checksum 32.
pub const HEADER_BYTES: usize = 96;
const HAS_TYPES: u8 = 1;

/// The bytes of encoded rows: built in memory, or a memory-mapped cache file.
pub enum Storage {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

/// Where each part of the encoded bytes starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub rows: usize,
    pub tokens: usize,
    /// Bytes per id: 2 or 4.
    pub width: usize,
    pub has_types: bool,
}

impl Layout {
    pub fn ids_at(&self) -> usize {
        HEADER_BYTES
    }
    pub fn types_at(&self) -> usize {
        self.ids_at() + self.tokens * self.width
    }
    pub fn labels_at(&self) -> usize {
        (self.types_at() + if self.has_types { self.tokens } else { 0 }).next_multiple_of(8)
    }
    pub fn offsets_at(&self) -> usize {
        (self.labels_at() + 4 * self.rows).next_multiple_of(8)
    }
    pub fn total(&self) -> usize {
        self.offsets_at() + 8 * (self.rows + 1)
    }

    /// The header's fields, checked for sense against the size of the bytes; `None` when the
    /// bytes are not encoded rows of this format version.
    pub fn read(bytes: &[u8]) -> Option<(Layout, [u8; 32], [u8; 32])> {
        let header = bytes.get(..HEADER_BYTES)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if &header[..8] != MAGIC || version != FORMAT_VERSION {
            return None;
        }
        let layout = Layout {
            width: header[12] as usize,
            has_types: header[13] & HAS_TYPES != 0,
            rows: usize::try_from(word(16)).ok()?,
            tokens: usize::try_from(word(24)).ok()?,
        };
        // Each count is at most the byte size, so the sizes below cannot overflow.
        let sane = matches!(layout.width, 2 | 4)
            && layout.rows <= bytes.len()
            && layout.tokens <= bytes.len()
            && layout.total() == bytes.len();
        let key = header[32..64].try_into().expect("32 bytes");
        let checksum = header[64..96].try_into().expect("32 bytes");
        sane.then_some((layout, key, checksum))
    }

    fn write(&self, header: &mut [u8], key: &[u8; 32], checksum: &[u8; 32]) {
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[12] = self.width as u8;
        header[13] = if self.has_types { HAS_TYPES } else { 0 };
        header[16..24].copy_from_slice(&(self.rows as u64).to_le_bytes());
        header[24..32].copy_from_slice(&(self.tokens as u64).to_le_bytes());
        header[32..64].copy_from_slice(key);
        header[64..96].copy_from_slice(checksum);
    }
}

/// BLAKE3 of everything after the header.
pub fn checksum(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&bytes[HEADER_BYTES.min(bytes.len())..]);
    *hasher.finalize().as_bytes()
}

/// Encoded rows (all of one data file, or of a few texts).
pub struct EncodedRows {
    bytes: Storage,
    layout: Layout,
}

impl EncodedRows {
    /// Rows already checked by [`Layout::read`].
    pub fn new(bytes: Storage, layout: Layout) -> Self {
        EncodedRows { bytes, layout }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn rows(&self) -> usize {
        self.layout.rows
    }

    fn span(&self, r: usize) -> (usize, usize) {
        let at = self.layout.offsets_at() + 8 * r;
        let word = |at: usize| {
            u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes")) as usize
        };
        (word(at), word(at + 8))
    }

    pub fn length(&self, r: usize) -> usize {
        let (start, end) = self.span(r);
        end - start
    }

    pub fn label(&self, r: usize) -> i32 {
        let at = self.layout.labels_at() + 4 * r;
        i32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Row `r`'s ids (at most `max` of them), appended to `out`.
    fn push_ids(&self, r: usize, max: usize, out: &mut Vec<i32>) {
        let (start, end) = self.span(r);
        let end = end.min(start + max);
        let w = self.layout.width;
        let raw = &self.bytes[self.layout.ids_at() + start * w..self.layout.ids_at() + end * w];
        match w {
            2 => out.extend(
                raw.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32),
            ),
            _ => out.extend(
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i32),
            ),
        }
    }

    /// Row `r`'s token types (at most `max`), appended to `out`.
    fn push_types(&self, r: usize, max: usize, out: &mut Vec<i32>) {
        let (start, end) = self.span(r);
        let end = end.min(start + max);
        match self.layout.has_types {
            true => {
                let at = self.layout.types_at();
                out.extend(self.bytes[at + start..at + end].iter().map(|&t| t as i32));
            }
            false => out.extend(std::iter::repeat_n(0, end - start)),
        }
    }
}

/// Builds encoded rows in the cache file's layout, in one growing buffer: ids go straight in
/// at their final place, labels and offsets (12 bytes a row) are appended at the end.
pub struct RowsBuilder {
    bytes: Vec<u8>,
    width: usize,
    types: Option<Vec<u8>>,
    labels: Vec<i32>,
    offsets: Vec<u64>,
}

impl RowsBuilder {
    /// For ids below `vocab_size`.
    pub fn new(vocab_size: usize) -> Self {
        RowsBuilder {
            bytes: vec![0; HEADER_BYTES],
            width: if vocab_size <= 1 << 16 { 2 } else { 4 },
            types: None,
            labels: Vec::new(),
            offsets: vec![0],
        }
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Encodes `texts` with `vectorizer` and appends them with their labels (`labels[i]`, or 0
    /// past its end), at most [`ENCODE_CHUNK`] texts at a time.
    pub fn push_texts(
        &mut self,
        vectorizer: &crate::vectorize::Vectorizer,
        texts: &[&str],
        labels: &[i32],
    ) {
        for (c, chunk) in texts.chunks(ENCODE_CHUNK).enumerate() {
            for (i, tokens) in vectorizer.tokenize(chunk).iter().enumerate() {
                let label = labels.get(c * ENCODE_CHUNK + i).copied().unwrap_or(0);
                self.push(tokens, label);
            }
        }
    }

    pub fn push(&mut self, tokens: &Tokens, label: i32) {
        let before = *self.offsets.last().expect("starts with 0") as usize;
        for &id in &tokens.ids {
            match self.width {
                2 => self.bytes.extend((id as u16).to_le_bytes()),
                _ => self.bytes.extend(id.to_le_bytes()),
            }
        }
        let nonzero_type = tokens.type_ids.iter().any(|&t| t != 0);
        if nonzero_type && self.types.is_none() {
            self.types = Some(vec![0; before]);
        }
        if let Some(types) = &mut self.types {
            let given = tokens.type_ids.iter().map(|&t| t.min(255) as u8);
            types.extend(given.chain(std::iter::repeat(0)).take(tokens.ids.len()));
        }
        self.offsets.push((before + tokens.ids.len()) as u64);
        self.labels.push(label);
    }

    /// The finished bytes, their header naming `key`.
    pub fn finish(mut self, key: &[u8; 32]) -> EncodedRows {
        let layout = Layout {
            rows: self.labels.len(),
            tokens: *self.offsets.last().expect("starts with 0") as usize,
            width: self.width,
            has_types: self.types.is_some(),
        };
        if let Some(types) = self.types.take() {
            self.bytes.extend(types);
        }
        self.bytes.resize(layout.labels_at(), 0);
        self.bytes
            .extend(self.labels.iter().flat_map(|l| l.to_le_bytes()));
        self.bytes.resize(layout.offsets_at(), 0);
        self.bytes
            .extend(self.offsets.iter().flat_map(|o| o.to_le_bytes()));
        debug_assert_eq!(self.bytes.len(), layout.total());
        let sum = checksum(&self.bytes);
        layout.write(&mut self.bytes[..HEADER_BYTES], key, &sum);
        EncodedRows::new(Storage::Owned(self.bytes), layout)
    }
}

/// The rows a split uses (all the rows of its data, or some of them: the train part of a
/// train file that also gives the validation rows), and how its batches are padded.
#[derive(Clone)]
pub struct EncodedSplit {
    data: Arc<EncodedRows>,
    /// Indices into `data`; `None`: all of it, in order.
    picked: Option<Arc<[u32]>>,
    pub padding: Padded,
}

impl EncodedSplit {
    pub fn new(data: Arc<EncodedRows>, padding: Padded) -> Self {
        EncodedSplit {
            data,
            picked: None,
            padding,
        }
    }

    /// The rows of `data` named by `rows`, in that order.
    pub fn picked(data: Arc<EncodedRows>, rows: Vec<u32>, padding: Padded) -> Self {
        EncodedSplit {
            data,
            picked: Some(rows.into()),
            padding,
        }
    }

    /// Encodes a few texts in memory (`pipe eval`, `pipe predict`, `pipe attention`).
    pub fn encode(
        vectorizer: &crate::vectorize::Vectorizer,
        texts: &[&str],
        labels: &[i32],
    ) -> Self {
        let mut builder = RowsBuilder::new(vectorizer.vocab_size());
        builder.push_texts(vectorizer, texts, labels);
        EncodedSplit::new(Arc::new(builder.finish(&[0; 32])), vectorizer.padding())
    }

    fn row(&self, r: usize) -> usize {
        match &self.picked {
            Some(p) => p[r] as usize,
            None => r,
        }
    }

    pub fn len(&self) -> usize {
        match &self.picked {
            Some(p) => p.len(),
            None => self.data.rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Real tokens of row `r` (the rest of a batch's row is padding).
    pub fn length(&self, r: usize) -> usize {
        self.data.length(self.row(r)).min(self.padding.len)
    }

    pub fn label(&self, r: usize) -> i32 {
        self.data.label(self.row(r))
    }

    /// Row `r`'s token ids, without padding.
    pub fn ids(&self, r: usize) -> Vec<i32> {
        let mut out = Vec::new();
        self.data.push_ids(self.row(r), self.padding.len, &mut out);
        out
    }

    /// Feeds what the rows hold (ids, types, lengths, the padded length) to `hasher`: the
    /// frozen-feature cache's key.
    pub fn hash_into(&self, hasher: &mut blake3::Hasher) {
        let mut ids = Vec::new();
        let mut types = Vec::new();
        hasher.update(&(self.len() as u64).to_le_bytes());
        hasher.update(&(self.padding.len as u64).to_le_bytes());
        for r in 0..self.len() {
            ids.clear();
            types.clear();
            self.data.push_ids(self.row(r), self.padding.len, &mut ids);
            self.data
                .push_types(self.row(r), self.padding.len, &mut types);
            hasher.update(&(ids.len() as u64).to_le_bytes());
            for (id, t) in ids.iter().zip(&types) {
                hasher.update(&id.to_le_bytes()).update(&t.to_le_bytes());
            }
        }
    }

    /// Model inputs and labels for `rows`: each row's ids, then `pad_id` up to the batch's
    /// length (its longest row with dynamic padding, else the vectorizer's length); the mask
    /// is 1 on real tokens.
    ///
    /// # Shapes
    /// - ids, mask, token types: `[rows.len(), length]`; labels: `[rows.len()]`
    pub fn batch<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> (Inputs<B>, Tensor<B, 1, Int>) {
        let len = match self.padding.dynamic {
            true => rows
                .iter()
                .map(|&r| self.length(r))
                .max()
                .unwrap_or(1)
                .max(1),
            false => self.padding.len,
        };
        let n = rows.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for &r in rows {
            let row = self.row(r);
            let before = ids.len();
            self.data.push_ids(row, len, &mut ids);
            self.data.push_types(row, len, &mut types);
            let real = ids.len() - before;
            ids.resize(before + len, self.padding.pad_id as i32);
            types.resize(before + len, 0);
            mask.extend(std::iter::repeat_n(1.0f32, real));
            mask.resize(before + len, 0.0);
        }
        let labels: Vec<i32> = rows.iter().map(|&r| self.label(r)).collect();
        (
            Inputs {
                ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
                mask: Tensor::from_data(TensorData::new(mask, [n, len]), device),
                token_type_ids: Tensor::from_data(TensorData::new(types, [n, len]), device),
            },
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }
}

/// Texts encoded at a time: enough for the tokenizer's threads, few enough to stay small.
pub const ENCODE_CHUNK: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn padding(dynamic: bool) -> Padded {
        Padded {
            len: 4,
            dynamic,
            pad_id: 9,
        }
    }

    fn rows(width_vocab: usize, with_types: bool) -> Arc<EncodedRows> {
        let mut b = RowsBuilder::new(width_vocab);
        b.push(
            &Tokens {
                ids: vec![5, 6],
                type_ids: vec![],
            },
            1,
        );
        b.push(
            &Tokens {
                ids: vec![],
                type_ids: vec![],
            },
            0,
        );
        let types = if with_types {
            vec![0, 1, 1, 1, 1]
        } else {
            vec![]
        };
        b.push(
            &Tokens {
                ids: vec![70_000, 8, 7, 6, 5],
                type_ids: types,
            },
            3,
        );
        Arc::new(b.finish(&[7; 32]))
    }

    #[test]
    fn batches_pad_and_mask_rows_as_a_padded_encoding_would() {
        let data = rows(100_000, true);
        let split = EncodedSplit::new(data.clone(), padding(true));
        assert_eq!((split.len(), split.length(0), split.length(2)), (3, 2, 4));
        let (inputs, labels) = split.batch::<Flex>(&[0, 1], &Default::default());
        assert_eq!(inputs.ids.dims(), [2, 2], "cut to the longest row");
        assert_eq!(inputs.ids.to_data().to_vec::<i32>().unwrap(), [5, 6, 9, 9]);
        assert_eq!(
            inputs.mask.to_data().to_vec::<f32>().unwrap(),
            [1., 1., 0., 0.]
        );
        assert_eq!(labels.to_data().to_vec::<i32>().unwrap(), [1, 0]);
        let fixed = EncodedSplit::new(data.clone(), padding(false));
        let (inputs, _) = fixed.batch::<Flex>(&[2, 0], &Default::default());
        assert_eq!(
            inputs.ids.to_data().to_vec::<i32>().unwrap(),
            [70_000, 8, 7, 6, 5, 6, 9, 9],
            "truncated to the length, 4-byte ids"
        );
        assert_eq!(
            inputs.token_type_ids.to_data().to_vec::<i32>().unwrap(),
            [0, 1, 1, 1, 0, 0, 0, 0]
        );
        let picked = EncodedSplit::picked(data, vec![2], padding(true));
        assert_eq!(
            (picked.len(), picked.label(0), picked.ids(0)),
            (1, 3, vec![70_000, 8, 7, 6])
        );
    }

    #[test]
    fn the_header_names_the_layout_and_refuses_anything_else() {
        let data = rows(1000, false);
        let bytes = data.bytes();
        let (layout, key, sum) = Layout::read(bytes).expect("its own header");
        assert_eq!(
            (layout.rows, layout.tokens, layout.width, layout.has_types),
            (3, 7, 2, false)
        );
        assert_eq!((key, sum), ([7; 32], checksum(bytes)));
        assert!(
            Layout::read(&bytes[..bytes.len() - 1]).is_none(),
            "truncated"
        );
        let mut other = bytes.to_vec();
        other[8] = 2;
        assert!(Layout::read(&other).is_none(), "another format version");
        assert!(Layout::read(b"PIPEROWS").is_none());
    }
}
