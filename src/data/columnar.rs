//! Columnar data files: Parquet (`format = "parquet"`, the Hugging Face hub's datasets) and
//! folders that `datasets`' `save_to_disk` writes (`format = "arrow"`: Arrow IPC streams
//! `data-*.arrow`, in the order its state.json lists them). Columns are picked by name; a
//! missing column, or one of a type that cannot hold texts or labels, is one error naming the
//! file and the column, and a bad value names its row (1-based, counted across the files).

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};

use super::source::{ClassOf, DataError, Example, LabelKind, Problem, SourceOptions, join_text};

/// Rows read at a time.
const BATCH_ROWS: usize = 8192;

/// Reads the rows of `path` into `sink` (at most `opts.limit`), as the CSV and JSONL readers do.
pub(super) fn load(
    path: &Path,
    opts: &SourceOptions,
    parquet: bool,
    mut class_of: Option<&mut ClassOf>,
    sink: &mut dyn FnMut(Example) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, DataError>>> = match parquet {
        true => parquet_batches(path, opts)?,
        false => arrow_folder_batches(path)?,
    };
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        let columns = Columns::of(path, &batch, opts, class_of.is_some())?;
        for r in 0..batch.num_rows() {
            if opts.limit.is_some_and(|limit| rows >= limit) {
                return Ok(rows);
            }
            let at_row = |problem| DataError::Row {
                path: path.to_path_buf(),
                line: rows as u64 + 1,
                problem,
            };
            let example = columns
                .example(r, opts, class_of.as_deref_mut())
                .map_err(at_row)?;
            sink(example)?;
            rows += 1;
        }
    }
    Ok(rows)
}

fn options_error(path: &Path, message: String) -> DataError {
    DataError::Options {
        path: path.to_path_buf(),
        message,
    }
}

fn parquet_batches(
    path: &Path,
    opts: &SourceOptions,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, DataError>>>, DataError> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| options_error(path, format!("not a readable Parquet file: {e}")))?;
    // Only the columns named: a dataset's other columns (embeddings, long metadata) are not read.
    let schema = builder.schema().clone();
    let wanted: Vec<usize> = (opts.text.iter().chain([&opts.label]))
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    // With a column missing, every column is read, so that the error lists them all.
    let mask = match wanted.len() == opts.text.len() + 1 {
        true => ProjectionMask::roots(builder.parquet_schema(), wanted),
        false => ProjectionMask::all(),
    };
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| options_error(path, format!("not a readable Parquet file: {e}")))?;
    let path = path.to_path_buf();
    Ok(Box::new(reader.map(move |batch| {
        batch.map_err(|e| options_error(&path, parquet_decode_error(&e.to_string())))
    })))
}

/// What to say when a Parquet batch does not decode: a codec this build leaves out is named,
/// with the way to rewrite the file in one that it reads.
fn parquet_decode_error(error: &str) -> String {
    const LEFT_OUT: &str = "Disabled feature at compile time: ";
    match error.find(LEFT_OUT) {
        Some(at) => format!(
            "compressed with {}, which pipe does not read (it reads Snappy, gzip, LZ4 or \
             uncompressed Parquet); rewrite it with pyarrow: \
             pq.write_table(pq.read_table(src), dst, compression=\"snappy\")",
            error[at + LEFT_OUT.len()..].trim()
        ),
        None => format!("cannot decode: {error}"),
    }
}

/// The Arrow files of a save_to_disk folder, in the order its state.json gives (else by name).
fn arrow_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !dir.is_dir() {
        return Err(options_error(
            dir,
            "`format = \"arrow\"` reads a folder written by `datasets`' save_to_disk; this is not a folder".into(),
        ));
    }
    let state = std::fs::read(dir.join("state.json")).ok();
    let state: Option<serde_json::Value> = state.and_then(|s| serde_json::from_slice(&s).ok());
    let listed: Option<Vec<PathBuf>> = state.and_then(|s| {
        (s["_data_files"].as_array()?.iter())
            .map(|f| Some(dir.join(f["filename"].as_str()?)))
            .collect()
    });
    let files = match listed {
        Some(files) => files,
        None => {
            let read = std::fs::read_dir(dir).map_err(|error| DataError::Read {
                path: dir.to_path_buf(),
                error,
            })?;
            let mut files: Vec<PathBuf> = (read.flatten().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
                .collect();
            files.sort();
            files
        }
    };
    if files.is_empty() {
        return Err(options_error(dir, "no .arrow files in this folder".into()));
    }
    Ok(files)
}

fn arrow_folder_batches(
    dir: &Path,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, DataError>>>, DataError> {
    let files = arrow_files(dir)?;
    let batches = files.into_iter().flat_map(|file| {
        let batches: Box<dyn Iterator<Item = Result<RecordBatch, DataError>>> =
            match ipc_batches(&file) {
                Ok(b) => b,
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
        batches
    });
    Ok(Box::new(batches))
}

/// The record batches of one Arrow IPC file: the stream format (what `datasets` writes), else
/// the file format.
fn ipc_batches(
    file: &Path,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, DataError>>>, DataError> {
    let open = || {
        std::fs::File::open(file).map_err(|error| DataError::Read {
            path: file.to_path_buf(),
            error,
        })
    };
    let stream = arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(open()?), None);
    if let Ok(reader) = stream {
        let path = file.to_path_buf();
        return Ok(Box::new(reader.map(move |b| {
            b.map_err(|e| options_error(&path, format!("cannot decode: {e}")))
        })));
    }
    let reader = arrow_ipc::reader::FileReader::try_new(open()?, None)
        .map_err(|e| options_error(file, format!("not an Arrow IPC stream or file: {e}")))?;
    let path = file.to_path_buf();
    Ok(Box::new(reader.map(move |b| {
        b.map_err(|e| options_error(&path, format!("cannot decode: {e}")))
    })))
}

/// The columns one batch's rows are read from.
struct Columns {
    text: Vec<(String, ArrayRef)>,
    label: Option<(String, ArrayRef)>,
    /// The class names of an integer label column that is a Hugging Face ClassLabel (from the
    /// schema's `huggingface` metadata, which `datasets` writes), so classes keep their names.
    class_names: Option<Vec<String>>,
}

/// The names of `column` if the schema's Hugging Face metadata says it is a ClassLabel.
fn class_label_names(schema: &Schema, column: &str) -> Option<Vec<String>> {
    let info: serde_json::Value =
        serde_json::from_str(schema.metadata().get("huggingface")?).ok()?;
    let feature = &info["info"]["features"][column];
    if feature["_type"] != "ClassLabel" {
        return None;
    }
    (feature["names"].as_array()?.iter())
        .map(|n| n.as_str().map(String::from))
        .collect()
}

impl Columns {
    fn of(
        path: &Path,
        batch: &RecordBatch,
        opts: &SourceOptions,
        needs_label: bool,
    ) -> Result<Self, DataError> {
        let schema = batch.schema();
        let find = |name: &str| -> Result<ArrayRef, DataError> {
            let i = schema.index_of(name).map_err(|_| {
                options_error(
                    path,
                    format!("no column {name:?} (columns: {})", names(&schema)),
                )
            })?;
            Ok(batch.column(i).clone())
        };
        let mut text = Vec::with_capacity(opts.text.len());
        for name in &opts.text {
            let column = find(name)?;
            if !is_string(column.data_type()) {
                return Err(options_error(
                    path,
                    format!("column {name:?} holds {}, not text", column.data_type()),
                ));
            }
            text.push((name.clone(), column));
        }
        let label = match needs_label {
            false => None,
            true => {
                let column = find(&opts.label)?;
                let kind = column.data_type();
                if !is_string(kind) && !kind.is_integer() {
                    return Err(options_error(
                        path,
                        format!(
                            "column {:?} holds {kind}: labels must be strings or integers",
                            opts.label
                        ),
                    ));
                }
                Some((opts.label.clone(), column))
            }
        };
        let class_names = class_label_names(&schema, &opts.label);
        Ok(Columns {
            text,
            label,
            class_names,
        })
    }

    fn example(
        &self,
        row: usize,
        opts: &SourceOptions,
        class_of: Option<&mut ClassOf>,
    ) -> Result<Example, Problem> {
        let mut parts = Vec::with_capacity(self.text.len());
        for (name, column) in &self.text {
            parts.push(
                string_at(column, row).ok_or_else(|| Problem::NullValue { name: name.clone() })?,
            );
        }
        let label = match (class_of, &self.label) {
            (Some(class_of), Some((name, column))) => {
                if column.is_null(row) {
                    return Err(Problem::NullValue { name: name.clone() });
                }
                let named = |i: &str| {
                    let i: usize = i.parse().ok()?;
                    self.class_names.as_ref()?.get(i).map(String::as_str)
                };
                match string_at(column, row) {
                    Some(value) => class_of(value, LabelKind::Text)?,
                    None => {
                        let index = integer_at(column, row);
                        match named(&index) {
                            Some(name) => class_of(name, LabelKind::Text)?,
                            None => class_of(&index, LabelKind::Number)?,
                        }
                    }
                }
            }
            _ => 0,
        };
        Ok(Example {
            text: join_text(parts.into_iter(), opts),
            label,
        })
    }
}

fn names(schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}

fn is_string(kind: &DataType) -> bool {
    matches!(
        kind,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The text at `row` of a string column (`None`: null, or not a string column).
fn string_at(column: &ArrayRef, row: usize) -> Option<&str> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        DataType::Utf8 => Some(column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(column.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(column.as_string_view().value(row)),
        _ => None,
    }
}

/// The integer at `row` of an integer column, as written (a Hugging Face ClassLabel is int64).
fn integer_at(column: &ArrayRef, row: usize) -> String {
    use arrow_array::types::*;
    match column.data_type() {
        DataType::Int8 => column.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => column.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => column.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => column.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => column.as_primitive::<UInt64Type>().value(row).to_string(),
        // Columns::of admits only strings and integers.
        other => unreachable!("label column of type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::{self, Format};
    use parquet::basic::{Compression, GzipLevel};

    fn write_parquet(path: &Path, compression: Compression) {
        let texts = arrow_array::StringArray::from(vec!["the cup final", "stocks fell", "é ü"]);
        let labels = arrow_array::Int64Array::from(vec![1, 0, 1]);
        let batch = RecordBatch::try_from_iter([
            ("text", std::sync::Arc::new(texts) as ArrayRef),
            ("label", std::sync::Arc::new(labels) as ArrayRef),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(compression)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn every_codec_built_in_reads_the_same_rows_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SourceOptions {
            format: Format::Parquet,
            text: vec!["text".into()],
            label: "label".into(),
            labels: vec!["other".into(), "sports".into()],
            unescape_backslash: false,
            limit: None,
        };
        for (name, codec) in [
            ("none", Compression::UNCOMPRESSED),
            ("snappy", Compression::SNAPPY),
            ("gzip", Compression::GZIP(GzipLevel::default())),
            ("lz4", Compression::LZ4_RAW),
            ("lz4-hadoop", Compression::LZ4),
        ] {
            let path = dir.path().join(format!("{name}.parquet"));
            write_parquet(&path, codec);
            let rows = source::load(&path, &opts).unwrap();
            let got: Vec<(&str, usize)> = rows.iter().map(|e| (e.text.as_str(), e.label)).collect();
            assert_eq!(
                got,
                [("the cup final", 1), ("stocks fell", 0), ("é ü", 1)],
                "{name}"
            );
        }
        let message = parquet_decode_error("Parquet error: Disabled feature at compile time: zstd");
        assert!(
            message.starts_with("compressed with zstd, which pipe does not read")
                && message.contains("compression=\"snappy\""),
            "{message}"
        );
    }
}
