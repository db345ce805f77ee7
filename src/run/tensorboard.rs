//! TensorBoard event files beside metrics.csv, so that `tensorboard --logdir runs/` shows every
//! run: each metrics row becomes scalars (`<split>/loss`, `<split>/accuracy`, and for training
//! rows, `train` and `train_step`, also `<split>/lr` and `<split>/samples_per_s`), at the row's
//! step counted over all stages.
//!
//! The format is TFRecord: each record is its length (u64), the length's masked CRC32C, the
//! bytes, and their masked CRC32C; the bytes are a `tensorflow.Event` protobuf. Only four
//! messages' fields are written (Event, Summary, Summary.Value, and the file version), so they
//! are encoded here rather than through a protobuf code generator.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::metrics_log::{MetricRow, TRAIN_STEP};

/// The file-name prefix TensorBoard looks for.
pub const PREFIX: &str = "events.out.tfevents.";

/// An event file being written.
pub struct EventWriter {
    file: std::io::BufWriter<std::fs::File>,
    /// Steps of the stages before the current one, so that steps grow over a whole run.
    offset: usize,
    stage: Option<(String, usize)>,
}

impl EventWriter {
    /// A new event file in `dir`, replacing any earlier one (a resumed run rewrites its rows).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        for old in event_files(dir) {
            std::fs::remove_file(old)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!("{PREFIX}{}.pipe", now.as_secs());
        let file = std::fs::File::create(dir.join(name))?;
        let mut writer = EventWriter {
            file: std::io::BufWriter::new(file),
            offset: 0,
            stage: None,
        };
        let mut event = Vec::new();
        put_double(&mut event, 1, now.as_secs_f64());
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.file.flush()?;
        Ok(writer)
    }

    /// The scalars of one metrics row, flushed so that a live TensorBoard sees them.
    pub fn log(&mut self, row: &MetricRow) -> std::io::Result<()> {
        match &mut self.stage {
            Some((name, last)) if *name == row.stage => *last = (*last).max(row.step),
            _ => {
                if let Some((_, last)) = self.stage.take() {
                    self.offset += last;
                }
                self.stage = Some((row.stage.clone(), row.step));
            }
        }
        let step = (self.offset + row.step) as u64;
        let split = &row.split;
        let mut scalars = vec![
            (format!("{split}/loss"), row.loss),
            (format!("{split}/accuracy"), row.accuracy),
        ];
        // Step rows get tags of their own: an epoch's mean beside its last steps' window, at
        // one step, would draw a spike in one curve.
        if split == "train" || split == TRAIN_STEP {
            scalars.push((format!("{split}/lr"), row.lr));
            scalars.push((format!("{split}/samples_per_s"), row.samples_per_s));
        }
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall);
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)?;
        self.file.flush()
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let length = (data.len() as u64).to_le_bytes();
        self.file.write_all(&length)?;
        self.file.write_all(&masked_crc(&length).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())
    }
}

/// The event files in `dir`.
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = (read.flatten().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX))
        })
        .collect();
    files.sort();
    files
}

/// TFRecord's checksum: CRC32C, rotated and offset so that a CRC of data holding CRCs is not
/// trivially zero.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    put_varint(out, field << 3);
    put_varint(out, value);
}

fn put_double(out: &mut Vec<u8>, field: u64, value: f64) {
    put_varint(out, (field << 3) | 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u64, value: f32) {
    put_varint(out, (field << 3) | 5);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One event read back: its step and its scalars (tag, value).
pub type Event = (u64, Vec<(String, f32)>);

/// A protobuf field: number, wire type, and its varint value or its bytes.
type Field<'a> = (u64, u8, u64, &'a [u8]);

/// Reads an event file back: each event's step and its scalars (tag, value), checking every
/// record's checksums. For the tests, and for anyone checking a file by hand.
pub fn read_scalars(path: &Path) -> Result<Vec<Event>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut at = 0;
    let mut events = Vec::new();
    while at < bytes.len() {
        let take = |from: usize, n: usize| bytes.get(from..from + n).ok_or("a record cut short");
        let length = take(at, 8)?;
        let crc = u32::from_le_bytes(take(at + 8, 4)?.try_into().expect("4 bytes"));
        if crc != masked_crc(length) {
            return Err(format!("bad length checksum at byte {at}"));
        }
        let n = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
        let data = take(at + 12, n)?;
        let crc = u32::from_le_bytes(take(at + 12 + n, 4)?.try_into().expect("4 bytes"));
        if crc != masked_crc(data) {
            return Err(format!("bad data checksum at byte {at}"));
        }
        events.push(parse_event(data)?);
        at += 16 + n;
    }
    Ok(events)
}

/// A protobuf message's fields: (field number, wire type, varint value or bytes).
fn fields(mut data: &[u8]) -> Result<Vec<Field<'_>>, String> {
    fn varint(data: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = data.split_first().ok_or("a varint cut short")?;
            *data = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err("a varint too long".into())
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let key = varint(&mut data)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let width = match wire {
            0 => {
                out.push((field, wire, varint(&mut data)?, &data[..0]));
                continue;
            }
            1 => 8,
            5 => 4,
            2 => varint(&mut data)? as usize,
            _ => return Err(format!("wire type {wire}")),
        };
        let (value, rest) = data.split_at_checked(width).ok_or("a field cut short")?;
        out.push((field, wire, 0, value));
        data = rest;
    }
    Ok(out)
}

fn parse_event(data: &[u8]) -> Result<Event, String> {
    let mut step = 0;
    let mut scalars = Vec::new();
    for (field, _, number, bytes) in fields(data)? {
        match field {
            2 => step = number,
            5 => {
                for (_, _, _, value) in fields(bytes)? {
                    let (mut tag, mut scalar) = (String::new(), f32::NAN);
                    for (f, _, _, b) in fields(value)? {
                        match f {
                            1 => tag = String::from_utf8_lossy(b).into_owned(),
                            2 => scalar = f32::from_le_bytes(b.try_into().map_err(|_| "a float")?),
                            _ => {}
                        }
                    }
                    scalars.push((tag, scalar));
                }
            }
            _ => {}
        }
    }
    Ok((step, scalars))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::metrics_log::{Score, TrainingPosition};

    /// Rows place their scalars by stage and step: the other fields do not matter here.
    fn at(epoch: usize, step: usize) -> TrainingPosition {
        TrainingPosition {
            epoch,
            step,
            ..Default::default()
        }
    }

    #[test]
    fn rows_read_back_as_scalars_with_steps_growing_over_stages() {
        let dir = tempfile::tempdir().unwrap();
        let score = |loss| Score {
            loss,
            accuracy: 0.5,
            macro_f1: None,
        };
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.log(&MetricRow::new(
            "frozen",
            "train",
            at(1, 10),
            score(1.5),
            1e-3,
            900.0,
            1.0,
        ))
        .unwrap();
        w.log(&MetricRow::new(
            "frozen",
            "validation",
            at(1, 10),
            score(1.25),
            1e-3,
            0.0,
            1.2,
        ))
        .unwrap();
        w.log(&MetricRow::new(
            "tune",
            TRAIN_STEP,
            at(1, 2),
            score(0.875),
            1e-5,
            70.0,
            8.0,
        ))
        .unwrap();
        w.log(&MetricRow::new(
            "tune",
            "train",
            at(1, 4),
            score(0.75),
            3e-5,
            80.0,
            9.0,
        ))
        .unwrap();
        drop(w);
        let files = event_files(dir.path());
        assert_eq!(files.len(), 1);
        let events = read_scalars(&files[0]).unwrap();
        // The file-version event, then one event per row.
        assert_eq!(events.len(), 5);
        assert!(events[0].1.is_empty());
        assert_eq!(events[1].0, 10);
        assert_eq!(events[1].1[0], ("train/loss".to_string(), 1.5));
        assert_eq!(events[1].1[2], ("train/lr".to_string(), 1e-3));
        assert_eq!(events[2].1.len(), 2);
        assert_eq!(events[2].1[0], ("validation/loss".to_string(), 1.25));
        assert_eq!(
            events[3].0, 12,
            "the second stage's steps follow the first's"
        );
        let step_tags: Vec<&str> = events[3].1.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            step_tags,
            [
                "train_step/loss",
                "train_step/accuracy",
                "train_step/lr",
                "train_step/samples_per_s"
            ]
        );
        assert_eq!(events[3].1[2], ("train_step/lr".to_string(), 1e-5));
        assert_eq!(events[4].0, 14);
        assert_eq!(events[4].1[3], ("train/samples_per_s".to_string(), 80.0));
        // A flipped byte is caught by the record's checksum; a new writer replaces the file.
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&files[0], &bytes).unwrap();
        assert!(read_scalars(&files[0]).unwrap_err().contains("checksum"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(EventWriter::create(dir.path()).unwrap());
        assert_eq!(event_files(dir.path()).len(), 1);
    }

    /// The CRC32C check value, and TFRecord's mask of it (worked out by hand from the
    /// TFRecord definition: rotate right by 15, add 0xa282ead8).
    #[test]
    fn masked_crc_matches_the_reference() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }
}
