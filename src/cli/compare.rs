//! `pipe compare RUN...`: the config keys that differ between run folders, their metrics,
//! and (`--plot`) their learning curves. Sweep and pipeline folders expand to their runs.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::compare::{Format, build_table, load_runs, plot, render};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe compare runs/agnews_transformer --sort test.accuracy\n  pipe compare runs/agnews_transformer/sweep-20261201-101500-1a2b3c --format md --plot curves.png"
)]
pub struct CompareArgs {
    /// Run folders, or folders holding them (a pipeline's runs/<name>/, a sweep folder).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Sort by this column (e.g. `test.accuracy`).
    #[arg(long)]
    pub sort: Option<String>,
    /// How to print the table.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw loss and accuracy curves into this .png or .svg.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Run folders under `path`: itself if it holds run.json, else any found up to two levels down.
pub fn expand(path: &Path) -> Vec<PathBuf> {
    if path.join("run.json").is_file() || !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut found = Vec::new();
    let mut children: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    children.sort();
    for c in children {
        if c.join("run.json").is_file() {
            found.push(c);
        } else if let Ok(d) = std::fs::read_dir(&c) {
            let mut grand: Vec<PathBuf> = d
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("run.json").is_file())
                .collect();
            grand.sort();
            found.extend(grand);
        }
    }
    if found.is_empty() {
        // Listed as unreadable, with the reason, by load_runs.
        found.push(path.to_path_buf());
    }
    found
}

pub fn run(args: CompareArgs) -> Result<i32> {
    let missing: Vec<&PathBuf> = args.runs.iter().filter(|p| !p.exists()).collect();
    for path in &missing {
        errln!("error: {}: no such run folder", path.display());
    }
    if !missing.is_empty() {
        return Ok(super::EXIT_INVALID);
    }
    if let Some(Err(e)) = args.plot.as_deref().map(crate::compare::ImageKind::of) {
        errln!("--plot: error: {e}");
        return Ok(super::EXIT_INVALID);
    }
    let format = args.format;
    // A sweep folder without run folders yet is no unreadable run: its trials are rows below.
    let is_sweep_itself =
        |p: &PathBuf| p.join("sweep.json").is_file() && !p.join("run.json").is_file();
    let paths: Vec<PathBuf> = (args.runs.iter().flat_map(|p| expand(p)))
        .filter(|p| !is_sweep_itself(p))
        .collect();
    let runs = load_runs(&paths);
    let mut table = build_table(&runs, args.sort.as_deref())?;
    // A sweep folder's trials without a run folder yet are rows too, with their state.
    for dir in args.runs.iter().filter(|p| p.join("sweep.json").is_file()) {
        let states = crate::sweep::status::trial_states(dir).unwrap_or_default();
        for t in states.iter().filter(|t| t.run.is_none()) {
            table.push_trial_without_run(t.index, &t.status, &t.overrides);
        }
    }
    out!("{}", render(&table, format));
    if !matches!(format, Format::Table) {
        for (p, reason) in &table.unreadable {
            errln!("unreadable: {}: {reason}", p.display());
        }
    }
    if let Some(path) = &args.plot {
        plot(&runs, &table, path)?;
        errln!("wrote {}", path.display());
    }
    Ok(0)
}
