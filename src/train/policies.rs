//! A stage's metric-driven policies together: early stopping and checkpoint retention, fed by
//! the stage loop at its validation points, epoch ends and interrupts, and saved in its resume
//! points. The loop only asks "stop here?" and hands over the weights.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use burn::prelude::*;

use super::checkpoints::Retention;
use super::early_stopping::{EarlyStopping, validation_metrics};
use super::resume::{PolicyState, ResumeState};
use crate::run::Score;
use crate::run::record::StageRecord;
use crate::spec::StageSpec;

pub struct StagePolicies {
    pub stopping: Option<EarlyStopping>,
    pub retention: Retention,
}

impl StagePolicies {
    /// Stage `si` named `name`; `validated`: the run has validation rows; `resuming`: the resume
    /// point when it lies inside this stage.
    pub fn new(
        stage: &StageSpec,
        si: usize,
        name: &str,
        validated: bool,
        resuming: Option<&ResumeState>,
    ) -> Self {
        let kept = resuming.map(ResumeState::retention);
        StagePolicies {
            stopping: EarlyStopping::new(
                stage.early_stopping.as_ref(),
                si,
                resuming.and_then(|r| r.early_stopping.as_ref()),
            ),
            retention: Retention::new(stage.checkpoints.as_ref(), name, validated, kept.as_ref()),
        }
    }

    /// A validation pass inside an epoch (`validate_every`): whether the stage stops here.
    pub fn at_validation<B: Backend, M: Module<B>>(
        &mut self,
        score: Score,
        (epoch, step): (usize, usize),
        model: &M,
        dir: &Path,
    ) -> Result<bool> {
        match self.stopping.as_mut() {
            Some(es) => es.observe(&validation_metrics(score), epoch, step, model, dir),
            None => Ok(false),
        }
    }

    /// An epoch end with its `metrics`: the early-stopping check (already made when the stage
    /// stopped mid-epoch, `stopped_mid`), the checkpoint, and on a stop the best weights back
    /// with `restore_best`. Updates `record`; returns the weights to go on with and whether the
    /// stage ends here.
    pub fn at_epoch_end<B: Backend, M: Module<B>>(
        &mut self,
        model: M,
        metrics: &BTreeMap<String, f64>,
        stopped_mid: bool,
        (epoch, step): (usize, usize),
        dir: &Path,
        record: &mut StageRecord,
    ) -> Result<(M, bool)> {
        let stop = match self.stopping.as_mut() {
            Some(es) if !stopped_mid => es.observe(metrics, epoch, step, &model, dir)?,
            _ => stopped_mid,
        };
        // The checkpoint holds the weights trained so far, restored or not.
        if self
            .retention
            .save(&model, Some(metrics), epoch, step, dir)?
        {
            record.best = metrics.clone();
            record.best_epoch = epoch;
        }
        record.checkpoints = self.retention.listing();
        let model = match self.stopping.as_ref().filter(|_| stop) {
            Some(es) => {
                let (model, stopped) = es.finish(model, epoch, step, dir)?;
                record.stopped_early = Some(stopped);
                model
            }
            None => model,
        };
        Ok((model, stop))
    }

    /// An interrupt mid-epoch: its checkpoint is kept as a `last`.
    pub fn at_interrupt<B: Backend, M: Module<B>>(
        &mut self,
        model: &M,
        (epoch, step): (usize, usize),
        dir: &Path,
        record: &mut StageRecord,
    ) -> Result<()> {
        self.retention.save(model, None, epoch, step, dir)?;
        record.checkpoints = self.retention.listing();
        Ok(())
    }

    /// What a resume point records of the policies; nothing for a point that starts the next
    /// stage, whose policies start afresh.
    pub fn point_fields(&self, same_stage: bool) -> PolicyState {
        if !same_stage {
            return PolicyState::default();
        }
        PolicyState {
            best_score: self.retention.state.best.first().and_then(|b| b.value),
            early_stopping: self.stopping.as_ref().map(|es| es.state.clone()),
            checkpoints: Some(self.retention.state.clone()),
        }
    }
}
