//! Datasets: reading example files and splitting them into train / validation / test.

pub mod batch;
pub mod source;

use std::path::Path;

pub use source::{DataError, Example};

use crate::spec::dataset::{DatasetFormat, DatasetSpec, LabelCount, Validation};

/// The rows a run uses.
#[derive(Clone, Debug, Default)]
pub struct Splits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

pub fn source_options(spec: &DatasetSpec, limit: Option<usize>) -> source::SourceOptions {
    source::SourceOptions {
        format: match spec.format {
            DatasetFormat::AgNewsCsv => source::Format::AgNewsCsv,
            DatasetFormat::Csv => source::Format::Csv,
            DatasetFormat::Jsonl => source::Format::Jsonl,
        },
        text: spec.text.clone(),
        label: spec.label.clone(),
        labels: spec.labels.clone(),
        unescape_backslash: spec.unescape_backslash,
        limit,
    }
}

/// Fills in `labels` from the train file when the spec omits them, returning the classes
/// found with their row counts (`None` when the spec lists its labels).
pub fn infer_missing_labels(spec: &mut DatasetSpec) -> Result<Option<Vec<LabelCount>>, DataError> {
    if !spec.labels.is_empty() {
        return Ok(None);
    }
    let found = source::infer_labels(Path::new(&spec.train), &source_options(spec, spec.limit))?;
    spec.labels = found.iter().map(|c| c.label.clone()).collect();
    Ok(Some(found))
}

/// The format of a file given on the command line (`pipe eval --data`, `pipe predict --data`):
/// a `.jsonl`/`.ndjson` name is JSON Lines and a `.csv` name is CSV whatever the pipeline
/// trained on (a headed CSV, unless the pipeline's own data is AG News' headerless CSV);
/// any other name is taken to be in the pipeline's format.
pub fn format_of_file(path: &Path, pipeline: &DatasetFormat) -> DatasetFormat {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match (extension.as_deref(), pipeline) {
        (Some("jsonl" | "ndjson"), _) => DatasetFormat::Jsonl,
        (Some("csv"), DatasetFormat::Jsonl) => DatasetFormat::Csv,
        _ => pipeline.clone(),
    }
}

/// Reads any file in the dataset's format (used by `pipe eval --data`).
pub fn read(path: &Path, spec: &DatasetSpec) -> Result<Vec<Example>, DataError> {
    source::load(path, &source_options(spec, None))
}

/// The texts of a file to classify (`pipe predict --data`), with the dataset's text columns;
/// labels are neither needed nor read.
pub fn read_texts(path: &Path, spec: &DatasetSpec) -> Result<Vec<Example>, DataError> {
    source::load_texts(path, &source_options(spec, None))
}

/// Reads a file of the dataset's as a run does (`limit` applied).
pub fn read_limited(path: &Path, spec: &DatasetSpec) -> Result<Vec<Example>, DataError> {
    source::load(path, &source_options(spec, spec.limit))
}

pub fn load_splits(spec: &DatasetSpec, seed: u64) -> Result<Splits, DataError> {
    let opts = source_options(spec, spec.limit);
    let train = source::load(Path::new(&spec.train), &opts)?;
    let test = match &spec.test {
        Some(t) => source::load(Path::new(t), &opts)?,
        None => Vec::new(),
    };
    Ok(match &spec.validation {
        Some(Validation::Fraction(f)) => {
            let rows = train.len();
            let (train, validation) = source::split_fraction(train, *f, seed);
            // Training on nothing would still "complete", with a loss of 0.
            if train.is_empty() || validation.is_empty() {
                let what = if train.is_empty() {
                    "to train on"
                } else {
                    "to validate on"
                };
                return Err(DataError::Options {
                    path: spec.train.clone().into(),
                    message: format!(
                        "`dataset.validation = {f}` of {rows} rows leaves no rows {what}; \
                         use a fraction that keeps at least one row on each side"
                    ),
                });
            }
            Splits {
                train,
                validation,
                test,
            }
        }
        Some(Validation::Split(_)) => Splits {
            train,
            validation: test.clone(),
            test,
        },
        None => Splits {
            train,
            validation: Vec::new(),
            test,
        },
    })
}
