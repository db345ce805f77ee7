//! `pipe bench --random-weights`: the MiniLM cases built from a config.json alone, as the GPU
//! check runs them where MiniLM's weights are not carried.

use crate::common;

use common::{fixtures, pipe, scratch, text};

/// A model folder named like MiniLM with the tiny BERT's config (positions widened to the
/// bench's length 128) and a WordPiece vocab.txt, but no model.safetensors.
fn weightless_minilm(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(fixtures().join("tiny_bert/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["max_position_embeddings"] = 512.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    vocab.extend([
        "the", "a", "of", "to", "in", "and", "on", "for", "new", "said", ".",
    ]);
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn minilm_cases_run_on_random_weights_from_a_config_alone() {
    let models = scratch("bench-random");
    let dir = weightless_minilm(&models);
    let out = pipe()
        .env("PIPE_MODEL_PATH", &*models)
        .args([
            "bench",
            "--model",
            "bert",
            "--random-weights",
            "--steps",
            "1",
        ])
        .args(["--warmup", "0", "--json", "--peers", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!dir.join("model.safetensors").exists());
    let lines = common::json_lines(&stdout);
    // length 128: train, infer; dynamic padding: train, infer and two frozen-head phases.
    assert_eq!(lines.len(), 6, "{stdout}");
    for m in &lines {
        assert_eq!(m["model"], "B");
        assert!(
            m["variant"].as_str().unwrap().contains("random weights"),
            "the figures say they are not MiniLM's own: {m}"
        );
        assert!(m["samples_per_s"].as_f64().unwrap() > 0.0, "{m}");
    }
}

/// `pipe bench --checkpoint DIR`: the MiniLM cases on another family's checkpoint (the tiny
/// DeBERTa-v2, whose relative positions reach the bench's length 128 once its config says so),
/// the variant naming the family; a folder without config.json is refused naming the flag.
#[test]
fn minilm_cases_run_on_another_familys_checkpoint() {
    let root = scratch("bench-checkpoint");
    let dir = root.join("deberta");
    std::fs::create_dir_all(&dir).unwrap();
    let source = fixtures().join("families/deberta_v2");
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["max_position_embeddings"] = 512.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bench = |checkpoint: &std::path::Path| {
        pipe()
            .args([
                "bench", "--model", "bert", "--steps", "1", "--warmup", "0", "--json",
            ])
            .args(["--peers", "/nonexistent.jsonl", "--checkpoint"])
            .arg(checkpoint)
            .output()
            .unwrap()
    };
    let out = bench(&dir);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = common::json_lines(&stdout);
    assert_eq!(lines.len(), 6, "{stdout}");
    for m in lines.iter().take(4) {
        let variant = m["variant"].as_str().unwrap();
        assert!(variant.contains("deberta-v2 checkpoint"), "{m}");
        assert!(m["samples_per_s"].as_f64().unwrap() > 0.0, "{m}");
    }
    // Without --peers-python, the stored figures (MiniLM's BERT) are not set beside it.
    let stored = root.join("stored.jsonl");
    let peer = r#"{"framework":"pytorch","version":"2","model":"B","phase":"train","threads":"default","samples_per_s":20.0}"#;
    std::fs::write(&stored, format!("{peer}\n")).unwrap();
    let out = pipe()
        .args(["bench", "--model", "bert", "--steps", "1", "--warmup", "0"])
        .arg("--peers")
        .arg(&stored)
        .arg("--checkpoint")
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("--checkpoint without --peers-python: ratios omitted"),
        "{stdout}"
    );
    assert!(!stdout.contains("pytorch"), "{stdout}");
    let out = bench(&root.join("nowhere"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("--checkpoint "), "{stderr}");
    assert!(stderr.contains("no config.json"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Model A has no checkpoint to swap: refused rather than ignored.
    let out = pipe()
        .args(["bench", "--model", "a", "--checkpoint"])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("--checkpoint "), "{stderr}");
}

/// `pipe bench --model a` on a couple of steps: one train and one infer measurement at the
/// lesson's shapes, whose throughput is the batch over the median step time, set beside the
/// stored peer figures that match it (same model, phase, default threads, CPU) as a ratio.
#[test]
fn model_a_measures_train_and_infer_and_divides_by_the_matching_stored_peers() {
    let dir = scratch("bench-a");
    let peers = dir.join("peers.jsonl");
    let line = |framework: &str, phase: &str, threads: &str, sps: f64, device: &str| {
        let mut v = serde_json::json!({
            "framework": framework, "model": "A", "phase": phase,
            "threads": threads, "samples_per_s": sps,
        });
        if !device.is_empty() {
            v["device"] = device.into();
        }
        v.to_string()
    };
    let stored = [
        line("pytorch", "train", "default", 100.0, ""),
        // Not comparable: another device, other threads, another model.
        line("keras-tensorflow", "train", "default", 7.0, "cuda"),
        line("pytorch", "infer", "2", 9.0, ""),
        line("pytorch", "infer", "default", 400.0, "").replace("\"A\"", "\"B\""),
    ];
    std::fs::write(&peers, stored.join("\n") + "\n").unwrap();
    let bench = |extra: &[&str]| {
        pipe()
            .args(["bench", "--model", "a", "--steps", "2", "--warmup", "1"])
            .arg("--peers")
            .arg(&peers)
            .args(extra)
            .output()
            .unwrap()
    };

    let out = bench(&["--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = common::json_lines(&stdout);
    let phases: Vec<(&str, u64)> = (lines.iter())
        .map(|m| (m["phase"].as_str().unwrap(), m["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(phases, [("train", 128), ("infer", 256)], "{stdout}");
    for m in &lines {
        assert_eq!(m["model"], "A");
        assert_eq!(m["framework"], "pipe-burn");
        assert_eq!(m["seq_len"], "256");
        assert_eq!(
            (m["timed_steps"].as_u64(), m["warmup_steps"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(m["device"], "cpu (burn-flex)");
        let (sps, ms) = (
            m["samples_per_s"].as_f64().unwrap(),
            m["step_ms_median"].as_f64().unwrap(),
        );
        let batch = m["batch"].as_f64().unwrap();
        assert!(ms > 0.0, "{m}");
        assert!(
            (sps * ms / 1000.0 - batch).abs() < 1e-6 * batch,
            "samples/s = batch / step: {m}"
        );
    }

    let out = bench(&[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows[0].trim_end().ends_with(&format!(
            "vs peers (stored figures, not this run: {})",
            peers.display()
        )),
        "{stdout}"
    );
    let cells = |row: &str| row.split_whitespace().map(String::from).collect::<Vec<_>>();
    let train = cells(rows[1]);
    assert_eq!(
        train[..5],
        ["A", "train", "lesson", "shapes", "128"],
        "{stdout}"
    );
    let sps: f64 = train[5].parse().unwrap();
    assert_eq!(
        train[9..12],
        ["pytorch", "100/s", "→"],
        "only the matching peer: {stdout}"
    );
    let ratio: f64 = train[12].strip_suffix('x').unwrap().parse().unwrap();
    assert!(
        (ratio - sps / 100.0).abs() <= 0.006,
        "{ratio} vs {sps}/100: {stdout}"
    );
    assert_eq!(train.len(), 13, "{stdout}");
    let infer = cells(rows[2]);
    assert_eq!(
        infer[..5],
        ["A", "infer", "lesson", "shapes", "256"],
        "{stdout}"
    );
    assert_eq!(infer.len(), 9, "no comparable peer, no ratio: {stdout}");

    let out = pipe()
        .args(["bench", "--model", "a", "--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out).1, "--steps 0: error: must be at least 1\n");
}
