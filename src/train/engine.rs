//! The run's training: the model built (fresh, from given weights or from a resume point), its
//! stages run in order (stage.rs: stage setup, the batch step and the epoch end), then the test
//! evaluation (evaluate.rs) and the final weights.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::evaluate::TestAfter;
use super::parallel::DataParallel;
use super::resume::{ResumeState, SpecFingerprint};
use crate::backend::BackendTask;
use crate::data::EncodedSplit;
use crate::graph::{Graph, Plan};
use crate::run::record::StageRecord;
use crate::run::{MetricRow, MetricsLog, RunDir, Score, checkpoint};
use crate::spec::Spec;

/// How progress is shown.
pub trait Progress {
    fn stage_start(&mut self, stage: &str, epochs: usize, steps_per_epoch: usize);
    fn step(&mut self, epoch: usize, step: usize, loss: f64, accuracy: f64, samples_per_s: f64);
    fn epoch_end(&mut self, row: &MetricRow);
    fn finish(&mut self);
    /// A pass over rows that is not training (the frozen encoder's features): `done` of
    /// `total` rows so far.
    fn pass(&mut self, _what: &str, _done: usize, _total: usize) {}
    /// A pass over held-out rows (validation, test): `done` of `total` rows so far. Most are
    /// short; a long one (a large encoder, many rows) should still show it is alive.
    fn evaluation(&mut self, _what: &str, _done: usize, _total: usize) {}
}

pub struct TrainJob<'a> {
    pub spec: &'a Spec,
    pub plan: &'a Plan,
    pub train: &'a EncodedSplit,
    pub validation: Option<&'a EncodedSplit>,
    pub test: Option<&'a EncodedSplit>,
    /// The validation rows are the test rows: the last validation is the test result.
    pub test_is_validation: bool,
    pub run: &'a RunDir,
    pub log: &'a mut MetricsLog,
    pub progress: &'a mut dyn Progress,
    pub interrupt: Arc<AtomicBool>,
    /// Continue from this resume point instead of starting fresh.
    pub resume: Option<ResumeState>,
    /// Weights to start from instead of a fresh initialisation.
    pub init_weights: Option<PathBuf>,
    /// Where to write the starting weights.
    pub save_init: Option<PathBuf>,
    /// Stop at the epoch end where this many epochs (over all stages) have been trained,
    /// leaving a resume point: a pruned sweep runs its trials rung by rung this way.
    pub pause_after_epochs: Option<usize>,
    /// Data-parallel workers, by device index (CPU workers: all 0). One = no data parallelism.
    pub workers: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct TrainOutcome {
    pub stages: Vec<StageRecord>,
    pub test: Option<Score>,
    pub interrupted: bool,
    /// Stopped at `pause_after_epochs`, at a resume point.
    pub paused: bool,
}

impl BackendTask for TrainJob<'_> {
    type Output = Result<TrainOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<TrainOutcome> {
        train::<B>(self, device)
    }
}

/// How a stage's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StageEnd {
    /// All its epochs ran, or early stopping ended it: the next stage follows.
    Finished,
    /// Ctrl-C: the run stops at the resume point just written.
    Interrupted,
    /// `pause_after_epochs` reached at an epoch end.
    Paused,
}

/// The training rows and the device batches are made on. Shared by the data-parallel workers.
pub(super) struct TrainRows<'a, B: AutodiffBackend> {
    pub split: &'a EncodedSplit,
    pub device: B::Device,
}

/// What every stage of one run shares: the job, the uploaded splits, the workers and the
/// last committed resume point; `outcome` collects the stage records.
pub(super) struct Trainer<'a, B: AutodiffBackend> {
    pub spec: &'a Spec,
    pub plan: &'a Plan,
    pub rows: TrainRows<'a, B>,
    pub validation: Option<&'a EncodedSplit>,
    pub log: &'a mut MetricsLog,
    pub progress: &'a mut dyn Progress,
    pub interrupt: Arc<AtomicBool>,
    pub pause_after_epochs: Option<usize>,
    pub parallel: Option<DataParallel<B>>,
    pub checkpoints: PathBuf,
    pub started: Instant,
    /// Each resume point records what it was trained on: `--resume` refuses an edited spec.
    pub fingerprint: SpecFingerprint,
    pub last_point: Option<ResumeState>,
    pub outcome: TrainOutcome,
    /// Training rows seen in the run so far, over all stages (metrics.csv's `samples`).
    pub samples: usize,
}

fn train<B: AutodiffBackend>(job: TrainJob<'_>, device: B::Device) -> Result<TrainOutcome> {
    let TrainJob {
        spec,
        plan,
        train,
        validation,
        test,
        test_is_validation,
        run,
        log,
        progress,
        interrupt,
        resume,
        init_weights,
        save_init,
        pause_after_epochs,
        workers,
    } = job;
    B::seed(&device, spec.seed);
    let parallel = match workers.len() {
        0 | 1 => None,
        _ => Some(DataParallel::<B>::start(worker_devices::<B>(
            &device, &workers,
        )?)?),
    };
    // elapsed_s in metrics.csv counts from here, loading the starting weights included.
    let started = Instant::now();
    let checkpoints = run.checkpoints();
    let starting = StartingWeights {
        resume: resume.as_ref(),
        init_weights: init_weights.as_deref(),
        save_init: save_init.as_deref(),
    };
    let mut model = starting.model::<B>(plan, &device, &checkpoints)?;
    let mut trainer = Trainer {
        spec,
        plan,
        // Uploaded once; batches are gathered on the device.
        rows: TrainRows {
            split: train,
            device: device.clone(),
        },
        validation,
        log,
        progress,
        interrupt,
        pause_after_epochs,
        parallel,
        checkpoints,
        started,
        fingerprint: SpecFingerprint::of(spec),
        last_point: resume.clone(),
        outcome: TrainOutcome::default(),
        samples: resume.as_ref().map_or(0, |r| r.samples),
    };
    if let Some(state) = &resume {
        trainer.outcome.stages = state.stages[..state.stage].to_vec();
    }
    for si in 0..spec.stages.len() {
        if resume.as_ref().is_some_and(|r| si < r.stage) {
            continue;
        }
        let resuming = resume.as_ref().filter(|r| r.stage == si);
        let (trained, end) = trainer.run_stage(model, si, resuming)?;
        model = trained;
        if end != StageEnd::Finished {
            trainer.progress.finish();
            return Ok(trainer.outcome);
        }
    }
    trainer.progress.finish();

    if let Some(test) = test.filter(|t| !t.is_empty()) {
        let ended = TestAfter {
            spec,
            stages: &trainer.outcome.stages,
            samples: trainer.samples,
            test_is_validation,
            started: trainer.started,
        };
        let progress = &mut *trainer.progress;
        let report = &mut |done, total| progress.evaluation("test", done, total);
        let score = ended.evaluate(&model.valid(), test, trainer.log, &device, report)?;
        trainer.outcome.test = Some(score);
    }
    // Final weights without autodiff state, so they load on any backend; most often the same
    // bytes as the last stage's newest or best checkpoint, which they then share.
    let last_stage = spec.stages.len().saturating_sub(1);
    let last_stage = (spec.stages.get(last_stage)).map(|s| s.name_or_default(last_stage));
    let twins = ["last", "best"]
        .map(|which| run.checkpoint(&last_stage.clone().unwrap_or_default(), which));
    checkpoint::save_or_link(&model.valid(), &run.model_weights(), &twins)?;
    Ok(trainer.outcome)
}

/// Where the first weights come from: a resume point, a weights file, or a fresh draw (which
/// may be saved for another run to start from).
struct StartingWeights<'a> {
    resume: Option<&'a ResumeState>,
    init_weights: Option<&'a std::path::Path>,
    save_init: Option<&'a std::path::Path>,
}

impl StartingWeights<'_> {
    fn model<B: AutodiffBackend>(
        &self,
        plan: &Plan,
        device: &B::Device,
        checkpoints: &std::path::Path,
    ) -> Result<Graph<B>> {
        let mut model =
            Graph::<B>::init(plan, device, self.resume.is_none()).map_err(anyhow::Error::msg)?;
        if let Some(state) = self.resume {
            model = checkpoint::load(model, &checkpoints.join(&state.model_file))?;
            tracing::info!(
                stage = state.stage,
                epoch = state.epoch,
                batch = state.next_batch,
                "resuming"
            );
            return Ok(model);
        }
        if let Some(file) = self.init_weights {
            model = checkpoint::load(model, file)?;
            tracing::info!(file = %file.display(), "initial weights loaded");
        }
        if let Some(file) = self.save_init {
            checkpoint::save(&model.valid(), file)?;
        }
        Ok(model)
    }
}

/// The devices of the data-parallel workers: `device` itself for CPU workers, else the
/// device of `device`'s kind with each index, computing in `device`'s float dtype (the
/// run's precision).
fn worker_devices<B: AutodiffBackend>(
    device: &B::Device,
    workers: &[usize],
) -> Result<Vec<B::Device>> {
    use burn::tensor::backend::{Device as _, DeviceId};
    let id = device.to_id();
    let float = burn::tensor::get_device_settings::<B>(device).float_dtype;
    (workers.iter())
        .map(|&i| match i == id.index_id as usize {
            true => Ok(device.clone()),
            false => {
                let other = B::Device::from_id(DeviceId::new(id.type_id, i as u16));
                crate::backend::set_float_dtype::<B>(&other, float)?;
                Ok(other)
            }
        })
        .collect()
}
