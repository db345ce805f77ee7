//! `[runtime]`: where and how the pipeline runs. Nothing here changes results on one device.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_device() -> String {
    "cpu".into()
}
fn default_runs_dir() -> String {
    "runs".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// `cpu` (burn-flex), `ndarray` (burn-ndarray build), `cuda` or `cuda:N` (cuda build).
    #[serde(default = "default_device")]
    pub device: String,
    /// Where run folders are created.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// Worker threads for the CPU backend (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Float precision: `f32`, or `f16` / `bf16` on CUDA.
    #[serde(default)]
    pub precision: Precision,
    /// Keep the outputs of a frozen prefix (e.g. a frozen BERT) in `<runs_dir>/.feature-cache/`,
    /// keyed by its weights and the encoded rows, for reuse by later runs.
    #[serde(default = "yes")]
    pub feature_cache: bool,
}

fn yes() -> bool {
    true
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        RuntimeSpec {
            device: default_device(),
            runs_dir: default_runs_dir(),
            threads: None,
            precision: Precision::F32,
            feature_cache: true,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}
