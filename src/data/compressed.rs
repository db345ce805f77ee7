//! Data files read through a decompressor chosen by their name: `.gz` (gzip, every member of
//! a multi-member file) and `.zst` / `.zstd` (Zstandard, every frame). A corrupt stream is an
//! error naming how far into the compressed file it was found.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

/// The compression a file's name says it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_string_lossy().to_ascii_lowercase();
        match extension.as_str() {
            "gz" | "gzip" => Some(Compression::Gzip),
            "zst" | "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The file's name without a compression extension (`train.csv.gz` → `train.csv`), to tell
/// its format by.
pub fn uncompressed_name(path: &Path) -> std::path::PathBuf {
    match Compression::of(path) {
        Some(_) => path.with_extension(""),
        None => path.to_path_buf(),
    }
}

/// The bytes of `file`, decompressed as `path`'s name says.
pub fn reader(path: &Path, file: std::fs::File) -> std::io::Result<Box<dyn Read>> {
    let Some(compression) = Compression::of(path) else {
        return Ok(Box::new(file));
    };
    let consumed = Rc::new(Cell::new(0));
    let source = BufReader::with_capacity(
        1 << 16,
        Counted {
            inner: file,
            consumed: consumed.clone(),
        },
    );
    let decoded: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(source)),
        Compression::Zstd => Box::new(ZstdFrames {
            source: Some(source),
            frame: None,
        }),
    };
    Ok(Box::new(Located {
        inner: decoded,
        compression,
        consumed,
    }))
}

/// Counts the compressed bytes read so far.
struct Counted {
    inner: std::fs::File,
    consumed: Rc<Cell<u64>>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

/// Says where in the compressed file a decoding error was found.
struct Located {
    inner: Box<dyn Read>,
    compression: Compression,
    consumed: Rc<Cell<u64>>,
}

impl Read for Located {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "corrupt {} stream, found within the first {} compressed bytes: {e}",
                    self.compression.name(),
                    self.consumed.get()
                ),
            )
        })
    }
}

type ZstdSource = BufReader<Counted>;
type ZstdFrame = ruzstd::decoding::StreamingDecoder<ZstdSource, ruzstd::decoding::FrameDecoder>;

/// Every Zstandard frame of the file in turn (ruzstd's decoder reads one).
struct ZstdFrames {
    /// The file between frames; inside one, the frame owns it.
    source: Option<ZstdSource>,
    frame: Option<ZstdFrame>,
}

impl Read for ZstdFrames {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                let ended = self.frame.take().expect("just read from it");
                self.source = Some(ended.into_inner());
            }
            let mut source = self.source.take().expect("the file, between frames");
            if source.fill_buf()?.is_empty() {
                self.source = Some(source);
                return Ok(0);
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(source)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            self.frame = Some(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        reader(path, std::fs::File::open(path)?)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gzip_members_are_read_in_turn_and_corruption_names_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv.gz");
        let mut bytes = Vec::new();
        for part in ["text,label\n", "a,b\n"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part.as_bytes()).unwrap();
            bytes.extend(gz.finish().unwrap());
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_all(&path).unwrap(), b"text,label\na,b\n");
        assert_eq!(uncompressed_name(&path), dir.path().join("rows.csv"));

        let mut corrupt = bytes.clone();
        corrupt[15] ^= 0xff;
        std::fs::write(&path, &corrupt).unwrap();
        let e = read_all(&path).unwrap_err().to_string();
        assert!(
            e.starts_with("corrupt gzip stream, found within the first"),
            "{e}"
        );
    }

    /// Two frames one after the other, as appending two `.zst` files gives (built by hand as
    /// raw-block frames; tests/it/data_formats.rs reads what the zstd program writes).
    #[test]
    fn zstd_frames_are_read_in_turn_and_a_bad_frame_is_an_error() {
        let frame = |text: &str| -> Vec<u8> {
            // A raw (uncompressed) block frame: magic, header (single segment, 1-byte size),
            // a last raw block of the text.
            let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0x20, text.len() as u8];
            let header = ((text.len() as u32) << 3) | 1;
            f.extend(&header.to_le_bytes()[..3]);
            f.extend(text.as_bytes());
            f
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl.zst");
        let mut bytes = frame("{\"a\":1}\n");
        bytes.extend(frame("{\"a\":2}\n"));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_all(&path).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
        bytes.extend(b"not a frame");
        std::fs::write(&path, &bytes).unwrap();
        let e = read_all(&path).unwrap_err().to_string();
        assert!(e.starts_with("corrupt zstd stream"), "{e}");
    }
}
