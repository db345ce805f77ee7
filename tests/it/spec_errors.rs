//! Bad specs fail with one line per problem naming file:line:col, before anything runs.

use crate::common;

use common::{run, scratch, text};
use pipe::graph::summary::thousands;

const GOOD: &str = r#"name = "small"
[dataset]
train = "data/ag_news/train.csv"
labels = ["World", "Sports", "Business", "Sci/Tech"]
[vectorizer]
type = "text_vectorization"
output_sequence_length = 16
[[model.layers]]
type = "token_and_position_embedding"
embed_dim = 8
[[model.layers]]
type = "global_average_pooling_1d"
[[model.layers]]
name = "head"
type = "dense"
units = 4
activation = "softmax"
[[stages]]
epochs = 1
batch_size = 32
optimizer = { type = "adam", learning_rate = 1e-3 }
"#;

/// Writes `GOOD` with `from` replaced by `to`, runs `pipe check`, returns (exit code, stderr).
fn check_with(name: &str, from: &str, to: &str) -> (i32, String, String) {
    assert!(GOOD.contains(from), "{from}");
    let dir = scratch(name);
    let path = dir.join("spec.toml");
    std::fs::write(&path, GOOD.replacen(from, to, 1)).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let (_, err) = text(&out);
    (out.status.code().unwrap(), err, path.display().to_string())
}

fn col_of(line: &str, needle: &str) -> usize {
    line.find(needle).unwrap() + 1
}

#[test]
fn good_spec_checks() {
    let (code, err, _) = check_with("good", "epochs = 1", "epochs = 1");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn typo_in_nested_key_names_place_and_suggests() {
    let line = r#"optimizer = { type = "adam", learning_rat = 1e-3 }"#;
    let (code, err, file) = check_with(
        "typo",
        r#"optimizer = { type = "adam", learning_rate = 1e-3 }"#,
        line,
    );
    assert_eq!(code, 2);
    let want = format!("{file}:21:{}: error:", col_of(line, "learning_rat"));
    assert!(err.starts_with(&want), "want {want}\ngot {err}");
    assert!(err.contains("did you mean `learning_rate`?"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn typo_in_layer_key_names_layer_and_suggests() {
    let (code, err, file) = check_with("layerkey", "embed_dim = 8", "embed_dims = 8");
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:10:1: error: layer `token_and_position_embedding`"
        )),
        "{err}"
    );
    assert!(err.contains("did you mean `embed_dim`?"), "{err}");
}

#[test]
fn wrong_type_points_at_the_value() {
    let (code, err, file) = check_with("wrongtype", "epochs = 1", "epochs = \"one\"");
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:19:10: error: `stages[0].epochs`: invalid type: string \"one\""
        )),
        "{err}"
    );
}

#[test]
fn unknown_layer_type_suggests() {
    let (code, err, file) = check_with("unknownlayer", "type = \"dense\"", "type = \"denes\"");
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:15:8: error: unknown layer type `denes`, did you mean `dense`?"
        )),
        "{err}"
    );
}

#[test]
fn shape_mismatch_names_both_layers_and_shapes() {
    let (code, err, file) = check_with(
        "shape",
        "[[model.layers]]\nname = \"head\"",
        "[[model.layers]]\ntype = \"transformer_block\"\nnum_heads = 2\nff_dim = 8\n[[model.layers]]\nname = \"head\"",
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:14:1: error: shape mismatch: layer `transformer_block`"
        )),
        "{err}"
    );
    assert!(
        err.contains("`global_average_pooling_1d` (global_average_pooling_1d) (None, 8)"),
        "{err}"
    );
}

#[test]
fn missing_file_is_located() {
    let (code, err, file) = check_with("missing", "data/ag_news/train.csv", "data/nope.csv");
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:3:9: error: `dataset.train`: file not found: data/nope.csv"
        )),
        "{err}"
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = scratch("many");
    let path = dir.join("spec.toml");
    let bad = GOOD
        .replace("type = \"dense\"", "type = \"denes\"")
        .replace("epochs = 1", "epocs = 1")
        .replace("data/ag_news/train.csv", "data/nope.csv");
    std::fs::write(&path, bad).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    let f = path.display().to_string();
    for want in [
        format!("{f}:3:9:"),
        format!("{f}:15:8:"),
        format!("{f}:19:1:"),
    ] {
        assert!(err.contains(&want), "missing {want} in\n{err}");
    }
    assert!(err.ends_with("3 errors\n"), "{err}");
}

#[test]
fn bad_override_names_the_override() {
    let out = run(&[
        "check",
        "pipelines/agnews_transformer.toml",
        "--set",
        "model.blok.num_heads=4",
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.starts_with("--set model.blok.num_heads=4: error:"),
        "{err}"
    );
    assert!(err.contains("did you mean `block`?"), "{err}");
}

#[test]
fn override_changes_shapes_and_counts() {
    let out = run(&[
        "summary",
        "pipelines/agnews_transformer.toml",
        "--set",
        "model.block.num_heads=4",
    ]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    // 4 heads × 32: Q/K/V 32·128+128 each, output 128·32+32.
    let mha = 3 * (32 * 128 + 128) + (128 * 32 + 32);
    let block = mha + 2112 + 128;
    let line = stdout
        .lines()
        .find(|l| l.contains("block (transformer_block)"))
        .unwrap();
    assert!(
        line.contains(&format!(" {} │", thousands(block))),
        "{stdout}"
    );
}

/// `padding = "longest"` changes what an unmasked pooling layer averages over: refused,
/// naming the layer; with `masked = true` the spec checks.
#[test]
fn dynamic_padding_needs_masked_layers() {
    let longest = "output_sequence_length = 16\npadding = \"longest\"";
    let (code, err, file) = check_with("longest", "output_sequence_length = 16", longest);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with(&format!("{file}:")) && err.contains("global_average_pooling_1d"),
        "{err}"
    );
    assert!(err.contains("masked = true"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let dir = scratch("longest_masked");
    let path = dir.join("spec.toml");
    let spec = GOOD
        .replacen("output_sequence_length = 16", longest, 1)
        .replacen(
            "type = \"global_average_pooling_1d\"",
            "type = \"global_average_pooling_1d\"\nmasked = true",
            1,
        );
    std::fs::write(&path, spec).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// (exit code, stderr) of `pipe check` on `text`, written into a scratch folder.
fn check_text(name: &str, text: &str) -> (i32, String, String) {
    let dir = scratch(name);
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let (_, err) = text_of(&out);
    (out.status.code().unwrap(), err, path.display().to_string())
}

fn text_of(out: &std::process::Output) -> (String, String) {
    text(out)
}

/// One error line, at `want` (file:line:col), containing `needle`; exit code 2.
fn assert_one_error(code: i32, err: &str, want: &str, needle: &str) {
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("{want}: error:")),
        "want {want}\ngot {err}"
    );
    assert!(err.contains(needle), "want {needle}\ngot {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn zero_step_counts_are_refused_at_check_time() {
    for key in [
        "validate_every",
        "checkpoint_every",
        "steps_per_epoch",
        "validation_steps",
    ] {
        let line = format!("{key} = 0");
        let (code, err, file) = check_with(key, "epochs = 1", &format!("epochs = 1\n{line}"));
        let want = format!("{file}:20:{}", col_of(&line, "0"));
        assert_one_error(code, &err, &want, &format!("`{key}` must be at least 1"));
    }
    let (code, err, file) = check_with("epochs0", "epochs = 1", "epochs = 0");
    assert_one_error(
        code,
        &err,
        &format!("{file}:19:10"),
        "`epochs` must be at least 1",
    );
}

#[test]
fn names_that_would_leave_the_runs_dir_are_refused() {
    let (code, err, file) = check_with("escape", r#"name = "small""#, r#"name = "../../escape""#);
    assert_one_error(
        code,
        &err,
        &format!("{file}:1:8"),
        "[A-Za-z0-9][A-Za-z0-9._-]*",
    );
    for bad in ["a/b", ".hidden", "", "a\\\\b"] {
        let line = format!("name = \"{bad}\"");
        let (code, err, file) =
            check_with("stagename", "epochs = 1", &format!("{line}\nepochs = 1"));
        assert_one_error(code, &err, &format!("{file}:19:8"), "`stages[0].name`");
    }
    let (code, err, _) = check_with("goodname", r#"name = "small""#, r#"name = "v1.2_a-b""#);
    assert_eq!(code, 0, "{err}");
}

/// A BERT folder made from tests/fixtures/tiny_bert with its config edited, and a vocab.txt
/// of `vocab` entries (BERT's special tokens, then words).
fn tiny_bert(name: &str, edit: impl Fn(&mut serde_json::Value), vocab: usize) -> common::Scratch {
    // Its own folder: `check_text` makes (and wipes) the scratch folder called `name`.
    let dir = scratch(&format!("{name}-model"));
    let src = common::fixtures().join("tiny_bert");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut words: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let common_words = [
        "the", "a", "to", "of", "in", "and", "on", "for", "is", "with",
    ];
    words.extend(common_words.iter().map(|s| s.to_string()));
    let mut i = 0;
    while words.len() < vocab {
        words.push(format!("w{i}"));
        i += 1;
    }
    words.truncate(vocab);
    std::fs::write(dir.join("vocab.txt"), words.join("\n") + "\n").unwrap();
    dir
}

fn bert_spec(model: &std::path::Path, max_length: usize) -> String {
    format!(
        r#"name = "tiny"
[dataset]
train = "data/ag_news/train.csv"
labels = ["World", "Sports", "Business", "Sci/Tech"]
limit = 64
[vectorizer]
type = "pretrained"
from = "{m}"
max_length = {max_length}
[[model.layers]]
name = "bert"
type = "bert"
from = "{m}"
[[model.layers]]
name = "head"
type = "dense"
units = 4
[[stages]]
epochs = 1
optimizer = {{ type = "adam" }}
"#,
        m = model.display()
    )
}

#[test]
fn broken_bert_configs_are_one_line_errors_naming_the_layer() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 5] = [
        (
            "layers0",
            |c| c["num_hidden_layers"] = 0.into(),
            "`num_hidden_layers` must be at least 1",
        ),
        (
            "heads0",
            |c| c["num_attention_heads"] = 0.into(),
            "`num_attention_heads` must be at least 1",
        ),
        (
            "heads3",
            |c| c["num_attention_heads"] = 3.into(),
            "hidden_size 32 is not a multiple of num_attention_heads 3",
        ),
        (
            "nohidden",
            |c| {
                c.as_object_mut().unwrap().remove("hidden_size");
            },
            "missing field `hidden_size`",
        ),
        (
            "vocab0",
            |c| c["vocab_size"] = 0.into(),
            "`vocab_size` must be at least 1",
        ),
    ];
    for (name, edit, needle) in cases {
        let model = tiny_bert(name, edit, 100);
        let (code, err, file) = check_text(name, &bert_spec(&model, 32));
        assert_one_error(code, &err, &format!("{file}:12:1"), needle);
        assert!(err.contains("layer `bert` (bert)"), "{err}");
    }
}

#[test]
fn pretrained_tokenizer_sizes_are_checked_against_the_model() {
    // A tokenizer with more ids than BERT's embedding table has rows.
    let model = tiny_bert("bigvocab", |_| {}, 1200);
    let (code, err, file) = check_text("bigvocab", &bert_spec(&model, 32));
    assert_one_error(
        code,
        &err,
        &format!("{file}:12:1"),
        "the tokenizer has 1200 ids but the model only 1000",
    );
    // max_length below [CLS] + [SEP], and above the position table (64), padded or not.
    let model = tiny_bert("lengths", |_| {}, 100);
    let (code, err, file) = check_text("len1", &bert_spec(&model, 1));
    assert_one_error(
        code,
        &err,
        &format!("{file}:9:14"),
        "`max_length` must be at least 2",
    );
    let (code, err, file) = check_text("len65", &bert_spec(&model, 65));
    assert_one_error(
        code,
        &err,
        &format!("{file}:12:1"),
        "length 65 exceed max_position_embeddings 64",
    );
    let fixed = bert_spec(&model, 65).replace(
        "max_length = 65",
        "max_length = 65\npadding = \"max_length\"",
    );
    let (code, err, _) = check_text("len65fixed", &fixed);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exceed max_position_embeddings 64"), "{err}");
    let (code, err, _) = check_text("len64", &bert_spec(&model, 64));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn embeddings_after_a_pretrained_tokenizer_are_sized_by_its_vocabulary() {
    // Before: the vocabulary was taken as 0, the table had no rows, and the first batch
    // gathered out of range. Now the table has one row per tokenizer id, and the run trains.
    let model = tiny_bert("embvocab", |_| {}, 300);
    let runs = scratch("embvocab-runs");
    for (layer, params) in [
        ("type = \"embedding\"\noutput_dim = 8", 300 * 8),
        (
            "type = \"token_and_position_embedding\"\nembed_dim = 8",
            300 * 8 + 24 * 8,
        ),
    ] {
        let spec = format!(
            r#"name = "emb"
[dataset]
train = "data/ag_news/train.csv"
labels = ["World", "Sports", "Business", "Sci/Tech"]
limit = 64
[vectorizer]
type = "pretrained"
from = "{m}"
max_length = 24
[[model.layers]]
{layer}
[[model.layers]]
type = "global_average_pooling_1d"
masked = true
[[model.layers]]
name = "head"
type = "dense"
units = 4
[[stages]]
epochs = 1
batch_size = 16
optimizer = {{ type = "adam" }}
[runtime]
runs_dir = "{r}"
"#,
            m = model.display(),
            r = runs.display()
        );
        let path = runs.join("emb.toml");
        std::fs::write(&path, spec).unwrap();
        let out = run(&["summary", path.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(&thousands(params)), "{stdout}");
        let out = run(&["run", path.to_str().unwrap(), "--quiet"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{layer}:\n{stdout}\n{stderr}");
    }
}

/// `pipe sweep` on the good spec with these arguments: (exit code, stderr).
fn sweep_with(name: &str, args: &[&str]) -> (i32, String) {
    let dir = scratch(name);
    let path = dir.join("spec.toml");
    std::fs::write(&path, GOOD).unwrap();
    let runs = dir.join("runs");
    let mut all = vec![
        "sweep",
        path.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    all.extend(args);
    let out = run(&all);
    assert!(
        !runs.exists(),
        "nothing may be created for an invalid sweep"
    );
    (out.status.code().unwrap(), text(&out).1)
}

#[test]
fn bad_random_ranges_name_the_flag() {
    for (range, needle) in [
        ("nan..1", "must be finite"),
        ("0..inf", "must be finite"),
        ("5..1", "empty range"),
        ("x..y", "`x` is not a number"),
        ("1e-4", "expected low..high"),
    ] {
        let arg = format!("stages.train.optimizer.learning_rate={range}");
        let (code, err) = sweep_with("sweeprange", &["--random", &arg, "--trials", "2"]);
        assert_eq!(code, 2, "{range}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("--random {arg}: error:")), "{err}");
        assert!(err.contains(needle), "{range}: {err}");
    }
}

#[test]
fn bench_zero_steps_is_invalid_input() {
    let out = run(&["bench", "--steps", "0"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim(), "--steps 0: error: must be at least 1");
}

/// `pipe check` on `GOOD` with `line` added to its stage (and, with `validated`, a validation
/// split); (exit code, stderr, file, the added line's number).
fn check_stage_line(name: &str, validated: bool, line: &str) -> (i32, String, String, usize) {
    let mut text = GOOD.replacen("epochs = 1", &format!("epochs = 1\n{line}"), 1);
    if validated {
        text = text.replacen("labels = [", "validation = 0.2\nlabels = [", 1);
    }
    let (code, err, file) = check_text(name, &text);
    (code, err, file, if validated { 21 } else { 20 })
}

#[test]
fn early_stopping_and_retention_keys_are_checked_where_they_are_written() {
    let cases: &[(&str, bool, &str, &str, &str)] = &[
        (
            "es-monitor",
            true,
            r#"early_stopping = { monitor = "validation.acc", patience = 2 }"#,
            "\"validation.acc\"",
            "did you mean `validation.accuracy`?",
        ),
        (
            "es-novalidation",
            false,
            r#"early_stopping = { monitor = "validation.loss", patience = 2 }"#,
            "\"validation.loss\"",
            "nothing is validated",
        ),
        (
            "es-test",
            true,
            r#"early_stopping = { monitor = "test.accuracy" }"#,
            "\"test.accuracy\"",
            "evaluated only after the last stage",
        ),
        (
            "es-patience",
            true,
            "early_stopping = { patience = 0 }",
            "0",
            "`early_stopping.patience` must be at least 1",
        ),
        (
            "es-delta",
            true,
            "early_stopping = { min_delta = -0.5 }",
            "-0.5",
            "`early_stopping.min_delta` must be a finite number >= 0",
        ),
        (
            "es-mode",
            true,
            r#"early_stopping = { mode = "up" }"#,
            "\"up\"",
            "unknown variant `up`",
        ),
        (
            "es-key",
            true,
            "early_stopping = { patiense = 3 }",
            "patiense",
            "did you mean `patience`?",
        ),
        (
            "ck-keep",
            true,
            "checkpoints = { keep_last = 0 }",
            "0",
            "`checkpoints.keep_last` must be at least 1",
        ),
        (
            "ck-monitor",
            false,
            r#"checkpoints = { keep_best = 2, monitor = "validation.loss" }"#,
            "\"validation.loss\"",
            "`checkpoints.monitor` is `validation.loss`, but nothing is validated",
        ),
    ];
    for &(name, validated, line, at, needle) in cases {
        let (code, err, file, n) = check_stage_line(name, validated, line);
        let want = format!("{file}:{n}:{}", col_of(line, at));
        assert_one_error(code, &err, &want, needle);
    }
    // The default monitor, validation.loss, needs validation rows: the table is named.
    let line = "early_stopping = { patience = 2 }";
    let (code, err, file, n) = check_stage_line("es-default", false, line);
    assert_one_error(
        code,
        &err,
        &format!("{file}:{n}:18"),
        "nothing is validated",
    );
    for (line, validated) in [
        (
            "early_stopping = { monitor = \"train.loss\", patience = 3 }",
            false,
        ),
        (
            "early_stopping = { monitor = \"validation.accuracy\", mode = \"max\", min_delta = 0.01, restore_best = true }",
            true,
        ),
        ("checkpoints = { keep_last = 3, keep_best = 0 }", false),
    ] {
        let (code, err, _, _) = check_stage_line("policy-ok", validated, line);
        assert_eq!(code, 0, "{line}: {err}");
    }
}

#[test]
fn early_stopping_keys_can_be_set_from_the_command_line() {
    let dir = scratch("es-set");
    let path = dir.join("spec.toml");
    std::fs::write(
        &path,
        GOOD.replacen("labels = [", "validation = 0.2\nlabels = [", 1),
    )
    .unwrap();
    let spec = path.to_str().unwrap();
    let out = run(&[
        "check",
        spec,
        "--set",
        "stages.train.early_stopping.patience=5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = run(&[
        "check",
        spec,
        "--set",
        "stages.train.early_stopping.patience=0",
    ]);
    let (_, err) = text(&out);
    assert_one_error(
        2,
        &err,
        "--set stages.train.early_stopping.patience=0",
        "must be at least 1",
    );
    assert_eq!(out.status.code(), Some(2));
}
