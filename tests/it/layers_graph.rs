//! Every layer's parameter formula agrees with the burn module it builds, DAG inputs work,
//! and the training options (validation every N steps, clipping, accumulation, JSON events)
//! run end to end.

use crate::common;

use std::path::Path;

use burn::backend::Flex;
use burn::module::Module;
use common::{only_run, pipe, scratch, text};
use pipe::graph::{Graph, plan};
use pipe::spec::load::load_spec_str;

const DAG: &str = r#"name = "dag"
[dataset]
train = "data/ag_news/train.csv"
labels = ["World", "Sports", "Business", "Sci/Tech"]
[vectorizer]
type = "text_vectorization"
max_tokens = 500
output_sequence_length = 24
[[model.layers]]
name = "tokens"
type = "embedding"
output_dim = 16
[[model.layers]]
name = "positions"
type = "token_and_position_embedding"
input = "input"
embed_dim = 16
[[model.layers]]
name = "cross"
type = "multi_head_attention"
inputs = ["tokens", "positions"]
num_heads = 3
key_dim = 5
value_dim = 7
masked = true
[[model.layers]]
type = "layer_normalization"
[[model.layers]]
type = "transformer_block"
num_heads = 2
ff_dim = 8
masked = true
[[model.layers]]
type = "global_average_pooling_1d"
masked = true
[[model.layers]]
type = "dense"
units = 6
activation = "gelu"
[[model.layers]]
type = "dense"
units = 4
activation = "softmax"
"#;

/// The other new layers in one small graph: a residual `add` around a `same` convolution,
/// windowed max pooling, `flatten` and a dense head.
const POOLED: &str = r#"name = "pooled"
[dataset]
train = "data/ag_news/train.csv"
labels = ["World", "Sports", "Business", "Sci/Tech"]
[vectorizer]
type = "text_vectorization"
max_tokens = 500
output_sequence_length = 24
[[model.layers]]
name = "embed"
type = "embedding"
output_dim = 8
[[model.layers]]
name = "conv"
type = "conv1d"
filters = 8
kernel_size = 3
padding = "same"
activation = "relu"
[[model.layers]]
name = "residual"
type = "add"
inputs = ["embed", "conv"]
[[model.layers]]
type = "max_pooling_1d"
pool_size = 4
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 4
activation = "softmax"
"#;

#[test]
fn parameter_formulas_match_built_modules() {
    for (file, text) in [
        ("dag.toml", DAG.to_string()),
        ("pooled.toml", POOLED.to_string()),
        (
            "a.toml",
            std::fs::read_to_string(common::root().join("pipelines/agnews_transformer.toml"))
                .unwrap(),
        ),
        (
            "cnn.toml",
            std::fs::read_to_string(common::root().join("pipelines/agnews_cnn.toml")).unwrap(),
        ),
        (
            "branches.toml",
            std::fs::read_to_string(common::root().join("pipelines/agnews_cnn_branches.toml"))
                .unwrap(),
        ),
        (
            "bilstm.toml",
            std::fs::read_to_string(common::root().join("pipelines/agnews_bilstm.toml")).unwrap(),
        ),
    ] {
        let loaded = load_spec_str(file, &text, &[], &[]).unwrap();
        let plan = plan::resolve_with(&loaded, false).unwrap();
        let graph = Graph::<Flex>::init(&plan, &Default::default(), false).unwrap();
        for (layer, module) in plan.layers.iter().zip(&graph.layers) {
            assert_eq!(
                layer.params,
                module.num_params(),
                "{file}: layer {}",
                layer.name
            );
        }
        assert_eq!(plan.total_params(), graph.num_params());
    }
    // Keras: MultiHeadAttention(2 heads, key_dim 32) on a 32-wide input has 8,416 parameters.
    let text =
        std::fs::read_to_string(common::root().join("pipelines/agnews_transformer.toml")).unwrap();
    let plan =
        plan::resolve_with(&load_spec_str("a.toml", &text, &[], &[]).unwrap(), false).unwrap();
    assert_eq!(plan.layers[1].params, 8416 + 2112 + 128);
}

#[test]
fn dag_with_named_inputs_trains_with_every_training_option() {
    let dir = scratch("dag");
    let spec = dir.join("dag.toml");
    std::fs::write(
        &spec,
        format!(
            "{DAG}[[stages]]\nepochs = 2\nbatch_size = 16\nvalidate_every = 3\nclip_norm = 1.0\ngradient_accumulation = 2\n\
             optimizer = {{ type = \"sgd\", learning_rate = 0.05, momentum = 0.9 }}\n\
             schedule = {{ type = \"cosine\", warmup = 0.2 }}\n"
        )
        .replace("labels = [", "validation = 0.2\nlimit = 160\nlabels = ["),
    )
    .unwrap();
    let out = pipe()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--json",
            &format!("--runs-dir={}", dir.display()),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // One JSON object per logged event, then the end event.
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["event"], "end");
    assert_eq!(events.last().unwrap()["status"], "completed");
    // 128 train rows / 16 = 8 batches = 4 optimizer steps per epoch (accumulating 2): validation
    // after step 3 (mid-epoch 1), at each epoch end, and after step 6 (mid-epoch 2).
    let run = only_run(&dir, "dag");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = metrics.lines().skip(1).collect();
    let mid_epoch: Vec<&&str> = rows.iter().filter(|r| r.contains(",validation,")).collect();
    assert_eq!(
        rows.iter().filter(|r| r.contains(",train,")).count(),
        2,
        "{metrics}"
    );
    assert!(
        mid_epoch.len() >= 3,
        "validate_every adds rows inside epochs:\n{metrics}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("train,1,3,validation,")),
        "{metrics}"
    );
    let steps: Vec<&str> = rows
        .iter()
        .filter(|r| r.contains(",train,"))
        .map(|r| r.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(
        steps,
        vec!["4", "8"],
        "gradient accumulation halves the optimizer steps:\n{metrics}"
    );
    assert!(events.iter().filter(|e| e["event"] == "metrics").count() == rows.len());
}

#[test]
fn the_cnn_pipeline_trains_and_reports_its_parameters() {
    let runs = scratch("cnn");
    let cnn = common::trained(
        Path::new("pipelines/agnews_cnn.toml"),
        &[
            "--set=dataset.limit=300",
            "--set=vectorizer.output_sequence_length=32",
        ],
        &runs,
    );
    let record = common::json(&cnn.join("run.json"));
    assert_eq!(record["status"], "completed");
    // 20,000 × 64 embedding + 5·64·128 + 128 convolution + 128·4 + 4 head.
    assert_eq!(record["params"]["total"], 1_280_000 + 41_088 + 516);
    assert!(record["metrics"]["test.accuracy"].as_f64().unwrap() > 0.25);

    // The small graph of the other new layers trains too; its head reads 6 windows × 8.
    let spec = runs.join("pooled.toml");
    let pooled = format!("{POOLED}[[stages]]\nepochs = 1\nbatch_size = 32\noptimizer = {{ type = \"adam\", learning_rate = 1e-3 }}\n",).replace(
        "data/ag_news",
        &common::root().join("data/ag_news").display().to_string(),
    );
    std::fs::write(&spec, pooled).unwrap();
    let pooled = common::trained(&spec, &["--set=dataset.limit=200"], &runs);
    let record = common::json(&pooled.join("run.json"));
    assert_eq!(
        record["params"]["total"],
        500 * 8 + (3 * 8 * 8 + 8) + (6 * 8 * 4 + 4)
    );
}

#[test]
fn the_bilstm_pipeline_trains_on_batches_cut_to_their_longest_row() {
    let runs = scratch("bilstm");
    let bilstm = common::trained(
        Path::new("pipelines/agnews_bilstm.toml"),
        &["--set=dataset.limit=200", "--set=stages.train.epochs=1"],
        &runs,
    );
    let record = common::json(&bilstm.join("run.json"));
    assert_eq!(record["status"], "completed");
    // 20,000 × 64 embedding + 2 directions × 4 gates × (64·64 + 64·64 + 2·64) + 128·4 + 4.
    assert_eq!(
        record["params"]["total"],
        1_280_000 + 2 * 4 * (64 * 64 + 64 * 64 + 128) + 516
    );
}
