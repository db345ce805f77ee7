//! Early stopping (`[[stages]] early_stopping`): the stopping rule, its state (part of every
//! resume point, so a resumed run stops exactly where an unbroken one does) and, with
//! `restore_best`, the best weights.
//!
//! The best weights live in `checkpoints/resume-<stage>-best-<step>.safetensors`: named by the
//! resume point that follows, kept by it and cleaned up with the other `resume-*` files once no
//! committed point names them (see [`super::resume::ResumeState::commit`]). A file name that
//! carries the step is never rewritten with other weights, so a run killed between writing a
//! new best and committing the next point still has the best that its last point names.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::run::record::StoppedEarly;
use crate::run::{Score, checkpoint};
use crate::spec::policy::{EarlyStoppingSpec, Mode};

/// What early stopping has seen in the current stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoppingState {
    /// Best value of the monitor so far (None until a check gives a number).
    pub best: Option<f64>,
    pub best_step: usize,
    pub best_epoch: usize,
    /// Checks since the best one (the patience counter).
    pub wait: usize,
    /// The file holding the best weights (only with `restore_best`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub best_file: String,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Improved,
    Waiting,
    Stop,
}

/// The stopping rule of a spec: Keras' EarlyStopping (strict improvement beyond `min_delta`,
/// stop once `patience` checks in a row did not improve).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub mode: Mode,
    pub min_delta: f64,
    pub patience: usize,
}

impl Rule {
    pub fn of(spec: &EarlyStoppingSpec) -> Rule {
        Rule {
            mode: Mode::of(&spec.monitor, spec.mode),
            min_delta: spec.min_delta,
            patience: spec.patience,
        }
    }

    pub fn observe(
        &self,
        state: &mut StoppingState,
        value: f64,
        epoch: usize,
        step: usize,
    ) -> Verdict {
        if self.mode.improves(value, state.best, self.min_delta) {
            state.best = Some(value);
            state.best_step = step;
            state.best_epoch = epoch;
            state.wait = 0;
            return Verdict::Improved;
        }
        state.wait += 1;
        // `max(1)`: a patience of 0 is refused by `pipe check`; never stop before a first check.
        if state.wait >= self.patience.max(1) {
            Verdict::Stop
        } else {
            Verdict::Waiting
        }
    }
}

/// Early stopping of one stage while it trains.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    spec: EarlyStoppingSpec,
    rule: Rule,
    stage: usize,
    pub state: StoppingState,
}

impl EarlyStopping {
    /// For stage `stage` (its index), continuing `resumed` when a resume point lies inside it.
    pub fn new(
        spec: Option<&EarlyStoppingSpec>,
        stage: usize,
        resumed: Option<&StoppingState>,
    ) -> Option<Self> {
        let spec = spec?.clone();
        Some(EarlyStopping {
            rule: Rule::of(&spec),
            spec,
            stage,
            state: resumed.cloned().unwrap_or_default(),
        })
    }

    /// One check with the metrics just logged (`train.loss`, `validation.accuracy`, ...);
    /// metrics without the monitor are no check for it. Returns whether the stage must stop.
    /// A new best is written to disk when the stage may have to come back to it.
    pub fn observe<B: Backend, M: Module<B>>(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        epoch: usize,
        step: usize,
        model: &M,
        checkpoints: &Path,
    ) -> Result<bool> {
        let Some(&value) = metrics.get(&self.spec.monitor) else {
            return Ok(false);
        };
        let verdict = self.rule.observe(&mut self.state, value, epoch, step);
        tracing::info!(monitor = %self.spec.monitor, value, ?verdict, wait = self.state.wait, "early stopping check");
        if verdict == Verdict::Improved && self.spec.restore_best {
            let file = format!("resume-{}-best-{step}.safetensors", self.stage);
            checkpoint::save(model, &checkpoints.join(&file))?;
            self.state.best_file = file;
        }
        Ok(verdict == Verdict::Stop)
    }

    /// Ends a stopped stage: with `restore_best`, `model` gets the best weights back.
    /// Returns the weights to continue with and what run.json records.
    pub fn finish<B: Backend, M: Module<B>>(
        &self,
        model: M,
        epoch: usize,
        step: usize,
        checkpoints: &Path,
    ) -> Result<(M, StoppedEarly)> {
        let restore = self.spec.restore_best && !self.state.best_file.is_empty();
        let model = if restore {
            checkpoint::load(model, &checkpoints.join(&self.state.best_file))?
        } else {
            model
        };
        tracing::info!(
            epoch,
            step,
            best_step = self.state.best_step,
            restored = restore,
            "stopped early"
        );
        let record = StoppedEarly {
            epoch,
            step,
            monitor: self.spec.monitor.clone(),
            best_value: self.state.best,
            best_step: self.state.best_step,
            best_epoch: self.state.best_epoch,
            restored_best: restore,
        };
        Ok((model, record))
    }
}

/// The metrics of a validation pass, as the policies read them.
pub fn validation_metrics(score: Score) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::from([
        ("validation.loss".to_string(), score.loss),
        ("validation.accuracy".to_string(), score.accuracy),
    ]);
    if let Some(f1) = score.macro_f1 {
        metrics.insert("validation.macro_f1".to_string(), f1);
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        Rule::of(&toml::from_str::<EarlyStoppingSpec>(text).unwrap())
    }

    /// The verdicts for a sequence of values, checked at steps 1, 2, ...
    fn run(rule: Rule, values: &[f64]) -> (Vec<Verdict>, StoppingState) {
        let mut state = StoppingState::default();
        let verdicts = values
            .iter()
            .enumerate()
            .map(|(i, &v)| rule.observe(&mut state, v, 1, i + 1))
            .collect();
        (verdicts, state)
    }

    use Verdict::{Improved as I, Stop as S, Waiting as W};

    #[test]
    fn loss_is_minimised_and_patience_counts_checks_in_a_row() {
        let r = rule("monitor = \"validation.loss\"\npatience = 2");
        assert_eq!(r.mode, Mode::Min);
        let (v, state) = run(r, &[1.0, 0.9, 0.95, 0.8, 0.85, 0.9]);
        assert_eq!(v, [I, I, W, I, W, S]);
        assert_eq!(state.best, Some(0.8));
        assert_eq!((state.best_step, state.wait), (4, 2));
    }

    #[test]
    fn accuracy_is_maximised() {
        let r = rule("monitor = \"validation.accuracy\"\npatience = 1");
        assert_eq!(r.mode, Mode::Max);
        let (v, state) = run(r, &[0.5, 0.6, 0.55]);
        assert_eq!(v, [I, I, S]);
        assert_eq!((state.best, state.best_step), (Some(0.6), 2));
    }

    #[test]
    fn mode_overrides_the_name() {
        let r = rule("monitor = \"validation.loss\"\nmode = \"max\"\npatience = 1");
        let (v, _) = run(r, &[1.0, 2.0, 1.5]);
        assert_eq!(v, [I, I, S]);
    }

    #[test]
    fn min_delta_and_ties_do_not_count_as_improvement() {
        let r = rule("monitor = \"train.loss\"\npatience = 3\nmin_delta = 0.1");
        // 0.95 and 0.91 are better, but by less than 0.1; 0.85 is better by more.
        let (v, state) = run(r, &[1.0, 0.95, 0.91, 0.85, 0.85, 0.85, 0.85]);
        assert_eq!(v, [I, W, W, I, W, W, S]);
        assert_eq!((state.best, state.best_step), (Some(0.85), 4));
        // An unchanging metric (a learning rate too small to move the weights) stops after
        // `patience` checks, even with min_delta 0.
        let (v, _) = run(rule("patience = 2"), &[0.7, 0.7, 0.7]);
        assert_eq!(v, [I, W, S]);
    }

    #[test]
    fn nan_never_improves_and_defaults_are_keras_like() {
        let r = rule("");
        assert_eq!(
            r,
            Rule {
                mode: Mode::Min,
                min_delta: 0.0,
                patience: 1
            }
        );
        let (v, state) = run(r, &[f64::NAN]);
        assert_eq!(v, [S]);
        assert_eq!(state.best, None);
        let (v, state) = run(rule("patience = 2"), &[0.5, f64::NAN, 0.4]);
        assert_eq!(v, [I, W, I]);
        assert_eq!(state.best, Some(0.4));
    }
}
