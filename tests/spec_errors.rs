//! Bad specs fail with one line per problem naming file:line:col, before anything runs.

mod common;

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
