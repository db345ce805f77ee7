//! `[[stages]]`: training stages, each with its own optimizer, schedule and frozen layers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::policy::{CheckpointsSpec, EarlyStoppingSpec, Mode};

fn one() -> usize {
    1
}
fn default_batch_size() -> usize {
    32
}
fn default_metrics() -> Vec<Metric> {
    vec![Metric::Accuracy]
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Integer labels; takes logits, or the inputs of a final softmax (computed stably).
    #[default]
    SparseCategoricalCrossentropy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    Loss,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Stage name (default `train`, then `stage_2`, ...); `--set stages.<name>.key=...` addresses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "one")]
    pub epochs: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Cap on optimizer steps per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<usize>,
    /// Cap on validation batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_steps: Option<usize>,
    /// Also validate every N steps within an epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_every: Option<usize>,
    /// Append a `train_step` row to metrics.csv every N optimizer steps (and at each epoch's
    /// last step): the loss and accuracy of the steps since the previous one. Default: about
    /// 20 rows per epoch (`ceil(steps per epoch / 20)`); 0 writes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_every_steps: Option<usize>,
    #[serde(default)]
    pub loss: Loss,
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Layer names or globs (`bert*`) whose weights stay fixed in this stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<String>,
    /// Clip each parameter's gradient to this L2 norm (Keras `clipnorm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Accumulate gradients over this many batches per optimizer step.
    #[serde(default = "one")]
    pub gradient_accumulation: usize,
    /// Also write a resume point every N optimizer steps (default: at each epoch end only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// Batch rows of similar length together (with a dynamically padding vectorizer, batches
    /// then carry little padding). Changes batch composition, so it is opt-in.
    #[serde(default)]
    pub bucket_by_length: bool,
    /// Shuffle the train rows each epoch (seeded).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// End the stage when a logged metric stops improving:
    /// `{ monitor = "validation.loss", patience = 3, min_delta = 0.0, restore_best = true }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Which epoch-end checkpoints stay on disk: `{ keep_last = 2, keep_best = 1, monitor = "validation.loss" }`
    /// (default: the newest and the best by validation accuracy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointsSpec>,
}

fn sgd_lr() -> f64 {
    0.01
}
fn adam_lr() -> f64 {
    1e-3
}
fn beta_1() -> f64 {
    0.9
}
fn beta_2() -> f64 {
    0.999
}
fn keras_epsilon() -> f64 {
    1e-7
}
fn torch_epsilon() -> f64 {
    1e-8
}
fn adamw_decay() -> f64 {
    0.01
}

/// Optimizers with the defaults their users know: `adam` as Keras (eps 1e-7), `adamw` as
/// PyTorch (eps 1e-8, weight decay 0.01), `sgd` as both (lr 0.01, no momentum).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    Sgd {
        #[serde(default = "sgd_lr")]
        learning_rate: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    Adam {
        #[serde(default = "adam_lr")]
        learning_rate: f64,
        #[serde(default = "beta_1")]
        beta_1: f64,
        #[serde(default = "beta_2")]
        beta_2: f64,
        #[serde(default = "keras_epsilon")]
        epsilon: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    #[serde(rename = "adamw")]
    AdamW {
        #[serde(default = "adam_lr")]
        learning_rate: f64,
        #[serde(default = "beta_1")]
        beta_1: f64,
        #[serde(default = "beta_2")]
        beta_2: f64,
        #[serde(default = "torch_epsilon")]
        epsilon: f64,
        #[serde(default = "adamw_decay")]
        weight_decay: f64,
    },
}

impl OptimizerSpec {
    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. } => *learning_rate,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            OptimizerSpec::Sgd { .. } => "sgd",
            OptimizerSpec::Adam { .. } => "adam",
            OptimizerSpec::AdamW { .. } => "adamw",
        }
    }
}

/// Learning-rate schedules over the optimizer steps of one stage. `warmup` is a fraction of
/// the stage's steps when below 1, else a number of steps.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    #[default]
    Constant,
    /// Linear warmup from 0, then linear decay to 0 (TF `create_optimizer`, HF `linear`).
    Linear {
        #[serde(default)]
        warmup: f64,
    },
    /// Linear warmup, then cosine decay to `min_lr`.
    Cosine {
        #[serde(default)]
        warmup: f64,
        #[serde(default)]
        min_lr: f64,
    },
    /// "Attention is all you need": lr · min(step^-0.5, step · warmup^-1.5), normalised to peak at lr.
    Noam { warmup: f64 },
}

/// The name of the `index`-th stage when the spec gives none.
pub fn default_stage_name(index: usize) -> String {
    if index == 0 {
        "train".to_string()
    } else {
        format!("stage_{}", index + 1)
    }
}

/// Step rows per epoch when `log_every_steps` is not set: a curve of about this many points
/// per epoch, whatever the epoch's length (HF Trainer's fixed 500 steps draws nothing for a
/// short epoch and floods a long one).
pub const STEP_ROWS_PER_EPOCH: usize = 20;

impl StageSpec {
    pub fn name_or_default(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_stage_name(index))
    }

    /// Every how many optimizer steps a `train_step` row is logged, for epochs of
    /// `steps_per_epoch` steps; `None` when `log_every_steps = 0` turns them off.
    pub fn log_every(&self, steps_per_epoch: usize) -> Option<usize> {
        match self.log_every_steps {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(steps_per_epoch.div_ceil(STEP_ROWS_PER_EPOCH).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(log_every_steps: Option<usize>) -> StageSpec {
        let mut stage: StageSpec =
            toml::from_str("optimizer = { type = \"adam\" }").expect("a minimal stage");
        stage.log_every_steps = log_every_steps;
        stage
    }

    #[test]
    fn step_rows_default_to_about_twenty_an_epoch() {
        // At most 20 rows an epoch, and at least one step apart.
        assert_eq!(stage(None).log_every(1000), Some(50));
        assert_eq!(stage(None).log_every(79), Some(4));
        assert_eq!(stage(None).log_every(16), Some(1));
        assert_eq!(stage(None).log_every(0), Some(1));
        assert_eq!(stage(Some(7)).log_every(1000), Some(7));
        assert_eq!(stage(Some(0)).log_every(1000), None);
    }
}
