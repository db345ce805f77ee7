//! Per-stage policies that read the logged metrics: `early_stopping` and `checkpoints`
//! (retention). Both name a metric as `split.metric`; this file holds their TOML types and the
//! rules `pipe check` applies to them. What they do at run time lives in `src/train/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SourceMap;
use super::stage::StageSpec;
use crate::error::{Diagnostics, suggest};

/// The metrics a stage logs that a policy can watch. `test.*` is not among them: the test rows
/// are evaluated once, after the last stage.
pub const MONITORS: &[&str] = &[
    "validation.loss",
    "validation.accuracy",
    "validation.macro_f1",
    "train.loss",
    "train.accuracy",
];

/// Which way a monitored metric gets better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
}

impl Mode {
    /// `min` for `*.loss`, `max` for everything else (`*.accuracy`), unless `mode` says otherwise.
    pub fn of(monitor: &str, explicit: Option<Mode>) -> Mode {
        explicit.unwrap_or(if monitor.ends_with(".loss") {
            Mode::Min
        } else {
            Mode::Max
        })
    }

    /// Whether `value` beats `best` by more than `min_delta` (strictly: a tie is no improvement,
    /// as in Keras). NaN never improves, so a diverged run is never "best".
    pub fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match (self, best) {
            (_, None) => true,
            (Mode::Min, Some(b)) => value < b - min_delta,
            (Mode::Max, Some(b)) => value > b + min_delta,
        }
    }
}

fn default_monitor() -> String {
    "validation.loss".to_string()
}
fn one() -> usize {
    1
}

/// `early_stopping = { monitor = "validation.loss", patience = 3 }`: the stage ends once the
/// monitored metric has not improved for `patience` checks in a row (as Keras' EarlyStopping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    /// The metric watched, `split.metric`: `validation.loss` (default), `validation.accuracy`,
    /// `train.loss` or `train.accuracy`. Validation metrics are checked at every validation
    /// point (each epoch end and each `validate_every`), train metrics at epoch ends.
    #[serde(default = "default_monitor")]
    #[schemars(extend("enum" = ["validation.loss", "validation.accuracy", "train.loss", "train.accuracy"]))]
    pub monitor: String,
    /// `min` or `max`: which way is better. Default: `min` for `*.loss`, `max` for `*.accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Stop after this many checks in a row without improvement (at least 1; 1 stops at the
    /// first check that does not improve, which is what Keras' `patience = 0` does too).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub patience: usize,
    /// An improvement must beat the best value by more than this, in the metric's units (≥ 0).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub min_delta: f64,
    /// When the stage stops early, end it with the weights of its best check instead of the
    /// last ones; the next stage, the test evaluation and `model/` then use those.
    #[serde(default)]
    pub restore_best: bool,
}

/// `checkpoints = { keep_last = 2, keep_best = 1, monitor = "validation.loss" }`: which of the
/// stage's epoch-end checkpoints stay in `checkpoints/`. Without it: the newest one and the best
/// one by validation accuracy (training accuracy when nothing is validated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsSpec {
    /// Keep the newest N checkpoints (at least 1). The newest is `<stage>-last.safetensors`,
    /// older ones `<stage>-step<S>.safetensors` (S: the optimizer step within the stage).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub keep_last: usize,
    /// Keep the N best checkpoints by `monitor` (0: none). The best is
    /// `<stage>-best.safetensors`, the others `<stage>-step<S>.safetensors`.
    #[serde(default = "one")]
    pub keep_best: usize,
    /// The metric that ranks checkpoints, `split.metric` (default: `validation.accuracy` when
    /// the pipeline validates, else `train.accuracy`), read at epoch ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["validation.loss", "validation.accuracy", "train.loss", "train.accuracy"]))]
    pub monitor: Option<String>,
    /// `min` or `max`: which way is better. Default: `min` for `*.loss`, `max` for `*.accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl Default for CheckpointsSpec {
    fn default() -> Self {
        CheckpointsSpec {
            keep_last: 1,
            keep_best: 1,
            monitor: None,
            mode: None,
        }
    }
}

/// Check-time rules for a stage's `early_stopping` and `checkpoints` (`at` is `stages[i]`,
/// `validated`: the pipeline has validation rows). Each problem is one located line.
pub fn check_stage(
    stage: &StageSpec,
    at: &str,
    sname: &str,
    validated: bool,
    src: &SourceMap,
    diags: &mut Diagnostics,
) {
    if let Some(es) = &stage.early_stopping {
        let key = format!("{at}.early_stopping");
        check_monitor(&es.monitor, &key, sname, validated, src, diags);
        if es.patience == 0 {
            diags.push(
                src.value(&format!("{key}.patience")),
                format!(
                    "stage `{sname}`: `early_stopping.patience` must be at least 1 (it counts checks without improvement; 1 stops at the first)"
                ),
            );
        }
        if !(es.min_delta >= 0.0 && es.min_delta.is_finite()) {
            diags.push(
                src.value(&format!("{key}.min_delta")),
                format!(
                    "stage `{sname}`: `early_stopping.min_delta` must be a finite number >= 0, got {}",
                    es.min_delta
                ),
            );
        }
    }
    if let Some(ck) = &stage.checkpoints {
        let key = format!("{at}.checkpoints");
        if let Some(monitor) = &ck.monitor {
            check_monitor(monitor, &key, sname, validated, src, diags);
        }
        if ck.keep_last == 0 {
            diags.push(
                src.value(&format!("{key}.keep_last")),
                format!(
                    "stage `{sname}`: `checkpoints.keep_last` must be at least 1 (the newest checkpoint is `{sname}-last.safetensors`)"
                ),
            );
        }
    }
}

/// A monitor is one of [`MONITORS`], and a `validation.*` one needs validation rows.
fn check_monitor(
    monitor: &str,
    table: &str,
    sname: &str,
    validated: bool,
    src: &SourceMap,
    diags: &mut Diagnostics,
) {
    let section = table.rsplit('.').next().unwrap_or(table);
    let at = src.value(&format!("{table}.monitor"));
    if !MONITORS.contains(&monitor) {
        let hint = if monitor.starts_with("test.") {
            "; the test rows are evaluated only after the last stage".to_string()
        } else {
            suggest_monitor(monitor)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default()
        };
        diags.push(
            at,
            format!(
                "stage `{sname}`: `{section}.monitor` `{monitor}` is not a metric the stage logs (one of {}){hint}",
                MONITORS.join(", ")
            ),
        );
    } else if monitor.starts_with("validation.") && !validated {
        diags.push(
            at,
            format!(
                "stage `{sname}`: `{section}.monitor` is `{monitor}`, but nothing is validated (set `dataset.validation`, or watch `train.*`)"
            ),
        );
    }
}

/// The monitor a misspelt or Keras-style name means: `validation.acc`, `val_accuracy` →
/// `validation.accuracy`; `loss` → `train.loss`. Split and metric are matched apart (by prefix,
/// then by edit distance), so that a short metric is not matched to the other split's name.
fn suggest_monitor(word: &str) -> Option<String> {
    let word = word.replace('_', ".");
    let word = match word.strip_prefix("val.") {
        Some(rest) => format!("validation.{rest}"),
        None => word,
    };
    let (split, metric) = word.split_once('.').unwrap_or(("train", word.as_str()));
    let closest = |part: &str, names: [&'static str; 2]| {
        names
            .into_iter()
            .find(|n| !part.is_empty() && n.starts_with(part))
            .or_else(|| suggest(part, names))
    };
    let split = closest(split, ["validation", "train"])?;
    let metric = closest(metric, ["loss", "accuracy"])?;
    Some(format!("{split}.{metric}"))
}

#[cfg(test)]
mod tests {
    use super::{Mode, suggest_monitor};

    #[test]
    fn misspelt_and_keras_monitor_names_get_a_suggestion() {
        for (word, want) in [
            ("validation.acc", Some("validation.accuracy")),
            ("val_loss", Some("validation.loss")),
            ("val_accuracy", Some("validation.accuracy")),
            ("validaton.loss", Some("validation.loss")),
            ("loss", Some("train.loss")),
            ("train.acuracy", Some("train.accuracy")),
            ("zzz.qqq", None),
        ] {
            assert_eq!(suggest_monitor(word).as_deref(), want, "{word}");
        }
    }

    #[test]
    fn mode_follows_the_metric_name_unless_given() {
        assert_eq!(Mode::of("validation.loss", None), Mode::Min);
        assert_eq!(Mode::of("train.loss", None), Mode::Min);
        assert_eq!(Mode::of("validation.accuracy", None), Mode::Max);
        assert_eq!(Mode::of("validation.loss", Some(Mode::Max)), Mode::Max);
        assert_eq!(Mode::of("train.accuracy", Some(Mode::Min)), Mode::Min);
    }

    #[test]
    fn improvement_is_strict_and_beyond_min_delta() {
        assert!(Mode::Min.improves(1.0, None, 0.0));
        assert!(Mode::Min.improves(0.9, Some(1.0), 0.0));
        assert!(
            !Mode::Min.improves(1.0, Some(1.0), 0.0),
            "a tie is no improvement"
        );
        assert!(!Mode::Min.improves(0.95, Some(1.0), 0.1));
        assert!(Mode::Min.improves(0.85, Some(1.0), 0.1));
        assert!(Mode::Max.improves(0.8, Some(0.7), 0.0));
        assert!(!Mode::Max.improves(0.75, Some(0.7), 0.1));
        assert!(!Mode::Max.improves(0.6, Some(0.7), 0.0));
        assert!(!Mode::Min.improves(f64::NAN, None, 0.0));
        assert!(!Mode::Max.improves(f64::NAN, Some(0.1), 0.0));
        assert!(Mode::Min.improves(3.0, Some(f64::INFINITY), 0.5));
    }
}
