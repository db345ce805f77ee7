//! `batch_normalization` end to end: Keras' parameter count with the moving statistics as
//! non-trainable, and those statistics kept in the run folder, through a pause and resume,
//! and used by eval.

use crate::common;

use std::path::{Path, PathBuf};

use common::{json, scratch};

const SPEC: &str = r#"name = "normalized"
seed = 3
[dataset]
format = "ag_news_csv"
train = "DATA/train.csv"
test = "DATA/test.csv"
text = ["title", "description"]
labels = ["World", "Sports", "Business", "Sci/Tech"]
validation = "test"
limit = 300
[vectorizer]
type = "text_vectorization"
max_tokens = 500
output_sequence_length = 24
[[model.layers]]
type = "embedding"
output_dim = 8
[[model.layers]]
type = "conv1d"
filters = 8
kernel_size = 3
padding = "same"
activation = "relu"
[[model.layers]]
name = "norm_positions"
type = "batch_normalization"
[[model.layers]]
type = "global_max_pooling_1d"
[[model.layers]]
name = "norm_pooled"
type = "batch_normalization"
momentum = 0.9
[[model.layers]]
type = "dense"
units = 4
activation = "softmax"
[[stages]]
epochs = 2
batch_size = 32
optimizer = { type = "adam", learning_rate = 1e-2 }
"#;

fn spec(dir: &Path) -> PathBuf {
    let data = common::root().join("data/ag_news");
    let path = dir.join("normalized.toml");
    std::fs::write(&path, SPEC.replace("DATA", &data.display().to_string())).unwrap();
    path
}

#[test]
fn moving_statistics_are_counted_saved_resumed_and_used_by_eval() {
    let dir = scratch("batchnorm");
    let spec = spec(&dir);
    let straight = common::trained(&spec, &[], &dir.join("straight"));
    let record = json(&straight.join("run.json"));
    // Embedding, convolution, 4·8 + 4·8 normalisation (2·8 of each moving), head.
    let params = &record["params"];
    assert_eq!(
        params["total"],
        500 * 8 + (3 * 8 * 8 + 8) + 32 + 32 + (8 * 4 + 4)
    );
    assert_eq!(params["non_trainable"], 16 + 16);

    // Paused after the first epoch and resumed: the same end, moving statistics included.
    let resumed = common::paused_then_resumed(&spec, &[], &dir.join("paused"));
    common::assert_same_end(&straight, &resumed);
    let weights = common::tensors(&straight.join("model/model.safetensors"));
    let moving: Vec<&String> = weights.keys().filter(|k| k.contains("running")).collect();
    assert_eq!(moving.len(), 4, "{:?}", weights.keys());
    // Training moved them away from their start (mean 0).
    for mean in moving.iter().filter(|k| k.contains("running_mean")) {
        assert!(weights[*mean].iter().any(|&b| b != 0), "{mean} never moved");
    }

    // eval normalises with the moving statistics from the run folder: the run's test figure.
    let eval = common::eval_first_test_rows(&straight, 300, &dir);
    assert_eq!(
        eval["report"]["accuracy"].as_f64().unwrap(),
        record["metrics"]["test.accuracy"].as_f64().unwrap()
    );
}

/// The sum of |moving mean| over the features of each batch_normalization layer, by tensor name.
fn moving_mean_sizes(run: &Path) -> Vec<(String, f32)> {
    let weights = common::tensors(&run.join("model/model.safetensors"));
    (weights.into_iter())
        .filter(|(name, _)| name.contains("running_mean"))
        .map(|(name, bytes)| {
            let size = (bytes.chunks(4))
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()).abs())
                .sum();
            (name, size)
        })
        .collect()
}

#[test]
fn two_workers_move_the_moving_statistics_once_per_step_as_one_does() {
    let dir = scratch("batchnorm-dp");
    let spec = spec(&dir);
    let one = common::trained(&spec, &[], &dir.join("one"));
    let two = common::trained(&spec, &["--devices=2"], &dir.join("two"));
    // Each worker normalises its half of a batch, so the weights differ a little; the moving
    // means must still have moved by 20 steps' worth, not by the one fold a validation makes.
    let (one, two) = (moving_mean_sizes(&one), moving_mean_sizes(&two));
    assert_eq!(one.len(), 2);
    for ((name, a), (_, b)) in one.iter().zip(&two) {
        let ratio = b / a;
        assert!(
            (0.7..1.4).contains(&ratio),
            "{name}: {b} with 2 workers, {a} with 1"
        );
    }
}
