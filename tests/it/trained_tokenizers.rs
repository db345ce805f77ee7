//! Tokenizers trained on the train rows (`type = "wordpiece"` / `"bpe"`): the run folder's
//! tokenizer.json is the same from one process to the next, loads with the tokenizers crate
//! on its own, and is what eval and predict encode with.

use crate::common;

use std::path::Path;

use common::{json, pipe, scratch, text};

/// A seconds-long run of the WordPiece CNN on 400 real AG News rows.
const QUICK: [&str; 5] = [
    "--set=dataset.limit=400",
    "--set=vectorizer.vocab_size=1500",
    "--set=vectorizer.max_length=48",
    "--set=stages.train.epochs=1",
    "--set=stages.train.batch_size=32",
];

fn tokenizer_file(run: &Path) -> String {
    std::fs::read_to_string(run.join("vectorizer/tokenizer.json")).unwrap()
}

#[test]
fn a_wordpiece_run_folder_keeps_a_deterministic_tokenizer_that_eval_reuses() {
    let runs = scratch("wordpiece");
    let spec = Path::new("pipelines/agnews_cnn_wordpiece.toml");
    let first = common::trained(spec, &QUICK, &runs.join("a"));
    let second = common::trained(spec, &QUICK, &runs.join("b"));
    // Two processes (other hash seeds), the same rows: the same file, byte for byte.
    let file = tokenizer_file(&first);
    assert_eq!(file, tokenizer_file(&second));

    let loaded = ::tokenizers::Tokenizer::from_file(first.join("vectorizer/tokenizer.json"))
        .expect("the saved tokenizer.json loads on its own");
    let saved: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(saved["model"]["type"], "WordPiece");
    let size = loaded.get_vocab_size(true);
    assert!((300..=1500).contains(&size), "{size}");
    assert_eq!(loaded.token_to_id("[PAD]"), Some(0));
    // The pieces are the train rows': frequent words whole, the rest spelled in pieces.
    let enc = loaded
        .encode("Stocks rallied as oil prices fell", false)
        .unwrap();
    assert!(
        enc.get_tokens().contains(&"oil".to_string()),
        "{:?}",
        enc.get_tokens()
    );
    assert!(
        !enc.get_ids().contains(&1),
        "no [UNK]: {:?}",
        enc.get_tokens()
    );

    // pipe's own encoding from the run folder gives the same ids, padded to max_length.
    let run_spec = pipe::spec::load::load_spec(&first.join("pipeline.toml"), &[]).unwrap();
    let vectorizer =
        pipe::vectorize::Vectorizer::load(&run_spec.spec.vectorizer, &first.join("vectorizer"))
            .unwrap();
    let (ours, _) = common::batch_of(&vectorizer, &["Stocks rallied as oil prices fell"]);
    let n = enc.get_ids().len();
    let ids: Vec<i32> = enc.get_ids().iter().map(|&i| i as i32).collect();
    assert_eq!(ours[..n], ids[..]);
    assert!(ours[n..].iter().all(|&i| i == 0));
    assert_eq!(vectorizer.padding().len, 48);

    // eval encodes the run's 400 test rows with the saved tokenizer: the run's own figures.
    let eval = common::eval_first_test_rows(&first, 400, &runs);
    let record = json(&first.join("run.json"));
    assert_eq!(eval["report"]["rows"], 400);
    assert_eq!(
        eval["report"]["accuracy"].as_f64().unwrap(),
        record["metrics"]["test.accuracy"].as_f64().unwrap()
    );
    let out = pipe()
        .args([
            "predict",
            first.to_str().unwrap(),
            "Stocks rallied as oil prices fell",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn a_bpe_vectorizer_trains_and_its_bounds_are_checked() {
    let runs = scratch("bpe");
    let mut sets = QUICK.to_vec();
    sets.push("--set=vectorizer.type=bpe");
    let spec = Path::new("pipelines/agnews_cnn_wordpiece.toml");
    let run = common::trained(spec, &sets, &runs);
    let saved: serde_json::Value = serde_json::from_str(&tokenizer_file(&run)).unwrap();
    assert_eq!(saved["model"]["type"], "BPE");
    assert_eq!(saved["pre_tokenizer"]["type"], "ByteLevel");
    // 1500 pieces: [PAD], the 256 bytes and the merged ones (two merges may spell one piece).
    assert_eq!(saved["model"]["vocab"].as_object().unwrap().len(), 1500);
    let merges = saved["model"]["merges"].as_array().unwrap().len();
    assert!(merges >= 1500 - 257, "{merges}");

    // Fewer pieces than the bytes cannot be: an error at the key, before anything runs.
    let out = pipe()
        .arg("check")
        .arg(spec)
        .args([
            "--set=vectorizer.type=bpe",
            "--set=vectorizer.vocab_size=100",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`vocab_size` of a `bpe` tokenizer must be at least 257, got 100"),
        "{stderr}"
    );
}
