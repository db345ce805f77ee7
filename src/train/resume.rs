//! Resumable training state. A resume point is the model, the optimizer state and a small
//! JSON pointer (position in stage / epoch / batch, running sums, metrics rows written). The
//! two weight files carry the step in their names and the pointer is renamed into place last,
//! so a run killed at any moment (kill -9 included) leaves the previous point intact.
//!
//! Nothing random needs saving: shuffling is seeded per (seed, stage, epoch) and the backend
//! RNG (dropout) is reseeded per (seed, stage, epoch, batch) before every step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder};
use serde::{Deserialize, Serialize};

use crate::run::atomic_write;
use crate::run::record::StageRecord;

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
}

pub fn pointer(checkpoints: &Path) -> PathBuf {
    checkpoints.join("resume.json")
}

impl ResumeState {
    pub fn load(checkpoints: &Path) -> Result<Option<Self>> {
        let p = pointer(checkpoints);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p)?;
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?,
        ))
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
                if name.starts_with("resume-")
                    && name != self.model_file
                    && name != self.optimizer_file
                {
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

/// Gives every parameter an id derived from its path in the module tree, so a model built in
/// another process has the same ids and optimizer state (keyed by id) loads onto it.
pub fn stable_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Ids {
        path: Vec<String>,
    }
    impl<B: Backend> ModuleMapper<B> for Ids {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            // FNV-1a over the path: stable across processes and builds.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.path.join(".").bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            Param::from_mapped_value(ParamId::from(h), tensor, mapper)
        }
    }
    module.map(&mut Ids { path: Vec::new() })
}
