//! run.json: what ran, where, with what, and how it ended.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Interrupted,
    /// Stopped at `--pause-after-epochs`, at a resume point (a pruned sweep's rung).
    Paused,
    /// Paused at a rung of a pruned sweep and not promoted: its metrics are those of that rung.
    Pruned,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ParamCounts {
    pub total: usize,
    pub trainable: usize,
    pub non_trainable: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rows {
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub epochs_completed: usize,
    pub steps: usize,
    pub seconds: f64,
    /// Metrics after the last epoch, `train.loss`, `validation.accuracy`, ...
    pub last: BTreeMap<String, f64>,
    /// Metrics of the best epoch (by `checkpoints.monitor`; default: highest validation
    /// accuracy, else training accuracy).
    pub best: BTreeMap<String, f64>,
    pub best_epoch: usize,
    /// Set when `early_stopping` ended the stage before its last epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<StoppedEarly>,
    /// The checkpoint files of this stage left in `checkpoints/` (see `checkpoints` in the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<KeptCheckpoint>,
}

/// Where and why early stopping ended a stage (run.json `stages[].stopped_early`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoppedEarly {
    /// The epoch the stage stopped in (it may have stopped mid-epoch, at a `validate_every` point).
    pub epoch: usize,
    /// The optimizer step (within the stage) it stopped at.
    pub step: usize,
    pub monitor: String,
    /// The best value of the monitor (absent when no check gave a number, e.g. all NaN).
    pub best_value: Option<f64>,
    pub best_step: usize,
    pub best_epoch: usize,
    /// Whether the stage ended with the weights of `best_step` (`restore_best`).
    pub restored_best: bool,
}

/// One checkpoint file kept in `checkpoints/` (run.json `stages[].checkpoints`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeptCheckpoint {
    /// File name inside `checkpoints/`.
    pub file: String,
    /// `last` (among the newest `keep_last`) or `best` (among the best `keep_best`); a file
    /// kept for both reasons is listed twice.
    pub kind: String,
    pub epoch: usize,
    pub step: usize,
    /// For `best`: the metric that ranked it and its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub status: RunStatus,
    pub pipeline: String,
    pub run: String,
    pub spec_file: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Total training time, summed over the original run and its resumptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// When `pipe run --resume` continued the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_at: Vec<String>,
    /// The sweep trial this run is, when started by `pipe sweep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<usize>,
    pub seed: u64,
    pub device: String,
    /// The data-parallel workers as used: their count on the CPU, the list of GPUs on CUDA.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub devices: serde_json::Value,
    /// What the precision ran as (`bf16-mixed` on AMX tiles, or in f32 without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_rev: Option<String>,
    pub pipe_version: String,
    pub burn_version: String,
    pub overrides: Vec<String>,
    pub params: ParamCounts,
    /// The classes in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// True when the spec omitted `dataset.labels` and they were read from the train file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub labels_inferred: bool,
    pub rows: Rows,
    pub stages: Vec<StageRecord>,
    /// Final metrics of the run: the last stage's last epoch, plus `test.*` when a test set exists.
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The burn version pipe is built against (checked against Cargo.lock by a test).
pub const BURN_VERSION: &str = "0.21.0";

impl RunRecord {
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("run record serializes");
        text.push('\n');
        super::atomic_write(path, text.as_bytes())
    }
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// `git rev-parse HEAD` of the working directory, when it is a git checkout.
pub fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn burn_version_matches_lockfile() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let needle = format!("name = \"burn\"\nversion = \"{}\"", super::BURN_VERSION);
        assert!(
            lock.contains(&needle),
            "Cargo.lock pins another burn than {}",
            super::BURN_VERSION
        );
    }
}
