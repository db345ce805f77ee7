//! `pipe run SPEC`: resolve, create the run folder, load data, fit the vectorizer, train every
//! stage, evaluate on the test rows, and leave run.json saying how it ended.
//! `pipe run --resume RUN` continues a killed or interrupted run from its last resume point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{
    DataFiles, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_PAUSED, Overrides,
    load_plan_with, load_run_plan, panic, progress,
};
use crate::backend::{DeviceChoice, dispatch_with, set_cpu_threads};
use crate::data::EncodedSplit;
use crate::data::{encode_splits, fit_vectorizer};
use crate::graph::{Plan, summary_table};
use crate::run::record::{BURN_VERSION, ParamCounts, Rows, git_rev};
use crate::run::{MetricsLog, RunDir, RunRecord, RunStatus, atomic_write};
use crate::spec::LoadedSpec;
use crate::spec::load::OverrideLayers;
use crate::text_table::{self, Align};
use crate::train::TrainOutcome;
use crate::train::engine::TrainJob;
use crate::train::resume::ResumeState;
use crate::vectorize::Vectorizer;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe run pipelines/agnews_transformer.toml\n  pipe run pipelines/agnews_transformer.toml --set stages.train.epochs=5 --set seed=7\n  pipe run pipelines/agnews_transformer.toml --set dataset.limit=500 --quiet\n  pipe run --resume runs/agnews_transformer/20261201-101500-1a2b3c"
)]
pub struct RunArgs {
    /// The pipeline file (or a run folder's pipeline.toml, to repeat that run).
    #[arg(required_unless_present = "resume")]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N` (overrides `runtime.device`).
    #[arg(long, value_parser = crate::backend::device_name)]
    pub device: Option<String>,
    /// `f32`, `bf16-mixed` (autocast: bf16 products on AMX tiles or the GPU, f32 master weights),
    /// `bf16`/`bf16-true` or `f16`/`16-true` (pure half precision); overrides
    /// `runtime.precision`.
    #[arg(long, value_name = "PRECISION")]
    pub precision: Option<String>,
    /// Where run folders go (overrides `runtime.runs_dir`).
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Data-parallel workers: `N` or `cuda:0,cuda:1` (overrides `runtime.devices`).
    #[arg(long, value_name = "N|LIST")]
    pub devices: Option<String>,
    /// Continue this run folder from its last resume point.
    #[arg(long, value_name = "RUN", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    /// Sweep trial number, recorded in run.json (set by `pipe sweep` and its Slurm script).
    #[arg(long)]
    pub trial: Option<usize>,
    /// Start from these weights (a model.safetensors or checkpoint of the same pipeline)
    /// instead of a fresh initialisation.
    #[arg(long, value_name = "FILE")]
    pub init_weights: Option<PathBuf>,
    /// Write the weights the run starts from to FILE (to start another run, e.g. on another
    /// device, from exactly the same point with --init-weights).
    #[arg(long, value_name = "FILE")]
    pub save_init: Option<PathBuf>,
    /// Create the run folder directly in this folder (a sweep's folder) instead of `<runs-dir>/<name>/`.
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// Stop cleanly (a resume point, status `paused`, exit code 3) once this many epochs,
    /// counted over all stages, have been trained; `--resume` continues it. `pipe sweep
    /// --prune` runs its trials rung by rung this way.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pause_after_epochs: Option<u64>,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// One JSON line per logged event on stdout, then a final `end` line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunArgs) -> Result<i32> {
    // The product is the run folder: a reader that goes away must not stop the training.
    crate::console::keep_running_when_closed();
    if let Some(dir) = args.resume.clone() {
        return resume(args, &dir);
    }
    let spec_path = args
        .spec
        .clone()
        .expect("clap requires SPEC without --resume");
    let mut layers = OverrideLayers::new_run(&args.overrides.sets);
    // Taken as the strings they are (a `C:\new` is not a TOML escape), named as the flags.
    if let Some(d) = &args.device {
        layers
            .flags
            .push(("--device".into(), "runtime.device".into(), d.clone()));
    }
    if let Some(p) = &args.precision {
        layers
            .flags
            .push(("--precision".into(), "runtime.precision".into(), p.clone()));
    }
    if let Some(r) = &args.runs_dir {
        let dir = r.display().to_string();
        layers
            .flags
            .push(("--runs-dir".into(), "runtime.runs_dir".into(), dir));
    }
    if let Some(d) = &args.devices {
        layers
            .flags
            .push(("--devices".into(), "runtime.devices".into(), d.clone()));
    }
    let (loaded, plan) = match load_plan_with(&spec_path, &layers, DataFiles::Cached) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut created = CreatedDirs(loaded.created_dirs.clone());
    if loaded.spec.stages.is_empty() {
        errln!(
            "{}: error: the pipeline has no [[stages]] to run",
            spec_path.display()
        );
        return Ok(EXIT_INVALID);
    }
    let device = match usable_device(&run_device(&loaded.spec.runtime)) {
        Ok(d) => d,
        Err(e) => {
            errln!("{}: error: {e}", loaded.source.value("runtime.device"));
            return Ok(EXIT_INVALID);
        }
    };
    set_cpu_threads(loaded.spec.runtime.threads)?;

    let runs_dir = PathBuf::from(&loaded.spec.runtime.runs_dir);
    let run = match &args.into {
        Some(dir) => RunDir::create_in(dir),
        None => RunDir::create(&runs_dir, &loaded.spec.name),
    }
    .with_context(|| format!("creating a run folder under {}", runs_dir.display()))?;
    created.keep();
    start_log(&run, false)?;
    let record = RunRecord {
        status: RunStatus::Running,
        pipeline: loaded.spec.name.clone(),
        run: run.name(),
        spec_file: spec_path.display().to_string(),
        started_at: chrono::Utc::now().to_rfc3339(),
        ended_at: None,
        duration_s: None,
        resumed_at: Vec::new(),
        trial: args.trial,
        seed: loaded.spec.seed,
        device: device.describe(),
        devices: devices_used(&loaded.spec.runtime),
        precision: Some(crate::backend::precision_used(
            loaded.spec.runtime.precision,
            &device,
        )),
        git_rev: git_rev(),
        pipe_version: env!("CARGO_PKG_VERSION").to_string(),
        burn_version: BURN_VERSION.to_string(),
        overrides: loaded.overrides.clone(),
        params: ParamCounts {
            total: plan.total_params(),
            trainable: plan.trainable_params(),
            non_trainable: plan.total_params() - plan.trainable_params(),
        },
        labels: loaded.spec.dataset.labels.clone(),
        labels_inferred: loaded.inferred_labels.is_some(),
        rows: Rows::default(),
        stages: Vec::new(),
        metrics: Default::default(),
        error: None,
    };
    write_static_files(&run, &loaded, &plan)?;
    record.save(&run.run_json())?;
    drive(&args, &loaded, &plan, &run, &device, record, None)
}

/// The folders resolving a new run's spec created (its data cache), removed again when the run
/// is refused before its own folder exists.
struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn resume(args: RunArgs, dir: &Path) -> Result<i32> {
    let changes = [
        args.runs_dir.is_some(),
        args.devices.is_some(),
        args.precision.is_some(),
    ];
    if !args.overrides.sets.is_empty() || changes.contains(&true) {
        errln!(
            "error: --resume continues a run exactly as it was set up; it takes no --set, --runs-dir, --devices or --precision"
        );
        return Ok(EXIT_INVALID);
    }
    let run = match RunDir::open(dir) {
        Ok(run) => run,
        Err(e) => {
            errln!("--resume {}: error: {e}", dir.display());
            return Ok(EXIT_INVALID);
        }
    };
    let mut record = match RunRecord::load(&run.run_json()) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot resume: {e:#}");
            return Ok(EXIT_INVALID);
        }
    };
    if record.status == RunStatus::Completed {
        errln!(
            "error: {} already completed; there is nothing to resume",
            run.path.display()
        );
        return Ok(EXIT_INVALID);
    }
    let state = match ResumeState::load(&run.checkpoints()) {
        Ok(Some(state)) => state,
        Ok(None) => {
            errln!(
                "error: {} stopped before its first resume point; start it again with `pipe run {}`",
                run.path.display(),
                run.pipeline().display()
            );
            return Ok(EXIT_INVALID);
        }
        Err(e) => {
            errln!("{e:#}");
            return Ok(EXIT_INVALID);
        }
    };
    // The run's own spec, as it is: overrides in the environment are for new runs.
    let (loaded, plan) = match load_run_plan(&run, DataFiles::Cached) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if let Err(e) = state.matches(&loaded, &run.checkpoints()) {
        errln!("{e}");
        return Ok(EXIT_INVALID);
    }
    let trained = state.epochs_trained();
    if let Some(n) = args.pause_after_epochs.filter(|&n| n as usize <= trained) {
        errln!(
            "--pause-after-epochs {n}: error: {} has already trained {trained} epochs",
            run.path.display()
        );
        return Ok(EXIT_INVALID);
    }
    let device_name = args
        .device
        .clone()
        .unwrap_or_else(|| run_device(&loaded.spec.runtime));
    let device = match usable_device(&device_name) {
        Ok(d) => d,
        Err(e) => {
            errln!("--device {device_name}: error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    set_cpu_threads(loaded.spec.runtime.threads)?;
    start_log(&run, true)?;
    record.status = RunStatus::Running;
    record.error = None;
    record.ended_at = None;
    record.resumed_at.push(chrono::Utc::now().to_rfc3339());
    record.save(&run.run_json())?;
    tracing::info!(
        stage = state.stage,
        epoch = state.epoch,
        batch = state.next_batch,
        "resume requested"
    );
    drive(&args, &loaded, &plan, &run, &device, record, Some(state))
}

/// The device `text` names, when this build and machine can run on it: asked before a run
/// folder is made (or a paused run is marked running), so that a refusal leaves nothing behind.
fn usable_device(text: &str) -> Result<DeviceChoice, String> {
    let device = DeviceChoice::parse(text)?;
    device.usable().map_err(|e| e.to_string())?;
    Ok(device)
}

/// Copies each pretrained encoder's config.json into the run folder: with the tokenizer in
/// vectorizer/ and the weights in the model, the run then needs nothing from the model's
/// source to predict, evaluate or export (see [`super::load_trained_plan`]).
fn save_pretrained_configs(plan: &Plan, run: &RunDir) -> Result<()> {
    for (layer, source) in plan.pretrained_configs() {
        let source = source.map_err(anyhow::Error::msg)?.join("config.json");
        let dir = run.pretrained_dir(&layer);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes =
            std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        atomic_write(&dir.join("config.json"), &bytes)?;
    }
    Ok(())
}

/// Trains, then records how the run ended in run.json and prints the results.
fn drive(
    args: &RunArgs,
    loaded: &LoadedSpec,
    plan: &Plan,
    run: &RunDir,
    device: &DeviceChoice,
    mut record: RunRecord,
    resume: Option<ResumeState>,
) -> Result<i32> {
    if !args.json {
        errln!("run folder: {}", run.path.display());
    }
    tracing::info!(
        run = %run.path.display(),
        cpu_threads = rayon::current_num_threads(),
        "run started"
    );
    let clock = Instant::now();
    let earlier_s = record.duration_s.unwrap_or(0.0);
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // Ctrl-C finishes the current step; the engine then checkpoints and returns.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                errln!("second interrupt: exiting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
            errln!("interrupted: finishing the current step and saving a checkpoint");
        });
    }

    // A panic (a bug) still leaves a run.json that says the run failed, and where.
    let run_json = run.run_json();
    let ending =
        panic::RunEnding::new(move |error| fail_saved_run(&run_json, earlier_s, clock, error));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute(
            args,
            loaded,
            plan,
            run,
            device,
            &mut record,
            interrupt,
            resume,
        )
    }));
    drop(ending);
    let panicked = caught.is_err();
    let result = caught.unwrap_or_else(|_| Err(anyhow::anyhow!(panic::first_panic())));
    stamp_end(&mut record, earlier_s, clock);
    let code = match result {
        Ok(outcome) => {
            record.stages = outcome.stages.clone();
            if let Some(last) = outcome.stages.last() {
                record.metrics = last.last.clone();
            }
            if let Some(test) = outcome.test {
                record.metrics.insert("test.loss".into(), test.loss);
                record.metrics.insert("test.accuracy".into(), test.accuracy);
                if let Some(f1) = test.macro_f1 {
                    record.metrics.insert("test.macro_f1".into(), f1);
                }
            }
            if outcome.paused {
                record.status = RunStatus::Paused;
                EXIT_PAUSED
            } else if outcome.interrupted {
                record.status = RunStatus::Interrupted;
                EXIT_INTERRUPTED
            } else {
                record.status = RunStatus::Completed;
                0
            }
        }
        Err(e) => {
            mark_failed(&mut record, format!("{e:#}"));
            // The panic hook has already printed its one line.
            if !panicked {
                errln!("error: {e:#}");
            }
            EXIT_FAILURE
        }
    };
    save_ending(&record, &run.run_json())?;
    if record.status == RunStatus::Completed
        && let Err(e) = crate::train::resume::discard(&run.checkpoints())
    {
        // The run is complete and recorded as such; a leftover resume point only costs space.
        tracing::warn!("removing the completed run's resume point: {e}");
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"event": "end", "status": record.status, "run": run.path, "metrics": record.metrics})
        );
    } else if code != EXIT_FAILURE {
        print_results(&record, run);
        if code == 0 && !args.quiet {
            print_next_steps(run, loaded.spec.dataset.test.as_deref());
        }
    }
    Ok(code)
}

/// How a run ends when its panic cannot unwind to `drive`'s catch (a `panic = "abort"` build,
/// [`panic::RunEnding`]): run.json as last saved, marked failed as `drive` marks it.
fn fail_saved_run(path: &Path, earlier_s: f64, clock: Instant, error: &str) {
    let Ok(mut record) = RunRecord::load(path) else {
        return;
    };
    stamp_end(&mut record, earlier_s, clock);
    mark_failed(&mut record, error.to_string());
    let _ = save_ending(&record, path);
}

/// When the run ended, and its training time over this session and the earlier ones.
fn stamp_end(record: &mut RunRecord, earlier_s: f64, clock: Instant) {
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    record.duration_s = Some(earlier_s + clock.elapsed().as_secs_f64());
}

fn mark_failed(record: &mut RunRecord, error: String) {
    tracing::error!(error = %error, "run failed");
    record.status = RunStatus::Failed;
    record.error = Some(error);
}

/// run.json as the run ended, and the log line that says so.
fn save_ending(record: &RunRecord, path: &Path) -> std::io::Result<()> {
    record.save(path)?;
    tracing::info!(status = ?record.status, "run ended");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn execute(
    args: &RunArgs,
    loaded: &LoadedSpec,
    plan: &Plan,
    run: &RunDir,
    device: &DeviceChoice,
    record: &mut RunRecord,
    interrupt: Arc<AtomicBool>,
    resume: Option<ResumeState>,
) -> Result<TrainOutcome> {
    let spec = &loaded.spec;
    let t = Instant::now();
    let vectorizer = if resume.is_some() {
        // A resumed run uses the vectorizer it was trained with.
        Vectorizer::load(&spec.vectorizer, &run.vectorizer_dir())?
    } else {
        let v = fit_vectorizer(spec, spec.runtime.data_cache().as_deref())?;
        v.save(&run.vectorizer_dir())?;
        save_pretrained_configs(plan, run)?;
        v
    };
    tracing::info!(
        vocab = vectorizer.vocab_size(),
        seconds = t.elapsed().as_secs_f64(),
        "vectorizer ready"
    );

    let t = Instant::now();
    let cache = spec.runtime.data_cache();
    let splits = encode_splits(&spec.dataset, spec.seed, &vectorizer, cache.as_deref())?;
    let rows = |s: &Option<EncodedSplit>| s.as_ref().map_or(0, EncodedSplit::len);
    record.rows = Rows {
        train: splits.train.len(),
        validation: rows(&splits.validation),
        test: rows(&splits.test),
    };
    record.save(&run.run_json())?;
    tracing::info!(
        train = record.rows.train,
        validation = record.rows.validation,
        test = record.rows.test,
        seconds = t.elapsed().as_secs_f64(),
        "data encoded"
    );
    let (train, validation, test) = (splits.train, splits.validation, splits.test);

    let mut log = match &resume {
        Some(state) => {
            MetricsLog::reopen(&run.metrics(), &run.timing(), state.metric_rows, args.json)?
        }
        None => MetricsLog::create(&run.metrics(), &run.timing(), args.json)?,
    };
    let mut progress = progress::for_terminal(args.quiet || args.json);
    if let Some(step) = panic::test_panic_step() {
        progress = Box::new(PanicAtStep {
            inner: progress,
            steps: 0,
            panic_at: step,
        });
    }
    let job = TrainJob {
        spec,
        plan,
        train: &train,
        validation: validation.as_ref(),
        test: test.as_ref(),
        test_is_validation: matches!(
            spec.dataset.validation,
            Some(crate::spec::Validation::Split(_))
        ),
        run,
        log: &mut log,
        progress: progress.as_mut(),
        interrupt,
        resume,
        init_weights: args.init_weights.clone(),
        save_init: args.save_init.clone(),
        pause_after_epochs: args.pause_after_epochs.map(|n| n as usize),
        workers: worker_indices(&spec.runtime),
    };
    dispatch_with(device, spec.runtime.precision, job)?
}

/// The device the run starts on: the first data-parallel worker's, else `runtime.device`.
/// (`pipe check` has already refused a `runtime.devices` that does not parse.)
fn run_device(runtime: &crate::spec::runtime::RuntimeSpec) -> String {
    match (&runtime.devices, runtime.worker_devices()) {
        (Some(_), Ok(workers)) => workers[0].clone(),
        _ => runtime.device.clone(),
    }
}

/// Each worker's device index (0 for CPU workers).
fn worker_indices(runtime: &crate::spec::runtime::RuntimeSpec) -> Vec<usize> {
    (runtime.worker_devices().unwrap_or_default().iter())
        .map(|d| match DeviceChoice::parse(d) {
            Ok(DeviceChoice::Cuda(i)) => i,
            _ => 0,
        })
        .collect()
}

/// run.json's `devices`: the CPU worker count, or the list of GPUs.
fn devices_used(runtime: &crate::spec::runtime::RuntimeSpec) -> serde_json::Value {
    let workers = runtime.worker_devices().unwrap_or_default();
    match workers.first().map(|d| d.starts_with("cuda")) {
        Some(true) => serde_json::json!(workers),
        _ => serde_json::json!(workers.len()),
    }
}

fn write_static_files(run: &RunDir, loaded: &LoadedSpec, plan: &Plan) -> Result<()> {
    let resolved = toml::to_string_pretty(&loaded.spec).context("serializing the resolved spec")?;
    let text = format!(
        "# Resolved by pipe {} from {} (overrides applied, defaults filled in).\n# `pipe run` on this file repeats the run.\n{resolved}",
        env!("CARGO_PKG_VERSION"),
        loaded.source.file
    );
    atomic_write(&run.pipeline(), text.as_bytes())?;
    atomic_write(
        &run.summary(),
        summary_table(&loaded.spec.name, plan).as_bytes(),
    )?;
    Ok(())
}

/// tracing → log.txt in the run folder (appended to when resuming).
fn start_log(run: &RunDir, append: bool) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(run.log())?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

fn print_results(record: &RunRecord, run: &RunDir) {
    outln!(
        "run {} {:?} in {:.1} s",
        run.path.display(),
        record.status,
        record.duration_s.unwrap_or(0.0)
    );
    let mut rows = Vec::new();
    for s in &record.stages {
        for split in ["train", "validation"] {
            if let (Some(l), Some(a)) = (
                s.last.get(&format!("{split}.loss")),
                s.last.get(&format!("{split}.accuracy")),
            ) {
                rows.push(vec![
                    s.name.clone(),
                    s.epochs_completed.to_string(),
                    split.to_string(),
                    format!("{l:.4}"),
                    format!("{a:.4}"),
                ]);
            }
        }
    }
    if let (Some(l), Some(a)) = (
        record.metrics.get("test.loss"),
        record.metrics.get("test.accuracy"),
    ) {
        rows.push(vec![
            String::new(),
            String::new(),
            "test".into(),
            format!("{l:.4}"),
            format!("{a:.4}"),
        ]);
    }
    let columns = [
        ("stage", Align::Left),
        ("epochs", Align::Right),
        ("split", Align::Left),
        ("loss", Align::Right),
        ("accuracy", Align::Right),
    ];
    out!("{}", text_table::plain(&columns, rows));
    for s in &record.stages {
        if let Some(e) = &s.stopped_early {
            let best = e
                .best_value
                .map_or("none".to_string(), |v| format!("{v:.4}"));
            let restored = if e.restored_best {
                "; its weights were restored"
            } else {
                ""
            };
            outln!(
                "stage {} stopped early at epoch {}, step {}: best {} {best} at step {}{restored}",
                s.name,
                e.epoch,
                e.step,
                e.monitor,
                e.best_step
            );
        }
    }
}

/// What to try with a finished run, on stderr (stdout keeps just the results), written with
/// the program as it was invoked so the lines can be pasted (`target/release/pipe` after
/// `cargo run`).
fn print_next_steps(run: &RunDir, test_file: Option<&str>) {
    let program = std::env::args().next().unwrap_or_else(|| "pipe".into());
    let dir = run.path.display();
    let runs = run.path.parent().map(|p| p.display().to_string());
    let data = test_file.unwrap_or("FILE");
    errln!("next:");
    errln!("  {program} eval {dir} --data {data}  # accuracy, per-class figures");
    errln!("  {program} predict {dir} \"Stocks rallied as oil prices fell\"");
    if let Some(runs) = runs {
        errln!("  {program} compare {runs}  # this run beside the others, --plot for curves");
    }
}

/// The test hook of [`panic::TEST_PANIC_ENV`]: reports progress as usual and panics at the
/// chosen optimizer step, inside the stage loop.
struct PanicAtStep {
    inner: Box<dyn crate::train::engine::Progress>,
    steps: usize,
    panic_at: usize,
}

impl crate::train::engine::Progress for PanicAtStep {
    fn stage_start(&mut self, stage: &str, epochs: usize, steps_per_epoch: usize) {
        self.inner.stage_start(stage, epochs, steps_per_epoch);
    }
    fn step(&mut self, epoch: usize, step: usize, loss: f64, accuracy: f64, samples_per_s: f64) {
        self.steps += 1;
        if self.steps == self.panic_at {
            panic!(
                "{} asked for a panic at step {}",
                panic::TEST_PANIC_ENV,
                self.steps
            );
        }
        self.inner.step(epoch, step, loss, accuracy, samples_per_s);
    }
    fn epoch_end(&mut self, row: &crate::run::MetricRow) {
        self.inner.epoch_end(row);
    }
    fn finish(&mut self) {
        self.inner.finish();
    }
    fn pass(&mut self, what: &str, done: usize, total: usize) {
        self.inner.pass(what, done, total);
    }
    fn evaluation(&mut self, what: &str, done: usize, total: usize) {
        self.inner.evaluation(what, done, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ending of a `panic = "abort"` build (this test build unwinds, so the hook never
    /// calls it here): run.json as last saved, failed with the panic's text, the rest kept.
    #[test]
    fn a_run_that_cannot_unwind_ends_failed_from_its_saved_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let saved: RunRecord = serde_json::from_value(serde_json::json!({
            "status": "running", "pipeline": "p", "run": "r", "spec_file": "p.toml",
            "started_at": "2026-12-02T00:00:00Z", "seed": 7, "device": "cpu (burn-flex)",
            "pipe_version": "0", "burn_version": BURN_VERSION, "overrides": [],
            "params": {"total": 3, "trainable": 3, "non_trainable": 0},
            "rows": {"train": 5, "validation": 0, "test": 2}, "stages": [], "metrics": {},
            "duration_s": 2.5
        }))
        .unwrap();
        saved.save(&path).unwrap();
        fail_saved_run(&path, 2.5, Instant::now(), "panicked at src/x.rs:1:2: boom");
        let ended = RunRecord::load(&path).unwrap();
        assert_eq!(ended.status, RunStatus::Failed);
        assert_eq!(
            ended.error.as_deref(),
            Some("panicked at src/x.rs:1:2: boom")
        );
        assert!(ended.ended_at.is_some());
        assert!(ended.duration_s.unwrap() >= 2.5);
        assert_eq!((ended.rows.train, ended.rows.test, ended.seed), (5, 2, 7));
        // Nothing beside run.json: the atomic write left no temporary file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
