//! The pipeline spec: serde types for every section of a pipeline TOML file.
//!
//! Loading (file, `--set`, `PIPE_*` environment) and error locations live in `load.rs`;
//! the JSON schema editors use is generated from these types in `schema.rs`.

pub mod dataset;
pub mod load;
pub mod model;
pub mod policy;
pub mod runtime;
pub mod schema;
pub mod stage;
pub mod vectorizer;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use dataset::{DatasetFormat, DatasetSpec, Validation};
pub use load::{LoadedSpec, SourceMap, load_spec};
pub use model::{LayerSpec, ModelSpec};
pub use runtime::RuntimeSpec;
pub use stage::{OptimizerSpec, ScheduleSpec, StageSpec};
pub use vectorizer::VectorizerSpec;

fn default_seed() -> u64 {
    42
}

/// A whole pipeline: data, vectorizer, model graph and training stages.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Pipeline name; runs go to `runs/<name>/`.
    pub name: String,
    /// Free text shown by `pipe check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed for initialisation, shuffling, dropout and splits.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub dataset: DatasetSpec,
    pub vectorizer: VectorizerSpec,
    pub model: ModelSpec,
    /// Training stages, run in order.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// Hyperparameter sweep run by `pipe sweep` (ignored by `pipe run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
}

/// `[sweep]`: the same content as `pipe sweep --grid/--random/--trials`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// `--set` path → values; every combination is a trial.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<serde_json::Value>>")]
    pub grid: std::collections::BTreeMap<String, Vec<toml::Value>>,
    /// `--set` path → `"low..high"` or `"low..high:log"`, sampled `trials` times.
    #[serde(default)]
    pub random: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Seed of the random search (default: the pipeline seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}
