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
    let events = common::json_lines(&stdout);
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
    // The cosine schedule over the 8 steps, warming up over 0.2 × 8 → 2 of them: each row
    // logs the rate of the step just taken (0-based step - 1), recomputed here.
    let cosine = |s: usize| {
        let (base, w, total, s) = (0.05, 2.0, 8.0, s as f64);
        if s < w {
            base * s / w
        } else {
            0.5 * base * (1.0 + (std::f64::consts::PI * (s - w) / (total - w)).cos())
        }
    };
    let logged: Vec<(usize, f64)> = (common::metrics_rows(&run).iter())
        .map(|r| (r["step"].parse().unwrap(), r["lr"].parse().unwrap()))
        .collect();
    // Two train rows, four validation rows, and a train_step row after each of the 8 steps
    // (4 an epoch: at most 20 an epoch is one a step).
    assert_eq!(logged.len(), 6 + 8, "{metrics}");
    for (step, lr) in logged {
        let want = cosine(step - 1);
        assert!(
            (lr - want).abs() <= 1e-12 * want,
            "step {step}: lr {lr}, cosine schedule {want}\n{metrics}"
        );
    }
}

/// The scheduled learning rate of every optimizer step, from the lr column of a run that
/// validates after each step (12 steps: 96 rows in batches of 16, two epochs), against the
/// schedules' definitions (HF's linear and cosine with warmup, the Transformer paper's noam).
#[test]
fn every_schedule_logs_the_rate_its_definition_gives_at_each_step() {
    use std::f64::consts::PI;
    let runs = scratch("schedules");
    let (base, total) = (2e-3, 12usize);
    type Rate = Box<dyn Fn(f64) -> f64>;
    let cases: Vec<(&str, Rate)> = vec![
        ("{ type = \"constant\" }", Box::new(move |_| base)),
        (
            // warmup 0.25 × 12 = 3 steps, then linear decay to 0 at step 12.
            "{ type = \"linear\", warmup = 0.25 }",
            Box::new(move |s| {
                if s < 3.0 {
                    base * s / 3.0
                } else {
                    base * (12.0 - s) / 9.0
                }
            }),
        ),
        (
            // warmup 4 steps, then cosine decay to min_lr 1e-4.
            "{ type = \"cosine\", warmup = 4, min_lr = 1e-4 }",
            Box::new(move |s| {
                if s < 4.0 {
                    base * s / 4.0
                } else {
                    1e-4 + (base - 1e-4) * 0.5 * (1.0 + (PI * (s - 4.0) / 8.0).cos())
                }
            }),
        ),
        (
            // lr · √w · min(t^-0.5, t · w^-1.5), t = step + 1: peaks at lr when t = w = 5.
            "{ type = \"noam\", warmup = 5 }",
            Box::new(move |s| {
                let t = s + 1.0;
                base * 5f64.sqrt() * t.powf(-0.5).min(t * 5f64.powf(-1.5))
            }),
        ),
    ];
    for (k, (schedule, rate)) in cases.iter().enumerate() {
        let dir = runs.join(k.to_string());
        let run = common::trained(
            Path::new("pipelines/agnews_transformer.toml"),
            &[
                "--set=dataset.limit=96",
                "--set=vectorizer.output_sequence_length=32",
                "--set=stages.train.batch_size=16",
                "--set=stages.train.epochs=2",
                "--set=stages.train.validate_every=1",
                &format!("--set=stages.train.optimizer.learning_rate={base}"),
                &format!("--set=stages.train.schedule={schedule}"),
            ],
            &dir,
        );
        let rows = common::metrics_rows(&run);
        let steps: Vec<usize> = (rows.iter())
            .filter(|r| r["split"] == "validation")
            .map(|r| r["step"].parse().unwrap())
            .collect();
        assert_eq!(steps, (1..=total).collect::<Vec<_>>(), "{schedule}");
        for r in rows.iter().filter(|r| r["split"] != "test") {
            let step: f64 = r["step"].parse().unwrap();
            let lr: f64 = r["lr"].parse().unwrap();
            let want = rate(step - 1.0);
            assert!(
                (lr - want).abs() <= 1e-12 * base,
                "{schedule}: after step {step} the rate was {lr}, not {want}"
            );
        }
    }
}

/// `clip_norm` clips each parameter's gradient to that L2 norm: after one plain-SGD step at
/// rate 1, each tensor has moved by min(‖its gradient‖, clip_norm), where the unclipped run
/// measures ‖gradient‖ as its own move. And the optimizer takes the scheduled rate: a step
/// the warmup gives rate 0 moves nothing.
#[test]
fn clip_norm_bounds_each_tensors_step_and_the_optimizer_takes_the_scheduled_rate() {
    let dir = scratch("clip");
    let clip = 1e-3;
    let weights = |name: &str, extra: &[&str]| {
        let mut sets = vec![
            "--set=dataset.limit=32",
            "--set=vectorizer.output_sequence_length=32",
            "--set=stages.train.batch_size=32",
            "--set=stages.train.epochs=1",
        ];
        sets.extend_from_slice(extra);
        let run = common::trained(
            Path::new("pipelines/agnews_transformer.toml"),
            &sets,
            &dir.join(name),
        );
        assert_eq!(common::json(&run.join("run.json"))["stages"][0]["steps"], 1);
        common::tensors(&run.join("model/model.safetensors"))
    };
    let sgd = |lr: &str| {
        format!("--set=stages.train.optimizer={{ type = \"sgd\", learning_rate = {lr} }}")
    };
    let clip_set = format!("--set=stages.train.clip_norm={clip}");
    // A rate of 1e-30 moves no weight that is not 0: the initial weights.
    let start = weights("start", &[&sgd("1e-30")]);
    let free = weights("free", &[&sgd("1.0")]);
    let clipped = weights("clipped", &[&sgd("1.0"), &clip_set]);
    let warmup = weights(
        "warmup",
        &[
            &sgd("1.0"),
            "--set=stages.train.schedule={ type = \"linear\", warmup = 1 }",
        ],
    );
    let moved = |w: &std::collections::BTreeMap<String, Vec<u8>>, name: &str| -> f64 {
        let (a, b) = (common::f32s(&w[name]), common::f32s(&start[name]));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut bitten = 0;
    for name in start.keys() {
        let (gradient, step) = (moved(&free, name), moved(&clipped, name));
        if gradient > 10.0 * clip {
            bitten += 1;
        }
        let want = gradient.min(clip);
        assert!(
            (step - want).abs() <= 0.01 * want + 1e-6,
            "{name}: moved {step} with clip_norm {clip}; its gradient's norm is {gradient}"
        );
        assert!(
            moved(&warmup, name) < 1e-20,
            "{name}: the first warmup step has rate 0, yet it moved {}",
            moved(&warmup, name)
        );
    }
    assert!(bitten >= 3, "the clip must bite on some tensors");
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

/// Each epoch trains on a new order of the train rows, drawn from the pipeline seed. Seen
/// through the token embedding: with one plain-SGD step per epoch on a batch of 8 of the 400
/// rows, exactly the embedding rows of the tokens in the epochs' batches move. Without
/// shuffling every epoch takes the same first 8 rows (the control that shows the probe
/// works); with it, three epochs reach many more tokens than one, and another seed other ones.
#[test]
fn each_epoch_trains_on_a_fresh_shuffle_drawn_from_the_seed() {
    let dir = scratch("shuffle");
    let table = "layers.0.TokenAndPositionEmbedding.token_emb.weight";
    let embedding = |name: &str, extra: &[&str]| -> Vec<f32> {
        let mut sets = vec![
            "--set=dataset.limit=400",
            "--set=vectorizer.output_sequence_length=32",
            "--set=stages.train.batch_size=8",
            "--set=stages.train.steps_per_epoch=1",
        ];
        sets.extend_from_slice(extra);
        let run = common::trained(
            Path::new("pipelines/agnews_transformer.toml"),
            &sets,
            &dir.join(name),
        );
        common::f32s(&common::tensors(&run.join("model/model.safetensors"))[table])
    };
    let sgd = |lr: &str| {
        format!("--set=stages.train.optimizer={{ type = \"sgd\", learning_rate = {lr} }}")
    };
    let (tiny, step) = (sgd("1e-30"), sgd("0.5"));
    // The token ids (embedding rows) that moved from the initial weights `start`.
    let moved = |start: &[f32], end: &[f32]| -> std::collections::BTreeSet<usize> {
        (0..start.len() / 32)
            .filter(|&t| start[t * 32..(t + 1) * 32] != end[t * 32..(t + 1) * 32])
            .collect()
    };
    let epochs = |n: usize| format!("--set=stages.train.epochs={n}");
    let start = embedding("start", &[&tiny, &epochs(1)]);
    let one = moved(&start, &embedding("one", &[&step, &epochs(1)]));
    let three = moved(&start, &embedding("three", &[&step, &epochs(3)]));
    let fixed = "--set=stages.train.shuffle=false";
    let one_fixed = moved(&start, &embedding("one-fixed", &[&step, &epochs(1), fixed]));
    let three_fixed = moved(
        &start,
        &embedding("three-fixed", &[&step, &epochs(3), fixed]),
    );
    assert!(
        one.len() >= 30,
        "a batch of 8 news rows has dozens of tokens: {one:?}"
    );
    assert_eq!(
        three_fixed, one_fixed,
        "unshuffled, every epoch is the same 8 rows"
    );
    assert_ne!(
        one, one_fixed,
        "shuffled, the first batch is not the file's first 8 rows"
    );
    assert!(
        three.is_superset(&one) && three.len() * 2 > one.len() * 3,
        "three epochs must see other rows than the first: {} tokens after one epoch, {} after three",
        one.len(),
        three.len()
    );
    // Another pipeline seed, another first batch.
    let seed = "--set=seed=7";
    let start_7 = embedding("start-7", &[&tiny, &epochs(1), seed]);
    let one_7 = moved(&start_7, &embedding("one-7", &[&step, &epochs(1), seed]));
    assert_ne!(one_7, one, "the seed must set the order");
}
