//! Evaluation and prediction without autodiff: a split's loss and accuracy (validation, the
//! final test row of metrics.csv) and its class probabilities (`pipe eval`, `pipe predict`).

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::metrics::{Running, class_report, cross_entropy};
use super::prefix::FrozenPrefix;
use crate::data::EncodedSplit;
use crate::data::batch::Inputs;
use crate::graph::Graph;
use crate::run::record::StageRecord;
use crate::run::{MetricRow, MetricsLog, Score, TrainingPosition};
use crate::spec::{Spec, StageSpec};

/// Told the rows done and the rows of the whole pass, after each batch of an evaluation.
pub type Report<'r> = &'r mut dyn FnMut(usize, usize);

/// Mean loss and accuracy over (at most `max_batches` batches of) a split, without autodiff.
pub fn evaluate<B: Backend>(
    model: &Graph<B>,
    split: &EncodedSplit,
    (batch_size, max_batches): (usize, Option<usize>),
    device: &B::Device,
    report: Report,
) -> Score {
    let logits_of = |inputs: &Inputs<B>, _: &[usize]| model.logits(inputs);
    evaluate_rows(split, (batch_size, max_batches), device, logits_of, report)
}

/// [`evaluate`] of a stage's validation rows (its batch size and step cap), reusing the
/// stage's frozen prefix and its cached validation features.
pub(super) fn evaluate_with<B: AutodiffBackend>(
    model: &Graph<B::InnerBackend>,
    split: &EncodedSplit,
    stage: &StageSpec,
    device: &B::Device,
    prefix: Option<&FrozenPrefix<B>>,
    report: Report,
) -> Score {
    let batches = (stage.batch_size, stage.validation_steps);
    let logits_of = |inputs: &Inputs<B::InnerBackend>, rows: &[usize]| match prefix {
        None => model.logits(inputs),
        Some(p) => {
            let cache = p.validation_cache.as_ref();
            model.logits_from(inputs, p.len, p.given_inner(split, cache, rows, device))
        }
    };
    evaluate_rows::<B::InnerBackend>(split, batches, device, logits_of, report)
}

fn evaluate_rows<B: Backend>(
    split: &EncodedSplit,
    (batch_size, max_batches): (usize, Option<usize>),
    device: &B::Device,
    logits_of: impl Fn(&Inputs<B>, &[usize]) -> Tensor<B, 2>,
    report: Report,
) -> Score {
    let mut running = Running::default();
    // Every row's label and prediction, for macro-F1 (a few bytes a row).
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    let mut classes = 0;
    let mut rows: Vec<usize> = (0..split.len()).collect();
    // A full pass can batch rows by length (sums do not depend on the order); a capped one
    // must not, or it would score only the shortest rows.
    if split.padding.dynamic && max_batches.is_none() {
        rows.sort_by_key(|&r| split.length(r));
    }
    let total = max_batches.map_or(rows.len(), |n| rows.len().min(n * batch_size.max(1)));
    for chunk in rows
        .chunks(batch_size.max(1))
        .take(max_batches.unwrap_or(usize::MAX))
    {
        let (inputs, labels) = split.batch::<B>(chunk, device);
        let logits = logits_of(&inputs, chunk);
        let loss: f64 = cross_entropy(logits.clone(), labels.clone())
            .into_scalar()
            .elem::<f64>();
        let [n, c] = logits.dims();
        classes = c;
        let batch_truth = ints(labels);
        let batch_predicted = ints(logits.argmax(1).reshape([n]));
        let right = (batch_truth.iter().zip(&batch_predicted))
            .filter(|(t, p)| t == p)
            .count();
        running.add(loss, right, chunk.len());
        truth.extend(batch_truth);
        predicted.extend(batch_predicted);
        report(running.seen, total);
    }
    let mut score = running.score();
    if !truth.is_empty() {
        let names: Vec<String> = (0..classes).map(|k| k.to_string()).collect();
        score.macro_f1 = Some(class_report(&truth, &predicted, &names).macro_f1);
    }
    score
}

/// An integer tensor's values, as class indices.
fn ints<B: Backend>(t: Tensor<B, 1, Int>) -> Vec<usize> {
    t.into_data()
        .iter::<i64>()
        .map(|v| v.max(0) as usize)
        .collect()
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
    if split.padding.dynamic {
        rows.sort_by_key(|&r| split.length(r));
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

/// Where the stages left off, for the test evaluation after the last one.
pub(super) struct TestAfter<'a> {
    pub spec: &'a Spec,
    pub stages: &'a [StageRecord],
    /// Training rows seen in the run.
    pub samples: usize,
    pub test_is_validation: bool,
    pub started: Instant,
}

impl TestAfter<'_> {
    /// Test loss and accuracy of the final weights, logged as the `test` row of metrics.csv.
    pub fn evaluate<B: Backend>(
        &self,
        model: &Graph<B>,
        test: &EncodedSplit,
        log: &mut MetricsLog,
        device: &B::Device,
        report: Report,
    ) -> Result<Score> {
        let (spec, t) = (self.spec, Instant::now());
        let batch = spec.stages.last().map(|s| s.batch_size).unwrap_or(32);
        let last = self.stages.last();
        // Evaluating 7,600 rows twice with the same weights would only cost time.
        let reused = self.last_validation();
        let score = reused.unwrap_or_else(|| evaluate(model, test, (batch, None), device, report));
        let stage = spec
            .stages
            .len()
            .checked_sub(1)
            .map(|i| spec.stages[i].name_or_default(i))
            .unwrap_or_default();
        let samples_per_s = match reused {
            Some(_) => 0.0,
            None => test.len() as f64 / t.elapsed().as_secs_f64().max(1e-9),
        };
        let at = TrainingPosition {
            epoch: last.map(|s| s.epochs_completed).unwrap_or(0),
            step: last.map(|s| s.steps).unwrap_or(0),
            global_step: self.stages.iter().map(|s| s.steps).sum(),
            samples: self.samples,
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        log.log(&MetricRow::new(
            &stage,
            "test",
            at,
            score,
            0.0,
            samples_per_s,
            elapsed,
        ))?;
        Ok(score)
    }

    /// The last validation, when it scored the final weights on the test rows themselves (a
    /// full pass, no best weights restored after it).
    fn last_validation(&self) -> Option<Score> {
        let last = self.stages.last()?;
        let restored = last.stopped_early.as_ref().is_some_and(|s| s.restored_best);
        let full_pass = (self.spec.stages.last()).is_some_and(|s| s.validation_steps.is_none());
        if restored || !self.test_is_validation || !full_pass {
            return None;
        }
        Some(Score {
            loss: *last.last.get("validation.loss")?,
            accuracy: *last.last.get("validation.accuracy")?,
            macro_f1: last.last.get("validation.macro_f1").copied(),
        })
    }
}
