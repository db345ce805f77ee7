//! Datasets: reading example files and splitting them into train / validation / test.

pub mod batch;
pub mod cache;
mod columnar;
pub mod compressed;
pub mod encoded;
pub mod parsed;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use encoded::EncodedSplit;
pub use source::{DataError, Example};

use crate::spec::dataset::{DatasetFormat, DatasetSpec, LabelCount, Validation};
use crate::vectorize::{Fitting, Vectorizer};
use encoded::{ENCODE_CHUNK, EncodedRows, RowsBuilder};

/// The encoded rows a run uses.
#[derive(Clone)]
pub struct EncodedSplits {
    pub train: EncodedSplit,
    pub validation: Option<EncodedSplit>,
    pub test: Option<EncodedSplit>,
}

pub fn source_options(spec: &DatasetSpec, limit: Option<usize>) -> source::SourceOptions {
    source::SourceOptions {
        format: match spec.format {
            DatasetFormat::AgNewsCsv => source::Format::AgNewsCsv,
            DatasetFormat::Csv => source::Format::Csv,
            DatasetFormat::Jsonl => source::Format::Jsonl,
            DatasetFormat::Parquet => source::Format::Parquet,
            DatasetFormat::Arrow => source::Format::Arrow,
        },
        text: spec.text.clone(),
        label: spec.label.clone(),
        labels: spec.labels.clone(),
        unescape_backslash: spec.unescape_backslash,
        limit,
    }
}

/// Fills in `labels` from the train file when the spec omits them, returning the classes
/// found with their row counts (`None` when the spec lists its labels). With `cache`, the file
/// is parsed into it (or was before), and the run's later passes read that.
pub fn infer_missing_labels(
    spec: &mut DatasetSpec,
    cache: Option<&Path>,
) -> Result<Option<Vec<LabelCount>>, DataError> {
    if !spec.labels.is_empty() {
        return Ok(None);
    }
    let (path, opts) = (Path::new(&spec.train), source_options(spec, spec.limit));
    let found = match cache {
        Some(dir) => parsed::parse_once(dir, path, &opts)?
            .classes(path, &opts)?
            .1
            .expect("no labels are listed, so they are inferred"),
        None => source::infer_labels(path, &opts)?,
    };
    spec.labels = found.iter().map(|c| c.label.clone()).collect();
    Ok(Some(found))
}

/// The format of a file given on the command line (`pipe eval --data`, `pipe predict --data`):
/// a `.jsonl`/`.ndjson` name is JSON Lines and a `.csv` name is CSV whatever the pipeline
/// trained on (a headed CSV, unless the pipeline's own data is AG News' headerless CSV);
/// any other name is taken to be in the pipeline's format.
pub fn format_of_file(path: &Path, pipeline: &DatasetFormat) -> DatasetFormat {
    let extension = compressed::uncompressed_name(path)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match (extension.as_deref(), pipeline) {
        (Some("jsonl" | "ndjson"), _) => DatasetFormat::Jsonl,
        (Some("parquet"), _) => DatasetFormat::Parquet,
        _ if path.is_dir() => DatasetFormat::Arrow,
        (Some("csv"), DatasetFormat::Jsonl) => DatasetFormat::Csv,
        _ => pipeline.clone(),
    }
}

/// The texts of a file to classify (`pipe predict --data`), with the dataset's text columns,
/// one at a time into `sink`; labels are neither needed nor read.
pub fn each_text(
    path: &Path,
    spec: &DatasetSpec,
    sink: &mut dyn FnMut(String) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    source::each_text(path, &source_options(spec, None), sink)
}

/// Reads a file of the dataset's as a run does (`limit` applied) and checks every row,
/// keeping none of them: its row count.
pub fn check_rows(path: &Path, spec: &DatasetSpec) -> Result<usize, DataError> {
    source::each_row(path, &source_options(spec, spec.limit), &mut |_| Ok(()))
}

/// [`check_rows`], through the parsed rows in `cache` (parsed there when missing).
pub fn check_rows_once(
    path: &Path,
    spec: &DatasetSpec,
    cache: Option<&Path>,
) -> Result<usize, DataError> {
    let opts = source_options(spec, spec.limit);
    match cache {
        Some(dir) => {
            let parsed = parsed::parse_once(dir, path, &opts)?;
            parsed.classes(path, &opts)?;
            Ok(parsed.rows())
        }
        None => check_rows(path, spec),
    }
}

/// Each row of `path` as a run reads it, its text and class, in file order: from its parsed
/// rows in `cache` (parsed there first when missing), else straight from the file. Returns the
/// row count.
fn each_labelled_row(
    path: &Path,
    opts: &source::SourceOptions,
    cache: Option<&Path>,
    sink: &mut dyn FnMut(&str, usize) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    match cache {
        Some(dir) => {
            let parsed = parsed::parse_once(dir, path, opts)?;
            let (classes, _) = parsed.classes(path, opts)?;
            parsed.each(&mut |text, value| sink(text, classes[value]))?;
            Ok(parsed.rows())
        }
        None => source::each_row(path, opts, &mut |e| sink(&e.text, e.label)),
    }
}

/// The vectorizer a new run fits: a learned vocabulary counts the words of the train rows
/// (those left after a validation fraction is taken out), read one at a time. With `cache`,
/// one learned from the same rows by the same spec before is loaded from there instead.
pub fn fit_vectorizer(
    spec: &crate::spec::Spec,
    cache: Option<&Path>,
) -> anyhow::Result<Vectorizer> {
    let fitting = Fitting::new(&spec.vectorizer)?;
    if !fitting.needs_texts() {
        return fitting.finish();
    }
    let dataset = &spec.dataset;
    let path = Path::new(&dataset.train);
    let fraction = match &dataset.validation {
        Some(Validation::Fraction(f)) => Some((*f, spec.seed)),
        _ => None,
    };
    let Some(dir) = cache else {
        return learn_vectorizer(fitting, spec, fraction, None);
    };
    let opts = source_options(dataset, dataset.limit);
    let key = cache::vectorizer_key(path, &opts, &spec.vectorizer, fraction)?;
    let cached = cache::vectorizer_dir(dir, &key);
    if cached.is_dir() {
        match Vectorizer::load(&spec.vectorizer, &cached) {
            Ok(v) => {
                tracing::info!(folder = %cached.display(), "vectorizer from the cache");
                return Ok(v);
            }
            Err(e) => {
                tracing::warn!(folder = %cached.display(), error = %e, "cached vectorizer unreadable: learned again");
                let _ = std::fs::remove_dir_all(&cached);
            }
        }
    }
    let vectorizer = learn_vectorizer(fitting, spec, fraction, Some(dir))?;
    if let Err(e) = cache::store_vectorizer(dir, &key, path, |d| vectorizer.save(d)) {
        tracing::warn!(error = %e, "vectorizer not cached");
    }
    Ok(vectorizer)
}

fn learn_vectorizer(
    mut fitting: Fitting,
    spec: &crate::spec::Spec,
    fraction: Option<(f64, u64)>,
    cache: Option<&Path>,
) -> anyhow::Result<Vectorizer> {
    let dataset = &spec.dataset;
    let path = Path::new(&dataset.train);
    let held_out = match fraction {
        Some((f, seed)) => Some(validation_rows(
            check_rows_once(path, dataset, cache)?,
            f,
            seed,
        )),
        None => None,
    };
    let mut row = 0;
    let mut failed = None;
    let opts = source_options(dataset, dataset.limit);
    each_labelled_row(path, &opts, cache, &mut |text, _| {
        let held = held_out.as_ref().is_some_and(|h| h[row]);
        row += 1;
        if !held && failed.is_none() {
            failed = fitting.add(text).err();
        }
        Ok(())
    })?;
    match failed {
        Some(e) => Err(e),
        None => fitting.finish(),
    }
}

/// Which of `rows` rows a validation fraction holds out: `round(fraction · rows)` of them,
/// picked by a ChaCha8 shuffle of the seed, so the same seed gives the same split on every
/// platform; both parts keep file order.
pub(crate) fn validation_rows(rows: usize, fraction: f64, seed: u64) -> Vec<bool> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let held = ((fraction * rows as f64).round() as usize).min(rows);
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut is_held = vec![false; rows];
    for &i in &order[..held] {
        is_held[i] = true;
    }
    is_held
}

/// A data file's rows as `vectorizer` encodes them: from the encoded cache in `cache` when it
/// holds them, else read in chunks, encoded and (with `cache`) stored there.
pub fn encode_file(
    path: &Path,
    spec: &DatasetSpec,
    vectorizer: &Vectorizer,
    cache: Option<&Path>,
) -> Result<Arc<EncodedRows>, DataError> {
    let opts = source_options(spec, spec.limit);
    let key =
        match cache {
            Some(_) => Some(cache::key(path, &opts, &vectorizer.fingerprint()).map_err(
                |error| DataError::Read {
                    path: path.to_path_buf(),
                    error,
                },
            )?),
            None => None,
        };
    if let (Some(dir), Some(key)) = (cache, &key)
        && let Some(rows) = cache::lookup(dir, key)
    {
        tracing::info!(file = %path.display(), rows = rows.rows(), "encoded rows from the cache");
        return Ok(rows);
    }
    let mut builder = RowsBuilder::new(vectorizer.vocab_size());
    let mut texts: Vec<String> = Vec::with_capacity(ENCODE_CHUNK);
    let mut labels: Vec<i32> = Vec::with_capacity(ENCODE_CHUNK);
    let encode = |texts: &mut Vec<String>, labels: &mut Vec<i32>, builder: &mut RowsBuilder| {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        builder.push_texts(vectorizer, &refs, labels);
        texts.clear();
        labels.clear();
    };
    each_labelled_row(path, &opts, cache, &mut |text, label| {
        texts.push(text.to_string());
        labels.push(label as i32);
        if texts.len() == ENCODE_CHUNK {
            encode(&mut texts, &mut labels, &mut builder);
        }
        Ok(())
    })?;
    encode(&mut texts, &mut labels, &mut builder);
    let rows = builder.finish(key.as_ref().unwrap_or(&[0; 32]));
    Ok(match (cache, &key) {
        (Some(dir), Some(key)) => cache::store(dir, key, rows, path),
        _ => Arc::new(rows),
    })
}

/// The train, validation and test rows of a run, encoded by `vectorizer` (through the encoded
/// cache in `cache`, when given).
pub fn encode_splits(
    spec: &DatasetSpec,
    seed: u64,
    vectorizer: &Vectorizer,
    cache: Option<&Path>,
) -> Result<EncodedSplits, DataError> {
    let padding = vectorizer.padding();
    let train = encode_file(Path::new(&spec.train), spec, vectorizer, cache)?;
    let test = match &spec.test {
        Some(t) => Some(EncodedSplit::new(
            encode_file(Path::new(t), spec, vectorizer, cache)?,
            padding,
        )),
        None => None,
    };
    Ok(match &spec.validation {
        Some(Validation::Fraction(f)) => {
            let rows = train.rows();
            let held = validation_rows(rows, *f, seed);
            let (mut kept, mut validation) = (Vec::new(), Vec::new());
            for (r, &is_held) in held.iter().enumerate() {
                match is_held {
                    true => validation.push(r as u32),
                    false => kept.push(r as u32),
                }
            }
            // Training on nothing would still "complete", with a loss of 0.
            if kept.is_empty() || validation.is_empty() {
                let what = if kept.is_empty() {
                    "to train on"
                } else {
                    "to validate on"
                };
                return Err(DataError::Options {
                    path: PathBuf::from(&spec.train),
                    message: format!(
                        "`dataset.validation = {f}` of {rows} rows leaves no rows {what}; \
                         use a fraction that keeps at least one row on each side"
                    ),
                });
            }
            EncodedSplits {
                train: EncodedSplit::picked(train.clone(), kept, padding),
                validation: Some(EncodedSplit::picked(train, validation, padding)),
                test,
            }
        }
        Some(Validation::Split(_)) => EncodedSplits {
            train: EncodedSplit::new(train, padding),
            validation: test.clone(),
            test,
        },
        None => EncodedSplits {
            train: EncodedSplit::new(train, padding),
            validation: None,
            test,
        },
    })
}
