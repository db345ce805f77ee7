//! The command line: one file per verb. `main.rs` parses and calls [`main`].

pub mod bench;
pub mod check;
pub mod compare;
pub mod eval;
pub mod predict;
pub mod progress;
pub mod run;
pub mod runs;
pub mod schema;
pub mod summary;
pub mod sweep;

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::error::Diagnostics;
use crate::graph::{Plan, plan};
use crate::spec::LoadedSpec;
use crate::spec::load::load_spec_partial;

/// Exit codes: 0 success, 1 a failure while running, 2 an invalid spec or arguments,
/// 130 interrupted (Ctrl-C), as shells expect.
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

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
    /// Run a grid or random hyperparameter sweep, one `pipe run` per trial.
    Sweep(sweep::SweepArgs),
    /// Compare run folders: differing config keys, metrics, learning curves.
    Compare(compare::CompareArgs),
    /// List run folders with status, age and headline metric.
    Runs(runs::RunsArgs),
    /// Measure training and inference throughput against the PyTorch / Keras peers.
    Bench(bench::BenchArgs),
}

pub fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Check(a) => check::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Runs(a) => runs::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Loads and resolves a spec, printing every diagnostic; `Err(exit code)` when it is invalid.
pub fn load_plan(
    path: &Path,
    sets: &[String],
    check_files: bool,
) -> Result<(LoadedSpec, Plan), i32> {
    let report = |d: Diagnostics| {
        eprintln!("{d}");
        EXIT_INVALID
    };
    let mut loaded = load_spec_partial(path, sets).map_err(report)?;
    let mut errors = std::mem::take(&mut loaded.errors);
    let plan = plan::resolve_with(&loaded, check_files);
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

/// Common `--set` handling.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Overrides {
    /// Override a spec key: `--set stages.train.epochs=5`, `--set model.block.num_heads=4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}
