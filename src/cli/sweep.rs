//! `pipe sweep SPEC --grid k=v1,v2 --random k=lo..hi[:log] --parallel N`: type-check every
//! trial, then run each as its own `pipe run` process in a shared sweep folder, `--parallel`
//! at a time, and print the comparison. `--emit slurm` writes the same trials as a job array.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{DataFiles, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_PAUSED, Overrides, load_plan};
use crate::compare::{Format, build_table, load_runs, render};
use crate::graph::plan;
use crate::run::{RunRecord, RunStatus, atomic_write};
use crate::spec::SweepSpec;
use crate::spec::load::load_spec;
use crate::spec::load::{OverrideLayers, load_spec_with};
use crate::spec::policy::{MONITORS, Mode};
use crate::sweep::asha::{self, Asha, Decision};
use crate::sweep::executor::{self, Ending, Executor, TrialProcess};
use crate::sweep::status::trial_run;
use crate::sweep::{KeyType, Trial, expand, parse_grid, parse_range, slurm_script};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe sweep pipelines/agnews_transformer.toml --grid stages.train.optimizer.learning_rate=1e-3,3e-3 --parallel 2\n  pipe sweep pipelines/agnews_transformer.toml --random stages.train.optimizer.learning_rate=1e-4..1e-2:log --trials 8\n  pipe sweep pipelines/agnews_transformer.toml --grid seed=1,2,3 --emit slurm > sweep.sbatch\n  pipe sweep pipelines/sports_csv.toml --random stages.train.optimizer.learning_rate=1e-4..1e-1:log --trials 27 --prune asha --max-epochs 9"
)]
pub struct SweepArgs {
    #[arg(required_unless_present_any = ["status", "resume"])]
    pub spec: Option<PathBuf>,
    /// Bring DIR/sweep.json up to date from its trials' run folders (a sweep emitted for
    /// Slurm, or one whose controller stopped) and print each trial's state and the best.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["grid", "random", "emit", "prune"])]
    pub status: Option<PathBuf>,
    /// Take up the sweep in DIR whose controller stopped (killed, Ctrl-C, the login node
    /// rebooted): watch its Slurm jobs again and go on deciding and submitting from its
    /// sweep.json.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["spec", "grid", "random", "emit", "prune", "status"])]
    pub resume: Option<PathBuf>,
    /// Where the trials run: `local` (default; `--parallel` processes on this machine) or
    /// `slurm` (each trial process an `sbatch` job, `--parallel` in Slurm at a time, watched
    /// from here; with `--prune asha`, each rung's promotions are `--resume` jobs).
    #[arg(long, value_enum, value_name = "WHERE")]
    pub scheduler: Option<Scheduler>,
    /// An option for every `sbatch` of `--scheduler slurm`, e.g. `--slurm-option=--partition=gpu`
    /// or `--slurm-option=--time=2:00:00` (repeat for several).
    #[arg(
        long = "slurm-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub slurm_options: Vec<String>,
    /// `path=v1,v2,...`: every combination of the grids is a trial.
    #[arg(long = "grid", value_name = "PATH=V1,V2")]
    pub grid: Vec<String>,
    /// `path=low..high` or `path=low..high:log`, sampled `--trials` times.
    #[arg(long = "random", value_name = "PATH=LO..HI[:log]")]
    pub random: Vec<String>,
    #[arg(long)]
    pub trials: Option<usize>,
    /// Seed of the random search (default: the pipeline seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Trials running at once.
    #[arg(long)]
    pub parallel: Option<usize>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`, for every trial.
    #[arg(long, value_parser = crate::backend::device_name)]
    pub device: Option<String>,
    /// Instead of running, print a batch script that runs the trials as an array job.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub emit: Option<Emit>,
    /// Stop unpromising trials early: `asha` (asynchronous successive halving) ranks trials
    /// at each rung (--min-epochs, then × --reduction) and continues only the top 1/--reduction.
    #[arg(long, value_enum, value_name = "METHOD")]
    pub prune: Option<Prune>,
    /// What trials are ranked by at each rung: `validation.accuracy` (default; higher is
    /// better), `validation.loss`, `train.loss` or `train.accuracy` (losses: lower is better).
    #[arg(long, value_name = "SPLIT.METRIC", requires = "prune")]
    pub metric: Option<String>,
    /// Epochs of the first rung (default 1).
    #[arg(long, value_name = "N", requires = "prune")]
    pub min_epochs: Option<usize>,
    /// Each rung trains this many times the epochs of the one before and keeps 1/N of the
    /// trials that reach it (default 3).
    #[arg(long, value_name = "N", requires = "prune")]
    pub reduction: Option<usize>,
    /// The last rung: the epochs a trial that is never pruned trains. Default: the pipeline's
    /// epochs over all stages; on a one-stage pipeline, sets that stage's epochs.
    #[arg(long, value_name = "N", requires = "prune")]
    pub max_epochs: Option<usize>,
}

impl SweepArgs {
    /// The pipeline swept (clap requires it unless `--status` is given, which returns first).
    fn spec(&self) -> &Path {
        self.spec
            .as_deref()
            .expect("clap requires SPEC without --status")
    }
}

/// `--status DIR`: the sweep's trials as their run folders tell, written back to sweep.json.
fn status(dir: &Path) -> Result<i32> {
    let trials = match crate::sweep::status::reconcile(dir) {
        Ok(t) => t,
        Err(e) => return Err(super::Invalid(format!("--status: {e:#}")).into()),
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &trials {
        *counts.entry(t.status.as_str()).or_default() += 1;
        let accuracy = t.accuracy.map_or("-".to_string(), |a| format!("{a:.4}"));
        outln!(
            "trial {:>3}  {:<11}  accuracy {accuracy:<6}  {}",
            t.index,
            t.status,
            t.overrides.join(" ")
        );
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    errln!(
        "{}: {} trials: {}",
        dir.display(),
        trials.len(),
        summary.join(", ")
    );
    let best = (trials.iter().filter(|t| t.status == "completed"))
        .filter_map(|t| Some((t, t.accuracy?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((t, accuracy)) = best {
        errln!(
            "best so far: trial {} ({}), accuracy {accuracy:.4}",
            t.index,
            t.overrides.join(" ")
        );
    }
    Ok(0)
}

/// `pipe sweep --prune`: the pruning schedulers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Prune {
    /// Asynchronous successive halving (Li et al. 2020), as Ray Tune's ASHAScheduler.
    Asha,
}

/// `pipe sweep --scheduler`: where the trial processes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// Child processes of `pipe sweep` on this machine.
    #[default]
    Local,
    /// One Slurm job per trial process, submitted and watched by `pipe sweep`.
    Slurm,
}

/// `pipe sweep --emit`: the batch systems a sweep can be written out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// A Slurm job array, one task per trial.
    Slurm,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrialRecord {
    index: usize,
    overrides: Vec<String>,
    /// pending | running | completed | failed | interrupted | skipped | emitted
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// The signal that killed the trial (`SIGKILL` from the OOM killer, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<String>,
    log: PathBuf,
    /// Epochs trained, over all stages (pruned sweeps).
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// The ranked metric at each rung the trial reached (pruned sweeps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rungs: Vec<RungResult>,
    /// The Slurm job of the trial's latest process (`--scheduler slurm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RungResult {
    epochs: usize,
    value: f64,
}

/// How a pruned sweep was scheduled, and what it decided.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PruneRecord {
    method: String,
    metric: String,
    mode: Mode,
    reduction: usize,
    /// Epochs of each rung; the last is what a trial that is never pruned trains.
    rungs: Vec<usize>,
    decisions: Vec<Decision>,
    /// Epochs trained by all trials together, and what the same trials would train unpruned.
    epochs_trained: usize,
    epochs_unpruned: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SweepRecord {
    id: String,
    spec: String,
    base_overrides: Vec<String>,
    created_at: String,
    parallel: usize,
    #[serde(default)]
    scheduler: Scheduler,
    /// What a resumed controller needs to start the same processes: where `pipe sweep` ran
    /// (trial jobs run there), the runs dir and device it passed on, and the sbatch options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workdir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runs_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    slurm_options: Vec<String>,
    trials: Vec<TrialRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<PruneRecord>,
}

impl SweepRecord {
    /// A new sweep's record: every trial pending.
    fn new(id: String, args: &SweepArgs, parallel: usize, trials: &[Trial], dir: &Path) -> Self {
        SweepRecord {
            id,
            spec: args.spec().display().to_string(),
            base_overrides: args.overrides.sets.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            parallel,
            scheduler: args.scheduler.unwrap_or_default(),
            workdir: None,
            runs_dir: args.runs_dir.clone(),
            device: args.device.clone(),
            slurm_options: args.slurm_options.clone(),
            trials: trials
                .iter()
                .map(|t| TrialRecord {
                    index: t.index,
                    overrides: t.overrides.clone(),
                    status: "pending".into(),
                    run: None,
                    exit_code: None,
                    signal: None,
                    log: dir.join(format!("trial-{}.log", t.index)),
                    epochs: None,
                    rungs: Vec::new(),
                    job: None,
                })
                .collect(),
            prune: None,
        }
    }

    fn load(dir: &Path) -> Result<Self> {
        let file = dir.join("sweep.json");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{}: not a sweep folder", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}", file.display()))
    }

    /// `pipe run` as each trial process of this sweep runs it.
    fn trial_command(&self, pause: Option<usize>) -> Vec<String> {
        let mut args = vec!["run".to_string(), "--quiet".to_string()];
        if let Some(d) = &self.device {
            args.extend(["--device".to_string(), d.clone()]);
        }
        if let Some(n) = pause {
            args.extend(["--pause-after-epochs".to_string(), n.to_string()]);
        }
        args
    }

    /// Trial `k`'s first process: the spec with the base and the trial's overrides, into `dir`.
    fn start_process(&self, k: usize, dir: &Path, pause: Option<usize>) -> TrialProcess {
        let t = &self.trials[k];
        let mut args = self.trial_command(pause);
        args.push(self.spec.clone());
        for s in self.base_overrides.iter().chain(&t.overrides) {
            args.extend(["--set".to_string(), s.clone()]);
        }
        // The trial's feature cache belongs under the sweep's runs dir too, not the spec's.
        if let Some(r) = &self.runs_dir {
            args.extend(["--runs-dir".to_string(), r.display().to_string()]);
        }
        args.extend(["--into".to_string(), dir.display().to_string()]);
        args.extend(["--trial".to_string(), k.to_string()]);
        TrialProcess {
            args,
            log: t.log.clone(),
            append: false,
        }
    }

    /// A paused trial's next process: `pipe run --resume RUN`, appending to its log.
    fn resume_process(&self, k: usize, pause: Option<usize>) -> Result<TrialProcess> {
        let t = &self.trials[k];
        let run = t.run.as_ref().context("a paused trial has a run folder")?;
        let mut args = self.trial_command(pause);
        args.extend(["--resume".to_string(), run.display().to_string()]);
        Ok(TrialProcess {
            args,
            log: t.log.clone(),
            append: true,
        })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        atomic_write(&dir.join("sweep.json"), text.as_bytes())?;
        Ok(())
    }
}

pub fn run(mut args: SweepArgs) -> Result<i32> {
    // The product is the run folder: a reader that goes away must not stop the training.
    crate::console::keep_running_when_closed();
    if let Some(dir) = &args.status {
        return status(dir);
    }
    if let Some(dir) = &args.resume {
        return resume(dir);
    }
    let (loaded, _) = match load_plan(args.spec(), &args.overrides.sets, DataFiles::Checked) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let pruning = match Pruning::of(&args, &loaded) {
        Ok(p) => p,
        Err(message) => {
            errln!("{message}");
            return Ok(EXIT_INVALID);
        }
    };
    if let Some(set) = pruning.as_ref().and_then(|p| p.epochs_override.clone()) {
        args.overrides.sets.push(set);
    }
    let Some(sweep) = sweep_spec(&args, &loaded) else {
        return Ok(EXIT_INVALID);
    };
    let parallel = args.parallel.or(sweep.parallel).unwrap_or(1).max(1);
    let key_type = |path: &str| swept_key_type(&args, path);
    let trials = match expand(&sweep, loaded.spec.seed, &key_type) {
        Ok(t) => t,
        Err(e) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    if !all_trials_check(&args, &trials) {
        return Ok(EXIT_INVALID);
    }

    let runs_dir = args
        .runs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&loaded.spec.runtime.runs_dir));
    let (mut dir, id) = create_sweep_dir(&runs_dir.join(&loaded.spec.name))?;
    let scheduler = args.scheduler.unwrap_or_default();
    if scheduler == Scheduler::Slurm || args.emit.is_some() {
        // Jobs run wherever Slurm puts them: every path they are given is absolute.
        dir = std::path::absolute(&dir)?;
        args.runs_dir = Some(std::path::absolute(&runs_dir)?);
    }
    let mut record = SweepRecord::new(id, &args, parallel, &trials, &dir);
    if let Some(Emit::Slurm) = args.emit {
        return emit_slurm(&args, &trials, &mut record, (&runs_dir, &dir));
    }
    if scheduler == Scheduler::Slurm {
        record.workdir = Some(std::env::current_dir()?);
    }
    errln!(
        "sweep folder: {} ({} trials, {parallel} at a time{})",
        dir.display(),
        trials.len(),
        match scheduler {
            Scheduler::Local => "",
            Scheduler::Slurm => ", as Slurm jobs",
        }
    );
    record.save(&dir)?;
    let asha = pruning
        .as_ref()
        .map(|p| Asha::new(trials.len(), p.rungs.clone(), p.reduction, p.mode));
    let executor = executor_for(&record, &dir)?;
    drive_to_end(record, &dir, pruning, asha, executor)
}

/// `--resume DIR`: a Slurm sweep's controller taken up again from its sweep.json: the jobs it
/// recorded are watched again, decisions go on from the rung results it recorded.
fn resume(dir: &Path) -> Result<i32> {
    let dir = std::path::absolute(dir)?;
    let record = SweepRecord::load(&dir).map_err(|e| super::Invalid(format!("--resume: {e:#}")))?;
    if record.scheduler != Scheduler::Slurm {
        return Err(super::Invalid(format!(
            "--resume: {} ran its trials as local processes, which ended with it; \
             `pipe sweep --status {}` shows where they stopped",
            dir.display(),
            dir.display()
        ))
        .into());
    }
    let (pruning, asha) = match &record.prune {
        Some(p) => {
            let pruning = Pruning {
                metric: p.metric.clone(),
                mode: p.mode,
                reduction: p.reduction,
                rungs: p.rungs.clone(),
                epochs_override: None,
            };
            let results = (record.trials.iter())
                .map(|t| t.rungs.iter().map(|r| r.value).collect())
                .collect();
            let asha = Asha::restore(
                p.rungs.clone(),
                p.reduction,
                p.mode,
                results,
                p.decisions.clone(),
            );
            (Some(pruning), Some(asha))
        }
        None => (None, None),
    };
    let mut executor = executor_for(&record, &dir)?;
    let mut watched = 0;
    for t in record.trials.iter().filter(|t| t.status == "running") {
        if let (Some(job), Some(slurm)) = (&t.job, executor.as_slurm()) {
            slurm.attach(t.index, job.clone());
            watched += 1;
        }
    }
    errln!(
        "sweep folder: {} resumed: {watched} job(s) in Slurm watched again",
        dir.display()
    );
    drive_to_end(record, &dir, pruning, asha, executor)
}

/// Where `record`'s trial processes run.
fn executor_for(record: &SweepRecord, dir: &Path) -> Result<Box<dyn Executor>> {
    let binary = std::env::current_exe().context("locating the pipe binary")?;
    Ok(match record.scheduler {
        Scheduler::Local => Box::new(executor::Local::new(binary)),
        Scheduler::Slurm => {
            let sweep_dir = dir.to_path_buf();
            Box::new(executor::Slurm::new(
                binary,
                record.workdir.clone().unwrap_or(std::env::current_dir()?),
                record.slurm_options.clone(),
                format!("pipe-{}", record.id),
                Box::new(move |k| ending_from_run(&sweep_dir, k)),
            ))
        }
    })
}

/// How a trial whose Slurm job is forgotten ended, as its run.json tells: no run folder, or
/// one still `running`, means it died without a word.
fn ending_from_run(dir: &Path, k: usize) -> Ending {
    let status = trial_run(dir, k).and_then(|run| RunRecord::load(&run.join("run.json")).ok());
    match status.map(|r| r.status) {
        Some(RunStatus::Completed) => Ending::Exited(0),
        Some(RunStatus::Paused) => Ending::Exited(EXIT_PAUSED),
        Some(RunStatus::Interrupted) => Ending::Exited(EXIT_INTERRUPTED),
        Some(RunStatus::Failed) => Ending::Exited(1),
        _ => Ending::Killed(libc::SIGKILL),
    }
}

/// Runs the sweep's processes to their end (or to a Ctrl-C), settles the pruning, records
/// everything in sweep.json, prints the comparison and returns the exit code.
fn drive_to_end(
    mut record: SweepRecord,
    dir: &Path,
    pruning: Option<Pruning>,
    mut asha: Option<Asha>,
    mut executor: Box<dyn Executor>,
) -> Result<i32> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
        });
    }
    let sweep = Sweep {
        dir,
        parallel: record.parallel,
        pruning: pruning.as_ref(),
    };
    let left_running = sweep.drive(&mut record, asha.as_mut(), executor.as_mut(), &interrupted)?;
    if left_running > 0 {
        errln!(
            "{left_running} trial job(s) keep running in Slurm: `pipe sweep --resume {}` watches \
             them and goes on",
            dir.display()
        );
        return Ok(EXIT_INTERRUPTED);
    }
    if let (Some(asha), Some(p)) = (asha.as_mut(), &pruning) {
        let stopped = interrupted.load(Ordering::SeqCst);
        record.prune = Some(finish_pruning(p, asha, &mut record.trials, stopped));
    }
    for t in record.trials.iter_mut().filter(|t| t.status == "pending") {
        t.status = "skipped".into();
    }
    record.save(dir)?;
    print_comparison(&record, pruning.as_ref())?;
    let failed = record
        .trials
        .iter()
        .filter(|t| t.status == "failed")
        .count();
    if failed > 0 {
        errln!("{failed} trial(s) failed; the others are above");
    }
    Ok(if interrupted.load(Ordering::SeqCst) {
        EXIT_INTERRUPTED
    } else if failed > 0 {
        1
    } else {
        0
    })
}

/// What the key a random range sweeps holds, asked of the spec itself: the pipeline loaded
/// and resolved with a fraction set there fails as "floating point …, expected an integer"
/// exactly when the key (a spec key or a layer's) takes whole numbers.
fn swept_key_type(args: &SweepArgs, path: &str) -> KeyType {
    let mut sets = args.overrides.sets.clone();
    sets.push(format!("{path}=0.5"));
    let diagnostics = match load_spec_with(args.spec(), &OverrideLayers::new_run(&sets)) {
        Err(d) => d,
        Ok(probe) => {
            let mut d = probe.errors.clone();
            if let Err(more) = plan::resolve_with(&probe, false) {
                d.0.extend(more.0);
            }
            d
        }
    };
    let rejects_fraction = diagnostics
        .0
        .iter()
        .any(|d| d.message.contains("floating point `0.5`"));
    if rejects_fraction {
        KeyType::Integer
    } else {
        KeyType::Float
    }
}

/// The spec's `[sweep]` with `--random`, `--grid`, `--trials` and `--seed` merged in; `None`
/// once every bad range or grid has been reported.
fn sweep_spec(args: &SweepArgs, loaded: &crate::spec::LoadedSpec) -> Option<SweepSpec> {
    let mut sweep: SweepSpec = loaded.spec.sweep.clone().unwrap_or_default();
    // Every range is checked before anything is created, each error naming where it was given.
    let mut bad_ranges = 0;
    for (path, range) in &sweep.random {
        if let Err(e) = parse_range(range) {
            let at = loaded.source.value(&format!("sweep.random.{path}"));
            errln!("{at}: error: `sweep.random.{path}`: {e}");
            bad_ranges += 1;
        }
    }
    for r in &args.random {
        let parsed = r
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("expected path=low..high[:log]"))
            .and_then(|(path, range)| parse_range(range.trim()).map(|_| (path, range)));
        match parsed {
            Ok((path, range)) => {
                sweep
                    .random
                    .insert(path.trim().to_string(), range.trim().to_string());
            }
            Err(e) => {
                errln!("--random {r}: error: {e}");
                bad_ranges += 1;
            }
        }
    }
    if bad_ranges > 0 {
        return None;
    }
    for g in &args.grid {
        if let Err(e) = parse_grid(g, &mut sweep.grid) {
            errln!("--grid {g}: error: {e}");
            return None;
        }
    }
    sweep.trials = args.trials.or(sweep.trials);
    sweep.seed = args.seed.or(sweep.seed);
    if sweep.trials == Some(0) {
        let at = match args.trials {
            Some(_) => "--trials 0".to_string(),
            None => loaded.source.value("sweep.trials").to_string(),
        };
        errln!("{at}: error: a sweep needs at least one trial");
        return None;
    }
    Some(sweep)
}

/// Every trial must resolve before any starts: a typo in trial 7 should not cost 6 runs.
/// Prints each trial's errors; false when any has them.
fn all_trials_check(args: &SweepArgs, trials: &[Trial]) -> bool {
    let mut bad = 0;
    for t in trials {
        let sets: Vec<String> = args
            .overrides
            .sets
            .iter()
            .chain(&t.overrides)
            .cloned()
            .collect();
        let result = load_spec(args.spec(), &sets).and_then(|mut l| {
            let mut errors = crate::error::Diagnostics::default();
            super::infer_labels(&mut l, &mut errors, super::DataFiles::Cached);
            if !errors.is_empty() {
                return Err(errors);
            }
            plan::resolve(&l).map(|_| ())
        });
        if let Err(d) = result {
            bad += 1;
            errln!("trial {} ({}):\n{d}", t.index, t.overrides.join(" "));
        }
    }
    if bad > 0 {
        errln!(
            "error: {bad} of {} trials do not check; nothing was run",
            trials.len()
        );
    }
    bad == 0
}

/// `--emit slurm`: the trials as a job array on stdout, recorded `emitted`.
fn emit_slurm(
    args: &SweepArgs,
    trials: &[Trial],
    record: &mut SweepRecord,
    (runs_dir, dir): (&Path, &Path),
) -> Result<i32> {
    for t in &mut record.trials {
        t.status = "emitted".into();
    }
    record.save(dir)?;
    let pipe = std::env::current_exe()?.display().to_string();
    // Absolute, so that the jobs write where this sweep would have, whatever their folder.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or(p.to_path_buf());
    let workdir = std::env::current_dir()?;
    let (runs_dir, sweep_dir) = (absolute(runs_dir), absolute(dir));
    let places = crate::sweep::SlurmPlaces {
        workdir: &workdir.display().to_string(),
        runs_dir: &runs_dir.display().to_string(),
        sweep_dir: &sweep_dir.display().to_string(),
    };
    out!(
        "{}",
        slurm_script(
            &pipe,
            &args.spec().display().to_string(),
            &args.overrides.sets,
            trials,
            &places
        )
    );
    errln!("sweep folder: {} ({} trials)", dir.display(), trials.len());
    Ok(0)
}

/// Once the processes are done: prunes what is still paused (unless interrupted, when nothing
/// can be decided), says how many epochs were trained, and returns sweep.json's `prune`.
fn finish_pruning(
    p: &Pruning,
    asha: &mut Asha,
    trials: &mut [TrialRecord],
    interrupted: bool,
) -> PruneRecord {
    if !interrupted {
        for k in asha.prune_waiting() {
            trials[k].status = "pruned".into();
            if let Some(run) = &trials[k].run {
                mark_pruned(run);
            }
        }
    }
    let summary = p.record(asha, trials);
    errln!(
        "pruned sweep ({} on {}, rungs at {} epochs): {} epochs trained in all; the same trials unpruned: {}",
        summary.method,
        summary.metric,
        summary
            .rungs
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        summary.epochs_trained,
        summary.epochs_unpruned
    );
    summary
}

/// The trials' run folders side by side, ranked by the pruning metric or test accuracy.
fn print_comparison(record: &SweepRecord, pruning: Option<&Pruning>) -> Result<()> {
    let folders: Vec<PathBuf> = record.trials.iter().filter_map(|t| t.run.clone()).collect();
    if folders.is_empty() {
        return Ok(());
    }
    let runs = load_runs(&folders);
    // A pruned sweep ranks by its metric (pruned trials have no test figures).
    let has = |key: &str| {
        runs.iter()
            .any(|r| matches!(r, crate::compare::Loaded::Ok(s) if s.metrics.contains_key(key)))
    };
    // Without test rows, the best held-out figure there is ranks them (not the run ids).
    let sort = match pruning {
        Some(p) if has(&p.metric) => Some(p.metric.as_str()),
        _ => ["test.accuracy", "validation.accuracy", "train.accuracy"]
            .into_iter()
            .find(|k| has(k)),
    };
    let mut table = build_table(&runs, sort)?;
    // Each row names its trial, as sweep.json and the progress lines do.
    table.columns.insert(0, "trial".to_string());
    for row in &mut table.rows {
        let trial = record.trials.iter().find(|t| {
            t.run
                .as_ref()
                .and_then(|r| r.file_name())
                .is_some_and(|n| n.to_string_lossy() == row[0])
        });
        row.insert(0, trial.map_or("-".to_string(), |t| t.index.to_string()));
    }
    out!("{}", render(&table, Format::Table));
    Ok(())
}

/// `--prune`'s settings, checked before anything runs.
struct Pruning {
    metric: String,
    mode: Mode,
    reduction: usize,
    rungs: Vec<usize>,
    /// `--max-epochs` on a one-stage pipeline: that stage's epochs, as a base override.
    epochs_override: Option<String>,
}

impl Pruning {
    /// `Ok(None)` without `--prune`; `Err` is the one-line message naming the flag.
    fn of(args: &SweepArgs, loaded: &crate::spec::LoadedSpec) -> Result<Option<Self>, String> {
        let Some(Prune::Asha) = args.prune else {
            return Ok(None);
        };
        if args.emit.is_some() {
            return Err(
                "--prune: error: a Slurm job array runs every trial to its end; pruning \
                        needs `pipe sweep` to watch the trials: use `--scheduler slurm` instead \
                        of --emit (it submits each rung's jobs and promotes from here)"
                    .into(),
            );
        }
        let metric = args
            .metric
            .clone()
            .unwrap_or_else(|| "validation.accuracy".into());
        if !MONITORS.contains(&metric.as_str()) {
            return Err(format!(
                "--metric {metric}: error: trials can be ranked by {}",
                MONITORS.join(", ")
            ));
        }
        if metric.starts_with("validation.") && loaded.spec.dataset.validation.is_none() {
            return Err(format!(
                "--metric {metric}: error: the pipeline has no validation rows (set \
                 `dataset.validation`, or rank by a train.* metric)"
            ));
        }
        let stages = &loaded.spec.stages;
        let total: usize = stages.iter().map(|s| s.epochs).sum();
        let max_epochs = args.max_epochs.unwrap_or(total);
        let epochs_override = match (args.max_epochs, stages.len()) {
            (Some(n), 1) if n != total => Some(format!("stages.0.epochs={n}")),
            (Some(n), k) if n != total => {
                return Err(format!(
                    "--max-epochs {n}: error: the pipeline trains {total} epochs in {k} stages; \
                     --max-epochs sets the epochs of a one-stage pipeline (set each stage's \
                     epochs with --set)"
                ));
            }
            _ => None,
        };
        let rungs = asha::rungs(
            args.min_epochs.unwrap_or(1),
            args.reduction.unwrap_or(3),
            max_epochs,
        )
        .map_err(|e| format!("error: {e}"))?;
        Ok(Some(Pruning {
            mode: Mode::of(&metric, None),
            metric,
            reduction: args.reduction.unwrap_or(3),
            rungs,
            epochs_override,
        }))
    }

    /// Epochs to pause a trial at on its way to `epochs`: none at the last rung.
    fn pause_at(&self, epochs: usize) -> Option<usize> {
        (epochs < *self.rungs.last().expect("at least one rung")).then_some(epochs)
    }

    fn record(&self, asha: &Asha, trials: &[TrialRecord]) -> PruneRecord {
        PruneRecord {
            method: "asha".into(),
            metric: self.metric.clone(),
            mode: self.mode,
            reduction: self.reduction,
            rungs: self.rungs.clone(),
            decisions: asha.decisions.clone(),
            epochs_trained: trials.iter().filter_map(|t| t.epochs).sum(),
            epochs_unpruned: trials.len() * self.rungs.last().copied().unwrap_or(0),
        }
    }
}

/// What the process loop starts next.
enum Launch {
    /// A trial's first process.
    Start(usize),
    /// A paused trial, resumed up to the next rung's epochs.
    Promote(usize, usize),
}

/// A sweep being run: its trials, `parallel` processes at a time.
struct Sweep<'a> {
    dir: &'a Path,
    parallel: usize,
    pruning: Option<&'a Pruning>,
}

impl Sweep<'_> {
    /// Starts trials (and, when pruning, promotions) while slots are free, until nothing is
    /// running and nothing more can start. A Ctrl-C interrupts every local trial once; Slurm
    /// jobs are left running, and their count is returned (0 otherwise).
    fn drive(
        &self,
        record: &mut SweepRecord,
        mut asha: Option<&mut Asha>,
        executor: &mut dyn Executor,
        interrupted: &AtomicBool,
    ) -> Result<usize> {
        // Trials start in order: the first pending one is next (a resumed sweep's too).
        let mut next = (record.trials.iter())
            .position(|t| t.status == "pending")
            .unwrap_or(record.trials.len());
        let mut forwarded = false;
        loop {
            let stop = interrupted.load(Ordering::SeqCst);
            if stop && !forwarded {
                forwarded = true;
                // Local trials finish their step, checkpoint and mark themselves interrupted.
                if !executor.interrupt() {
                    record.save(self.dir)?;
                    return Ok(executor.running());
                }
            }
            while !stop && executor.running() < self.parallel {
                let launch = match asha.as_deref_mut().and_then(Asha::promote) {
                    Some((k, epochs)) => Launch::Promote(k, epochs),
                    None if next < record.trials.len() => {
                        next += 1;
                        Launch::Start(next - 1)
                    }
                    None => break,
                };
                if let (Some(p), Some(a)) = (self.pruning, asha.as_deref()) {
                    record.prune = Some(p.record(a, &record.trials));
                }
                let k = self.launch(launch, record, asha.as_deref(), executor)?;
                record.trials[k].status = "running".into();
                record.save(self.dir)?;
            }
            if executor.running() == 0 {
                return Ok(0);
            }
            for (k, ending) in executor.poll()? {
                self.finished(&mut record.trials[k], ending, asha.as_deref_mut());
                if let (Some(p), Some(a)) = (self.pruning, asha.as_deref()) {
                    record.prune = Some(p.record(a, &record.trials));
                }
                record.save(self.dir)?;
            }
            std::thread::sleep(executor.poll_interval());
        }
    }

    fn launch(
        &self,
        launch: Launch,
        record: &mut SweepRecord,
        asha: Option<&Asha>,
        executor: &mut dyn Executor,
    ) -> Result<usize> {
        let (k, process) = match launch {
            Launch::Start(k) => {
                let pause = asha
                    .zip(self.pruning)
                    .and_then(|(a, p)| p.pause_at(a.target(k)));
                errln!(
                    "trial {k} started: {}",
                    record.trials[k].overrides.join(" ")
                );
                (k, record.start_process(k, self.dir, pause))
            }
            Launch::Promote(k, epochs) => {
                let pause = self.pruning.and_then(|p| p.pause_at(epochs));
                errln!("trial {k} promoted: continues to {epochs} epochs");
                (k, record.resume_process(k, pause)?)
            }
        };
        let job = executor.start(k, &process)?;
        if let Some(job) = &job {
            errln!("trial {k}: Slurm job {job}");
        }
        record.trials[k].job = job;
        Ok(k)
    }

    /// Records how a trial process ended; when pruning, its rung result.
    fn finished(&self, t: &mut TrialRecord, ending: Ending, asha: Option<&mut Asha>) {
        let k = t.index;
        t.exit_code = match ending {
            Ending::Exited(code) => Some(code),
            Ending::Killed(_) => None,
        };
        t.status = status_of(&ending).into();
        t.signal = ending.signal_name();
        t.run = trial_run(self.dir, k);
        if let (Some(run), Some(signal)) = (&t.run, &t.signal) {
            // The trial could not write its own ending.
            mark_killed(run, signal);
        }
        let reached = matches!(t.status.as_str(), "paused" | "completed");
        if let (Some(asha), Some(p), Some(run), true) = (asha, self.pruning, &t.run, reached) {
            let (value, epochs) = rung_result(run, &p.metric);
            t.epochs = Some(epochs);
            // A trial that stopped early (early stopping) before its rung is just completed.
            if t.status == "paused" || epochs >= asha.target(k) {
                asha.report(k, value);
                t.rungs.push(RungResult { epochs, value });
            }
            if t.status == "paused" {
                errln!(
                    "trial {k} paused at {epochs} epochs: {} {value:.4}",
                    p.metric
                );
                return;
            }
        }
        match &t.signal {
            Some(signal) => errln!(
                "trial {k} failed: killed by {signal} (see {})",
                t.log.display()
            ),
            None => errln!("trial {k} {} (see {})", t.status, t.log.display()),
        }
    }
}

/// A trial's status from how its process ended. A trial interrupted by the sweep's Ctrl-C exits
/// 130 itself (its handler checkpoints first); one that dies of a signal was killed from
/// outside (the OOM killer, `kill -9`, `scancel`) and failed.
fn status_of(ending: &Ending) -> &'static str {
    match ending {
        Ending::Exited(0) => "completed",
        Ending::Exited(EXIT_INTERRUPTED) => "interrupted",
        Ending::Exited(EXIT_PAUSED) => "paused",
        _ => "failed",
    }
}

/// A paused trial's ranked metric (NaN where it was not logged) and its epochs, from its run.json.
fn rung_result(run: &Path, metric: &str) -> (f64, usize) {
    match RunRecord::load(&run.join("run.json")) {
        Ok(r) => (
            r.metrics.get(metric).copied().unwrap_or(f64::NAN),
            r.stages.iter().map(|s| s.epochs_completed).sum(),
        ),
        Err(_) => (f64::NAN, 0),
    }
}

/// A pruned trial's run.json says `pruned` instead of `paused`.
fn mark_pruned(run: &Path) {
    update_run_json(run, RunStatus::Paused, |record| {
        record.status = RunStatus::Pruned
    });
}

/// Applies `change` to a trial's run.json if it still says `status`; a run.json that cannot be
/// read is left as it is, one that cannot be written is a warning.
fn update_run_json(run: &Path, status: RunStatus, change: impl FnOnce(&mut RunRecord)) {
    let path = run.join("run.json");
    let Ok(mut record) = RunRecord::load(&path) else {
        return;
    };
    if record.status == status {
        change(&mut record);
        if let Err(e) = record.save(&path) {
            errln!("warning: {}: {e}", path.display());
        }
    }
}

fn create_sweep_dir(parent: &Path) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(parent)?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    for _ in 0..100 {
        let id = format!("{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = parent.join(format!("sweep-{id}"));
        if std::fs::create_dir(&dir).is_ok() {
            return Ok((dir, id));
        }
    }
    bail!("could not create a sweep folder under {}", parent.display())
}

/// A trial's run.json still says `running` when a signal killed it: it now says `failed`, and why.
fn mark_killed(run: &Path, signal: &str) {
    update_run_json(run, RunStatus::Running, |record| {
        record.status = RunStatus::Failed;
        record.ended_at = Some(chrono::Utc::now().to_rfc3339());
        record.error = Some(format!(
            "killed by {signal} (the out-of-memory killer sends SIGKILL)"
        ));
    });
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn a_trial_killed_by_a_signal_failed() {
        // Raw wait statuses: a signal number alone, or the exit code shifted by 8.
        let ending = |raw| status_of(&Ending::of(ExitStatus::from_raw(raw)));
        assert_eq!(ending(libc::SIGKILL), "failed");
        assert_eq!(ending(EXIT_INTERRUPTED << 8), "interrupted");
        assert_eq!(ending(EXIT_PAUSED << 8), "paused");
        assert_eq!(ending(0), "completed");
        assert_eq!(ending(1 << 8), "failed");
    }

    #[test]
    fn a_killed_trial_run_json_says_failed_and_why() {
        let dir = std::env::temp_dir().join(format!("pipe-killed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = serde_json::json!({
            "status": "running", "pipeline": "p", "run": "r", "spec_file": "p.toml",
            "started_at": "2026-12-01T00:00:00+00:00", "seed": 1, "device": "cpu",
            "pipe_version": "0", "burn_version": "0", "overrides": [],
            "params": {"total": 0, "trainable": 0, "non_trainable": 0},
            "rows": {"train": 0, "validation": 0, "test": 0}, "stages": [], "metrics": {}
        });
        std::fs::write(dir.join("run.json"), record.to_string()).unwrap();
        mark_killed(&dir, "SIGKILL");
        let after = RunRecord::load(&dir.join("run.json")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(after.status, RunStatus::Failed);
        assert!(after.error.unwrap().starts_with("killed by SIGKILL"));
    }
}
