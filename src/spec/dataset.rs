//! `[dataset]`: where examples come from and how they are split.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// Headerless quoted CSV `class_index,title,description` (class 1..N), as AG News ships.
    #[default]
    AgNewsCsv,
    /// CSV with a header row; `text` and `label` name columns.
    Csv,
    /// One JSON object per line; `text` and `label` name fields.
    Jsonl,
    /// A Parquet file (the Hugging Face hub's datasets); `text` and `label` name columns.
    Parquet,
    /// A folder written by `datasets`' `save_to_disk` (Arrow IPC streams, `data-*.arrow`);
    /// `text` and `label` name columns.
    Arrow,
}

/// Which rows validate after each epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Validation {
    /// `"test"`: the test file.
    Split(ValidationSplit),
    /// A fraction of the train rows in (0, 1), held out with the pipeline seed.
    Fraction(f64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationSplit {
    Test,
}

fn default_text() -> Vec<String> {
    vec!["title".into(), "description".into()]
}
fn default_label() -> String {
    "label".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    #[serde(default)]
    pub format: DatasetFormat,
    /// Training file (relative to the working directory).
    pub train: String,
    /// Test file: evaluated after the last stage, and the validation rows when `validation = "test"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Columns joined with one space into the text.
    #[serde(default = "default_text")]
    pub text: Vec<String>,
    /// Label column (csv / jsonl).
    #[serde(default = "default_label")]
    pub label: String,
    /// Class names, in class-index order. Omitted: the distinct label values of the train
    /// file, sorted (numerically when all are integers); the run folder's pipeline.toml then
    /// lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Use only the first `limit` rows of each file (quick runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Turn each backslash into a line break (AG News' escape). Off by default: the lesson and
    /// Keras parity keep the text exactly as stored.
    #[serde(default)]
    pub unescape_backslash: bool,
}

/// One class and how many rows of a file carry it (`pipe check` shows the inferred classes so).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    pub label: String,
    pub rows: usize,
}
