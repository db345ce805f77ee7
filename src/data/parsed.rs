//! Parsed rows: a data file's texts and label values, parsed once into the data cache.
//!
//! A new run passes over its data several times: the train file's classes are inferred (or
//! checked), a learned vocabulary counts its words, then its rows are encoded; the test file is
//! checked, then encoded. With the data cache on, the file itself is parsed once (CSV quoting,
//! JSON, decompression, Parquet decoding) into `<dir>/<key>.texts`, and every later pass reads
//! that, as `datasets` converts a CSV to Arrow once and maps over the Arrow. A sweep whose trials
//! change the vectorizer parses nothing again.
//!
//! The file is read sequentially in both directions, never mapped, so it costs page cache and
//! not resident memory:
//!
//! ```text
//! header   96 bytes: magic, format version, rows, records' bytes, key, checksum
//! records  per row: label value index u32, text length u32, the text's UTF-8 bytes
//! values   the label values as written, JSON (see [`RawLabel`])
//! ```
//!
//! The key covers the file's contents and the options that pick its rows, but not the label
//! list: the classes are assigned when the rows are read ([`ParsedRows::classes`]), so one
//! parse serves `pipe check`, a spec that lists its labels and one that infers them.

use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::DataError;
use super::source::{self, LabelCount, RawLabel, SourceOptions};

/// The file name extension of parsed-rows files.
pub const EXTENSION: &str = "texts";
/// "PIPETEXT", then the format version: a file of another version is parsed again.
pub const MAGIC: &[u8; 8] = b"PIPETEXT";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 96;
/// Read and write buffer: large enough that a record rarely straddles two reads.
const BUFFER_BYTES: usize = 1 << 20;

/// A data file's rows as parsed once: read back in file order by [`ParsedRows::each`].
#[derive(Clone)]
pub struct ParsedRows {
    file: PathBuf,
    rows: usize,
    records: u64,
    values: Vec<RawLabel>,
}

/// The key of `path`'s parsed rows: its contents and the options that pick rows and text
/// (the label list left out).
fn key(path: &Path, opts: &SourceOptions) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update(b"pipe parsed rows\0")
        .update(&FORMAT_VERSION.to_le_bytes());
    let unlabelled = SourceOptions {
        labels: Vec::new(),
        ..opts.clone()
    };
    super::cache::source_identity(&mut h, path, &unlabelled)?;
    Ok(*h.finalize().as_bytes())
}

/// `path`'s rows from `dir`, parsed now (and kept there) when no whole file of them is there.
pub fn parse_once(dir: &Path, path: &Path, opts: &SourceOptions) -> Result<ParsedRows, DataError> {
    let read_error = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let key = key(path, opts).map_err(read_error)?;
    let file = super::cache::file_of(dir, &key).with_extension(EXTENSION);
    if let Some(parsed) = ParsedRows::open(&file, &key) {
        tracing::info!(file = %path.display(), rows = parsed.rows, "parsed rows from the cache");
        return Ok(parsed);
    }
    std::fs::create_dir_all(dir).map_err(read_error)?;
    let tmp = crate::run::shared_temp_file(dir).map_err(read_error)?;
    let mut out = Writer::new(tmp.as_file().try_clone().map_err(read_error)?);
    let (rows, values) = source::each_row_raw(path, opts, &mut |text, label| {
        out.record(label, &text).map_err(read_error)
    })?;
    let cache_error = |error| DataError::Read {
        path: file.clone(),
        error,
    };
    let records = out.records;
    out.finish(rows, &values, &key).map_err(cache_error)?;
    super::cache::write_note(&file, path, Some(rows)).map_err(cache_error)?;
    // Another run parsing the same file at once leaves the same bytes: either rename wins.
    tmp.persist(&file).map_err(|e| cache_error(e.error))?;
    // Its checksum was computed while writing: the file is not read back to check it.
    let parsed = ParsedRows {
        file: file.clone(),
        rows,
        records,
        values,
    };
    checked(&file, Some(&parsed));
    Ok(parsed)
}

/// The parsed rows of `file` whose checksum this process checked (or computed), unchanged
/// since; with `now`, remembers those. A run opens its train file's rows up to four times
/// (labels, row count, vocabulary, encoding), so the whole file is hashed once, not each time.
fn checked(file: &Path, now: Option<&ParsedRows>) -> Option<ParsedRows> {
    type Checked =
        std::collections::HashMap<(PathBuf, u64, Option<std::time::SystemTime>), ParsedRows>;
    static CHECKED: std::sync::Mutex<Option<Checked>> = std::sync::Mutex::new(None);
    let meta = std::fs::metadata(file).ok()?;
    let id = (file.to_path_buf(), meta.len(), meta.modified().ok());
    let mut memo = CHECKED.lock().ok()?;
    let memo = memo.get_or_insert_default();
    match now {
        Some(parsed) => {
            memo.insert(id, parsed.clone());
            None
        }
        None => memo.get(&id).cloned(),
    }
}

/// Streams records after a placeholder header, hashing everything after the header, then
/// writes the header with the checksum.
struct Writer {
    out: BufWriter<std::fs::File>,
    hash: blake3::Hasher,
    records: u64,
}

impl Writer {
    fn new(file: std::fs::File) -> Self {
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
        // Written again, whole, by `finish`; a crash before that leaves no magic.
        let _ = out.write_all(&[0; HEADER_BYTES]);
        Writer {
            out,
            hash: blake3::Hasher::new(),
            records: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    fn record(&mut self, label: usize, text: &str) -> std::io::Result<()> {
        let too_long = || std::io::Error::other("a text longer than 4 GiB");
        let len = u32::try_from(text.len()).map_err(|_| too_long())?;
        let label = u32::try_from(label).map_err(|_| too_long())?;
        self.put(&label.to_le_bytes())?;
        self.put(&len.to_le_bytes())?;
        self.put(text.as_bytes())?;
        self.records += 8 + text.len() as u64;
        Ok(())
    }

    fn finish(mut self, rows: usize, values: &[RawLabel], key: &[u8; 32]) -> std::io::Result<()> {
        let values = serde_json::to_vec(values).expect("label values serialise");
        self.put(&values)?;
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&(rows as u64).to_le_bytes());
        header[24..32].copy_from_slice(&self.records.to_le_bytes());
        header[32..64].copy_from_slice(key);
        header[64..96].copy_from_slice(self.hash.finalize().as_bytes());
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        file.write_all(&header)?;
        file.sync_data()
    }
}

impl ParsedRows {
    /// The parsed rows in `file` when it is whole, of this version and of `key`; a damaged file
    /// is removed (for the caller to parse again).
    fn open(file: &Path, key: &[u8; 32]) -> Option<ParsedRows> {
        if let Some(known) = checked(file, None) {
            return Some(known);
        }
        let mut reader = std::fs::File::open(file).ok()?;
        let parsed = Self::read_checked(&mut reader, file, key);
        match &parsed {
            Some(p) => {
                checked(file, Some(p));
            }
            None => {
                tracing::warn!(file = %file.display(), "parsed rows damaged or of another version: parsed again");
                let _ = std::fs::remove_file(file);
                let _ = std::fs::remove_file(file.with_extension("json"));
            }
        }
        parsed
    }

    fn read_checked(reader: &mut std::fs::File, file: &Path, key: &[u8; 32]) -> Option<Self> {
        let mut header = [0u8; HEADER_BYTES];
        reader.read_exact(&mut header).ok()?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if &header[..8] != MAGIC || version != FORMAT_VERSION || header[32..64] != key[..] {
            return None;
        }
        let (rows, records) = (word(16), word(24));
        // Every byte after the header is hashed and kept: the values' JSON is the tail.
        let mut hash = blake3::Hasher::new();
        let mut tail = Vec::new();
        let mut buffer = vec![0; BUFFER_BYTES];
        let mut seen = 0u64;
        loop {
            let n = reader.read(&mut buffer).ok()?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
            let start = records.saturating_sub(seen).min(n as u64) as usize;
            tail.extend_from_slice(&buffer[start..n]);
            seen += n as u64;
        }
        let whole = seen >= records && hash.finalize().as_bytes()[..] == header[64..96];
        let values: Vec<RawLabel> = serde_json::from_slice(&tail).ok().filter(|_| whole)?;
        Some(ParsedRows {
            file: file.to_path_buf(),
            rows: usize::try_from(rows).ok()?,
            records,
            values,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The classes of the label values for `opts` (see [`source::classes_of`]); `path` is the
    /// data file, read again only to name a refused label's row.
    pub fn classes(
        &self,
        path: &Path,
        opts: &SourceOptions,
    ) -> Result<(Vec<usize>, Option<Vec<LabelCount>>), DataError> {
        source::classes_of(path, opts, &self.values)
    }

    /// Each row's text and label value index (see [`ParsedRows::classes`]), in file order.
    pub fn each(
        &self,
        sink: &mut dyn FnMut(&str, usize) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let damaged = |why: &str| DataError::Read {
            path: self.file.clone(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()),
        };
        let read_error = |error| DataError::Read {
            path: self.file.clone(),
            error,
        };
        let file = std::fs::File::open(&self.file).map_err(read_error)?;
        let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
        reader
            .seek(std::io::SeekFrom::Start(HEADER_BYTES as u64))
            .map_err(read_error)?;
        let mut text = Vec::new();
        let mut left = self.records;
        for _ in 0..self.rows {
            let mut head = [0u8; 8];
            reader.read_exact(&mut head).map_err(read_error)?;
            let label = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            let len = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
            left = left
                .checked_sub(8 + len as u64)
                .ok_or_else(|| damaged("a record runs past the records"))?;
            text.resize(len, 0);
            reader.read_exact(&mut text).map_err(read_error)?;
            let text = std::str::from_utf8(&text).map_err(|_| damaged("a text is not UTF-8"))?;
            if label >= self.values.len() {
                return Err(damaged("a label index past the label values"));
            }
            sink(text, label)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::Format;

    fn opts(labels: &[&str]) -> SourceOptions {
        SourceOptions {
            format: Format::Csv,
            text: vec!["text".into()],
            label: "label".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            unescape_backslash: false,
            limit: None,
        }
    }

    fn read_all(parsed: &ParsedRows, classes: &[usize]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        parsed
            .each(&mut |text, value| {
                out.push((text.to_string(), classes[value]));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn one_parse_serves_listed_and_inferred_labels_and_damage_is_reparsed() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(
            &csv,
            "text,label\n\"a, b\",sports\nc,world\n,sports\né,world\n",
        )
        .unwrap();
        let cache = dir.path().join("cache");
        let parsed = parse_once(&cache, &csv, &opts(&[])).unwrap();
        assert_eq!(parsed.rows(), 4);
        let (classes, inferred) = parsed.classes(&csv, &opts(&[])).unwrap();
        let inferred = inferred.unwrap();
        assert_eq!(inferred[0].label, "sports");
        assert_eq!((inferred[1].label.as_str(), inferred[1].rows), ("world", 2));
        let rows = read_all(&parsed, &classes);
        let direct = source::load(&csv, &opts(&["sports", "world"])).unwrap();
        assert_eq!(rows.len(), direct.len());
        for ((text, class), example) in rows.iter().zip(&direct) {
            assert_eq!((text, *class), (&example.text, example.label));
        }
        // Listed in the other order: the same parse, other classes.
        let listed = opts(&["world", "sports"]);
        let again = parse_once(&cache, &csv, &listed).unwrap();
        let (classes, none) = again.classes(&csv, &listed).unwrap();
        assert!(none.is_none());
        assert_eq!(read_all(&again, &classes)[0].1, 1);
        // A label the list lacks is named at its row, as a direct reading names it.
        let err = again
            .classes(&csv, &opts(&["sports"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.csv:3") && err.contains("world"), "{err}");
        // A flipped byte is found by the checksum: the file is parsed again.
        let file = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == EXTENSION))
            .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[HEADER_BYTES + 9] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let key = key(&csv, &listed).unwrap();
        assert!(ParsedRows::open(&file, &key).is_none());
        assert!(!file.exists());
        let reparsed = parse_once(&cache, &csv, &listed).unwrap();
        assert_eq!(read_all(&reparsed, &classes), read_all(&again, &classes));
    }
}
