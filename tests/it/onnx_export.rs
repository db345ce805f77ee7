//! `pipe export --format onnx`: the model file's interface (opset, Hugging Face input names,
//! dynamic axes), the files beside it, onnxruntime's probabilities against `pipe predict`'s
//! (scripts/onnx_check.py, where a Python with onnxruntime is at hand), and the refusals.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common;
use common::{json, pipe, quick, scratch, test_rows, text, trained};

use pipe::onnx::proto::tensor_shape_proto::dimension::Value as Dim;
use pipe::onnx::proto::type_proto::Value as TypeValue;
use pipe::onnx::proto::{ModelProto, ValueInfoProto};
use prost::Message;

/// A Python that imports onnxruntime, tokenizers and numpy: `PIPE_ONNX_PYTHON`, else
/// `python3`. None (with one line saying so) where neither does, unless
/// `PIPE_REQUIRE_ONNXRUNTIME` is set (CI), which makes that a failure.
fn onnx_python() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = std::env::var_os("PIPE_ONNX_PYTHON")
                .map(PathBuf::from)
                .into_iter()
                .chain([PathBuf::from("python3")])
                .collect();
            let found = candidates.into_iter().find(|py| {
                std::process::Command::new(py)
                    .args(["-c", "import onnxruntime, tokenizers, numpy"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
            if found.is_none() {
                assert!(
                    std::env::var_os("PIPE_REQUIRE_ONNXRUNTIME").is_none(),
                    "PIPE_REQUIRE_ONNXRUNTIME is set but no Python imports onnxruntime \
                     (set PIPE_ONNX_PYTHON)"
                );
                eprintln!(
                    "skipping the onnxruntime comparisons: no Python with onnxruntime, \
                     tokenizers and numpy (set PIPE_ONNX_PYTHON)"
                );
            }
            found
        })
        .clone()
}

/// The names and dimensions of graph inputs or outputs: `batch`/`sequence` for dynamic axes.
fn interface(values: &[ValueInfoProto]) -> Vec<(String, Vec<String>)> {
    values
        .iter()
        .map(|v| {
            let Some(TypeValue::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone())
            else {
                panic!("{} is not a tensor", v.name);
            };
            let dims = t.shape.unwrap().dim.into_iter().map(|d| match d.value {
                Some(Dim::DimParam(p)) => p,
                Some(Dim::DimValue(n)) => n.to_string(),
                None => "?".into(),
            });
            (v.name.clone(), dims.collect())
        })
        .collect()
}

/// Exports `run` as ONNX into `out` and checks the model's interface (opset 17, `inputs` as
/// its inputs with dynamic batch and sequence axes, logits and probabilities per class), the
/// files beside it, and onnxruntime's probabilities on `rows` against `pipe predict`'s
/// (within 1e-4) where a Python with onnxruntime is at hand.
pub fn exports_and_matches_predict(run: &Path, out: &Path, inputs: &[&str], rows: &Path) {
    let o = pipe()
        .args(["export", run.to_str().unwrap(), "--format", "onnx"])
        .arg(format!("--out={}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let model = ModelProto::decode(&*std::fs::read(out.join("model.onnx")).unwrap()).unwrap();
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(
        (
            model.opset_import[0].domain.as_str(),
            model.opset_import[0].version
        ),
        ("", 17)
    );
    assert_eq!(model.ir_version, 8);
    let graph = model.graph.unwrap();
    let want_inputs: Vec<(String, Vec<String>)> = inputs
        .iter()
        .map(|n| (n.to_string(), vec!["batch".into(), "sequence".into()]))
        .collect();
    assert_eq!(interface(&graph.input), want_inputs, "{}", run.display());
    let per_class = vec!["batch".to_string(), "4".to_string()];
    assert_eq!(
        interface(&graph.output),
        [
            ("logits".to_string(), per_class.clone()),
            ("probabilities".to_string(), per_class)
        ]
    );
    let config = json(&out.join("pipe_onnx.json"));
    assert_eq!(config["labels"], serde_json::json!(common::AG_NEWS_LABELS));
    assert_eq!(config["inputs"], serde_json::json!(inputs));
    assert!(out.join("tokenizer.json").is_file());

    let Some(python) = onnx_python() else { return };
    let check = std::process::Command::new(python)
        .arg(common::root().join("scripts/onnx_check.py"))
        .args([out, run])
        .arg("--data")
        .arg(rows)
        .arg("--pipe")
        .arg(env!("CARGO_BIN_EXE_pipe"))
        .current_dir(common::root())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&check);
    assert!(
        check.status.success(),
        "{}: {stdout}\n{stderr}",
        run.display()
    );
    assert!(stdout.contains("labels differing 0"), "{stdout}");
}

#[test]
fn model_a_exports_with_only_the_inputs_it_reads() {
    let scratch = scratch("onnx-model-a");
    let rows = test_rows(&scratch, 40);
    // Unmasked at a fixed length: the ids alone. Masked with dynamic padding: ids and mask.
    for (pipeline, inputs) in [
        ("agnews_transformer", &["input_ids"][..]),
        (
            "agnews_transformer_masked",
            &["input_ids", "attention_mask"][..],
        ),
    ] {
        let runs = scratch.join(pipeline);
        let spec = common::root().join(format!("pipelines/{pipeline}.toml"));
        let sets = quick(&runs, 300);
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let run = trained(&spec, &sets[..3], &runs);
        let out = scratch.join(format!("{pipeline}-onnx"));
        exports_and_matches_predict(&run, &out, inputs, &rows);
        let config = json(&out.join("pipe_onnx.json"));
        assert!(out.join("vocab.txt").is_file());
        assert!(
            config["vectorizer"]["rules"]
                .as_str()
                .unwrap()
                .contains("Keras TextVectorization"),
            "{config}"
        );
    }
}

#[test]
fn conv_pooling_normalization_and_recurrent_graphs_export() {
    let scratch = scratch("onnx-layers");
    let rows = test_rows(&scratch, 40);
    let fixtures = common::fixtures().join("onnx");
    // conv1d (valid), its two branches concatenated, global max pooling; a masked
    // bidirectional LSTM on dynamic padding; every conv1d padding and stride with
    // max_pooling_1d, flatten and batch_normalization; stacked bidirectional GRUs.
    let cases = [
        (
            common::root().join("pipelines/agnews_cnn_branches.toml"),
            &["input_ids"][..],
        ),
        (
            common::root().join("pipelines/agnews_bilstm.toml"),
            &["input_ids", "attention_mask"][..],
        ),
        (fixtures.join("conv_pool_bn.toml"), &["input_ids"][..]),
        (
            fixtures.join("gru_bi_longest.toml"),
            &["input_ids", "attention_mask"][..],
        ),
    ];
    for (spec, inputs) in cases {
        let name = spec.file_stem().unwrap().to_str().unwrap().to_string();
        let runs = scratch.join(&name);
        let sets = ["--set=dataset.limit=300", "--set=stages.train.epochs=1"];
        let run = trained(&spec, &sets, &runs);
        exports_and_matches_predict(&run, &scratch.join(format!("{name}-onnx")), inputs, &rows);
    }
}

#[test]
fn a_run_without_final_weights_and_an_unknown_format_are_refused_in_one_line() {
    let scratch = scratch("onnx-refusals");
    let runs = scratch.join("runs");
    let spec = common::root().join("pipelines/agnews_transformer.toml");
    let sets = quick(&runs, 100);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let run = trained(&spec, &sets[..3], &runs);
    let weights = run.join("model/model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    let out = scratch.join("out");
    let o = pipe()
        .args(["export", run.to_str().unwrap(), "--format=onnx"])
        .arg(format!("--out={}", out.display()))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("model/model.safetensors"), "{stderr}");
    assert!(!out.exists(), "nothing is written");

    let o = pipe()
        .args(["export", run.to_str().unwrap(), "--format=tflite"])
        .arg(format!("--out={}", out.display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .contains("invalid value 'tflite' for '--format <FORMAT>'"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}
