//! One stage of the stage loop: its setup (freezing, optimizer, frozen-prefix features), the
//! batch step (gradients of a batch, on one worker or split over several), the epoch's batch
//! loop with its mid-epoch validation and resume points, and the epoch end (metrics, policies,
//! the epoch-end resume point, interrupts and pauses).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::batches::{batches_per_epoch, epoch_batches, epoch_seed, step_seed};
use super::early_stopping::validation_metrics;
use super::engine::{StageEnd, TrainRows, Trainer};
use super::evaluate::evaluate_with;
use super::freeze::set_trainable;
use super::metrics::{Running, correct, cross_entropy};
use super::optim::StageOptimizer;
use super::parallel::{ShardResult, worker_seed};
use super::policies::StagePolicies;
use super::prefix::FrozenPrefix;
use super::resume::{PointFiles, PointSums, ResumeAt, ResumeState};
use super::schedule::learning_rate;
use crate::graph::Graph;
use crate::graph::plan::glob_match;
use crate::layers::LayerForward;
use crate::layers::Value;
use crate::run::record::StageRecord;
use crate::run::{MetricRow, Score, TRAIN_STEP, TrainingPosition, checkpoint};
use crate::spec::StageSpec;

/// One stage in progress: its optimizer and frozen prefix, the optimizer steps taken, its
/// record so far and its policies.
pub(super) struct StageRun<'s, B: AutodiffBackend> {
    index: usize,
    spec: &'s StageSpec,
    name: String,
    started: Instant,
    optim: StageOptimizer<Graph<B>, B>,
    prefix: Option<FrozenPrefix<B>>,
    batches_per_epoch: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    base_lr: f64,
    step: usize,
    /// Every how many optimizer steps a `train_step` row is logged (`None`: never).
    log_every: Option<usize>,
    record: StageRecord,
    policies: StagePolicies,
}

/// One epoch in progress.
struct EpochRun {
    epoch: usize,
    running: Running,
    /// Rows already seen when the epoch was resumed inside (for the throughput).
    seen_before: usize,
    started: Instant,
    lr: f64,
    /// Set when early stopping ends the stage at a mid-epoch validation point.
    stopped_at: Option<Score>,
    /// The batches since the last `train_step` row.
    window: Running,
    /// When the window was (re)started in this process, and its rows then: the rows of a
    /// window resumed from a point were not timed here.
    window_started: (Instant, usize),
}

/// What the end of an epoch decided.
enum AfterEpoch {
    NextEpoch,
    /// Early stopping ended the stage.
    StageDone,
    Stop(StageEnd),
}

impl<'a, B: AutodiffBackend> Trainer<'a, B> {
    /// Runs stage `si`, from `resuming` when the resume point lies inside it.
    pub fn run_stage(
        &mut self,
        model: Graph<B>,
        si: usize,
        resuming: Option<&ResumeState>,
    ) -> Result<(Graph<B>, StageEnd)> {
        let (mut model, mut stage) = self.setup_stage(model, si, resuming)?;
        let first_epoch = resuming.map(|r| r.epoch).unwrap_or(1);
        for epoch in first_epoch..=stage.spec.epochs {
            let resumed = resuming.filter(|r| r.epoch == epoch);
            let (trained, after) = self.run_epoch(model, &mut stage, epoch, resumed)?;
            model = trained;
            match after {
                AfterEpoch::NextEpoch => {}
                AfterEpoch::StageDone => break,
                AfterEpoch::Stop(end) => return Ok((model, end)),
            }
        }
        self.finish_stage(stage);
        Ok((model, StageEnd::Finished))
    }

    /// The stage's record, with its time, joins the run's.
    fn finish_stage(&mut self, stage: StageRun<'a, B>) {
        self.record_stage_so_far(&stage);
    }

    /// Freezes the stage's layers, builds (or reloads) its optimizer and caches its frozen
    /// prefix's features.
    fn setup_stage(
        &mut self,
        model: Graph<B>,
        si: usize,
        resuming: Option<&ResumeState>,
    ) -> Result<(Graph<B>, StageRun<'a, B>)> {
        let (spec, plan) = (self.spec, self.plan);
        let stage = &spec.stages[si];
        let name = stage.name_or_default(si);
        let started = Instant::now();
        let frozen: Vec<bool> = (plan.layers.iter())
            .map(|l| !l.trainable || stage.freeze.iter().any(|p| glob_match(p, &l.name)))
            .collect();
        // `<layer>.<part>` patterns freeze parts of a layer (an encoder's embeddings, first
        // layers); the layer itself still trains.
        let parts: Vec<(usize, String)> = (stage.freeze.iter())
            .flat_map(|p| crate::graph::plan::frozen_parts(p, plan.layers.iter().map(Some)))
            .collect();
        let mut model = model;
        model.layers = (model.layers.into_iter().zip(&frozen).enumerate())
            .map(|(i, (layer, &f))| {
                let own: Vec<String> = (parts.iter())
                    .filter(|(l, _)| *l == i)
                    .map(|(_, p)| p.clone())
                    .collect();
                set_trainable(layer, !f).freeze_parts(&own)
            })
            .collect();
        tracing::info!(stage = %name, frozen = ?frozen, "stage start");

        let mut optim = StageOptimizer::<Graph<B>, B>::new(&stage.optimizer, stage.clip_norm);
        if let Some(state) = resuming.filter(|s| !s.optimizer_file.is_empty()) {
            let file = self.checkpoints.join(&state.optimizer_file);
            optim = optim.load(&file, &self.rows.device)?;
        }
        // Leading frozen layers run without autodiff; their vector outputs are cached.
        let prefix_len = (frozen.iter().take_while(|f| **f).count()).min(plan.layers.len() - 1);
        let mut prefix = (prefix_len > 0).then(|| FrozenPrefix::<B>::new(&model, prefix_len));
        if let Some(p) = prefix.as_mut().filter(|p| p.cacheable(plan)) {
            self.cache_prefix(p, stage, &name);
        }
        let per_epoch = batches_per_epoch(stage, self.rows.split.len());
        let steps_per_epoch = per_epoch.div_ceil(stage.gradient_accumulation);
        let record = resuming
            .and_then(|r| r.stages.get(si).cloned())
            .unwrap_or_else(|| StageRecord {
                name: name.clone(),
                ..Default::default()
            });
        // Early stopping and checkpoint retention, continued from a resume point inside the stage.
        let validated = self.validation.is_some();
        let policies = StagePolicies::new(stage, si, &name, validated, resuming);
        self.progress
            .stage_start(&name, stage.epochs, steps_per_epoch);
        let run = StageRun {
            index: si,
            spec: stage,
            started,
            optim,
            prefix,
            batches_per_epoch: per_epoch,
            steps_per_epoch,
            total_steps: steps_per_epoch * stage.epochs,
            base_lr: stage.optimizer.learning_rate(),
            step: resuming.map(|r| r.step).unwrap_or(0),
            log_every: stage.log_every(steps_per_epoch),
            record,
            policies,
            name,
        };
        Ok((model, run))
    }

    /// The frozen prefix's outputs for the train and validation rows, computed once (or read
    /// from the feature cache).
    fn cache_prefix(&mut self, prefix: &mut FrozenPrefix<B>, stage: &StageSpec, name: &str) {
        let t = Instant::now();
        let batch = stage.batch_size.max(64);
        let runtime = &self.spec.runtime;
        let store = (runtime.feature_cache)
            .then(|| std::path::PathBuf::from(&runtime.runs_dir).join(".feature-cache"));
        let (plan, device) = (self.plan, &self.rows.device);
        // The pass can take minutes (a frozen BERT over every row): it reports as it goes.
        let progress = &mut *self.progress;
        let what = format!("{name}: frozen features of the train rows");
        prefix.train_cache = Some(prefix.features(
            plan,
            self.rows.split,
            batch,
            device,
            store.as_deref(),
            &mut |done, total| progress.pass(&what, done, total),
        ));
        let what = format!("{name}: frozen features of the validation rows");
        prefix.validation_cache = (self.validation.as_ref()).map(|v| {
            let mut report = |done, total| progress.pass(&what, done, total);
            prefix.features(plan, v, batch, device, store.as_deref(), &mut report)
        });
        tracing::info!(stage = %name, layers = prefix.len, seconds = t.elapsed().as_secs_f64(), "frozen prefix features cached");
    }

    /// Validation of the current weights, through the stage's frozen prefix (and its cache).
    fn validate(&mut self, model: &Graph<B>, stage: &StageRun<'a, B>) -> Option<Score> {
        let split = self.validation?;
        let progress = &mut *self.progress;
        let what = format!("{}: validation", stage.name);
        Some(evaluate_with(
            &model.valid(),
            split,
            stage.spec,
            &self.rows.device,
            stage.prefix.as_ref(),
            &mut |done, total| progress.evaluation(&what, done, total),
        ))
    }

    /// Where training stands in `stage`, in epoch `epoch`.
    fn position(&self, stage: &StageRun<'a, B>, epoch: usize) -> TrainingPosition {
        let before: usize = self.outcome.stages.iter().map(|s| s.steps).sum();
        TrainingPosition {
            epoch,
            step: stage.step,
            global_step: before + stage.step,
            samples: self.samples,
        }
    }

    /// The `train_step` row of the batches since the previous one (none when there were no
    /// batches since, or step rows are off); its window starts again.
    fn log_step_row(&mut self, stage: &StageRun<'a, B>, ep: &mut EpochRun) -> Result<()> {
        if ep.window.seen == 0 || stage.log_every.is_none() {
            return Ok(());
        }
        let (started, seen_then) = ep.window_started;
        let timed = ep.window.seen.saturating_sub(seen_then);
        let rate = timed as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let elapsed = self.started.elapsed().as_secs_f64();
        let at = self.position(stage, ep.epoch);
        let score = ep.window.score();
        let row = MetricRow::new(&stage.name, TRAIN_STEP, at, score, ep.lr, rate, elapsed);
        self.log.log(&row)?;
        ep.window = Running::default();
        ep.window_started = (Instant::now(), 0);
        Ok(())
    }

    /// The gradients of one batch: on one worker, or split over the data-parallel workers and
    /// all-reduced. Dropout masks depend only on the batch's position, so a resumed run draws
    /// the same.
    fn batch_gradients(
        &self,
        model: &Graph<B>,
        stage: &StageRun<'a, B>,
        rows: &[usize],
        seed: u64,
    ) -> Result<ShardResult> {
        let step = BatchStep {
            rows: &self.rows,
            prefix: stage.prefix.as_ref(),
            accumulation: stage.spec.gradient_accumulation,
        };
        Ok(match &self.parallel {
            Some(dp) => dp.gradients(model, rows, |w, fork, part, share| {
                crate::fused::with_dropout_stream(worker_seed(seed, w), || {
                    step.gradients(fork, part, share, dp.device(w))
                })
            })?,
            None => {
                B::seed(&self.rows.device, seed);
                step.gradients(model, rows, 1.0, &self.rows.device)
            }
        })
    }

    /// One epoch's batches: gradients, optimizer steps, progress, validation every
    /// `validate_every` steps and resume points every `checkpoint_every` steps or on Ctrl-C;
    /// then the epoch end.
    fn run_epoch(
        &mut self,
        mut model: Graph<B>,
        stage: &mut StageRun<'a, B>,
        epoch: usize,
        resumed: Option<&ResumeState>,
    ) -> Result<(Graph<B>, AfterEpoch)> {
        let (si, spec) = (stage.index, stage.spec);
        let seed = epoch_seed(self.spec.seed, si, epoch);
        let batches = epoch_batches(self.rows.split, spec, seed, stage.batches_per_epoch);
        let window = resumed.map(|r| r.window).unwrap_or_default();
        let mut ep = EpochRun {
            epoch,
            running: resumed.map(ResumeState::running).unwrap_or_default(),
            seen_before: resumed.map(|r| r.seen).unwrap_or(0),
            started: Instant::now(),
            lr: stage.learning_rate(),
            stopped_at: None,
            window,
            window_started: (Instant::now(), window.seen),
        };
        let skip = resumed.map(|r| r.next_batch).unwrap_or(0);
        let mut accumulator = GradientsAccumulator::<Graph<B>>::new();
        let mut pending = 0usize;
        for (bi, rows) in batches.iter().enumerate().skip(skip) {
            let seed = step_seed(self.spec.seed, si, epoch, bi);
            let batch = self.batch_gradients(&model, stage, rows, seed)?;
            ep.running.add(batch.loss, batch.correct, rows.len());
            ep.window.add(batch.loss, batch.correct, rows.len());
            self.samples += rows.len();
            accumulator.accumulate(&model, batch.grads);
            pending += 1;
            let last_batch = bi + 1 == batches.len();
            if pending < spec.gradient_accumulation && !last_batch {
                continue;
            }
            ep.lr = stage.learning_rate();
            model = stage.optim.step(ep.lr, model, accumulator.grads());
            pending = 0;
            stage.step += 1;
            let rate = ep.rate();
            let in_epoch = stage.step - (epoch - 1) * stage.steps_per_epoch;
            let (loss, accuracy) = (ep.running.loss(), ep.running.accuracy());
            self.progress.step(epoch, in_epoch, loss, accuracy, rate);
            if step_row_due(stage.log_every, in_epoch, last_batch) {
                self.log_step_row(stage, &mut ep)?;
            }
            if !last_batch && self.mid_epoch_validation(&model, stage, &mut ep, rate)? {
                // The epoch end below ends the epoch here, then the stage.
                break;
            }
            let stop = self.interrupt.load(Ordering::SeqCst);
            let due = spec
                .checkpoint_every
                .is_some_and(|n| stage.step.is_multiple_of(n));
            if (stop || due) && !last_batch {
                self.mid_epoch_point(&model, stage, &ep, bi + 1, stop)?;
            }
            // On the epoch's last batch the epoch end writes the resume point.
            if stop && !last_batch {
                stage.record.steps = stage.step;
                self.record_stage_so_far(stage);
                self.outcome.interrupted = true;
                return Ok((model, AfterEpoch::Stop(StageEnd::Interrupted)));
            }
        }
        self.end_epoch(model, stage, ep)
    }

    /// The stage's record so far, with its time, joins the run's (a stage left mid-way on an
    /// interrupt or a pause, or a finished one).
    fn record_stage_so_far(&mut self, stage: &StageRun<'a, B>) {
        let mut record = stage.record.clone();
        record.seconds = stage.started.elapsed().as_secs_f64();
        self.outcome.stages.push(record);
    }

    /// The `validate_every` validation after an optimizer step: logged, and fed to early
    /// stopping. Whether the stage stops here.
    fn mid_epoch_validation(
        &mut self,
        model: &Graph<B>,
        stage: &mut StageRun<'a, B>,
        ep: &mut EpochRun,
        rate: f64,
    ) -> Result<bool> {
        let Some(every) = stage.spec.validate_every else {
            return Ok(false);
        };
        if !stage.step.is_multiple_of(every) {
            return Ok(false);
        }
        let Some(score) = self.validate(model, stage) else {
            return Ok(false);
        };
        let at = self.position(stage, ep.epoch);
        let elapsed = self.started.elapsed().as_secs_f64();
        let row = MetricRow::new(&stage.name, "validation", at, score, ep.lr, rate, elapsed);
        self.log.log(&row)?;
        let at = (ep.epoch, stage.step);
        let stop = (stage.policies).at_validation(score, at, model, &self.checkpoints)?;
        if stop {
            ep.stopped_at = Some(score);
        }
        Ok(stop)
    }

    /// A resume point inside the epoch, before batch `next_batch`; on an interrupt the
    /// weights are also kept as the stage's `last` checkpoint, before the point that lists it
    /// is committed.
    fn mid_epoch_point(
        &mut self,
        model: &Graph<B>,
        stage: &mut StageRun<'a, B>,
        ep: &EpochRun,
        next_batch: usize,
        interrupted: bool,
    ) -> Result<()> {
        let (si, step) = (stage.index, stage.step);
        if interrupted {
            let at = (ep.epoch, step);
            (stage.policies).at_interrupt(model, at, &self.checkpoints, &mut stage.record)?;
        }
        let mut stages = self.outcome.stages.clone();
        stage.record.steps = step;
        stages.push(stage.record.clone());
        let at = ResumeAt {
            stage: si,
            epoch: ep.epoch,
            next_batch,
            step,
        };
        let sums = PointSums {
            epoch: ep.running,
            window: ep.window,
            samples: self.samples,
        };
        let point = ResumeState::new(
            at,
            sums,
            stages,
            self.log.rows(),
            stage.policies.point_fields(true),
            PointFiles::mid_epoch(si, step),
            &self.fingerprint,
        );
        self.save_point(model, &stage.optim, point)
    }

    /// The epoch's train (and validation) rows, the policies' verdict, the epoch-end resume
    /// point, and whether the run goes on.
    fn end_epoch(
        &mut self,
        model: Graph<B>,
        stage: &mut StageRun<'a, B>,
        mut ep: EpochRun,
    ) -> Result<(Graph<B>, AfterEpoch)> {
        let (si, epoch, step) = (stage.index, ep.epoch, stage.step);
        // The epoch's last step logged its step row, unless early stopping ended the epoch
        // before it: the steps since the last row get theirs here.
        self.log_step_row(stage, &mut ep)?;
        let metrics = self.epoch_metrics(&model, stage, &ep)?;
        let stopped_mid = ep.stopped_at.is_some();
        let (model, stop) = stage.policies.at_epoch_end(
            model,
            &metrics,
            stopped_mid,
            (epoch, step),
            &self.checkpoints,
            &mut stage.record,
        )?;
        stage.record.last = metrics;
        // An epoch cut short by early stopping is not completed.
        stage.record.epochs_completed = epoch - usize::from(stopped_mid);
        stage.record.steps = step;

        // Every epoch end is a resume point: the next epoch (or stage) starts from here.
        let same_stage = epoch < stage.spec.epochs && !stop;
        let at = match same_stage {
            true => ResumeAt {
                stage: si,
                epoch: epoch + 1,
                next_batch: 0,
                step,
            },
            false => ResumeAt {
                stage: si + 1,
                epoch: 1,
                next_batch: 0,
                step: 0,
            },
        };
        let mut stages = self.outcome.stages.clone();
        let mut finished = stage.record.clone();
        finished.seconds = stage.started.elapsed().as_secs_f64();
        stages.push(finished);
        let sums = PointSums {
            samples: self.samples,
            ..PointSums::default()
        };
        let point = ResumeState::new(
            at,
            sums,
            stages,
            self.log.rows(),
            stage.policies.point_fields(same_stage),
            PointFiles::epoch_end(si, step, same_stage),
            &self.fingerprint,
        );
        self.save_point(&model, &stage.optim, point)?;
        let trained: usize = self.outcome.stages.iter().map(|s| s.epochs_completed).sum();
        // The last epoch of the last stage is not a pause: the run completes.
        let pause = self
            .pause_after_epochs
            .is_some_and(|n| trained + epoch >= n)
            && at.stage < self.spec.stages.len();
        if self.interrupt.load(Ordering::SeqCst) || pause {
            self.record_stage_so_far(stage);
            self.outcome.paused = pause;
            self.outcome.interrupted = !pause;
            let end = if pause {
                StageEnd::Paused
            } else {
                StageEnd::Interrupted
            };
            return Ok((model, AfterEpoch::Stop(end)));
        }
        Ok((
            model,
            if stop {
                AfterEpoch::StageDone
            } else {
                AfterEpoch::NextEpoch
            },
        ))
    }

    /// Logs the epoch's train row and (unless early stopping validated mid-epoch) a
    /// validation of the epoch's weights; the metrics the policies judge.
    fn epoch_metrics(
        &mut self,
        model: &Graph<B>,
        stage: &StageRun<'a, B>,
        ep: &EpochRun,
    ) -> Result<BTreeMap<String, f64>> {
        let at = self.position(stage, ep.epoch);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = ep.running.seen as f64 / ep.started.elapsed().as_secs_f64().max(1e-9);
        let train = ep.running.score();
        let train_row = MetricRow::new(&stage.name, "train", at, train, ep.lr, rate, elapsed);
        self.log.log(&train_row)?;
        self.progress.epoch_end(&train_row);
        let mut metrics = BTreeMap::from([
            ("train.loss".to_string(), train.loss),
            ("train.accuracy".to_string(), train.accuracy),
        ]);
        let t = Instant::now();
        // A stage stopped mid-epoch was validated (and logged) at the step it stopped at.
        let validated = match ep.stopped_at {
            Some(_) => None,
            None => self.validate(model, stage),
        };
        if let Some(score) = validated {
            let rows = self.validation.map_or(0, |v| v.len());
            let rate = rows as f64 / t.elapsed().as_secs_f64().max(1e-9);
            let elapsed = self.started.elapsed().as_secs_f64();
            let row = MetricRow::new(&stage.name, "validation", at, score, ep.lr, rate, elapsed);
            self.log.log(&row)?;
            self.progress.epoch_end(&row);
        }
        if let Some(score) = validated.or(ep.stopped_at) {
            metrics.extend(validation_metrics(score));
        }
        tracing::info!(stage = %stage.name, epoch = ep.epoch, loss = train.loss, accuracy = train.accuracy, "epoch end");
        Ok(metrics)
    }

    /// Writes model and optimizer under the point's (new) names, then commits the pointer.
    fn save_point(
        &mut self,
        model: &Graph<B>,
        optim: &StageOptimizer<Graph<B>, B>,
        point: ResumeState,
    ) -> Result<()> {
        let dir: &Path = &self.checkpoints;
        checkpoint::save(model, &dir.join(&point.model_file))?;
        if !point.optimizer_file.is_empty() {
            optim.save(&dir.join(&point.optimizer_file))?;
        }
        point.commit(dir, self.last_point.as_ref())?;
        self.last_point = Some(point);
        Ok(())
    }
}

impl<B: AutodiffBackend> StageRun<'_, B> {
    /// The scheduled learning rate at the current step.
    fn learning_rate(&self) -> f64 {
        let schedule = &self.spec.schedule;
        learning_rate(schedule, self.base_lr, self.step, self.total_steps)
    }
}

/// Whether the optimizer step just taken, the `in_epoch`-th of its epoch, ends the window of
/// a `train_step` row: every `every` steps of the epoch, and at its last step, so that the
/// epoch's step rows cover all of its steps and the last one ends where the epoch does.
fn step_row_due(every: Option<usize>, in_epoch: usize, last_of_epoch: bool) -> bool {
    every.is_some_and(|n| last_of_epoch || in_epoch.is_multiple_of(n))
}

impl EpochRun {
    /// Training throughput since the epoch (or its resumption) started, in rows per second.
    fn rate(&self) -> f64 {
        let seen = self.running.seen - self.seen_before;
        seen as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

/// What one worker needs to compute a batch's gradients.
struct BatchStep<'r, 'a, B: AutodiffBackend> {
    rows: &'r TrainRows<'a, B>,
    prefix: Option<&'r FrozenPrefix<B>>,
    accumulation: usize,
}

impl<B: AutodiffBackend> BatchStep<'_, '_, B> {
    /// One worker's gradients of `rows` on device `on`, its loss scaled by `share` (its part
    /// of the batch) and by the accumulation; with one worker this is the plain step.
    fn gradients(
        &self,
        model: &Graph<B>,
        rows: &[usize],
        share: f64,
        on: &B::Device,
    ) -> ShardResult {
        let (inputs, labels) = self.rows.split.batch::<B>(rows, &self.rows.device);
        let moved = on != &self.rows.device;
        let (inputs, labels) = match moved {
            true => (inputs.to_device(on), labels.to_device(on)),
            false => (inputs, labels),
        };
        let logits = match self.prefix {
            Some(p) => {
                let cache = p.train_cache.as_ref();
                let mut given = p.given(self.rows.split, cache, rows, &self.rows.device);
                if moved {
                    given = to_device(given, on);
                }
                model.logits_from(&inputs, p.len, given)
            }
            None => model.logits(&inputs),
        };
        let loss = cross_entropy(logits.clone(), labels.clone());
        let loss_value: f64 = loss.clone().into_scalar().elem::<f64>();
        let right = correct(logits.detach(), labels);
        let loss = if share != 1.0 {
            loss.mul_scalar(share)
        } else {
            loss
        };
        let scaled = if self.accumulation > 1 {
            loss.div_scalar(self.accumulation as f64)
        } else {
            loss
        };
        ShardResult {
            grads: GradientsParams::from_grads(scaled.backward(), model),
            loss: loss_value,
            correct: right,
        }
    }
}

/// A frozen prefix's outputs, moved to a worker's device.
fn to_device<B: Backend>(
    outputs: Vec<Vec<Option<Value<B>>>>,
    device: &B::Device,
) -> Vec<Vec<Option<Value<B>>>> {
    (outputs.into_iter())
        .map(|layer| {
            layer
                .into_iter()
                .map(|v| v.map(|v| v.to_device(device)))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::step_row_due;

    #[test]
    fn step_rows_fall_every_n_steps_and_at_the_epoch_end() {
        // 10 steps an epoch, a row every 4: after steps 4, 8 and the last, 10.
        let due: Vec<usize> = (1..=10)
            .filter(|&s| step_row_due(Some(4), s, s == 10))
            .collect();
        assert_eq!(due, [4, 8, 10]);
        let every: Vec<usize> = (1..=3)
            .filter(|&s| step_row_due(Some(1), s, s == 3))
            .collect();
        assert_eq!(every, [1, 2, 3]);
        assert!(!step_row_due(None, 4, true), "log_every_steps = 0: none");
    }
}
