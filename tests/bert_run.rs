//! The lesson's BERT pipelines end to end on real weights (all-MiniLM-L6-v2) and real rows.

mod common;

use common::{json, only_run, pipe, run, scratch, shared_model, text};

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
    if needs
        .iter()
        .any(|m| shared_model(m, "the lesson BERT summaries").is_none())
    {
        return;
    }
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
        "--set=model.bert.from=\"../shared/models/bert_uncased_L-4_H-128_A-2\"",
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
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), snapshot.join(f)).unwrap();
    }
    let out = pipe()
        .env("HF_HOME", &home)
        .args([
            "summary",
            "pipelines/hf_bert_classifier.toml",
            "--set=model.bert.from=\"pipe-test/tiny-bert\"",
            "--set=vectorizer.max_length=32",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("52,320"), "{stdout}");
}
