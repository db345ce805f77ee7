//! Text-classification datasets: AG News CSV, headed CSV and JSON Lines.
//!
//! Loading is strict on purpose: a training run that silently drops or
//! mislabels rows produces numbers nobody can trust, so every defect is an
//! error that names the file and the physical line where the bad row starts.

use std::cell::RefCell;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use crate::spec::dataset::LabelCount;

#[derive(Clone, Debug)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Zhang et al. (2015): headerless, columns `class_index,title,description`,
    /// class_index 1..N.
    AgNewsCsv,
    /// First row is a header; columns are picked by name.
    Csv,
    /// One JSON object per non-empty line; fields are picked by name.
    Jsonl,
    /// A Parquet file; columns are picked by name.
    Parquet,
    /// A folder of Arrow IPC files (`datasets`' save_to_disk); columns are picked by name.
    Arrow,
}

#[derive(Clone, Debug)]
pub struct SourceOptions {
    pub format: Format,
    /// Column names joined with one space into the text. For AgNewsCsv the
    /// columns are named "title" and "description" (class column
    /// "class_index"). For Csv/Jsonl they are header/field names.
    pub text: Vec<String>,
    /// Label column/field for Csv/Jsonl (ignored for AgNewsCsv, whose
    /// class_index 1..N maps to label 0..N-1).
    pub label: String,
    /// Class names. For Csv/Jsonl a label value may be either one of these
    /// names or an integer index 0..N-1; for AgNewsCsv class_index must be in
    /// 1..=labels.len().
    pub labels: Vec<String>,
    /// Replace each backslash in text fields by "\n" (AG News stores line
    /// breaks as a backslash). Default false: Keras-parity pipelines keep the
    /// text exactly as stored.
    pub unescape_backslash: bool,
    /// Stop after this many rows (rows kept = first `limit` rows of the file).
    /// `Some(0)` reads nothing and is not an error.
    pub limit: Option<usize>,
}

const AG_NEWS_COLUMNS: [&str; 3] = ["class_index", "title", "description"];

/// Longest value quoted back in an error; a misaligned column can hold a whole
/// article, which would drown the message.
const MAX_QUOTED: usize = 60;

/// What is wrong with one row (or the header). Display never contains a line
/// break: values are quoted with Rust escaping.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("expected {expected} fields ({names}), found {found}")]
    FieldCount {
        expected: usize,
        names: String,
        found: usize,
    },
    #[error("class_index {value:?} is not an integer")]
    ClassIndexNotInteger { value: String },
    #[error("class_index {value} out of range 1..={max}")]
    ClassIndexOutOfRange { value: i64, max: usize },
    #[error("label {value:?} is not one of {}", listed(labels))]
    UnknownLabel { value: String, labels: Vec<String> },
    #[error("label {value} out of range 0..={max}")]
    LabelIndexOutOfRange { value: String, max: usize },
    #[error("no column {name:?} in header (columns: {})", listed(columns))]
    MissingColumn { name: String, columns: Vec<String> },
    #[error("invalid UTF-8 in field {field} ({name})")]
    InvalidUtf8Field { field: usize, name: String },
    #[error("invalid UTF-8")]
    InvalidUtf8Line,
    #[error("invalid CSV: {message}")]
    Csv { message: String },
    #[error("invalid JSON: {message}")]
    Json { message: String },
    #[error("expected a JSON object, found {found}")]
    NotObject { found: &'static str },
    #[error("no field {name:?}")]
    MissingField { name: String },
    #[error("field {name:?} must be a string, found {found}")]
    NotString { name: String, found: &'static str },
    #[error("label must be a string or an integer, found {found}")]
    BadLabelType { found: &'static str },
    #[error("empty label {value:?}: every row needs its class")]
    EmptyLabel { value: String },
    #[error("no value (null) in column {name:?}")]
    NullValue { name: String },
    #[error(
        "label {value} is {kind}, but an earlier row's label {first:?} is {first_kind}: \
         write every label as a name, or every label as a number"
    )]
    MixedLabelKinds {
        value: String,
        kind: &'static str,
        first: String,
        first_kind: &'static str,
    },
}

/// Names joined for a message, each escaped and shortened, so a header that swallowed a line
/// break (a stray quote) still makes a one-line error.
fn listed(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|n| quoted_snippet(n).escape_debug().to_string())
        .collect();
    shown.join(", ")
}

/// Display is the one-line message a user sees, `file:line: problem`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The io error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: no rows", path.display())]
    NoRows { path: PathBuf },
    /// The options cannot work for this file whatever its content.
    #[error("{}: {message}", path.display())]
    Options { path: PathBuf, message: String },
    #[error("{}:{line}: {problem}", path.display())]
    Row {
        path: PathBuf,
        line: u64,
        problem: Problem,
    },
}

pub fn load(path: &Path, opts: &SourceOptions) -> Result<Vec<Example>, DataError> {
    let mut examples = Vec::new();
    each_row(path, opts, &mut |e| {
        examples.push(e);
        Ok(())
    })?;
    Ok(examples)
}

/// [`load`] one row at a time: `sink` gets each example in file order, and nothing of the file
/// is kept beyond the row being read (a file of millions of rows is read in bounded memory).
pub fn each_row(
    path: &Path,
    opts: &SourceOptions,
    sink: &mut dyn FnMut(Example) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    check_options(path, opts)?;
    if opts.labels.is_empty() {
        return Err(options_error(path, "no labels given"));
    }
    let mut class_of = |value: &str, _: LabelKind| match opts.format {
        Format::AgNewsCsv => class_index(value, &opts.labels),
        _ => label_from_str(value, &opts.labels),
    };
    read_rows(path, opts, Some(&mut class_of), sink)
}

/// The classes of a file, for a spec that omits `labels`: its distinct label values with their
/// row counts, sorted numerically when every value is an integer (AG News' class_index, or
/// 0/1 labels) and by text otherwise. Reads the same rows as [`load`] (`limit` included), with
/// the same row checks.
pub fn infer_labels(path: &Path, opts: &SourceOptions) -> Result<Vec<LabelCount>, DataError> {
    check_options(path, opts)?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    // The first JSON number and the first label that is a name (not an integer written as
    // a string): a file with both ("World" and 3) has a number where a name belongs, and
    // would silently gain a class "3". 9 and "9" stay one class.
    let mut first_number: Option<String> = None;
    let mut first_name: Option<String> = None;
    let mut count = |value: &str, kind: LabelKind| {
        let is_name = kind == LabelKind::Text && value.trim().parse::<i64>().is_err();
        if kind == LabelKind::Number && first_number.is_none() {
            first_number = Some(value.to_string());
        }
        if is_name && first_name.is_none() {
            first_name = Some(value.to_string());
        }
        if let (Some(number), Some(name)) = (&first_number, &first_name) {
            let (other, other_kind) = match kind {
                LabelKind::Number => (name, LabelKind::Text),
                LabelKind::Text => (number, LabelKind::Number),
            };
            return Err(Problem::MixedLabelKinds {
                value: quoted_snippet(value),
                kind: kind.described(),
                first: quoted_snippet(other),
                first_kind: other_kind.described(),
            });
        }
        if opts.format == Format::AgNewsCsv && value.parse::<i64>().is_err() {
            return Err(Problem::ClassIndexNotInteger {
                value: quoted_snippet(value),
            });
        }
        *counts.entry(value.to_string()).or_default() += 1;
        Ok(0)
    };
    // Only the label values are kept, not the texts.
    read_rows(path, opts, Some(&mut count), &mut |_| Ok(()))?;
    Ok(class_order(counts))
}

/// Classes in the order a run numbers them: numerically when every value is an integer,
/// else by text.
fn class_order(counts: std::collections::BTreeMap<String, usize>) -> Vec<LabelCount> {
    let mut labels: Vec<LabelCount> = counts
        .into_iter()
        .map(|(label, rows)| LabelCount { label, rows })
        .collect();
    if labels.iter().all(|l| l.label.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.label.parse::<i64>().expect("checked just above"));
    }
    labels
}

/// A label value as a file writes it, with the rows that carry it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RawLabel {
    pub value: String,
    /// Written as a JSON number somewhere.
    pub as_number: bool,
    /// Written as text (a CSV field, a JSON string) somewhere.
    pub as_text: bool,
    pub rows: usize,
}

/// Reads every row as [`each_row`] does, but keeps each label as written instead of mapping it
/// to a class: `sink` gets each row's text and the index of its label value in the returned
/// list (values in order of first appearance). [`classes_of`] maps the values afterwards, so
/// one pass serves a spec that lists its labels and one that infers them.
pub fn each_row_raw(
    path: &Path,
    opts: &SourceOptions,
    sink: &mut dyn FnMut(String, usize) -> Result<(), DataError>,
) -> Result<(usize, Vec<RawLabel>), DataError> {
    check_options(path, opts)?;
    let mut values: Vec<RawLabel> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut intern = |value: &str, kind: LabelKind| {
        let i = *index.entry(value.to_string()).or_insert_with(|| {
            values.push(RawLabel {
                value: value.to_string(),
                as_number: false,
                as_text: false,
                rows: 0,
            });
            values.len() - 1
        });
        let v = &mut values[i];
        v.rows += 1;
        match kind {
            LabelKind::Number => v.as_number = true,
            LabelKind::Text => v.as_text = true,
        }
        Ok(i)
    };
    let rows = read_rows(path, opts, Some(&mut intern), &mut |e| {
        sink(e.text, e.label)
    })?;
    Ok((rows, values))
}

/// The class of each label value [`each_row_raw`] found, for `opts.labels` (listed), or for
/// the classes inferred from the values when `opts.labels` is empty (returned too). When a
/// value is refused, the file is read again the usual way, so the error names its first bad
/// row exactly as a run that reads it directly would.
pub fn classes_of(
    path: &Path,
    opts: &SourceOptions,
    values: &[RawLabel],
) -> Result<(Vec<usize>, Option<Vec<LabelCount>>), DataError> {
    let inferred = match opts.labels.is_empty() {
        true => {
            let integer = |v: &RawLabel| v.value.trim().parse::<i64>().is_ok();
            let mixed = values.iter().any(|v| v.as_number)
                && values.iter().any(|v| v.as_text && !integer(v));
            let not_index = opts.format == Format::AgNewsCsv
                && values.iter().any(|v| v.value.parse::<i64>().is_err());
            if mixed || not_index {
                return Err(reread_error(infer_labels(path, opts).err(), path));
            }
            let counts = values.iter().map(|v| (v.value.clone(), v.rows)).collect();
            Some(class_order(counts))
        }
        false => None,
    };
    let labels: Vec<String> = match &inferred {
        Some(found) => found.iter().map(|c| c.label.clone()).collect(),
        None => opts.labels.clone(),
    };
    let class = |value: &str| match opts.format {
        Format::AgNewsCsv => class_index(value, &labels),
        _ => label_from_str(value, &labels),
    };
    match values.iter().map(|v| class(&v.value)).collect() {
        Ok(classes) => Ok((classes, inferred)),
        Err(_) => Err(reread_error(
            each_row(path, opts, &mut |_| Ok(())).err(),
            path,
        )),
    }
}

/// The error a second, direct reading gave; a reading that found nothing wrong contradicts the
/// first and is reported as such.
fn reread_error(error: Option<DataError>, path: &Path) -> DataError {
    error.unwrap_or_else(|| {
        options_error(
            path,
            "the file changed while it was read: its labels no longer match",
        )
    })
}

fn options_error(path: &Path, message: &str) -> DataError {
    DataError::Options {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Checked before touching the file so a typo in the config is reported as such, not as
/// whatever the first row happens to contain.
fn check_options(path: &Path, opts: &SourceOptions) -> Result<(), DataError> {
    if opts.text.is_empty() {
        return Err(options_error(path, "no text columns given"));
    }
    if opts.format == Format::AgNewsCsv {
        for name in &opts.text {
            if !AG_NEWS_COLUMNS.contains(&name.as_str()) {
                return Err(options_error(
                    path,
                    &format!(
                        "no column {name:?} (AG News columns: {})",
                        AG_NEWS_COLUMNS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// How a label was written: CSV fields and JSON strings are text, JSON numbers are numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum LabelKind {
    Text,
    Number,
}

impl LabelKind {
    fn described(self) -> &'static str {
        match self {
            LabelKind::Text => "a string",
            LabelKind::Number => "a number",
        }
    }
}

/// Label value (as text; a JSON number as written) → class index, or what is wrong with it.
/// An empty or blank label is refused before it is asked: it is a missing value, not a class.
pub(super) type ClassOf<'a> = dyn FnMut(&str, LabelKind) -> Result<usize, Problem> + 'a;

/// The texts of a file to classify (`pipe predict --data`), one at a time: the text columns
/// as a run reads them, in file order; a label column is not needed, and ignored where present.
pub fn each_text(
    path: &Path,
    opts: &SourceOptions,
    sink: &mut dyn FnMut(String) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    check_options(path, opts)?;
    read_rows(path, opts, None, &mut |e| sink(e.text))
}

/// Reads the rows into `sink`, returning how many there were; `class_of` maps label values to
/// classes, `None` reads texts only.
fn read_rows(
    path: &Path,
    opts: &SourceOptions,
    class_of: Option<&mut ClassOf>,
    sink: &mut dyn FnMut(Example) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let row_error = |line: u64, problem: Problem| DataError::Row {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut checked = class_of.map(|class_of| {
        move |value: &str, kind: LabelKind| {
            if value.trim().is_empty() {
                return Err(Problem::EmptyLabel {
                    value: value.to_string(),
                });
            }
            class_of(value, kind)
        }
    });
    let class_of = checked.as_mut().map(|f| f as &mut ClassOf);
    if let Format::Parquet | Format::Arrow = opts.format {
        let parquet = opts.format == Format::Parquet;
        let rows = super::columnar::load(path, opts, parquet, class_of, sink)?;
        return match rows == 0 && opts.limit != Some(0) {
            true => Err(DataError::NoRows {
                path: path.to_path_buf(),
            }),
            false => Ok(rows),
        };
    }
    let read_error = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let file = super::compressed::reader(path, file).map_err(read_error)?;
    let rows = match opts.format {
        Format::AgNewsCsv | Format::Csv => {
            let errors = RowErrors {
                row: &row_error,
                read: &read_error,
            };
            load_csv(file, opts, &errors, class_of, sink)?
        }
        Format::Jsonl => load_jsonl(file, opts, &row_error, &read_error, class_of, sink)?,
        Format::Parquet | Format::Arrow => unreachable!("read by the columnar reader above"),
    };
    if rows == 0 && opts.limit != Some(0) {
        return Err(DataError::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

fn load_csv(
    file: Box<dyn Read>,
    opts: &SourceOptions,
    errors: &RowErrors,
    mut class_of: Option<&mut ClassOf>,
    sink: &mut dyn FnMut(Example) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    // Headers are read by hand (has_headers false) so that the header gets the
    // same line numbers and UTF-8 checks as any row, and flexible(true) so a
    // short row reaches us and is reported with its line instead of as the
    // csv crate's generic UnequalLengths error.
    let window = Window::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(WindowReader {
            inner: file,
            window: window.clone(),
        });
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(window);
    let read = |reader: &mut csv::Reader<WindowReader>,
                record: &mut csv::ByteRecord,
                lines: &mut LineCounter| read_record(reader, record, lines, errors);
    let layout = match opts.format {
        Format::AgNewsCsv => {
            let columns: Vec<String> = AG_NEWS_COLUMNS.iter().map(|c| c.to_string()).collect();
            CsvLayout {
                text: (opts.text.iter())
                    .map(|name| column_index(&columns, name).expect("checked in load"))
                    .collect(),
                label: Some(0),
                columns,
            }
        }
        _ => {
            if !read(&mut reader, &mut record, &mut lines)? {
                return Ok(0);
            }
            let line = lines.of(&record);
            CsvLayout::from_header(&record, line, opts, class_of.is_some(), errors.row)?
        }
    };
    let CsvLayout {
        columns,
        text: text_idx,
        label: label_idx,
    } = layout;
    let names = columns.join(",");

    let mut rows = 0;
    loop {
        if opts.limit.is_some_and(|limit| rows >= limit) {
            break;
        }
        if !read(&mut reader, &mut record, &mut lines)? {
            break;
        }
        let line = lines.of(&record);
        lines.release_done();
        if record.len() != columns.len() {
            return Err((errors.row)(
                line,
                Problem::FieldCount {
                    expected: columns.len(),
                    names,
                    found: record.len(),
                },
            ));
        }
        // Every field is checked, not only the used ones: bad bytes anywhere
        // mean the file is not what we think it is.
        let mut fields: Vec<&str> = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            let field = std::str::from_utf8(field).map_err(|_| {
                (errors.row)(
                    line,
                    Problem::InvalidUtf8Field {
                        field: i + 1,
                        name: columns[i].clone(),
                    },
                )
            })?;
            fields.push(field);
        }
        let label = match (class_of.as_mut(), label_idx) {
            (Some(class_of), Some(i)) => class_of(fields[i], LabelKind::Text)
                .map_err(|problem| (errors.row)(line, problem))?,
            _ => 0,
        };
        let text = join_text(text_idx.iter().map(|&i| fields[i]), opts);
        sink(Example { text, label })?;
        rows += 1;
    }
    Ok(rows)
}

/// The bytes a CSV reader has taken in from its file, from the start of the record being read
/// on, so that line numbers are counted from the bytes themselves; shared by the reader (which
/// appends) and the [`LineCounter`] (which drops what is behind it).
#[derive(Clone, Default)]
struct Window(Rc<RefCell<WindowBytes>>);

#[derive(Default)]
struct WindowBytes {
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    base: usize,
}

struct WindowReader {
    inner: Box<dyn Read>,
    window: Window,
}

impl Read for WindowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.window
            .0
            .borrow_mut()
            .bytes
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Physical line numbers of CSV records, counted from their byte offsets.
///
/// The csv crate's own line count is one short after each CRLF row end (what Python's csv
/// module and Excel write): it stops at the `\r` and counts the `\n` with the next record,
/// whose start it has already recorded. Counting the newlines before the record's first byte
/// (past any line-end bytes the offset still points at) gives the line a text editor shows.
struct LineCounter {
    window: Window,
    /// File offset up to which newlines have been counted, and how many there were.
    counted_to: usize,
    newlines: u64,
}

impl LineCounter {
    fn new(window: Window) -> Self {
        LineCounter {
            window,
            counted_to: 0,
            newlines: 0,
        }
    }

    /// Drops the bytes already counted, once they are a few megabytes: records come in file
    /// order, so they are never looked at again.
    fn release_done(&mut self) {
        let mut window = self.window.0.borrow_mut();
        let done = self.counted_to.saturating_sub(window.base);
        if done >= 4 << 20 {
            window.bytes.drain(..done);
            window.base += done;
        }
    }

    /// The line a record starts on.
    fn of(&mut self, record: &csv::ByteRecord) -> u64 {
        record.position().map_or(0, |p| self.at(p.byte()))
    }

    /// The 1-based line of the first byte at or after `byte` that is not a line end.
    /// Offsets must not decrease between calls (records come in file order).
    fn at(&mut self, byte: u64) -> u64 {
        let window = self.window.0.borrow();
        let (bytes, base) = (&window.bytes, window.base);
        let mut start = (byte as usize).clamp(base, base + bytes.len());
        while matches!(bytes.get(start - base), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start > self.counted_to {
            let span = &bytes[self.counted_to.max(base) - base..start - base];
            self.newlines += span.iter().filter(|&&b| b == b'\n').count() as u64;
            self.counted_to = start;
        }
        self.newlines + 1
    }
}

/// A CSV source's columns, and which of them hold the text and the label.
struct CsvLayout {
    columns: Vec<String>,
    text: Vec<usize>,
    /// `None` when the file has no label column and none is needed.
    label: Option<usize>,
}

impl CsvLayout {
    /// From a header row; a column the spec names that is missing is an error on its line.
    fn from_header(
        record: &csv::ByteRecord,
        line: u64,
        opts: &SourceOptions,
        needs_label: bool,
        row_error: &dyn Fn(u64, Problem) -> DataError,
    ) -> Result<Self, DataError> {
        let columns: Vec<String> = (record.iter().enumerate())
            .map(|(i, field)| {
                std::str::from_utf8(field).map(str::to_string).map_err(|_| {
                    row_error(
                        line,
                        Problem::InvalidUtf8Field {
                            field: i + 1,
                            name: "header".to_string(),
                        },
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let find = |name: &str| {
            column_index(&columns, name).ok_or_else(|| {
                row_error(
                    line,
                    Problem::MissingColumn {
                        name: name.to_string(),
                        columns: columns.clone(),
                    },
                )
            })
        };
        let text = (opts.text.iter())
            .map(|name| find(name))
            .collect::<Result<_, _>>()?;
        let label = match needs_label {
            true => Some(find(&opts.label)?),
            false => column_index(&columns, &opts.label),
        };
        Ok(CsvLayout {
            columns,
            text,
            label,
        })
    }
}

/// The next record; `false` at the end. A malformed one is an error on its line.
fn read_record(
    reader: &mut csv::Reader<WindowReader>,
    record: &mut csv::ByteRecord,
    lines: &mut LineCounter,
    errors: &RowErrors,
) -> Result<bool, DataError> {
    reader.read_byte_record(record).map_err(|e| {
        let line = e.position().map_or(0, |p| lines.at(p.byte()));
        let message = e.to_string();
        match e.into_kind() {
            // The file itself (or its decompression) failed, not a row.
            csv::ErrorKind::Io(error) => (errors.read)(error),
            _ => (errors.row)(line, Problem::Csv { message }),
        }
    })
}

/// How a reader reports a bad row (at its line) and a file it cannot read.
struct RowErrors<'a> {
    row: &'a dyn Fn(u64, Problem) -> DataError,
    read: &'a dyn Fn(std::io::Error) -> DataError,
}

fn load_jsonl(
    file: Box<dyn Read>,
    opts: &SourceOptions,
    row_error: &dyn Fn(u64, Problem) -> DataError,
    read_error: &dyn Fn(std::io::Error) -> DataError,
    mut class_of: Option<&mut ClassOf>,
    sink: &mut dyn FnMut(Example) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buffer = Vec::new();
    let mut rows = 0;
    for i in 0.. {
        if opts.limit.is_some_and(|limit| rows >= limit) {
            break;
        }
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer).map_err(read_error)? == 0 {
            break;
        }
        let line = i as u64 + 1;
        let raw = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let raw = match i {
            0 => raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw),
            _ => raw,
        };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text =
            std::str::from_utf8(raw).map_err(|_| row_error(line, Problem::InvalidUtf8Line))?;
        if text.trim().is_empty() {
            continue;
        }
        let example = json_example(text, opts, class_of.as_deref_mut())
            .map_err(|problem| row_error(line, problem))?;
        sink(example)?;
        rows += 1;
    }
    Ok(rows)
}

fn json_example(
    line: &str,
    opts: &SourceOptions,
    class_of: Option<&mut ClassOf>,
) -> Result<Example, Problem> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        // serde_json appends "at line 1 column N"; its line is always 1 here
        // and would contradict the file line in front of the message.
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        Problem::Json {
            message: format!("{message} at column {}", e.column()),
        }
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(Problem::NotObject {
            found: json_kind(&value),
        });
    };
    let get = |name: &str| {
        object.get(name).ok_or_else(|| Problem::MissingField {
            name: name.to_string(),
        })
    };
    let mut parts = Vec::with_capacity(opts.text.len());
    for name in &opts.text {
        match get(name)? {
            serde_json::Value::String(s) => parts.push(s.as_str()),
            other => {
                return Err(Problem::NotString {
                    name: name.clone(),
                    found: json_kind(other),
                });
            }
        }
    }
    let Some(class_of) = class_of else {
        return Ok(Example {
            text: join_text(parts.into_iter(), opts),
            label: 0,
        });
    };
    let label = match get(&opts.label)? {
        serde_json::Value::String(s) => class_of(s, LabelKind::Text)?,
        // As text, so that a class named "3" (inferred from numbers) is found by name first,
        // exactly as the same label written as a string.
        serde_json::Value::Number(n) => class_of(&n.to_string(), LabelKind::Number)?,
        other => {
            return Err(Problem::BadLabelType {
                found: json_kind(other),
            });
        }
    };
    Ok(Example {
        text: join_text(parts.into_iter(), opts),
        label,
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn column_index(columns: &[String], name: &str) -> Option<usize> {
    columns.iter().position(|c| c == name)
}

/// AG News' class_index: a class named as the value wins (classes inferred from the file are
/// named "1", "2", ..., and a gap must not shift them); otherwise index 1..N.
fn class_index(value: &str, labels: &[String]) -> Result<usize, Problem> {
    if let Some(i) = labels.iter().position(|l| l == value) {
        return Ok(i);
    }
    let n = labels.len();
    let index: i64 = value.parse().map_err(|_| Problem::ClassIndexNotInteger {
        value: quoted_snippet(value),
    })?;
    if index < 1 || index as u64 > n as u64 {
        return Err(Problem::ClassIndexOutOfRange {
            value: index,
            max: n,
        });
    }
    Ok(index as usize - 1)
}

/// A name wins over an integer reading so that classes literally named "0",
/// "1", ... keep their declared order.
fn label_from_str(value: &str, labels: &[String]) -> Result<usize, Problem> {
    if let Some(i) = labels.iter().position(|l| l == value) {
        return Ok(i);
    }
    match value.parse::<i64>() {
        Ok(index) if index >= 0 && (index as u64) < labels.len() as u64 => Ok(index as usize),
        Ok(index) => Err(Problem::LabelIndexOutOfRange {
            value: index.to_string(),
            max: labels.len() - 1,
        }),
        // A number that is no index (1.5, 1e3) is read as a wrong index, not as a class name.
        Err(_) if value.parse::<f64>().is_ok_and(f64::is_finite) => {
            Err(Problem::LabelIndexOutOfRange {
                value: value.to_string(),
                max: labels.len() - 1,
            })
        }
        Err(_) => Err(Problem::UnknownLabel {
            value: quoted_snippet(value),
            labels: labels.to_vec(),
        }),
    }
}

fn quoted_snippet(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

pub(super) fn join_text<'a>(parts: impl Iterator<Item = &'a str>, opts: &SourceOptions) -> String {
    let mut text = String::new();
    for (i, part) in parts.enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(part);
    }
    if opts.unescape_backslash && text.contains('\\') {
        text = text.replace('\\', "\n");
    }
    text
}

/// Seeded split into (train, validation); validation = round(fraction * n)
/// rows picked by a ChaCha8 shuffle, so the same seed gives the same split on
/// every platform. Both parts keep file order, which keeps runs comparable
/// with tools that split by index.
///
/// # Panics
/// If `fraction` is not strictly between 0 and 1: callers validate the config
/// first, so reaching here with such a value is a bug.
// The rule itself is data::validation_rows, which runs use; this form is kept for its tests.
#[cfg(test)]
pub fn split_fraction(
    examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    assert!(
        fraction > 0.0 && fraction < 1.0,
        "validation fraction must be in (0, 1), got {fraction}"
    );
    let is_valid = super::validation_rows(examples.len(), fraction, seed);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (example, valid_row) in examples.into_iter().zip(is_valid) {
        if valid_row {
            valid.push(example);
        } else {
            train.push(example);
        }
    }
    (train, valid)
}

/// Examples per label. The result has `n` entries, or more if some label is
/// `>= n`, so that no example goes uncounted.
pub fn class_counts(examples: &[Example], n: usize) -> Vec<usize> {
    let len = examples
        .iter()
        .map(|e| e.label + 1)
        .max()
        .unwrap_or(0)
        .max(n);
    let mut counts = vec![0; len];
    for example in examples {
        counts[example.label] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const AG_LABELS: [&str; 4] = ["World", "Sports", "Business", "Sci/Tech"];

    /// The repository's own copy (data/ag_news, identical to ../shared's) first, so the
    /// tests pass on a fresh clone; PIPE_SHARED_DIR overrides for other layouts.
    fn ag_news(file: &str) -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("PIPE_SHARED_DIR") {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(manifest.to_path_buf());
        candidates.push(manifest.join("../shared"));
        candidates.push(manifest.join("shared"));
        candidates.push(PathBuf::from("/work/shared"));
        for dir in &candidates {
            let path = dir.join("data/ag_news").join(file);
            if path.is_file() {
                return path;
            }
        }
        panic!("AG News {file} not found under any of {candidates:?}");
    }

    fn ag_opts() -> SourceOptions {
        SourceOptions {
            format: Format::AgNewsCsv,
            text: vec!["title".into(), "description".into()],
            label: String::new(),
            labels: AG_LABELS.iter().map(|s| s.to_string()).collect(),
            unescape_backslash: false,
            limit: None,
        }
    }

    fn named_opts(format: Format) -> SourceOptions {
        SourceOptions {
            format,
            text: vec!["text".into()],
            label: "label".into(),
            ..ag_opts()
        }
    }

    /// Unique per process and call so parallel tests never share a file.
    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pipe-dataset-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    fn load_err(name: &str, content: &[u8], opts: &SourceOptions) -> (PathBuf, String) {
        let path = temp_file(name, content);
        let err = load(&path, opts).expect_err("load should fail");
        let message = err.to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(!message.contains('\n'), "multi-line message: {message:?}");
        (path, message)
    }

    fn assert_err(name: &str, content: &str, opts: &SourceOptions, expected_tail: &str) {
        let (path, message) = load_err(name, content.as_bytes(), opts);
        assert_eq!(message, format!("{}{expected_tail}", path.display()));
    }

    #[test]
    fn ag_news_test_split() {
        let path = ag_news("test.csv");
        let start = Instant::now();
        let examples = load(&path, &ag_opts()).unwrap();
        errln!(
            "loaded {} rows of test.csv in {:?}",
            examples.len(),
            start.elapsed()
        );
        assert_eq!(examples.len(), 7600);
        assert_eq!(class_counts(&examples, 4), vec![1900; 4]);
        assert_eq!(
            examples[0].text,
            "Fears for T N pension after talks Unions representing workers at Turner   Newall say they are 'disappointed' after talks with stricken parent firm Federal Mogul."
        );
        assert_eq!(examples[0].label, 2);
        // Keras parity: the backslashes stay unless asked otherwise.
        assert!(examples[1].text.contains("A second\\team"));
    }

    #[test]
    fn ag_news_train_subset() {
        let examples = load(&ag_news("train.csv"), &ag_opts()).unwrap();
        assert_eq!(examples.len(), 9999);
        assert_eq!(class_counts(&examples, 4), vec![2514, 2504, 2519, 2462]);
    }

    #[test]
    fn unescape_and_text_columns() {
        let opts = SourceOptions {
            unescape_backslash: true,
            text: vec!["description".into()],
            limit: Some(2),
            ..ag_opts()
        };
        let examples = load(&ag_news("test.csv"), &opts).unwrap();
        assert_eq!(examples.len(), 2);
        assert!(examples[0].text.starts_with("Unions representing"));
        assert!(examples[1].text.contains("A second\nteam"));
        assert!(!examples[1].text.contains('\\'));
    }

    #[test]
    fn limit_keeps_first_rows() {
        let all = load(&ag_news("test.csv"), &ag_opts()).unwrap();
        for limit in [0, 1, 10, 7600, 100_000] {
            let opts = SourceOptions {
                limit: Some(limit),
                ..ag_opts()
            };
            let some = load(&ag_news("test.csv"), &opts).unwrap();
            assert_eq!(some.len(), limit.min(7600));
            for (a, b) in some.iter().zip(&all) {
                assert_eq!((&a.text, a.label), (&b.text, b.label));
            }
        }
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let examples: Vec<Example> = (0..1000)
            .map(|i| Example {
                text: i.to_string(),
                label: i % 4,
            })
            .collect();
        let ids = |v: &[Example]| {
            v.iter()
                .map(|e| e.text.parse::<usize>().unwrap())
                .collect::<Vec<_>>()
        };
        let (train, valid) = split_fraction(examples.clone(), 0.1, 7);
        assert_eq!((train.len(), valid.len()), (900, 100));
        let (train_ids, valid_ids) = (ids(&train), ids(&valid));
        assert!(
            train_ids.windows(2).all(|w| w[0] < w[1]),
            "train keeps file order"
        );
        assert!(
            valid_ids.windows(2).all(|w| w[0] < w[1]),
            "valid keeps file order"
        );
        let mut all: Vec<usize> = train_ids.iter().chain(&valid_ids).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>(), "disjoint and complete");

        let (train2, valid2) = split_fraction(examples.clone(), 0.1, 7);
        assert_eq!(
            (ids(&train2), ids(&valid2)),
            (train_ids.clone(), valid_ids.clone())
        );
        let (_, valid3) = split_fraction(examples.clone(), 0.1, 8);
        assert_ne!(ids(&valid3), valid_ids, "another seed, another split");

        // round(), not floor(): 0.25 * 10 = 2.5 -> 3.
        let (t, v) = split_fraction(examples[..10].to_vec(), 0.25, 1);
        assert_eq!((t.len(), v.len()), (7, 3));
    }

    #[test]
    #[should_panic(expected = "validation fraction must be in (0, 1)")]
    fn split_rejects_bad_fraction() {
        split_fraction(Vec::new(), 1.0, 0);
    }

    #[test]
    fn class_counts_never_drops_examples() {
        let ex = |label| Example {
            text: String::new(),
            label,
        };
        assert_eq!(class_counts(&[ex(0), ex(2), ex(2)], 4), vec![1, 0, 2, 0]);
        assert_eq!(class_counts(&[ex(5)], 2), vec![0, 0, 0, 0, 0, 1]);
        assert_eq!(class_counts(&[], 3), vec![0; 3]);
    }

    #[test]
    fn ag_news_errors() {
        let opts = ag_opts();
        assert_err(
            "fields.csv",
            "\"1\",\"a\",\"b\"\n\"2\",\"only title\"\n",
            &opts,
            ":2: expected 3 fields (class_index,title,description), found 2",
        );
        assert_err(
            "range.csv",
            "\"1\",\"a\",\"b\"\n\"2\",\"a\",\"b\"\n\"7\",\"a\",\"b\"\n",
            &opts,
            ":3: class_index 7 out of range 1..=4",
        );
        assert_err(
            "zero.csv",
            "\"0\",\"a\",\"b\"\n",
            &opts,
            ":1: class_index 0 out of range 1..=4",
        );
        assert_err(
            "nonint.csv",
            "\"1\",\"a\",\"b\"\n\"x\",\"a\",\"b\"\n",
            &opts,
            ":2: class_index \"x\" is not an integer",
        );
        assert_err("empty.csv", "", &opts, ": no rows");
        assert_err(
            "column.csv",
            "\"1\",\"a\",\"b\"\n",
            &SourceOptions {
                text: vec!["body".into()],
                ..ag_opts()
            },
            ": no column \"body\" (AG News columns: class_index, title, description)",
        );
    }

    #[test]
    fn line_number_counts_physical_lines_of_multiline_fields() {
        // Record 2 spans lines 2-3, so the broken record starts on line 4.
        assert_err(
            "multiline.csv",
            "\"1\",\"a\",\"b\"\n\"2\",\"two\nlines\",\"b\"\n\"3\",\"short\"\n\"4\",\"a\",\"b\"\n",
            &ag_opts(),
            ":4: expected 3 fields (class_index,title,description), found 2",
        );
        // And a good multi-line field keeps its line break.
        let path = temp_file(
            "multiline-ok.csv",
            b"\"1\",\"a\",\"x\ny\"\r\n\"2\",\"q\"\"q\",\"b\"\r\n",
        );
        let examples = load(&path, &ag_opts()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(examples[0].text, "a x\ny");
        assert_eq!(examples[1].text, "q\"q b");
    }

    /// Excel and Python's csv module end rows with CRLF; errors still name the line an
    /// editor shows (the csv crate's own count was one short from the second row on).
    #[test]
    fn crlf_rows_are_reported_at_their_physical_line() {
        let content = "text,label\r\n\"a\",sports\r\n\"b\nc\",other\r\n\"d\",nope\r\n";
        let opts = SourceOptions {
            labels: vec!["other".into(), "sports".into()],
            ..named_opts(Format::Csv)
        };
        let (_, err) = load_err("crlf.csv", content.as_bytes(), &opts);
        assert!(
            err.ends_with(":5: label \"nope\" is not one of other, sports"),
            "{err}"
        );
    }

    /// A file is read in blocks and what is behind the current row is let go; line numbers
    /// stay exact far past the first release (4 MB in), multi-line fields and CRLF included.
    #[test]
    fn rows_far_into_a_large_file_are_reported_at_their_physical_line() {
        let mut content = String::from("text,label\r\n");
        let rows = 160_000;
        for i in 0..rows {
            match i % 1000 {
                0 => content.push_str("\"two\nlines\",sports\r\n"),
                _ => content.push_str("\"a row of some forty bytes of text\",other\r\n"),
            }
        }
        content.push_str("\"last\",nope\r\n");
        assert!(content.len() > 5 << 20);
        let opts = SourceOptions {
            labels: vec!["other".into(), "sports".into()],
            ..named_opts(Format::Csv)
        };
        let (_, err) = load_err("large.csv", content.as_bytes(), &opts);
        // The header, one line per row, one more for each two-line field, then the bad row.
        let line = 1 + rows + rows / 1000 + 1;
        assert!(
            err.ends_with(&format!(
                ":{line}: label \"nope\" is not one of other, sports"
            )),
            "{err}"
        );
    }

    /// An empty or blank label is a missing value, refused at its row whether the classes
    /// are listed or inferred; a JSON number among named labels is refused too.
    #[test]
    fn blank_labels_and_numbers_among_names_are_refused_at_their_row() {
        let listed = SourceOptions {
            labels: vec!["other".into(), "sports".into()],
            ..named_opts(Format::Csv)
        };
        let inferred = SourceOptions {
            labels: Vec::new(),
            ..named_opts(Format::Csv)
        };
        let csv = "text,label\na,sports\nb,  \n";
        let (_, err) = load_err("blank.csv", csv.as_bytes(), &listed);
        assert!(
            err.ends_with(":3: empty label \"  \": every row needs its class"),
            "{err}"
        );
        let path = temp_file("blank-infer.csv", csv.as_bytes());
        let err = infer_labels(&path, &inferred).unwrap_err().to_string();
        assert!(
            err.ends_with(":3: empty label \"  \": every row needs its class"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();

        let jsonl = b"{\"text\":\"a\",\"label\":\"sports\"}\n{\"text\":\"b\",\"label\":3}\n";
        let path = temp_file("mixed.jsonl", jsonl);
        let opts = SourceOptions {
            labels: Vec::new(),
            ..named_opts(Format::Jsonl)
        };
        let err = infer_labels(&path, &opts).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: label 3 is a number, but an earlier row's label \"sports\" is a string: write every label as a name, or every label as a number"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let (path, message) = load_err(
            "utf8.csv",
            b"\"1\",\"a\",\"b\"\n\"2\",\"a\",\"b\xff\"\n",
            &ag_opts(),
        );
        assert_eq!(
            message,
            format!(
                "{}:2: invalid UTF-8 in field 3 (description)",
                path.display()
            )
        );
        let (path, message) = load_err(
            "utf8.jsonl",
            b"{\"text\":\"a\",\"label\":0}\n{\"text\":\"\xc3\",\"label\":0}\n",
            &named_opts(Format::Jsonl),
        );
        assert_eq!(message, format!("{}:2: invalid UTF-8", path.display()));
    }

    #[test]
    fn missing_file() {
        let path =
            std::env::temp_dir().join(format!("pipe-dataset-{}-missing.csv", std::process::id()));
        let err = load(&path, &ag_opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn headed_csv_with_string_and_index_labels() {
        let opts = SourceOptions {
            text: vec!["title".into(), "text".into()],
            ..named_opts(Format::Csv)
        };
        let path = temp_file(
            "headed.csv",
            "\u{feff}id,title,text,label\n1,Hi,there,Sports\n2,\"A, B\",c,Sci/Tech\n3,x,y,0\n4,x,y,World\n".as_bytes(),
        );
        let examples = load(&path, &opts).unwrap();
        std::fs::remove_file(&path).unwrap();
        let got: Vec<(&str, usize)> = examples
            .iter()
            .map(|e| (e.text.as_str(), e.label))
            .collect();
        assert_eq!(
            got,
            vec![("Hi there", 1), ("A, B c", 3), ("x y", 0), ("x y", 0)]
        );
    }

    /// Found by tests/it/fuzz.rs: a stray quote makes the header swallow a line break, and the
    /// error listing the columns must still be one line.
    #[test]
    fn a_header_with_a_line_break_gives_a_one_line_error() {
        let opts = named_opts(Format::Csv);
        let path = temp_file("broken_header.csv", b"\"tex\nt\",label\na,World\n");
        let err = load(&path, &opts).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.ends_with(r#"no column "text" in header (columns: tex\nt, label)"#),
            "{err}"
        );
    }

    #[test]
    fn headed_csv_errors() {
        let opts = SourceOptions {
            text: vec!["body".into()],
            ..named_opts(Format::Csv)
        };
        assert_err(
            "nocol.csv",
            "id,text,label\n1,a,World\n",
            &opts,
            ":1: no column \"body\" in header (columns: id, text, label)",
        );
        let opts = named_opts(Format::Csv);
        assert_err(
            "badlabel.csv",
            "id,text,label\n1,a,World\n2,b,Sports\n3,c,Business\n4,d,Sprots\n",
            &opts,
            ":5: label \"Sprots\" is not one of World, Sports, Business, Sci/Tech",
        );
        assert_err(
            "badindex.csv",
            "id,text,label\n1,a,4\n",
            &opts,
            ":2: label 4 out of range 0..=3",
        );
        assert_err(
            "short.csv",
            "id,text,label\n1,a\n",
            &opts,
            ":2: expected 3 fields (id,text,label), found 2",
        );
        assert_err("headeronly.csv", "id,text,label\n", &opts, ": no rows");
        assert_err(
            "nolabelcol.csv",
            "id,text,class\n1,a,World\n",
            &opts,
            ":1: no column \"label\" in header (columns: id, text, class)",
        );
    }

    #[test]
    fn jsonl_rows() {
        let opts = SourceOptions {
            unescape_backslash: true,
            ..named_opts(Format::Jsonl)
        };
        let path = temp_file(
            "rows.jsonl",
            b"{\"text\":\"one\\\\two\",\"label\":\"Business\"}\r\n\n  \n{\"label\":3,\"text\":\"x\",\"extra\":[1]}\n",
        );
        let examples = load(&path, &opts).unwrap();
        std::fs::remove_file(&path).unwrap();
        let got: Vec<(&str, usize)> = examples
            .iter()
            .map(|e| (e.text.as_str(), e.label))
            .collect();
        assert_eq!(got, vec![("one\ntwo", 2), ("x", 3)]);
    }

    #[test]
    fn jsonl_errors() {
        let opts = named_opts(Format::Jsonl);
        let ok = "{\"text\":\"a\",\"label\":0}\n";
        let cases = [
            (
                "{\"text\":\"a\",\"label\":0\n",
                ":2: invalid JSON: EOF while parsing an object at column 21",
            ),
            ("{\"label\":0}\n", ":2: no field \"text\""),
            ("{\"text\":\"a\"}\n", ":2: no field \"label\""),
            ("[1]\n", ":2: expected a JSON object, found an array"),
            (
                "{\"text\":5,\"label\":0}\n",
                ":2: field \"text\" must be a string, found a number",
            ),
            (
                "{\"text\":\"a\",\"label\":true}\n",
                ":2: label must be a string or an integer, found a boolean",
            ),
            (
                "{\"text\":\"a\",\"label\":-1}\n",
                ":2: label -1 out of range 0..=3",
            ),
            (
                "{\"text\":\"a\",\"label\":1.5}\n",
                ":2: label 1.5 out of range 0..=3",
            ),
            (
                "{\"text\":\"a\",\"label\":\"Sprots\"}\n",
                ":2: label \"Sprots\" is not one of World, Sports, Business, Sci/Tech",
            ),
        ];
        for (i, (bad, tail)) in cases.iter().enumerate() {
            assert_err(
                &format!("case{i}.jsonl"),
                &format!("{ok}{bad}"),
                &opts,
                tail,
            );
        }
        assert_err("blank.jsonl", "\n \n", &opts, ": no rows");
    }

    /// The full AG News train split has 120,000 rows; it is not available
    /// offline, so the speed check loads train.csv repeated to that size.
    #[test]
    fn loads_120k_rows_quickly() {
        let train = std::fs::read(ag_news("train.csv")).unwrap();
        let mut big = Vec::with_capacity(train.len() * 13);
        let mut rows = 0;
        while rows < 120_000 {
            big.extend_from_slice(&train);
            rows += 9999;
        }
        let path = temp_file("big.csv", &big);
        let opts = SourceOptions {
            limit: Some(120_000),
            ..ag_opts()
        };
        let start = Instant::now();
        let examples = load(&path, &opts).unwrap();
        let elapsed = start.elapsed();
        std::fs::remove_file(&path).unwrap();
        errln!("loaded 120,000 rows in {elapsed:?}");
        assert_eq!(examples.len(), 120_000);
        // Generous: the machine is shared; debug builds are not timed.
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
        }
    }

    #[test]
    fn inferred_labels_sorted_with_counts() {
        let count = |pairs: &[(&str, usize)]| -> Vec<LabelCount> {
            pairs
                .iter()
                .map(|&(label, rows)| LabelCount {
                    label: label.into(),
                    rows,
                })
                .collect()
        };
        let csv = temp_file(
            "infer.csv",
            b"text,topic\na,sports\nb,other\nc,sports\nd,Zed\n",
        );
        let opts = SourceOptions {
            text: vec!["text".into()],
            label: "topic".into(),
            labels: Vec::new(),
            ..named_opts(Format::Csv)
        };
        let found = infer_labels(&csv, &opts).unwrap();
        // Byte order: upper case first, as Rust's str ordering (and Python's sorted) has it.
        assert_eq!(found, count(&[("Zed", 1), ("other", 1), ("sports", 2)]));
        let limited = SourceOptions {
            limit: Some(2),
            ..opts.clone()
        };
        assert_eq!(
            infer_labels(&csv, &limited).unwrap(),
            count(&[("other", 1), ("sports", 1)])
        );
        std::fs::remove_file(&csv).unwrap();

        // Integers sort numerically (10 after 9), JSON numbers and strings alike.
        let jsonl = temp_file(
            "infer.jsonl",
            b"{\"text\":\"a\",\"label\":10}\n{\"text\":\"b\",\"label\":9}\n{\"text\":\"c\",\"label\":\"9\"}\n",
        );
        let opts = SourceOptions {
            labels: Vec::new(),
            ..named_opts(Format::Jsonl)
        };
        let found = infer_labels(&jsonl, &opts).unwrap();
        assert_eq!(found, count(&[("9", 2), ("10", 1)]));
        // The classes found read the same file back: 10 is class 1, though 10 > len.
        let opts = SourceOptions {
            labels: found.iter().map(|c| c.label.clone()).collect(),
            ..opts
        };
        let labels: Vec<usize> = load(&jsonl, &opts)
            .unwrap()
            .iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(labels, vec![1, 0, 0]);
        std::fs::remove_file(&jsonl).unwrap();
    }

    #[test]
    fn inferred_ag_news_classes_keep_gaps_by_name() {
        let path = temp_file(
            "gap.csv",
            b"\"4\",\"t\",\"d\"\n\"1\",\"t\",\"d\"\n\"2\",\"t\",\"d\"\n",
        );
        let opts = SourceOptions {
            labels: Vec::new(),
            ..ag_opts()
        };
        let found = infer_labels(&path, &opts).unwrap();
        let names: Vec<&str> = found.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(names, vec!["1", "2", "4"]);
        let opts = SourceOptions {
            labels: names.iter().map(|s| s.to_string()).collect(),
            ..opts
        };
        let labels: Vec<usize> = load(&path, &opts)
            .unwrap()
            .iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(labels, vec![2, 0, 1]);
        std::fs::remove_file(&path).unwrap();

        let bad = temp_file("bad_index.csv", b"\"x\",\"t\",\"d\"\n");
        let opts = SourceOptions {
            labels: Vec::new(),
            ..ag_opts()
        };
        let err = infer_labels(&bad, &opts).unwrap_err().to_string();
        std::fs::remove_file(&bad).unwrap();
        assert!(
            err.ends_with(":1: class_index \"x\" is not an integer"),
            "{err}"
        );
    }

    #[test]
    fn inferred_labels_match_explicit_ones_on_ag_news() {
        let opts = SourceOptions {
            labels: Vec::new(),
            ..ag_opts()
        };
        let found = infer_labels(&ag_news("train.csv"), &opts).unwrap();
        let counts: Vec<(&str, usize)> = found.iter().map(|c| (c.label.as_str(), c.rows)).collect();
        assert_eq!(
            counts,
            vec![("1", 2514), ("2", 2504), ("3", 2519), ("4", 2462)]
        );
        let inferred = SourceOptions {
            labels: found.iter().map(|c| c.label.clone()).collect(),
            ..ag_opts()
        };
        let a = load(&ag_news("test.csv"), &ag_opts()).unwrap();
        let b = load(&ag_news("test.csv"), &inferred).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.label == y.label));
    }
}
