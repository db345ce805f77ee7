//! Resumable training state. A resume point is the model, the optimizer state and a small
//! JSON pointer (position in stage / epoch / batch, running sums, metrics rows written). The
//! two weight files carry the step in their names and the pointer is renamed into place last,
//! so a run killed at any moment (kill -9 included) leaves the previous point intact.
//!
//! Nothing random needs saving: shuffling is seeded per (seed, stage, epoch) and the backend
//! RNG (dropout) is reseeded per (seed, stage, epoch, batch) before every step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder};
use serde::{Deserialize, Serialize};

use super::checkpoints::{Kept, RetentionState};
use super::early_stopping::StoppingState;
use super::metrics::Running;
use crate::run::atomic_write;
use crate::run::record::StageRecord;
use crate::spec::{LoadedSpec, Spec};

/// Where training stands at a resume point: the next batch to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResumeState {
    pub stage: usize,
    pub epoch: usize,
    pub next_batch: usize,
    /// Optimizer steps completed in the stage.
    pub step: usize,
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    /// Best epoch score of the stage so far (None before its first epoch ends).
    pub best_score: Option<f64>,
    /// Records of finished stages, then the current one so far.
    pub stages: Vec<StageRecord>,
    /// Rows of metrics.csv written up to this point.
    pub metric_rows: usize,
    pub model_file: String,
    pub optimizer_file: String,
    /// The resolved spec this point was trained with (absent in points of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecFingerprint>,
    /// The current stage's early stopping: best value and step, patience counter, best weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<StoppingState>,
    /// The current stage's kept checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<RetentionState>,
    /// Training rows seen in the run, over all stages (points of older versions lack it: a run
    /// resumed from one counts only the rows trained after its resumption).
    #[serde(default)]
    pub samples: usize,
    /// The sums of the batches since the last `train_step` row, which the next one covers.
    #[serde(default)]
    pub window: Running,
}

/// What a point carries of the training so far: the epoch's running sums, those since the
/// last `train_step` row, and the training rows seen in the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct PointSums {
    pub epoch: Running,
    pub window: Running,
    pub samples: usize,
}

/// A stable fingerprint of a resolved spec: FNV-1a (64 bit) over its `key = value` lines in key
/// order, so it depends on neither formatting, comments, Rust's `DefaultHasher` nor the
/// process, plus the same hash per key so that a mismatch can say which keys changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecFingerprint {
    pub hash: String,
    /// Canonical path (`stages[0].epochs`) → hash of its value.
    pub keys: BTreeMap<String, String>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl SpecFingerprint {
    pub fn of(spec: &Spec) -> Self {
        let mut values = BTreeMap::new();
        // A spec always serializes: it was read from TOML.
        if let Ok(table) = toml::Table::try_from(spec) {
            flatten_table("", &table, &mut values);
        }
        let mut all = String::new();
        for (k, v) in &values {
            all.push_str(&format!("{k} = {v}\n"));
        }
        SpecFingerprint {
            hash: format!("{:016x}", fnv1a(all.as_bytes())),
            keys: values
                .into_iter()
                .map(|(k, v)| (k, format!("{:016x}", fnv1a(v.as_bytes()))))
                .collect(),
        }
    }

    /// Keys whose values differ, that only one side has, in order.
    pub fn changed_keys(&self, now: &SpecFingerprint) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, v)| now.keys.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(
                now.keys
                    .keys()
                    .filter(|k| !self.keys.contains_key(*k))
                    .cloned(),
            )
            .collect();
        keys.sort();
        keys
    }
}

/// `stages[0].optimizer.learning_rate`-style paths (the source map's) to values as TOML text.
fn flatten_table(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_table(&path, t, out),
            toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::Table(t) => flatten_table(&format!("{path}[{i}]"), t, out),
                        other => {
                            out.insert(format!("{path}[{i}]"), other.to_string());
                        }
                    }
                }
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
}

pub fn pointer(checkpoints: &Path) -> PathBuf {
    checkpoints.join("resume.json")
}

/// Removes the resume point of a run that has completed: there is nothing left to resume, and
/// its weights and optimizer moments are two to three times the model (for a fine-tuned
/// pretrained encoder, hundreds of MB). The pointer goes first, so that no pointer is ever
/// left naming files that are gone.
pub fn discard(checkpoints: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(pointer(checkpoints)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for entry in std::fs::read_dir(checkpoints)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("resume-") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Where a resume point continues: the stage, epoch and batch the run goes on with, and the
/// optimizer steps already taken in that stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeAt {
    pub stage: usize,
    pub epoch: usize,
    pub next_batch: usize,
    pub step: usize,
}

/// What a stage's policies carry into a resume point (none for a point that starts the next
/// stage, whose policies start afresh).
#[derive(Clone, Debug, Default)]
pub struct PolicyState {
    pub best_score: Option<f64>,
    pub early_stopping: Option<StoppingState>,
    pub checkpoints: Option<RetentionState>,
}

/// The files a resume point's weights and optimizer state are written to, named after the
/// stage and step they were saved at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointFiles {
    pub model: String,
    /// Empty when the point starts a new stage, which starts with a fresh optimizer.
    pub optimizer: String,
}

impl PointFiles {
    /// A point inside an epoch (`checkpoint_every`, an interrupt).
    pub fn mid_epoch(stage: usize, step: usize) -> Self {
        PointFiles {
            model: format!("resume-{stage}-{step}.safetensors"),
            optimizer: format!("resume-{stage}-{step}-optimizer.mpk"),
        }
    }
    /// A point at an epoch end; `same_stage`: the next epoch is in this stage (it keeps the
    /// optimizer state).
    pub fn epoch_end(stage: usize, step: usize, same_stage: bool) -> Self {
        PointFiles {
            model: format!("resume-{stage}-{step}-end.safetensors"),
            optimizer: match same_stage {
                true => format!("resume-{stage}-{step}-end-optimizer.mpk"),
                false => String::new(),
            },
        }
    }
}

impl ResumeState {
    /// The point at `at`, with the running sums so far, the stage records (finished ones, then
    /// the current one), the metrics.csv rows written, the policies' state and the files it is
    /// saved in.
    pub fn new(
        at: ResumeAt,
        sums: PointSums,
        stages: Vec<StageRecord>,
        metric_rows: usize,
        policies: PolicyState,
        files: PointFiles,
        spec: &SpecFingerprint,
    ) -> Self {
        ResumeState {
            stage: at.stage,
            epoch: at.epoch,
            next_batch: at.next_batch,
            step: at.step,
            loss_sum: sums.epoch.loss_sum,
            correct: sums.epoch.correct,
            seen: sums.epoch.seen,
            best_score: policies.best_score,
            stages,
            metric_rows,
            model_file: files.model,
            optimizer_file: files.optimizer,
            spec: Some(spec.clone()),
            early_stopping: policies.early_stopping,
            checkpoints: policies.checkpoints,
            samples: sums.samples,
            window: sums.window,
        }
    }

    /// The epoch's running sums at this point.
    pub fn running(&self) -> Running {
        Running {
            loss_sum: self.loss_sum,
            correct: self.correct,
            seen: self.seen,
        }
    }

    /// Whole epochs trained before this point, over all stages.
    pub fn epochs_trained(&self) -> usize {
        let finished: usize = self.stages[..self.stage.min(self.stages.len())]
            .iter()
            .map(|s| s.epochs_completed)
            .sum();
        finished + self.epoch.saturating_sub(1)
    }

    /// The committed point, `None` before the first. A pointer that does not parse is an
    /// error naming the file.
    pub fn load(checkpoints: &Path) -> Result<Option<Self>> {
        let p = pointer(checkpoints);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: error: cannot read the resume point", p.display()))?;
        match serde_json::from_str(&text) {
            Ok(state) => Ok(Some(state)),
            Err(e) => anyhow::bail!(
                "{}: error: the resume point is corrupt ({e}); the run cannot be resumed",
                p.display()
            ),
        }
    }

    /// Whether this point can continue `loaded` (the run's pipeline.toml as it is now): the
    /// same resolved spec, a position inside it, and the files it names. The error is one line.
    pub fn matches(&self, loaded: &LoadedSpec, checkpoints: &Path) -> Result<(), String> {
        let file = pointer(checkpoints).display().to_string();
        if let Some(then) = &self.spec {
            let now = SpecFingerprint::of(&loaded.spec);
            if now.hash != then.hash {
                let keys = then.changed_keys(&now);
                let first = keys.first().cloned().unwrap_or_default();
                let shown: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                return Err(format!(
                    "{}: error: {} changed since the resume point was written; --resume continues a run exactly as it was set up (put the value back, or start a new run from this file)",
                    loaded.source.key(&first),
                    shown.join(", ")
                ));
            }
        }
        let stages = loaded.spec.stages.len();
        let position = if self.stage > stages || self.stages.len() < self.stage {
            Err(format!("stage {} of {stages}", self.stage))
        } else if let Some(stage) = loaded.spec.stages.get(self.stage)
            && !(1..=stage.epochs).contains(&self.epoch)
        {
            Err(format!("epoch {} of {}", self.epoch, stage.epochs))
        } else {
            Ok(())
        };
        if let Err(at) = position {
            return Err(format!(
                "{file}: error: the resume point is corrupt: it is at {at}, outside the spec"
            ));
        }
        for name in self.files() {
            let present =
                crate::graph::plan::is_path_name(name) && checkpoints.join(name).is_file();
            if !name.is_empty() && !present {
                return Err(format!(
                    "{file}: error: the resume point is corrupt: it names `{name}`, which is not a file in {}",
                    checkpoints.display()
                ));
            }
        }
        if self.model_file.is_empty() {
            return Err(format!(
                "{file}: error: the resume point is corrupt: it names no model file"
            ));
        }
        Ok(())
    }

    /// The files in `checkpoints/` this point needs (names may be empty: none).
    fn files(&self) -> [&str; 3] {
        let best = self
            .early_stopping
            .as_ref()
            .map_or("", |s| s.best_file.as_str());
        [&self.model_file, &self.optimizer_file, best]
    }

    /// The current stage's kept checkpoints. Points written before retention existed only
    /// kept the best score (of the default monitor): the best of those is carried over.
    pub fn retention(&self) -> RetentionState {
        self.checkpoints.clone().unwrap_or_else(|| RetentionState {
            last: Vec::new(),
            best: self
                .best_score
                .map(|value| Kept {
                    epoch: self.stages.get(self.stage).map_or(0, |s| s.best_epoch),
                    step: 0,
                    value: Some(value),
                })
                .into_iter()
                .collect(),
        })
    }

    /// Commits this state: the files it names must already be written.
    pub fn commit(&self, checkpoints: &Path, previous: Option<&ResumeState>) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        atomic_write(&pointer(checkpoints), text.as_bytes())?;
        // Files of earlier points, and of a point a killed process never committed, go.
        let _ = previous;
        if let Ok(entries) = std::fs::read_dir(checkpoints) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("resume-") && !self.files().contains(&name.as_str()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}

/// Saves an optimizer record (burn's named MessagePack, full precision, the bytes
/// `NamedMpkFileRecorder` reads back) through the durable writer.
pub fn save_record<B: Backend, R: burn::record::Record<B>>(record: R, path: &Path) -> Result<()> {
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .record(record, ())
        .map_err(|e| anyhow::anyhow!("serialising {}: {e}", path.display()))?;
    atomic_write(path, &bytes)?;
    Ok(())
}

pub fn load_record<B: Backend, R: burn::record::Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<R> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .load(path.to_path_buf(), device)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::load_spec_str;

    const SPEC: &str = r#"name = "t"
[dataset]
train = "a.csv"
labels = ["x", "y"]
[vectorizer]
type = "text_vectorization"
[[model.layers]]
type = "embedding"
output_dim = 8
[[stages]]
epochs = 2
optimizer = { type = "adam" }
"#;

    fn fingerprint(text: &str) -> SpecFingerprint {
        SpecFingerprint::of(&load_spec_str("p.toml", text, &[], &[]).unwrap().spec)
    }

    #[test]
    fn the_fingerprint_is_stable_and_names_changed_keys() {
        let base = fingerprint(SPEC);
        // Fixed by the bytes alone: a hand-rolled FNV, not the process's DefaultHasher.
        assert_eq!(base, fingerprint(SPEC));
        assert_eq!(base, fingerprint(&format!("# a comment\n{SPEC}")));
        let changed = fingerprint(&SPEC.replace("epochs = 2", "epochs = 3"));
        assert_ne!(changed.hash, base.hash);
        assert_eq!(base.changed_keys(&changed), ["stages[0].epochs"]);
        let added = fingerprint(&SPEC.replace("epochs = 2", "epochs = 2\nvalidate_every = 5"));
        assert_eq!(base.changed_keys(&added), ["stages[0].validate_every"]);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
