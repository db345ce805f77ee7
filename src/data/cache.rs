//! The encoded cache: a data file's encoded rows, kept on disk and memory-mapped, so that a
//! file is encoded once and every later run, sweep trial and `pipe eval` on it maps the result
//! instead of reading and encoding it again.
//!
//! One file per (data file contents, the options that pick its rows and labels, vectorizer):
//! `<dir>/<key>.rows`, `key` being BLAKE3 of all three and the format version, in hex. The file
//! starts with a header that repeats the key and holds a checksum of the rest
//! ([`super::encoded::Layout`]): a truncated, foreign, damaged or other-version file is
//! detected, removed and rebuilt, never read. Files are written to a temporary name and
//! renamed, so two runs building the same file at once each leave a whole one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encoded::{EncodedRows, FORMAT_VERSION, Layout, Storage, checksum};
use super::source::SourceOptions;

/// The file name extension of encoded-cache files.
pub const EXTENSION: &str = "rows";

/// The cache's folder for a runs dir: `<runs_dir>/.data-cache`.
pub fn default_dir(runs_dir: &Path) -> PathBuf {
    runs_dir.join(".data-cache")
}

/// The key of `path`'s rows as `opts` reads them and `vectorizer` (its fingerprint) encodes
/// them.
pub fn key(path: &Path, opts: &SourceOptions, vectorizer: &[u8; 32]) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update(b"pipe encoded rows\0")
        .update(&FORMAT_VERSION.to_le_bytes())
        .update(vectorizer);
    source_identity(&mut h, path, opts)?;
    Ok(*h.finalize().as_bytes())
}

/// The key of the vectorizer learned from `path`'s rows as `opts` reads them, by `spec`
/// (`held_out`: the validation fraction and seed that keep rows out of the learning).
pub fn vectorizer_key(
    path: &Path,
    opts: &SourceOptions,
    spec: &crate::spec::VectorizerSpec,
    held_out: Option<(f64, u64)>,
) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update(b"pipe fitted vectorizer v1\0");
    let spec = serde_json::to_string(&(spec, held_out)).expect("a spec serialises");
    h.update(&(spec.len() as u64).to_le_bytes())
        .update(spec.as_bytes());
    source_identity(&mut h, path, opts)?;
    Ok(*h.finalize().as_bytes())
}

/// Feeds the options that pick `path`'s rows and labels, and its contents, to `h`.
pub(super) fn source_identity(
    h: &mut blake3::Hasher,
    path: &Path,
    opts: &SourceOptions,
) -> std::io::Result<()> {
    let options = serde_json::json!({
        "format": format!("{:?}", opts.format),
        "text": opts.text,
        "label": opts.label,
        "labels": opts.labels,
        "unescape_backslash": opts.unescape_backslash,
        "limit": opts.limit,
    });
    let options = options.to_string();
    h.update(&(options.len() as u64).to_le_bytes())
        .update(options.as_bytes())
        .update(&content_hash(path)?);
    Ok(())
}

/// BLAKE3 of a file's bytes (a folder's: its files' names and bytes), read through once per process (a run asks for its train file's
/// for the vectorizer and for the rows); remembered by path, size and modification time.
fn content_hash(path: &Path) -> std::io::Result<[u8; 32]> {
    type Seen = std::collections::HashMap<(PathBuf, u64, Option<std::time::SystemTime>), [u8; 32]>;
    static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
    let meta = std::fs::metadata(path)?;
    let id = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(hash) = SEEN.lock().ok().and_then(|s| s.as_ref()?.get(&id).copied()) {
        return Ok(hash);
    }
    let mut h = blake3::Hasher::new();
    // A save_to_disk folder: each file, by name, in name order.
    let files = match meta.is_dir() {
        true => {
            let mut files: Vec<PathBuf> = (std::fs::read_dir(path)?.flatten())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        }
        false => vec![path.to_path_buf()],
    };
    let mut buffer = vec![0; 1 << 20];
    for name in files {
        let label = name.file_name().unwrap_or_default().to_string_lossy();
        h.update(&(label.len() as u64).to_le_bytes())
            .update(label.as_bytes());
        let mut file = std::fs::File::open(&name)?;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            h.update(&buffer[..n]);
        }
    }
    let hash = *h.finalize().as_bytes();
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_default().insert(id, hash);
    }
    Ok(hash)
}

/// The folder of the vectorizer cached under `key`.
pub fn vectorizer_dir(dir: &Path, key: &[u8; 32]) -> PathBuf {
    file_of(dir, key).with_extension(VECTORIZER_EXTENSION)
}

/// The extension of a cached vectorizer's folder.
pub const VECTORIZER_EXTENSION: &str = "vectorizer";

/// Keeps a fitted vectorizer's files (what `save` writes into a folder) under `key`: written
/// into a temporary folder, then renamed into place, so a reader sees all of them or none.
pub fn store_vectorizer(
    dir: &Path,
    key: &[u8; 32],
    source: &Path,
    save: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_note(&file_of(dir, key), source, None)?;
    let tmp = tempfile::Builder::new()
        .prefix(".vectorizer-")
        .tempdir_in(dir)?;
    save(tmp.path())?;
    let target = vectorizer_dir(dir, key);
    match std::fs::rename(tmp.path(), &target) {
        Ok(()) => Ok(()),
        // Another run stored the same vectorizer first: theirs is as good.
        Err(_) if target.is_dir() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn file_of(dir: &Path, key: &[u8; 32]) -> PathBuf {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.{EXTENSION}"))
}

/// The rows cached under `key`, memory-mapped; `None` when there are none, or when the file
/// is not whole (it is then removed, for the caller to rebuild).
pub fn lookup(dir: &Path, key: &[u8; 32]) -> Option<Arc<EncodedRows>> {
    let path = file_of(dir, key);
    let file = std::fs::File::open(&path).ok()?;
    // SAFETY: cache files are only ever replaced by a rename, never written in place, so the
    // mapped file does not change under the mapping (an outside program truncating it would
    // be the one way to break that, as for any memory-mapped file).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    match Layout::read(&map) {
        Some((layout, stored_key, sum)) if stored_key == *key && sum == checksum(&map) => {
            Some(Arc::new(EncodedRows::new(Storage::Mapped(map), layout)))
        }
        _ => {
            tracing::warn!(file = %path.display(), "encoded cache file damaged or of another version: rebuilt");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("json"));
            None
        }
    }
}

/// Writes `rows` under `key` and returns them memory-mapped from there (the built bytes are
/// freed); on a write error the rows stay in memory and a warning is logged. `source`, the data
/// file they were read from, goes into a note beside them (`<key>.json`) for `pipe cache`.
pub fn store(dir: &Path, key: &[u8; 32], rows: EncodedRows, source: &Path) -> Arc<EncodedRows> {
    let path = file_of(dir, key);
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| write_note(&path, source, Some(rows.rows())))
        .and_then(|()| crate::run::atomic_write(&path, rows.bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "encoded cache not written");
        return Arc::new(rows);
    }
    drop(rows);
    crate::backend::release_free_memory();
    lookup(dir, key).expect("the file just written is whole")
}

/// The note beside a cache file (`<key>.json`): where its rows came from.
pub(super) fn write_note(path: &Path, source: &Path, rows: Option<usize>) -> std::io::Result<()> {
    let note = serde_json::json!({
        "source": std::path::absolute(source).unwrap_or(source.to_path_buf()),
        "rows": rows,
    });
    crate::run::atomic_write(&path.with_extension("json"), note.to_string().as_bytes())
}

/// A cache file, for `pipe cache`.
pub struct Entry {
    pub path: PathBuf,
    /// The data file the rows were read from (from the note beside them).
    pub source: Option<String>,
    pub bytes: u64,
    pub rows: Option<usize>,
    pub modified: Option<std::time::SystemTime>,
}

/// The encoded-cache files in `dir`, newest first; a cached vectorizer (a folder) is one entry
/// with no rows.
pub fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let is = |e: &std::fs::DirEntry, x: &str| e.path().extension().is_some_and(|y| y == x);
    let mut out: Vec<Entry> = (read.flatten())
        .filter(|e| {
            is(e, EXTENSION) || is(e, super::parsed::EXTENSION) || is(e, VECTORIZER_EXTENSION)
        })
        .map(|e| {
            let meta = e.metadata().ok();
            let rows = std::fs::File::open(e.path()).ok().and_then(|mut f| {
                let mut header = vec![0; super::encoded::HEADER_BYTES];
                f.read_exact(&mut header).ok()?;
                let word = u64::from_le_bytes(header[16..24].try_into().ok()?);
                let magic = &header[..8];
                (magic == super::encoded::MAGIC || magic == super::parsed::MAGIC)
                    .then_some(word as usize)
            });
            let note = std::fs::read(e.path().with_extension("json")).ok();
            let note: Option<serde_json::Value> =
                note.and_then(|n| serde_json::from_slice(&n).ok());
            Entry {
                source: note.and_then(|n| n["source"].as_str().map(String::from)),
                path: e.path(),
                bytes: match e.path().is_dir() {
                    true => (std::fs::read_dir(e.path()).into_iter().flatten().flatten())
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum(),
                    false => meta.as_ref().map_or(0, |m| m.len()),
                },
                rows,
                modified: meta.and_then(|m| m.modified().ok()),
            }
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.modified));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::encoded::{RowsBuilder, Tokens};

    fn built(key: &[u8; 32]) -> EncodedRows {
        let mut b = RowsBuilder::new(100);
        for i in 0..50u32 {
            let tokens = Tokens {
                ids: (1..=i % 7 + 1).collect(),
                type_ids: vec![],
            };
            b.push(&tokens, (i % 3) as i32);
        }
        b.finish(key)
    }

    #[test]
    fn stored_rows_are_found_and_damaged_files_are_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let key = [3; 32];
        assert!(lookup(dir.path(), &key).is_none());
        let source = Path::new("data/x.csv");
        let stored = store(dir.path(), &key, built(&key), source);
        assert_eq!(stored.rows(), 50);
        let found = lookup(dir.path(), &key).expect("stored");
        assert_eq!(found.bytes(), built(&key).bytes());
        let path = file_of(dir.path(), &key);
        let whole = std::fs::read(&path).unwrap();

        // A flipped byte in the body, a truncated file, another key's file under this name.
        let mut flipped = whole.clone();
        let last = flipped.len() - 20;
        flipped[last] ^= 1;
        let other = built(&[4; 32]).bytes().to_vec();
        for damaged in [
            flipped,
            whole[..whole.len() - 8].to_vec(),
            other,
            b"junk".to_vec(),
        ] {
            std::fs::write(&path, damaged).unwrap();
            assert!(lookup(dir.path(), &key).is_none());
            assert!(!path.exists(), "removed, to be rebuilt");
        }
        assert_eq!(entries(dir.path()).len(), 0);
        store(dir.path(), &key, built(&key), source);
        let listed = entries(dir.path());
        assert_eq!((listed.len(), listed[0].rows), (1, Some(50)));
        assert!(listed[0].source.as_ref().unwrap().ends_with("data/x.csv"));
    }
}
