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
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
