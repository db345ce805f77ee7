//! Checkpoint retention (`[[stages]] checkpoints`): which of a stage's checkpoints stay in
//! `checkpoints/`, and run.json's list of them.
//!
//! Files: the newest is `<stage>-last.safetensors` and the best `<stage>-best.safetensors`, as
//! without a `checkpoints` table; other kept ones are `<stage>-step<S>.safetensors`. When the
//! newest (or best) is superseded but still kept, its file gets its step name by a hard link
//! made *before* the new weights replace `-last` (or `-best`), and files go only after the new
//! ones are durable. A step name only ever holds the weights of that step, and an existing one
//! is left as it is, so a run killed half-way through an update and resumed from the previous
//! resume point (which holds the list as it was) redoes the update correctly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::run::record::KeptCheckpoint;
use crate::run::{checkpoint, durable_link};
use crate::spec::policy::{CheckpointsSpec, Mode};

/// A kept checkpoint: where it was taken and the monitor's value there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub epoch: usize,
    pub step: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// The kept checkpoints of the current stage; part of every resume point inside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionState {
    /// Newest first.
    pub last: Vec<Kept>,
    /// Best first; ties keep the earlier one first. Holds one entry even with `keep_best = 0`,
    /// for run.json's `best`.
    pub best: Vec<Kept>,
}

pub struct Retention {
    keep_last: usize,
    keep_best: usize,
    pub monitor: String,
    mode: Mode,
    stage: String,
    pub state: RetentionState,
}

impl Retention {
    /// For the stage named `stage`; `validated`: the run has validation rows (the default
    /// monitor is then validation accuracy, else training accuracy, as before retention existed).
    pub fn new(
        spec: Option<&CheckpointsSpec>,
        stage: &str,
        validated: bool,
        resumed: Option<&RetentionState>,
    ) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        let monitor = spec.monitor.clone().unwrap_or_else(|| {
            if validated {
                "validation.accuracy".into()
            } else {
                "train.accuracy".into()
            }
        });
        Retention {
            keep_last: spec.keep_last.max(1),
            keep_best: spec.keep_best,
            mode: Mode::of(&monitor, spec.mode),
            monitor,
            stage: stage.to_string(),
            state: resumed.cloned().unwrap_or_default(),
        }
    }

    /// Enters a new checkpoint into the lists (no files). Returns whether it is the new best.
    pub fn admit(&mut self, kept: Kept) -> bool {
        self.state.last.insert(0, kept.clone());
        self.state.last.truncate(self.keep_last);
        let cap = self.keep_best.max(1);
        let Some(value) = kept.value else {
            return false;
        };
        let at = self
            .state
            .best
            .iter()
            .position(|b| self.mode.improves(value, b.value, 0.0))
            .unwrap_or(self.state.best.len());
        // NaN improves on nothing, and must not enter an empty list either.
        if at >= cap || value.is_nan() {
            return false;
        }
        self.state.best.insert(at, kept);
        self.state.best.truncate(cap);
        at == 0
    }

    /// (file name, kind, entry) of every kept checkpoint, newest / best first.
    fn files(&self) -> Vec<(String, &'static str, &Kept)> {
        let named = |i: usize, alias: &str, k: &Kept| {
            if i == 0 {
                format!("{}-{alias}.safetensors", self.stage)
            } else {
                self.step_file(k.step)
            }
        };
        let last = self.state.last.iter().enumerate();
        let best = self.state.best.iter().take(self.keep_best).enumerate();
        last.map(|(i, k)| (named(i, "last", k), "last", k))
            .chain(best.map(|(i, k)| (named(i, "best", k), "best", k)))
            .collect()
    }

    fn step_file(&self, step: usize) -> String {
        format!("{}-step{step}.safetensors", self.stage)
    }

    /// Takes a checkpoint of `model` (at an epoch end: `metrics` holds the monitor; on an
    /// interrupt: `None`, so it can only be kept as a `last`), writes the files the lists now
    /// name, then removes the ones they no longer name. Returns whether it is the new best.
    pub fn save<B: Backend, M: Module<B>>(
        &mut self,
        model: &M,
        metrics: Option<&BTreeMap<String, f64>>,
        epoch: usize,
        step: usize,
        dir: &Path,
    ) -> Result<bool> {
        let before = self.state.clone();
        let value = metrics.and_then(|m| m.get(&self.monitor).copied());
        let new_best = self.admit(Kept { epoch, step, value });
        let wanted = self.files();
        // 1. Superseded but kept: name the weights by their step while `-last` / `-best` still
        //    hold them.
        let holders = [("last", before.last.first()), ("best", before.best.first())];
        for (file, _, kept) in &wanted {
            let path = dir.join(file);
            if kept.step == step || path.exists() {
                continue;
            }
            let holder = holders
                .iter()
                .filter(|(alias, _)| *alias == "last" || self.keep_best > 0)
                .find(|(_, k)| k.is_some_and(|k| k.step == kept.step))
                .map(|(alias, _)| dir.join(format!("{}-{alias}.safetensors", self.stage)));
            match holder.filter(|h| h.is_file()) {
                Some(holder) => durable_link(&holder, &path)?,
                None => tracing::warn!(file, "a kept checkpoint's weights are gone"),
            }
        }
        // 2. The new weights, once, under every name they are kept as.
        let mut written: Option<PathBuf> = None;
        for (file, _, kept) in &wanted {
            if kept.step != step || written.as_ref().is_some_and(|w| w.ends_with(file)) {
                continue;
            }
            let path = dir.join(file);
            match &written {
                None => checkpoint::save(model, &path)?,
                Some(first) => durable_link(first, &path)?,
            }
            written = Some(path);
        }
        // 3. Only now, with everything kept durable: step files no list names any more.
        self.prune(dir, &wanted);
        Ok(new_best)
    }

    fn prune(&self, dir: &Path, wanted: &[(String, &'static str, &Kept)]) {
        let prefix = format!("{}-step", self.stage);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_step_file = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".safetensors"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            // `.link-*`: a link a killed process made but never renamed into place.
            let stale = (is_step_file && !wanted.iter().any(|(f, _, _)| *f == name))
                || name.starts_with(".link-");
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// run.json's list of the stage's kept files.
    pub fn listing(&self) -> Vec<KeptCheckpoint> {
        self.files()
            .into_iter()
            .map(|(file, kind, k)| KeptCheckpoint {
                file,
                kind: kind.to_string(),
                epoch: k.epoch,
                step: k.step,
                monitor: (kind == "best").then(|| self.monitor.clone()),
                value: if kind == "best" { k.value } else { None },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(text: &str) -> Retention {
        let spec: CheckpointsSpec = toml::from_str(text).unwrap();
        Retention::new(Some(&spec), "train", true, None)
    }

    fn kept(step: usize, value: f64) -> Kept {
        Kept {
            epoch: step,
            step,
            value: Some(value),
        }
    }

    #[test]
    fn defaults_keep_the_newest_and_the_best_validation_accuracy() {
        let mut r = Retention::new(None, "train", true, None);
        assert_eq!(r.monitor, "validation.accuracy");
        assert!(r.admit(kept(1, 0.5)));
        assert!(!r.admit(kept(2, 0.4)));
        assert!(!r.admit(kept(3, 0.5)), "a tie keeps the earlier best");
        assert!(r.admit(kept(4, 0.6)));
        let files: Vec<_> = r
            .files()
            .into_iter()
            .map(|(f, k, e)| (f, k, e.step))
            .collect();
        assert_eq!(
            files,
            [
                ("train-last.safetensors".to_string(), "last", 4),
                ("train-best.safetensors".to_string(), "best", 4)
            ]
        );
        assert_eq!(
            Retention::new(None, "t", false, None).monitor,
            "train.accuracy"
        );
    }

    #[test]
    fn keeps_the_newest_n_and_the_best_n_by_the_monitor() {
        let mut r = retention("keep_last = 2\nkeep_best = 2\nmonitor = \"validation.loss\"");
        for (step, loss) in [(1, 1.0), (2, 0.8), (3, 0.9), (4, 1.1)] {
            r.admit(kept(step, loss));
        }
        let files: Vec<_> = r
            .files()
            .into_iter()
            .map(|(f, k, e)| (f, k, e.step))
            .collect();
        assert_eq!(
            files,
            [
                ("train-last.safetensors".to_string(), "last", 4),
                ("train-step3.safetensors".to_string(), "last", 3),
                ("train-best.safetensors".to_string(), "best", 2),
                ("train-step3.safetensors".to_string(), "best", 3),
            ]
        );
    }

    #[test]
    fn keep_best_0_writes_no_best_file_but_still_tracks_the_best() {
        let mut r = retention("keep_best = 0\nmonitor = \"train.loss\"");
        assert!(r.admit(kept(1, 1.0)));
        assert!(r.admit(kept(2, 0.5)));
        assert!(!r.admit(kept(3, f64::NAN)));
        assert_eq!(r.state.best, [kept(2, 0.5)]);
        assert!(r.files().iter().all(|(_, kind, _)| *kind == "last"));
    }

    #[test]
    fn an_interrupt_checkpoint_is_a_last_only() {
        let mut r = retention("keep_last = 3");
        assert!(r.admit(kept(1, 0.5)));
        assert!(!r.admit(Kept {
            epoch: 2,
            step: 5,
            value: None
        }));
        assert_eq!(r.state.last.len(), 2);
        assert_eq!(r.state.best, [kept(1, 0.5)]);
    }
}
