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
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        RuntimeSpec {
            device: default_device(),
            runs_dir: default_runs_dir(),
            threads: None,
        }
    }
}
