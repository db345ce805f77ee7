//! A run killed with SIGKILL mid-epoch and resumed ends bit-identical to an unbroken run.

use crate::common;

use std::path::{Path, PathBuf};

use common::{json, only_run, pipe, run, scratch, text};

/// Model A shrunk to seconds, with two stages (a different optimizer in each) and frequent
/// resume points.
fn spec(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(common::root().join("pipelines/agnews_transformer.toml")).unwrap();
    let two_stages = text.replace(
        "[[stages]]\nname = \"train\"",
        "[[stages]]\nname = \"warmup\"\nepochs = 1\nbatch_size = 32\noptimizer = { type = \"sgd\", learning_rate = 0.05, momentum = 0.9 }\n\n[[stages]]\nname = \"train\"\ncheckpoint_every = 3",
    );
    let p = dir.join("two_stages.toml");
    std::fs::write(&p, two_stages).unwrap();
    p
}

fn args(spec: &Path, runs: &Path) -> Vec<String> {
    vec![
        "run".into(),
        spec.display().to_string(),
        "--quiet".into(),
        "--set=dataset.limit=1200".into(),
        "--set=vectorizer.output_sequence_length=48".into(),
        "--set=stages.train.batch_size=32".into(),
        "--set=stages.train.epochs=2".into(),
        format!("--runs-dir={}", runs.display()),
    ]
}

#[test]
fn kill_9_then_resume_equals_an_unbroken_run() {
    let dir = scratch("resume");
    let spec = spec(&dir);

    let straight = dir.join("straight");
    let out = pipe().args(args(&spec, &straight)).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let a = only_run(&straight, "agnews_transformer");

    // Kill the second run once it has a resume point inside the second stage, mid-epoch, and
    // inside the window of a train_step row (38 steps an epoch: a row every 2 steps, a point
    // every 3).
    let broken = dir.join("broken");
    let child = pipe().args(args(&spec, &broken)).spawn().unwrap();
    let b = common::wait_for_resume_point_where(&broken, "agnews_transformer", |state| {
        let mid_epoch = state["next_batch"].as_u64().unwrap_or(0) > 0;
        state["stage"] == 1 && mid_epoch && state["window"]["seen"].as_u64().unwrap_or(0) > 0
    });
    let record = common::kill_then_resume(child, &b);
    assert_eq!(record["resumed_at"].as_array().unwrap().len(), 1);
    common::assert_same_end(&a, &b);
    let rows = common::metrics_rows(&b);
    let steps: Vec<u64> = (rows.iter())
        .filter(|r| r["split"] == "train_step")
        .map(|r| r["global_step"].parse().unwrap())
        .collect();
    assert!(steps.len() > 40, "{rows:?}");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(json(&a.join("run.json"))["metrics"], record["metrics"]);

    // A completed run is not resumed again.
    let out = run(&["run", "--resume", b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("already completed"),
        "{:?}",
        text(&out)
    );
}
