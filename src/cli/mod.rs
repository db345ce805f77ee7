//! The command line: one file per verb. `main.rs` parses and calls [`main`].

pub mod attention;
pub mod bench;
pub mod cache;
pub mod check;
pub mod compare;
pub mod eval;
pub mod export;
pub mod panic;
pub mod predict;
pub mod progress;
pub mod run;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod summary;
pub mod sweep;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::error::Diagnostics;
use crate::graph::{Plan, plan};
use crate::run::RunDir;
use crate::spec::LoadedSpec;
use crate::spec::load::{OverrideLayers, load_spec_with};

/// Exit codes: 0 success, 1 a failure while running, 2 an invalid spec or arguments,
/// 3 paused at `--pause-after-epochs`, 130 interrupted (Ctrl-C), as shells expect.
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_PAUSED: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

/// A mistake in what was asked for (a run path, a checkpoint, a data file named on the command
/// line), found before any work: it exits with [`EXIT_INVALID`], as an invalid spec or flag
/// does, whichever verb found it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The exit code of an error that reached the top: [`EXIT_INVALID`] for the user's input (an
/// [`Invalid`] or a data file's [`DataError`](crate::data::DataError)), else [`EXIT_FAILURE`].
fn exit_code_of(error: &anyhow::Error) -> i32 {
    let invalid = |e: &(dyn std::error::Error + 'static)| {
        e.is::<Invalid>() || e.is::<crate::data::DataError>()
    };
    match error.chain().any(invalid) {
        true => EXIT_INVALID,
        false => EXIT_FAILURE,
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "pipe",
    version,
    about = "Declarative deep-learning pipelines on burn: one TOML file in, a trained model and a run folder out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a pipeline and write a run folder.
    Run(run::RunArgs),
    /// Validate a spec: keys, types, files, layer graph and every shape.
    Check(check::CheckArgs),
    /// Print the model table (layers, output shapes, parameter counts).
    Summary(summary::SummaryArgs),
    /// Write the JSON schema of pipeline files (schemas/pipeline.schema.json).
    Schema(schema::SchemaArgs),
    /// Evaluate a run's final model on a data file.
    Eval(eval::EvalArgs),
    /// Classify texts with a run's final model.
    Predict(predict::PredictArgs),
    /// Answer predictions over HTTP: JSON, batched, with limits, metrics and a token.
    Serve(serve::ServeArgs),
    /// Write a run's model in another tool's format (`--format hf`: transformers).
    Export(export::ExportArgs),
    /// Show what a run's attention looks at for a text (terminal, heat-map or JSON).
    Attention(attention::AttentionArgs),
    /// Run a grid or random hyperparameter sweep, one `pipe run` per trial.
    Sweep(sweep::SweepArgs),
    /// Compare run folders: differing config keys, metrics, learning curves.
    Compare(compare::CompareArgs),
    /// List run folders with status, age and headline metric.
    Runs(runs::RunsArgs),
    /// List (or `--clear`) the encoded-data and frozen-feature caches under a runs dir.
    Cache(cache::CacheArgs),
    /// Measure training and inference throughput against the PyTorch / Keras peers.
    Bench(bench::BenchArgs),
}

pub fn main(cli: Cli) -> i32 {
    panic::install_hook();
    // The hook has printed the one line; a panic is a failure like any other.
    std::panic::catch_unwind(|| dispatch(cli)).unwrap_or(EXIT_FAILURE)
}

fn dispatch(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Check(a) => check::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Export(a) => export::run(a),
        Command::Attention(a) => attention::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Runs(a) => runs::run(a),
        Command::Cache(a) => cache::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            exit_code_of(&e)
        }
    }
}

/// Loads and resolves a spec for a new run (`PIPE_*` environment keys, then `sets`), printing
/// every diagnostic; `Err(exit code)` when it is invalid.
pub fn load_plan(
    path: &Path,
    sets: &[String],
    files: DataFiles,
) -> Result<(LoadedSpec, Plan), i32> {
    load_plan_with(path, &OverrideLayers::new_run(sets), files)
}

/// Loads and resolves a run folder's pipeline.toml as it is: no `PIPE_*` variable or `--set`
/// applies (they are for new runs), and a pretrained tokenizer is the one the run saved.
pub fn load_run_plan(run: &RunDir, files: DataFiles) -> Result<(LoadedSpec, Plan), i32> {
    resolve_loaded(
        load_spec_with(&run.pipeline(), &OverrideLayers::default()),
        Some(run.vectorizer_dir()),
        files,
    )
}

/// [`load_run_plan`] for a finished model's verbs (eval, predict, attention, export): a
/// pretrained layer reads the config.json the run saved, so the model's source is not needed.
/// (`--resume` keeps the spec exactly as written: its resume point checks every value.)
pub fn load_trained_plan(run: &RunDir) -> Result<(LoadedSpec, Plan), i32> {
    let loaded = load_spec_with(&run.pipeline(), &OverrideLayers::default());
    resolve_loaded(
        loaded.map(|l| with_saved_pretrained(l, run)),
        Some(run.vectorizer_dir()),
        DataFiles::Unread,
    )
}

/// A run's pretrained layers read their config.json from the copy the run saved
/// (`pretrained/<layer>/`), not from `from`: the model's source may be elsewhere or gone by now,
/// and the copy is the config the run was trained with. Runs made before the copy existed keep
/// `from`. The weights come from the run's own model either way.
fn with_saved_pretrained(mut loaded: LoadedSpec, run: &RunDir) -> LoadedSpec {
    let names = loaded.spec.model.layer_names();
    for (layer, name) in loaded.spec.model.layers.iter_mut().zip(names) {
        if !matches!(layer.kind.as_str(), "hf_encoder" | "bert") {
            continue;
        }
        let saved = run.pretrained_dir(&name);
        if saved.join("config.json").is_file() {
            let saved = std::path::absolute(&saved).unwrap_or(saved);
            layer.params.insert(
                "from".to_string(),
                toml::Value::String(saved.display().to_string()),
            );
        }
    }
    loaded
}

/// [`load_plan`] with explicit override layers.
pub fn load_plan_with(
    path: &Path,
    layers: &OverrideLayers,
    files: DataFiles,
) -> Result<(LoadedSpec, Plan), i32> {
    resolve_loaded(load_spec_with(path, layers), None, files)
}

fn resolve_loaded(
    loaded: Result<LoadedSpec, Diagnostics>,
    vectorizer_dir: Option<PathBuf>,
    files: DataFiles,
) -> Result<(LoadedSpec, Plan), i32> {
    let report = |d: Diagnostics| {
        errln!("{d}");
        EXIT_INVALID
    };
    let mut loaded = loaded.map_err(report)?;
    loaded.vectorizer_dir = vectorizer_dir.filter(|d| d.is_dir());
    let mut errors = std::mem::take(&mut loaded.errors);
    infer_labels(&mut loaded, &mut errors, files);
    if files != DataFiles::Unread {
        check_data_heads(&loaded, &mut errors);
    }
    let plan = plan::resolve_with(&loaded, files != DataFiles::Unread);
    if plan.is_err() || !errors.is_empty() {
        // A refused spec leaves nothing behind.
        for dir in &loaded.created_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    match plan {
        Ok(plan) if errors.is_empty() => Ok((loaded, plan)),
        Ok(_) => Err(report(errors)),
        Err(more) => {
            errors.0.extend(more.0);
            errors.sort();
            Err(report(errors))
        }
    }
}

/// How many rows of each data file `pipe check` (and a new run, before it makes its folder)
/// reads when the spec lists its labels: enough to find a wrong column or field name, a wrong
/// format or labels that are not the listed ones, without reading a large file through.
const CHECKED_HEAD_ROWS: usize = 200;

/// With `dataset.labels` listed, nothing else reads the data before training: the first rows
/// of the train and test files are read here, so that a column the file does not have is a
/// check-time error on the spec's line instead of a failed run.
fn check_data_heads(loaded: &LoadedSpec, errors: &mut Diagnostics) {
    let dataset = &loaded.spec.dataset;
    if loaded.inferred_labels.is_some() || dataset.labels.is_empty() {
        return;
    }
    let mut head = dataset.clone();
    head.limit = Some(dataset.limit.unwrap_or(usize::MAX).min(CHECKED_HEAD_ROWS));
    for (key, file) in [
        ("dataset.train", Some(&dataset.train)),
        ("dataset.test", dataset.test.as_ref()),
    ] {
        let Some(file) = file.filter(|f| Path::new(f).exists()) else {
            continue;
        };
        if let Err(e) = crate::data::check_rows(Path::new(file), &head) {
            errors.push(loaded.source.value(key), e.to_string());
        }
    }
}

/// A spec without `dataset.labels` takes the train file's classes; the test file must not
/// hold others (its rows would have no output to go to). A train file that is absent is
/// reported by the plan, once.
pub(crate) fn infer_labels(loaded: &mut LoadedSpec, errors: &mut Diagnostics, files: DataFiles) {
    let dataset = &mut loaded.spec.dataset;
    if !dataset.labels.is_empty() || !Path::new(&dataset.train).exists() {
        return;
    }
    let why = "the classes come from the train file: `dataset.labels` is omitted";
    let cache = match files {
        DataFiles::Cached => loaded.spec.runtime.data_cache(),
        _ => loaded.spec.runtime.existing_data_cache(),
    };
    if let Some(dir) = cache.as_deref().filter(|_| files == DataFiles::Cached) {
        // The outermost folder that parsing will create, if any.
        let missing = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists());
        loaded
            .created_dirs
            .extend(missing.last().map(Path::to_path_buf));
    }
    let dataset = &mut loaded.spec.dataset;
    match crate::data::infer_missing_labels(dataset, cache.as_deref()) {
        Ok(found) => loaded.inferred_labels = found,
        Err(e) => {
            errors.push(loaded.source.value("dataset.train"), format!("{e} ({why})"));
            return;
        }
    }
    let Some(test) = dataset.test.as_deref().filter(|t| Path::new(t).exists()) else {
        return;
    };
    if let Err(e) = crate::data::check_rows_once(Path::new(test), dataset, cache.as_deref()) {
        errors.push(loaded.source.value("dataset.test"), format!("{e} ({why})"));
    }
}

/// How resolving a spec treats its data files.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataFiles {
    /// Neither read nor required to exist (`pipe summary`; a trained run's verbs).
    Unread,
    /// Read and checked, through the data cache where it already exists (check, sweep, bench):
    /// a verb that only looks creates no folder.
    Checked,
    /// Read, checked and parsed into the data cache, created if need be: a new run then reads
    /// each data file once.
    Cached,
}

/// Common `--set` handling.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Overrides {
    /// Override a spec key: `--set stages.train.epochs=5`, `--set model.block.num_heads=4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}
