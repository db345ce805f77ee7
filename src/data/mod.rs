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

/// Reads any file in the dataset's format (used by `pipe eval --data`).
pub fn read(path: &Path, spec: &DatasetSpec) -> Result<Vec<Example>, DataError> {
    source::load(path, &source_options(spec, None))
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
            let (train, validation) = source::split_fraction(train, *f, seed);
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
