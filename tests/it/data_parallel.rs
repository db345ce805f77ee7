//! Data parallelism on CPU workers (`--devices 2`): the same weights as one device within
//! float error, exact resume with two workers, and the checks on `runtime.devices`.

use crate::common;

use std::path::Path;

use common::{json, only_run, pipe, run, scratch, tensors, text};

/// Model A for three optimizer steps at batch 32, dropout off.
fn model_a_three_steps(runs: &Path, devices: &str) -> Vec<String> {
    vec![
        "run".into(),
        "pipelines/agnews_transformer.toml".into(),
        "--quiet".into(),
        "--set=dataset.limit=300".into(),
        "--set=vectorizer.output_sequence_length=32".into(),
        "--set=stages.train.batch_size=32".into(),
        "--set=stages.train.steps_per_epoch=3".into(),
        "--set=model.block.dropout=0.0".into(),
        "--set=model.dropout.rate=0.0".into(),
        "--set=model.dropout_1.rate=0.0".into(),
        format!("--devices={devices}"),
        format!("--runs-dir={}", runs.display()),
    ]
}

/// The weights of a run's model.safetensors as f32s, by tensor name.
fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    (tensors(&run.join("model/model.safetensors")).into_iter())
        .map(|(k, bytes)| {
            let floats = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, floats)
        })
        .collect()
}

/// Every weight tensor of `b` equals `a`'s within 1e-5 relative, in the tensor's norm. A
/// tensor whose exact gradient is zero (the attention keys' bias, which softmax ignores) steps
/// on rounding noise alone in both runs; it passes when no element differs by more than 1e-7.
fn assert_same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>().sqrt();
        let diff = norm(&mut x.iter().zip(y).map(|(p, q)| (p - q) as f64));
        let size = norm(&mut x.iter().map(|&p| p as f64));
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-5 * size || worst <= 1e-7,
            "{name}: differs by {:.2e} relative (largest element difference {worst:.2e})",
            diff / size
        );
    }
}

fn trained(args: Vec<String>, runs: &Path, pipeline: &str) -> std::path::PathBuf {
    let out = pipe().args(args).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    only_run(runs, pipeline)
}

#[test]
fn two_cpu_workers_train_model_a_to_the_same_weights_as_one() {
    let dir = scratch("dpmodela");
    let one = trained(
        model_a_three_steps(&dir.join("one"), "1"),
        &dir.join("one"),
        "agnews_transformer",
    );
    let two = trained(
        model_a_three_steps(&dir.join("two"), "2"),
        &dir.join("two"),
        "agnews_transformer",
    );
    assert_same_weights(&one, &two);
    assert_eq!(json(&two.join("run.json"))["devices"], 2);
    assert_eq!(json(&one.join("run.json"))["devices"], 1);
    let (a, b) = (json(&one.join("run.json")), json(&two.join("run.json")));
    let (la, lb) = (
        a["metrics"]["train.loss"].as_f64().unwrap(),
        b["metrics"]["train.loss"].as_f64().unwrap(),
    );
    assert!(
        (la - lb).abs() < 1e-5 * la,
        "train loss over the global batch: {la} vs {lb}"
    );

    // Gradient accumulation (the last, smaller micro-batch included: 300 rows in batches of 32
    // end with 12), clipping and a schedule apply to the summed gradients unchanged.
    let more = [
        "--set=stages.train.steps_per_epoch=5".to_string(),
        "--set=stages.train.gradient_accumulation=2".into(),
        "--set=stages.train.clip_norm=0.5".into(),
        "--set=stages.train.schedule={ type = \"linear\", warmup = 0.2 }".into(),
    ];
    let runs = |name: &str, devices: &str| {
        let mut args = model_a_three_steps(&dir.join(name), devices);
        args.retain(|a| !a.contains("steps_per_epoch"));
        args.extend(more.iter().cloned());
        trained(args, &dir.join(name), "agnews_transformer")
    };
    assert_same_weights(&runs("one-acc", "1"), &runs("two-acc", "2"));

    // SGD, whose step (unlike Adam's) scales with the gradient: a sum that was off by the
    // number of workers would show here.
    let sgd = |name: &str, devices: &str| {
        let mut args = model_a_three_steps(&dir.join(name), devices);
        args.push("--set=stages.train.optimizer={ type = \"sgd\", learning_rate = 0.5 }".into());
        trained(args, &dir.join(name), "agnews_transformer")
    };
    assert_same_weights(&sgd("one-sgd", "1"), &sgd("two-sgd", "2"));
}

#[test]
fn two_cpu_workers_fine_tune_tiny_bert_to_the_same_weights_as_one() {
    let dir = scratch("dpbert");
    let tiny = common::fixtures().join("tiny_bert");
    let args = |runs: &Path, devices: &str| -> Vec<String> {
        vec![
            "run".into(),
            "pipelines/bert_finetune.toml".into(),
            "--quiet".into(),
            format!("--set=vectorizer.from=\"{}\"", tiny.display()),
            format!("--set=model.bert.from=\"{}\"", tiny.display()),
            "--set=vectorizer.max_length=64".into(),
            "--set=dataset.limit=64".into(),
            "--set=model.bert.dropout=0.0".into(),
            "--set=model.dropout.rate=0.0".into(),
            "--set=stages.features.steps_per_epoch=1".into(),
            "--set=stages.finetune.steps_per_epoch=1".into(),
            format!("--devices={devices}"),
            format!("--runs-dir={}", runs.display()),
        ]
    };
    let one = trained(
        args(&dir.join("one"), "1"),
        &dir.join("one"),
        "bert_finetune",
    );
    let two = trained(
        args(&dir.join("two"), "2"),
        &dir.join("two"),
        "bert_finetune",
    );
    assert_same_weights(&one, &two);
}

#[test]
fn a_two_worker_run_killed_mid_epoch_resumes_to_an_identical_end() {
    let dir = scratch("dpresume");
    // Dropout on: each worker's masks come from its own seeded stream.
    let args = |runs: &Path| -> Vec<String> {
        vec![
            "run".into(),
            "pipelines/agnews_transformer.toml".into(),
            "--quiet".into(),
            "--set=dataset.limit=1200".into(),
            "--set=vectorizer.output_sequence_length=48".into(),
            "--set=stages.train.batch_size=32".into(),
            "--set=stages.train.epochs=2".into(),
            "--set=stages.train.checkpoint_every=3".into(),
            "--devices=2".into(),
            format!("--runs-dir={}", runs.display()),
        ]
    };
    let straight = dir.join("straight");
    let a = trained(args(&straight), &straight, "agnews_transformer");
    let broken = dir.join("broken");
    let child = pipe().args(args(&broken)).spawn().unwrap();
    let b = common::wait_for_resume_point_where(&broken, "agnews_transformer", |state| {
        state["epoch"] == 2 && state["next_batch"].as_u64().unwrap_or(0) > 0
    });
    let record = common::kill_then_resume(child, &b);
    assert_eq!(record["devices"], 2);
    common::assert_same_end(&a, &b);
}

#[test]
fn devices_that_do_not_fit_are_refused_with_their_place() {
    let dir = scratch("dpbad");
    let runs = format!("--runs-dir={}", dir.display());
    let out = run(&["run", "pipelines/sports_csv.toml", "--devices=3", &runs]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("pipelines/sports_csv.toml:")
            && stderr.contains("`batch_size` 32 does not split evenly over the 3 workers"),
        "{stderr}"
    );
    let out = run(&[
        "run",
        "pipelines/sports_csv.toml",
        "--devices=cpu,cuda:0",
        &runs,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .starts_with("--devices cpu,cuda:0: error: `devices` mixes `cpu` and `cuda:0`"),
        "{:?}",
        text(&out)
    );
    assert!(
        !dir.join("sports_csv").exists(),
        "nothing is created for a refused run"
    );
}
