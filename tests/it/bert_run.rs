//! The lesson's BERT pipelines end to end on real rows: on the tiny_bert fixture (always in
//! the repo, with a WordPiece vocabulary trained for it: scripts/make_tiny_vocab.py) and, where
//! it is found, on real all-MiniLM-L6-v2 weights.

use crate::common;

use std::path::Path;

use common::{json, only_run, pipe, run, scratch, shared_model, text};

/// `pipelines/bert_finetune.toml` (frozen-BERT `features` stage, then `finetune` with AdamW
/// and warm-up) on tiny_bert and `rows` rows, with resume points every 2 steps.
fn tiny_finetune(runs: &Path, rows: usize) -> Vec<String> {
    let tiny = common::fixtures().join("tiny_bert");
    vec![
        "run".into(),
        "pipelines/bert_finetune.toml".into(),
        "--quiet".into(),
        format!("--set=vectorizer.from=\"{}\"", tiny.display()),
        format!("--set=model.bert.from=\"{}\"", tiny.display()),
        "--set=vectorizer.max_length=64".into(),
        format!("--set=dataset.limit={rows}"),
        "--set=stages.finetune.checkpoint_every=2".into(),
        format!("--runs-dir={}", runs.display()),
    ]
}

#[test]
fn tiny_bert_staged_finetune_caches_features_and_predicts() {
    let runs = scratch("tinyft");
    let out = pipe().args(tiny_finetune(&runs, 96)).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let dir = only_run(&runs, "bert_finetune");
    for f in [
        "checkpoints/features-last.safetensors",
        "checkpoints/finetune-last.safetensors",
        "model/model.safetensors",
        "vectorizer/tokenizer.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let record = json(&dir.join("run.json"));
    assert_eq!(record["status"], "completed");
    let stages = record["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    // tiny_bert's 52,320 (with pooler) + the dense head's 32·4 + 4.
    assert_eq!(record["params"]["total"], 52_320 + 32 * 4 + 4);
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    for stage in ["features", "finetune"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{stage},1,"))),
            "{metrics}"
        );
    }
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("frozen prefix features cached"), "{log}");
    // Without --quiet, a stderr that is not a terminal hears of the frozen-feature pass.
    let loud_runs = scratch("tinyft-progress");
    let loud: Vec<String> = (tiny_finetune(&loud_runs, 96).into_iter())
        .filter(|a| a != "--quiet")
        .collect();
    let out = pipe().args(&loud).output().unwrap();
    let (_, loud_stderr) = text(&out);
    assert!(out.status.success(), "{loud_stderr}");
    assert!(
        loud_stderr.contains("features: frozen features of the train rows: 96/96 rows, "),
        "{loud_stderr}"
    );
    // predict reloads the saved tokenizer.json and the final weights.
    let out = run(&[
        "predict",
        dir.to_str().unwrap(),
        "--json",
        "The striker scored twice in the final",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let labels = ["World", "Sports", "Business", "Sci/Tech"];
    assert!(labels.iter().any(|l| stdout.contains(l)), "{stdout}");

    // The attention of an encoder layer: its WordPiece tokens with [CLS] and [SEP], no
    // padding, and rows that are probability distributions.
    let out = run(&[
        "attention",
        dir.to_str().unwrap(),
        "The striker scored twice",
        "--layer",
        "bert.encoder.1",
        "--head",
        "mean",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let map: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(map["layer"], "bert.encoder.1");
    let tokens = map["tokens"].as_array().unwrap();
    assert_eq!(tokens.first().unwrap(), "[CLS]");
    assert_eq!(tokens.last().unwrap(), "[SEP]");
    assert!(!tokens.iter().any(|t| t == "[PAD]"));
    for row in map["weights"].as_array().unwrap() {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect();
        assert_eq!(row.len(), tokens.len());
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
}

#[test]
fn tiny_bert_killed_in_the_finetune_stage_resumes_to_an_identical_end() {
    let dir = scratch("tinyresume");
    let straight = dir.join("straight");
    let out = pipe()
        .args(tiny_finetune(&straight, 1500))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let a = only_run(&straight, "bert_finetune");

    let broken = dir.join("broken");
    let child = pipe().args(tiny_finetune(&broken, 1500)).spawn().unwrap();
    let b = common::wait_for_resume_point(&broken, "bert_finetune", 1);
    common::kill_then_resume(child, &b);
    common::assert_same_end(&a, &b);
}

#[test]
fn bert_finetune_runs_both_stages_on_a_few_rows() {
    if shared_model("all-MiniLM-L6-v2", "the bert_finetune run").is_none() {
        return;
    }
    let runs = scratch("bertft");
    let out = run(&[
        "run",
        "pipelines/bert_finetune.toml",
        "--quiet",
        "--set=dataset.limit=64",
        &format!("--runs-dir={}", runs.display()),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let dir = only_run(&runs, "bert_finetune");
    for f in [
        "checkpoints/features-last.safetensors",
        "checkpoints/features-best.safetensors",
        "checkpoints/finetune-last.safetensors",
        "model/model.safetensors",
        "vectorizer/tokenizer.json",
        "summary.txt",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let record = json(&dir.join("run.json"));
    assert_eq!(record["status"], "completed");
    assert_eq!(record["stages"].as_array().unwrap().len(), 2);
    assert_eq!(record["params"]["total"], 22_714_756);
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("features,1,2,train,")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("finetune,1,2,train,")),
        "{metrics}"
    );
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("frozen prefix features cached"), "{log}");
    // The saved tokenizer is a tokenizers file: predict reloads it.
    let out = run(&[
        "predict",
        dir.to_str().unwrap(),
        "The striker scored twice in the final",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn missing_weights_error_lists_the_places_searched() {
    // The error comes after shape checking, which needs bert-base-uncased's config.json.
    if shared_model("bert-base-uncased", "the missing-weights error").is_none() {
        return;
    }
    let runs = scratch("bertmissing");
    let out = run(&[
        "run",
        "pipelines/hf_bert_classifier.toml",
        "--quiet",
        "--set=dataset.limit=32",
        &format!("--runs-dir={}", runs.display()),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("model `bert-base-uncased`: could not find config.json + model.safetensors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("has config.json; no model.safetensors"),
        "{stderr}"
    );
    assert!(stderr.contains("models--bert-base-uncased"), "{stderr}");
    assert!(stderr.contains("not tried: offline"), "{stderr}");
    let record = json(&only_run(&runs, "hf_bert_classifier").join("run.json"));
    assert_eq!(record["status"], "failed");
}

#[test]
fn summary_shows_the_lesson_bert_counts() {
    let needs = [
        "bert-base-uncased",
        "bert_uncased_L-4_H-128_A-2",
        "all-MiniLM-L6-v2",
    ];
    let Some(found) = needs
        .iter()
        .map(|m| shared_model(m, "the lesson BERT summaries"))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let out = run(&["summary", "pipelines/hf_bert_classifier.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("109,482,240"), "{stdout}");
    assert!(stdout.contains(" Total params: 109,485,316 "), "{stdout}");
    assert!(stdout.contains(" Trainable params: 3,076 "), "{stdout}");
    assert!(
        stdout.contains(" Non-trainable params: 109,482,240 "),
        "{stdout}"
    );
    // L-4/H-128/A-2 and MiniLM through --set.
    let out = run(&[
        "summary",
        "pipelines/hf_bert_classifier.toml",
        &format!("--set=model.bert.from=\"{}\"", found[1].display()),
    ]);
    assert!(text(&out).0.contains("4,782,464"), "{:?}", text(&out));
    let out = run(&["summary", "pipelines/bert_finetune.toml"]);
    assert!(text(&out).0.contains("22,713,216"), "{:?}", text(&out));
}

#[test]
fn hub_ids_are_found_in_the_hugging_face_cache_layout() {
    let home = scratch("hfhome");
    let repo = home.join("hub/models--pipe-test--tiny-bert");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let fixture = common::fixtures().join("tiny_bert");
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        std::fs::copy(fixture.join(f), snapshot.join(f)).unwrap();
    }
    let out = pipe()
        .env("HF_HOME", &home)
        .args([
            "summary",
            "pipelines/hf_bert_classifier.toml",
            "--set=model.bert.from=\"pipe-test/tiny-bert\"",
            // Its own vocabulary: bert-base's 30,522 ids do not fit tiny_bert's 1,000 rows.
            "--set=vectorizer.from=\"pipe-test/tiny-bert\"",
            "--set=vectorizer.max_length=32",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("52,320"), "{stdout}");
}
