//! Early stopping and checkpoint retention end to end, on model A shrunk to seconds: a stage
//! that stops before its epochs and says so in run.json, restores its best weights for the next
//! stage, resumes exactly after kill -9, and leaves exactly the checkpoints run.json lists.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{json, only_run, pipe, scratch, tensors, text};

/// Model A with `stages` in place of its single stage.
fn spec(dir: &Path, stages: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(common::root().join("pipelines/agnews_transformer.toml")).unwrap();
    let at = text.find("[[stages]]").unwrap();
    let p = dir.join("spec.toml");
    std::fs::write(&p, format!("{}{stages}", &text[..at])).unwrap();
    p
}

fn args(spec: &Path, runs: &Path, rows: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "run".into(),
        spec.display().to_string(),
        "--quiet".into(),
        format!("--set=dataset.limit={rows}"),
        "--set=vectorizer.output_sequence_length=48".into(),
        format!("--runs-dir={}", runs.display()),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `metrics.csv` as (stage, epoch, step, split, loss) rows.
fn metric_rows(run: &Path) -> Vec<(String, u64, u64, String, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

/// Files in `checkpoints/` that are not part of the resume point.
fn kept_files(run: &Path) -> BTreeSet<String> {
    std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("resume"))
        .collect()
}

const STOPPING: &str = r#"[[stages]]
name = "train"
epochs = 10
batch_size = 32
steps_per_epoch = 4
validate_every = 1
optimizer = { type = "adam", learning_rate = 5e-3 }
# Nothing can improve a loss by 10: the first check stays the best, and the stage stops after
# `patience` more checks.
early_stopping = { monitor = "validation.loss", patience = 1, min_delta = 10.0, restore_best = true }

[[stages]]
name = "polish"
epochs = 1
batch_size = 32
steps_per_epoch = 1
# Too small to move any weight: this stage validates the weights it starts from.
optimizer = { type = "sgd", learning_rate = 1e-30 }
"#;

#[test]
fn early_stopping_ends_the_stage_records_it_and_the_next_stage_starts_from_the_best() {
    let dir = scratch("es-stop");
    let spec = spec(&dir, STOPPING);
    let runs = dir.join("runs");
    let set = "--set=stages.train.early_stopping.patience=5";
    let out = pipe()
        .args(args(&spec, &runs, 300, &[set]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let r = only_run(&runs, "agnews_transformer");
    let record = json(&r.join("run.json"));
    let train = &record["stages"][0];
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("stage train stopped early at epoch 2, step 6: best validation.loss"),
        "{stdout}"
    );

    // Checks at steps 1, 2, 3, 4 (epoch end), 5, 6: the best is step 1, and the fifth check
    // after it (patience 5, from --set) stops the stage at step 6, mid-epoch 2 of 10.
    let stopped = &train["stopped_early"];
    assert_eq!(stopped["epoch"], 2, "{train}");
    assert_eq!(stopped["step"], 6, "{train}");
    assert_eq!(stopped["best_step"], 1, "{train}");
    assert_eq!(stopped["best_epoch"], 1, "{train}");
    assert_eq!(stopped["monitor"], "validation.loss");
    assert_eq!(stopped["restored_best"], true);
    assert_eq!(train["steps"], 6);
    assert_eq!(train["epochs_completed"], 1);

    let rows = metric_rows(&r);
    let train_rows: Vec<_> = rows.iter().filter(|r| r.0 == "train").collect();
    let checks: Vec<u64> = train_rows
        .iter()
        .filter(|r| r.3 == "validation")
        .map(|r| r.2)
        .collect();
    assert_eq!(checks, [1, 2, 3, 4, 5, 6], "{rows:?}");
    assert!(train_rows.iter().all(|r| r.2 <= 6), "{rows:?}");
    let best_value = stopped["best_value"].as_f64().unwrap();
    let first = train_rows.iter().find(|r| r.3 == "validation").unwrap().4;
    assert!((best_value - first).abs() < 1e-6, "{best_value} vs {first}");

    // restore_best: `polish` starts from step 1's weights, and its learning rate cannot move
    // them, so it validates (and the test rows, the same rows, score) step 1's loss, not the
    // loss of the weights the stage stopped with.
    let polish = record["stages"][1]["last"]["validation.loss"]
        .as_f64()
        .unwrap();
    let at_stop = train["last"]["validation.loss"].as_f64().unwrap();
    assert!(
        (polish - best_value).abs() < 1e-6,
        "{polish} vs {best_value}"
    );
    assert!(
        (at_stop - best_value).abs() > 1e-5,
        "{at_stop} vs {best_value}"
    );
    let test = record["metrics"]["test.loss"].as_f64().unwrap();
    assert!((test - best_value).abs() < 1e-6, "{test} vs {best_value}");

    // The override is in run.json and in the resolved spec, which repeats the run.
    assert!(
        record["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "stages.train.early_stopping.patience=5"),
        "{}",
        record["overrides"]
    );
    let resolved: toml::Value =
        toml::from_str(&std::fs::read_to_string(r.join("pipeline.toml")).unwrap()).unwrap();
    let es = &resolved["stages"][0]["early_stopping"];
    assert_eq!(es["patience"].as_integer(), Some(5), "{es}");
    assert_eq!(es["restore_best"].as_bool(), Some(true), "{es}");

    // The best weights were a resume-point file: the stage's end took them away.
    let names: Vec<String> = std::fs::read_dir(r.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("resume-0-")),
        "{names:?}"
    );
    assert_eq!(
        kept_files(&r),
        ["polish-best", "polish-last", "train-best", "train-last"]
            .iter()
            .map(|n| format!("{n}.safetensors"))
            .collect()
    );
}

/// One stage that stops at step 12, its patience counter running from step 4; a resume point
/// every step, and more checkpoints kept than the defaults.
const RESUMABLE: &str = r#"[[stages]]
name = "train"
epochs = 10
batch_size = 32
steps_per_epoch = 6
validate_every = 2
checkpoint_every = 1
optimizer = { type = "adam", learning_rate = 5e-3 }
early_stopping = { monitor = "validation.loss", patience = 5, min_delta = 10.0, restore_best = true }
checkpoints = { keep_last = 2, keep_best = 2, monitor = "validation.accuracy" }
"#;

#[test]
fn kill_9_after_the_patience_counter_started_then_resume_equals_an_unbroken_run() {
    let dir = scratch("es-resume");
    let spec = spec(&dir, RESUMABLE);

    let straight = dir.join("straight");
    let out = pipe()
        .args(args(&spec, &straight, 800, &[]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let a = only_run(&straight, "agnews_transformer");
    let record_a = json(&a.join("run.json"));
    assert_eq!(
        record_a["stages"][0]["stopped_early"]["step"], 12,
        "{record_a}"
    );

    let broken = dir.join("broken");
    let child = pipe().args(args(&spec, &broken, 800, &[])).spawn().unwrap();
    let b = common::wait_for_resume_point_where(&broken, "agnews_transformer", |state| {
        state["early_stopping"]["wait"].as_u64().unwrap_or(0) >= 1
            && state["next_batch"].as_u64().unwrap_or(0) > 0
    });
    // The resumed run must stop where the unbroken one did, with the same restored weights.
    let record_b = common::kill_then_resume(child, &b);
    common::assert_same_end(&a, &b);
    assert_eq!(record_a["metrics"], record_b["metrics"]);
    assert_eq!(
        record_a["stages"][0]["stopped_early"],
        record_b["stages"][0]["stopped_early"]
    );
    assert_eq!(
        record_a["stages"][0]["checkpoints"],
        record_b["stages"][0]["checkpoints"]
    );
    assert_eq!(kept_files(&a), kept_files(&b));
    for f in kept_files(&a) {
        let (ta, tb) = (
            tensors(&a.join("checkpoints").join(&f)),
            tensors(&b.join("checkpoints").join(&f)),
        );
        assert!(
            ta == tb,
            "{f} differs between the unbroken and the resumed run"
        );
    }
}

#[test]
fn checkpoint_retention_keeps_exactly_the_files_run_json_lists() {
    let dir = scratch("es-keep");
    let spec = spec(
        &dir,
        r#"[[stages]]
name = "train"
epochs = 5
batch_size = 32
steps_per_epoch = 2
optimizer = { type = "adam", learning_rate = 5e-3 }
checkpoints = { keep_last = 2, keep_best = 2, monitor = "validation.loss" }
"#,
    );
    let runs = dir.join("runs");
    let out = pipe().args(args(&spec, &runs, 300, &[])).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let r = only_run(&runs, "agnews_transformer");
    let record = json(&r.join("run.json"));
    let listed = record["stages"][0]["checkpoints"]
        .as_array()
        .unwrap()
        .clone();
    let files: BTreeSet<String> = listed
        .iter()
        .map(|c| c["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept_files(&r), files, "{listed:?}");

    // The newest two epoch ends, newest first; the newest is `train-last`.
    let of = |kind: &str| -> Vec<(String, u64)> {
        listed
            .iter()
            .filter(|c| c["kind"] == kind)
            .map(|c| {
                (
                    c["file"].as_str().unwrap().to_string(),
                    c["step"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        of("last"),
        [
            ("train-last.safetensors".to_string(), 10),
            ("train-step8.safetensors".to_string(), 8)
        ]
    );
    // The two lowest validation losses at the five epoch ends, best first.
    let mut ends: Vec<(f64, u64)> = metric_rows(&r)
        .into_iter()
        .filter(|r| r.3 == "validation")
        .map(|r| (r.4, r.2))
        .collect();
    assert_eq!(ends.len(), 5);
    ends.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap().then(x.1.cmp(&y.1)));
    let best = of("best");
    assert_eq!(best.len(), 2, "{listed:?}");
    assert_eq!(best[0].0, "train-best.safetensors");
    assert_eq!(
        best.iter().map(|b| b.1).collect::<Vec<_>>(),
        [ends[0].1, ends[1].1],
        "{ends:?}"
    );
    for c in listed.iter().filter(|c| c["kind"] == "best") {
        assert_eq!(c["monitor"], "validation.loss");
        let step = c["step"].as_u64().unwrap();
        let logged = ends.iter().find(|e| e.1 == step).unwrap().0;
        assert!((c["value"].as_f64().unwrap() - logged).abs() < 1e-6);
    }
    // Each file holds the weights of its step: the newest are the final weights, and a file
    // kept for two reasons is one file.
    let last = tensors(&r.join("checkpoints/train-last.safetensors"));
    assert!(last == tensors(&r.join("model/model.safetensors")));
    assert!(last != tensors(&r.join("checkpoints/train-step8.safetensors")));
}
