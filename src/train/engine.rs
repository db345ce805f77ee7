//! The stage loop: for each stage, freeze what it says, build its optimizer, run its epochs
//! (shuffled with the pipeline seed), validate, checkpoint; then evaluate on the test rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::early_stopping::validation_metrics;
use super::freeze::set_trainable;
use super::metrics::{Running, correct, cross_entropy};
use super::optim::StageOptimizer;
use super::parallel::{DataParallel, ShardResult, worker_seed};
use super::policies::StagePolicies;
use super::prefix::FrozenPrefix;
use super::resume::{ResumeState, SpecFingerprint};
use super::schedule::learning_rate;
use crate::backend::BackendTask;
use crate::data::batch::{DeviceSplit, EncodedSplit};
use crate::graph::plan::glob_match;
use crate::graph::{Graph, Plan};
use crate::run::record::StageRecord;
use crate::run::{MetricRow, MetricsLog, RunDir, checkpoint};
use crate::spec::{Spec, StageSpec};

/// How progress is shown.
pub trait Progress {
    fn stage_start(&mut self, stage: &str, epochs: usize, steps_per_epoch: usize);
    fn step(&mut self, epoch: usize, step: usize, loss: f64, accuracy: f64, samples_per_s: f64);
    fn epoch_end(&mut self, row: &MetricRow);
    fn finish(&mut self);
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
    pub init_weights: Option<std::path::PathBuf>,
    /// Where to write the starting weights.
    pub save_init: Option<std::path::PathBuf>,
    /// Stop at the epoch end where this many epochs (over all stages) have been trained,
    /// leaving a resume point: a pruned sweep runs its trials rung by rung this way.
    pub pause_after_epochs: Option<usize>,
    /// Data-parallel workers, by device index (CPU workers: all 0). One = no data parallelism.
    pub workers: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct StageOutcome {
    pub record: StageRecord,
}

#[derive(Clone, Debug, Default)]
pub struct TrainOutcome {
    pub stages: Vec<StageRecord>,
    pub test: Option<(f64, f64)>,
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

/// Seed for the shuffle of one epoch: independent of how many random numbers anything else drew.
fn epoch_seed(seed: u64, stage: usize, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((stage as u64) << 32)
        .wrapping_add(epoch as u64)
}

fn batches_per_epoch(stage: &StageSpec, rows: usize) -> usize {
    let all = rows.div_ceil(stage.batch_size);
    match stage.steps_per_epoch {
        Some(steps) => all.min(steps * stage.gradient_accumulation),
        None => all,
    }
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
        ))?),
    };
    let mut model =
        Graph::<B>::init(plan, &device, resume.is_none()).map_err(anyhow::Error::msg)?;
    let mut outcome = TrainOutcome::default();
    let started = Instant::now();
    let checkpoints = run.checkpoints();
    if let Some(state) = &resume {
        model = checkpoint::load(model, &checkpoints.join(&state.model_file))?;
        outcome.stages = state.stages[..state.stage].to_vec();
        tracing::info!(
            stage = state.stage,
            epoch = state.epoch,
            batch = state.next_batch,
            "resuming"
        );
    }
    if let (None, Some(file)) = (&resume, &init_weights) {
        model = checkpoint::load(model, file)?;
        tracing::info!(file = %file.display(), "initial weights loaded");
    }
    if let (None, Some(file)) = (&resume, &save_init) {
        checkpoint::save(&model.valid(), file)?;
    }
    // Uploaded once; batches are gathered on the device.
    let train_dev = DeviceSplit::<B>::new(train, &device);
    let validation_dev = validation.map(|v| (v, DeviceSplit::<B::InnerBackend>::new(v, &device)));
    let mut last_point: Option<ResumeState> = resume.clone();
    // Each resume point records what it was trained on: `--resume` refuses an edited spec.
    let fingerprint = SpecFingerprint::of(spec);

    for (si, stage) in spec.stages.iter().enumerate() {
        let resuming = resume.as_ref().filter(|r| r.stage == si);
        if resume.as_ref().is_some_and(|r| si < r.stage) {
            continue;
        }
        let stage_name = stage.name_or_default(si);
        let stage_started = Instant::now();
        let frozen: Vec<bool> = plan
            .layers
            .iter()
            .map(|l| !l.trainable || stage.freeze.iter().any(|p| glob_match(p, &l.name)))
            .collect();
        model.layers = model
            .layers
            .into_iter()
            .zip(&frozen)
            .map(|(layer, &f)| set_trainable(layer, !f))
            .collect();
        tracing::info!(stage = %stage_name, frozen = ?frozen, "stage start");

        let mut optim = StageOptimizer::<Graph<B>, B>::new(&stage.optimizer, stage.clip_norm);
        if let Some(state) = resuming.filter(|s| !s.optimizer_file.is_empty()) {
            optim = optim.load(&checkpoints.join(&state.optimizer_file), &device)?;
        }
        // Leading frozen layers run without autodiff; their vector outputs are cached.
        let prefix_len = frozen
            .iter()
            .take_while(|f| **f)
            .count()
            .min(plan.layers.len() - 1);
        let mut prefix = (prefix_len > 0).then(|| FrozenPrefix::<B>::new(&model, prefix_len));
        if let Some(p) = prefix.as_mut().filter(|p| p.cacheable(plan)) {
            let t = Instant::now();
            let batch = stage.batch_size.max(64);
            let store = spec
                .runtime
                .feature_cache
                .then(|| std::path::PathBuf::from(&spec.runtime.runs_dir).join(".feature-cache"));
            p.train_cache = Some(p.features(plan, train, batch, &device, store.as_deref()));
            p.validation_cache =
                validation.map(|v| p.features(plan, v, batch, &device, store.as_deref()));
            tracing::info!(stage = %stage_name, layers = prefix_len, seconds = t.elapsed().as_secs_f64(), "frozen prefix features cached");
        }
        // Validation of the current weights, through the stage's frozen prefix (and its cache).
        let validate = |model: &Graph<B>| {
            validation_dev.as_ref().map(|(val, on_device)| {
                evaluate_with(
                    &model.valid(),
                    val,
                    on_device,
                    stage,
                    &device,
                    prefix.as_ref(),
                )
            })
        };
        // One worker's gradients of `rows`, its loss scaled by `share` (its part of the batch)
        // and by the accumulation; with one worker this is the plain step.
        let shard_gradients = |model: &Graph<B>, rows: &[usize], share: f64, on: &B::Device| {
            let (inputs, labels) = train_dev.batch(rows);
            let moved = on != &device;
            let (inputs, labels) = match moved {
                true => (inputs.to_device(on), labels.to_device(on)),
                false => (inputs, labels),
            };
            let logits = match &prefix {
                Some(p) => {
                    let mut given = p.given(train, p.train_cache.as_ref(), rows, &device);
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
            let scaled = if stage.gradient_accumulation > 1 {
                loss.div_scalar(stage.gradient_accumulation as f64)
            } else {
                loss
            };
            let grads = GradientsParams::from_grads(scaled.backward(), model);
            (grads, loss_value, right) as ShardResult
        };
        let per_epoch = batches_per_epoch(stage, train.len());
        let steps_per_epoch = per_epoch.div_ceil(stage.gradient_accumulation);
        let total_steps = steps_per_epoch * stage.epochs;
        let base_lr = stage.optimizer.learning_rate();
        let mut step = resuming.map(|r| r.step).unwrap_or(0);
        let mut record = resuming
            .and_then(|r| r.stages.get(si).cloned())
            .unwrap_or_else(|| StageRecord {
                name: stage_name.clone(),
                ..Default::default()
            });
        // Early stopping and checkpoint retention, continued from a resume point inside the stage.
        let mut policies =
            StagePolicies::new(stage, si, &stage_name, validation.is_some(), resuming);
        let first_epoch = resuming.map(|r| r.epoch).unwrap_or(1);
        progress.stage_start(&stage_name, stage.epochs, steps_per_epoch);

        for epoch in first_epoch..=stage.epochs {
            // Set when early stopping ends the stage at a mid-epoch validation point.
            let mut stopped_at: Option<(f64, f64)> = None;
            let resumed_epoch = resuming.filter(|r| r.epoch == epoch);
            let batch_rows =
                epoch_batches(train, stage, epoch_seed(spec.seed, si, epoch), per_epoch);
            let mut running = match resumed_epoch {
                Some(r) => Running {
                    loss_sum: r.loss_sum,
                    correct: r.correct,
                    seen: r.seen,
                },
                None => Running::default(),
            };
            let skip = resumed_epoch.map(|r| r.next_batch).unwrap_or(0);
            let mut accumulator = GradientsAccumulator::<Graph<B>>::new();
            let mut pending = 0usize;
            let epoch_started = Instant::now();
            let mut lr = learning_rate(&stage.schedule, base_lr, step, total_steps);
            let batches: Vec<&[usize]> = batch_rows.iter().map(Vec::as_slice).collect();
            for (bi, rows) in batches.iter().enumerate().skip(skip) {
                // Dropout masks depend only on the position, so a resumed run draws the same.
                let seed = step_seed(spec.seed, si, epoch, bi);
                let (grads, loss_value, right) = match &parallel {
                    Some(dp) => dp.gradients(&model, rows, |w, fork, part, share| {
                        crate::fused::with_dropout_stream(worker_seed(seed, w), || {
                            shard_gradients(fork, part, share, dp.device(w))
                        })
                    })?,
                    None => {
                        B::seed(&device, seed);
                        shard_gradients(&model, rows, 1.0, &device)
                    }
                };
                running.add(loss_value, right, rows.len());
                accumulator.accumulate(&model, grads);
                pending += 1;
                if pending < stage.gradient_accumulation && bi + 1 < batches.len() {
                    continue;
                }
                lr = learning_rate(&stage.schedule, base_lr, step, total_steps);
                model = optim.step(lr, model, accumulator.grads());
                pending = 0;
                step += 1;
                let rate = (running.seen - resumed_epoch.map(|r| r.seen).unwrap_or(0)) as f64
                    / epoch_started.elapsed().as_secs_f64().max(1e-9);
                progress.step(
                    epoch,
                    step - (epoch - 1) * steps_per_epoch,
                    running.loss(),
                    running.accuracy(),
                    rate,
                );
                if let Some(every) = stage.validate_every
                    && step % every == 0
                    && bi + 1 != batches.len()
                    && let Some((vl, va)) = validate(&model)
                {
                    log.log(&MetricRow {
                        stage: stage_name.clone(),
                        epoch,
                        step,
                        split: "validation".into(),
                        loss: vl,
                        accuracy: va,
                        lr,
                        samples_per_s: rate,
                        elapsed_s: started.elapsed().as_secs_f64(),
                    })?;
                    if policies.at_validation((vl, va), (epoch, step), &model, &checkpoints)? {
                        // The epoch end below ends the epoch here, then the stage.
                        stopped_at = Some((vl, va));
                        break;
                    }
                }
                let stop = interrupt.load(Ordering::SeqCst);
                let due = stage.checkpoint_every.is_some_and(|n| step % n == 0);
                if (stop || due) && bi + 1 < batches.len() {
                    if stop {
                        // Kept as a `last` before the point that lists it is committed.
                        policies.at_interrupt(&model, (epoch, step), &checkpoints, &mut record)?;
                    }
                    let (best_score, early_stopping, kept) = policies.point_fields(true);
                    let mut stages = outcome.stages.clone();
                    record.steps = step;
                    stages.push(record.clone());
                    let point = ResumeState {
                        stage: si,
                        epoch,
                        next_batch: bi + 1,
                        step,
                        loss_sum: running.loss_sum,
                        correct: running.correct,
                        seen: running.seen,
                        best_score,
                        stages,
                        metric_rows: log.rows(),
                        model_file: format!("resume-{si}-{step}.safetensors"),
                        optimizer_file: format!("resume-{si}-{step}-optimizer.mpk"),
                        spec: Some(fingerprint.clone()),
                        early_stopping,
                        checkpoints: kept,
                    };
                    save_point(&model, &optim, &point, &checkpoints, last_point.as_ref())?;
                    last_point = Some(point);
                }
                // On the epoch's last batch the epoch end below writes the resume point.
                if stop && bi + 1 < batches.len() {
                    record.steps = step;
                    record.seconds = stage_started.elapsed().as_secs_f64();
                    outcome.stages.push(record);
                    outcome.interrupted = true;
                    progress.finish();
                    return Ok(outcome);
                }
            }
            let rate = running.seen as f64 / epoch_started.elapsed().as_secs_f64().max(1e-9);
            let train_row = MetricRow {
                stage: stage_name.clone(),
                epoch,
                step,
                split: "train".into(),
                loss: running.loss(),
                accuracy: running.accuracy(),
                lr,
                samples_per_s: rate,
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            log.log(&train_row)?;
            progress.epoch_end(&train_row);
            let mut metrics = std::collections::BTreeMap::new();
            metrics.insert("train.loss".to_string(), train_row.loss);
            metrics.insert("train.accuracy".to_string(), train_row.accuracy);
            let t = Instant::now();
            // A stage stopped mid-epoch was validated (and logged) at the step it stopped at.
            if let Some((vl, va)) = stopped_at.is_none().then(|| validate(&model)).flatten() {
                let val_rows = validation.map_or(0, |v| v.len());
                let row = MetricRow {
                    stage: stage_name.clone(),
                    epoch,
                    step,
                    split: "validation".into(),
                    loss: vl,
                    accuracy: va,
                    lr,
                    samples_per_s: val_rows as f64 / t.elapsed().as_secs_f64().max(1e-9),
                    elapsed_s: started.elapsed().as_secs_f64(),
                };
                log.log(&row)?;
                progress.epoch_end(&row);
                metrics.insert("validation.loss".to_string(), vl);
                metrics.insert("validation.accuracy".to_string(), va);
            }
            if let Some((vl, va)) = stopped_at {
                metrics.extend(validation_metrics(vl, va));
            }
            let at = (epoch, step);
            let stopped_mid = stopped_at.is_some();
            let (kept_model, stop) = policies.at_epoch_end(
                model,
                &metrics,
                stopped_mid,
                at,
                &checkpoints,
                &mut record,
            )?;
            model = kept_model;
            record.last = metrics;
            // An epoch cut short by early stopping is not completed.
            record.epochs_completed = epoch - usize::from(stopped_mid);
            record.steps = step;
            tracing::info!(stage = %stage_name, epoch, loss = train_row.loss, accuracy = train_row.accuracy, "epoch end");

            // Every epoch end is a resume point: the next epoch (or stage) starts from here.
            let (next_stage, next_epoch) = if epoch == stage.epochs || stop {
                (si + 1, 1)
            } else {
                (si, epoch + 1)
            };
            let (best_score, early_stopping, kept) = policies.point_fields(next_stage == si);
            let mut stages = outcome.stages.clone();
            let mut finished = record.clone();
            finished.seconds = stage_started.elapsed().as_secs_f64();
            stages.push(finished);
            let point = ResumeState {
                stage: next_stage,
                epoch: next_epoch,
                next_batch: 0,
                step: if next_stage == si { step } else { 0 },
                loss_sum: 0.0,
                correct: 0,
                seen: 0,
                best_score,
                stages,
                metric_rows: log.rows(),
                model_file: format!("resume-{si}-{step}-end.safetensors"),
                // A new stage starts with a fresh optimizer.
                optimizer_file: if next_stage == si {
                    format!("resume-{si}-{step}-end-optimizer.mpk")
                } else {
                    String::new()
                },
                spec: Some(fingerprint.clone()),
                early_stopping,
                checkpoints: kept,
            };
            save_point(&model, &optim, &point, &checkpoints, last_point.as_ref())?;
            last_point = Some(point);
            let trained: usize = outcome.stages.iter().map(|s| s.epochs_completed).sum();
            // The last epoch of the last stage is not a pause: the run completes.
            let pause = pause_after_epochs.is_some_and(|n| trained + epoch >= n)
                && next_stage < spec.stages.len();
            if interrupt.load(Ordering::SeqCst) || pause {
                record.seconds = stage_started.elapsed().as_secs_f64();
                outcome.stages.push(record);
                outcome.paused = pause;
                outcome.interrupted = !pause;
                progress.finish();
                return Ok(outcome);
            }
            if stop {
                break;
            }
        }
        record.seconds = stage_started.elapsed().as_secs_f64();
        outcome.stages.push(record);
    }
    progress.finish();

    if let Some(test) = test.filter(|t| !t.is_empty()) {
        let ended = TestAfter {
            spec,
            stages: &outcome.stages,
            test_is_validation,
            started,
        };
        outcome.test = Some(ended.evaluate(&model.valid(), test, log, &device)?);
    }
    // Final weights without autodiff state, so they load on any backend.
    checkpoint::save(&model.valid(), &run.model_weights())?;
    Ok(outcome)
}

/// The devices of the data-parallel workers: `device` itself for CPU workers, else the
/// device of `device`'s kind with each index.
fn worker_devices<B: AutodiffBackend>(device: &B::Device, workers: &[usize]) -> Vec<B::Device> {
    use burn::tensor::backend::{Device as _, DeviceId};
    let id = device.to_id();
    (workers.iter())
        .map(|&i| match i == id.index_id as usize {
            true => device.clone(),
            false => B::Device::from_id(DeviceId::new(id.type_id, i as u16)),
        })
        .collect()
}

/// A frozen prefix's outputs, moved to a worker's device.
fn to_device<B: Backend>(
    outputs: Vec<Vec<Option<crate::layers::Value<B>>>>,
    device: &B::Device,
) -> Vec<Vec<Option<crate::layers::Value<B>>>> {
    (outputs.into_iter())
        .map(|layer| {
            layer
                .into_iter()
                .map(|v| v.map(|v| v.to_device(device)))
                .collect()
        })
        .collect()
}

/// Where the stages left off, for the test evaluation after the last one.
struct TestAfter<'a> {
    spec: &'a Spec,
    stages: &'a [StageRecord],
    test_is_validation: bool,
    started: Instant,
}

impl TestAfter<'_> {
    /// Test loss and accuracy of the final weights, logged as the `test` row of metrics.csv.
    fn evaluate<B: Backend>(
        &self,
        model: &Graph<B>,
        test: &EncodedSplit,
        log: &mut MetricsLog,
        device: &B::Device,
    ) -> Result<(f64, f64)> {
        let (spec, t) = (self.spec, Instant::now());
        let batch = spec.stages.last().map(|s| s.batch_size).unwrap_or(32);
        let last = self.stages.last();
        // Restored best weights are not the ones the last validation saw.
        let restored = last.and_then(|s| s.stopped_early.as_ref());
        let reused = last
            .map(|s| &s.last)
            .filter(|_| {
                !restored.is_some_and(|s| s.restored_best)
                    && self.test_is_validation
                    && spec
                        .stages
                        .last()
                        .is_some_and(|s| s.validation_steps.is_none())
            })
            .and_then(|m| Some((*m.get("validation.loss")?, *m.get("validation.accuracy")?)));
        // Evaluating 7,600 rows twice with the same weights would only cost time.
        let was_reused = reused.is_some();
        let (tl, ta) = reused.unwrap_or_else(|| evaluate(model, test, batch, None, device));
        let stage = spec
            .stages
            .len()
            .checked_sub(1)
            .map(|i| spec.stages[i].name_or_default(i))
            .unwrap_or_default();
        let row = MetricRow {
            stage,
            epoch: last.map(|s| s.epochs_completed).unwrap_or(0),
            step: last.map(|s| s.steps).unwrap_or(0),
            split: "test".into(),
            loss: tl,
            accuracy: ta,
            lr: 0.0,
            samples_per_s: if was_reused {
                0.0
            } else {
                test.len() as f64 / t.elapsed().as_secs_f64().max(1e-9)
            },
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        log.log(&row)?;
        Ok((tl, ta))
    }
}

/// Writes model and optimizer under the point's (new) names, then commits the pointer.
fn save_point<B: AutodiffBackend>(
    model: &Graph<B>,
    optim: &StageOptimizer<Graph<B>, B>,
    point: &ResumeState,
    checkpoints: &std::path::Path,
    previous: Option<&ResumeState>,
) -> Result<()> {
    checkpoint::save(model, &checkpoints.join(&point.model_file))?;
    if !point.optimizer_file.is_empty() {
        optim.save(&checkpoints.join(&point.optimizer_file))?;
    }
    point.commit(checkpoints, previous)
}

/// The batches of one epoch, a function of the seed only (so a resumed run sees the same):
/// shuffled rows cut into batches; with `bucket_by_length`, rows of similar length are
/// batched together (within windows of 32 batches, then the batch order is shuffled), so
/// dynamic padding pads little.
fn epoch_batches(
    split: &EncodedSplit,
    stage: &StageSpec,
    seed: u64,
    max_batches: usize,
) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..split.len()).collect();
    if stage.shuffle {
        order.shuffle(&mut rng);
    }
    let size = stage.batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = if stage.bucket_by_length {
        let mut out = Vec::new();
        for window in order.chunks(size * 32) {
            let mut w = window.to_vec();
            w.sort_by_key(|&r| split.enc.lengths.get(r).copied().unwrap_or(0));
            out.extend(w.chunks(size).map(<[usize]>::to_vec));
        }
        if stage.shuffle {
            out.shuffle(&mut rng);
        }
        out
    } else {
        order.chunks(size).map(<[usize]>::to_vec).collect()
    };
    batches.truncate(max_batches);
    batches
}

/// Backend RNG seed for one batch (dropout), independent of everything drawn before it.
fn step_seed(seed: u64, stage: usize, epoch: usize, batch: usize) -> u64 {
    epoch_seed(seed, stage, epoch)
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(batch as u64 + 1)
}

/// Mean loss and accuracy over (at most `max_batches` batches of) a split, without autodiff.
pub fn evaluate<B: Backend>(
    model: &Graph<B>,
    split: &EncodedSplit,
    batch_size: usize,
    max_batches: Option<usize>,
    device: &B::Device,
) -> (f64, f64) {
    let on_device = DeviceSplit::<B>::new(split, device);
    evaluate_rows(&on_device, batch_size, max_batches, |inputs, _| {
        model.logits(inputs)
    })
}

/// [`evaluate`] of a stage's validation rows (its batch size and step cap), reusing the
/// stage's frozen prefix and its cached validation features.
fn evaluate_with<B: AutodiffBackend>(
    model: &Graph<B::InnerBackend>,
    split: &EncodedSplit,
    on_device: &DeviceSplit<B::InnerBackend>,
    stage: &StageSpec,
    device: &B::Device,
    prefix: Option<&FrozenPrefix<B>>,
) -> (f64, f64) {
    let (batch_size, max_batches) = (stage.batch_size, stage.validation_steps);
    evaluate_rows(
        on_device,
        batch_size,
        max_batches,
        |inputs, rows| match prefix {
            None => model.logits(inputs),
            Some(p) => {
                let cache = p.validation_cache.as_ref();
                model.logits_from(inputs, p.len, p.given_inner(split, cache, rows, device))
            }
        },
    )
}

fn evaluate_rows<B: Backend>(
    split: &DeviceSplit<B>,
    batch_size: usize,
    max_batches: Option<usize>,
    logits_of: impl Fn(&crate::graph::compile::Inputs<B>, &[usize]) -> Tensor<B, 2>,
) -> (f64, f64) {
    let mut running = Running::default();
    let mut rows: Vec<usize> = (0..split.len()).collect();
    // A full pass can batch rows by length (sums do not depend on the order); a capped one
    // must not, or it would score only the shortest rows.
    if split.is_dynamic() && max_batches.is_none() {
        rows.sort_by_key(|&r| split.length(r));
    }
    for chunk in rows
        .chunks(batch_size.max(1))
        .take(max_batches.unwrap_or(usize::MAX))
    {
        let (inputs, labels) = split.batch(chunk);
        let logits = logits_of(&inputs, chunk);
        let loss: f64 = cross_entropy(logits.clone(), labels.clone())
            .into_scalar()
            .elem::<f64>();
        running.add(loss, correct(logits, labels), chunk.len());
    }
    (running.loss(), running.accuracy())
}

/// Class probabilities [rows, classes] for a split, in row order.
pub fn predict<B: Backend>(
    model: &Graph<B>,
    split: &EncodedSplit,
    batch_size: usize,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    // Rows of similar length share a batch (little padding); results go back in row order.
    let mut rows: Vec<usize> = (0..split.len()).collect();
    if split.enc.dynamic {
        rows.sort_by_key(|&r| split.enc.lengths[r]);
    }
    let mut out = vec![Vec::new(); split.len()];
    for chunk in rows.chunks(batch_size.max(1)) {
        let (inputs, _) = split.batch::<B>(chunk, device);
        let probs = burn::tensor::activation::softmax(model.logits(&inputs), 1);
        let [_, c] = probs.dims();
        let data: Vec<f32> = probs
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data");
        for (i, &r) in chunk.iter().enumerate() {
            out[r] = data[i * c..(i + 1) * c].to_vec();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectorize::Encoded;

    fn stage(bucket: bool) -> StageSpec {
        let text = format!(
            "batch_size = 4\nbucket_by_length = {bucket}\noptimizer = {{ type = \"sgd\" }}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn length_buckets_cover_every_row_once_with_little_padding() {
        let lengths: Vec<usize> = (0..40).map(|i| (i * 37) % 29 + 1).collect();
        let split = EncodedSplit {
            enc: Encoded {
                rows: 40,
                len: 30,
                lengths: lengths.clone(),
                dynamic: true,
                ..Default::default()
            },
            labels: vec![0; 40],
        };
        let bucketed = epoch_batches(&split, &stage(true), 7, usize::MAX);
        assert_eq!(
            bucketed,
            epoch_batches(&split, &stage(true), 7, usize::MAX),
            "seeded"
        );
        let mut all: Vec<usize> = bucketed.concat();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.iter().map(|&r| lengths[r]).max().unwrap() * b.len())
                .sum()
        };
        let plain = epoch_batches(&split, &stage(false), 7, usize::MAX);
        assert!(
            padded(&bucketed) < padded(&plain),
            "{} vs {}",
            padded(&bucketed),
            padded(&plain)
        );
    }
}
