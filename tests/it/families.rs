//! Each transformer family `hf_encoder` loads, against transformers' own outputs on tiny random
//! checkpoints (tests/fixtures/families, written by scripts/make_family_fixtures.py): token ids
//! from the checkpoint's tokenizer.json, the last hidden state at every position (padding
//! included), the classifier's input, the logits and the parameter count; then a run on each
//! family, and its `--format hf` export under the family's own tensor names.

use crate::common;
use common::{flat, ints, json, only_run, pipe, run, scratch, text, values};

use burn::backend::Flex;
use burn::nn::Linear;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use pipe::layers::hf_encoder::{HfEncoder, Pooling};
use pipe::pretrained::EncoderConfig;
use pipe::spec::vectorizer::{Padding, PretrainedVectorizerSpec};
use pipe::vectorize::SubwordTokenizer;

/// The families whose fixtures pipe matches (folder names under tests/fixtures/families).
const FAMILIES: &[&str] = &[
    "bert",
    "distilbert",
    "roberta",
    "xlm_roberta",
    "electra",
    "deberta_v2",
    "modernbert",
    "modernbert_cls",
];

fn dir(family: &str) -> std::path::PathBuf {
    common::fixtures().join("families").join(family)
}

/// The largest difference relative to the reference's magnitude (absolute below 1).
fn relative_diff(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[derive(Module, Debug)]
struct Head<B: Backend> {
    classifier: Linear<B>,
}

/// The checkpoint's own last linear layer (`classifier` or `classifier.out_proj`).
fn head<B: Backend>(dir: &std::path::Path, last_linear: &str, hidden: usize) -> Head<B> {
    let mut h = Head {
        classifier: burn::nn::LinearConfig::new(hidden, 4).init(&Default::default()),
    };
    let from = format!("^{}\\.", last_linear.replace('.', "\\."));
    let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"))
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(&from, "classifier.")
        .allow_partial(true);
    let r = h.load_from(&mut store).unwrap();
    assert!(r.missing.is_empty(), "{last_linear}: {:?}", r.missing);
    h
}

#[test]
fn every_family_matches_transformers() {
    let device = Default::default();
    for &family in FAMILIES {
        let dir = dir(family);
        let exp = json(&dir.join("expected.json"));
        let config = EncoderConfig::load(&dir).unwrap();
        let model = HfEncoder::<Flex>::init(&config, None, Pooling::Cls, &device)
            .load_pretrained(&dir, &config)
            .unwrap();
        let ids = ints::<Flex>(&exp["input_ids"], &device);
        let types = match exp.get("token_type_ids") {
            Some(t) => ints::<Flex>(t, &device),
            None => ids.zeros_like(),
        };
        let mask = ints::<Flex>(&exp["attention_mask"], &device).float();
        let states = model.encode(ids, types, mask.clone());
        let last = states.last().unwrap().clone();
        let d = relative_diff(&values(last.clone()), &flat(&exp["last_hidden_state"]));
        assert!(d < 1e-4, "{family}: last_hidden_state off by {d:e}");
        let pooled = model.pool(&last, &mask);
        let d = relative_diff(&values(pooled.clone()), &flat(&exp["classifier_input"]));
        assert!(d < 1e-4, "{family}: classifier input off by {d:e}");
        let last_linear = exp["last_linear"].as_str().unwrap();
        let logits = head::<Flex>(&dir, last_linear, config.hidden_size)
            .classifier
            .forward(pooled);
        let d = relative_diff(&values(logits), &flat(&exp["logits"]));
        assert!(d < 1e-4, "{family}: logits off by {d:e}");
        // transformers' num_parameters() of the sequence classifier: pipe's encoder with its
        // pooler, plus the last linear layer (hidden × 4 + 4).
        let h = config.hidden_size;
        assert_eq!(
            config.param_count() + h * 4 + 4,
            exp["num_parameters"].as_u64().unwrap() as usize,
            "{family}"
        );
        assert_eq!(model.num_params(), config.param_count(), "{family}");
    }
}

#[test]
fn every_family_tokenizes_as_its_tokenizer_json() {
    for &family in FAMILIES {
        let dir = dir(family);
        let exp = json(&dir.join("expected.json"));
        let tokenizer = SubwordTokenizer::pretrained(&PretrainedVectorizerSpec {
            from: dir.display().to_string(),
            max_length: 24,
            padding: Padding::Longest,
        })
        .unwrap();
        let texts: Vec<&str> = (exp["texts"].as_array().unwrap().iter())
            .map(|t| t.as_str().unwrap())
            .collect();
        let (encoded_ids, encoded_mask) =
            crate::common::batch_of(&pipe::vectorize::Vectorizer::Subword(tokenizer), &texts);
        let want: Vec<i32> = flat(&exp["input_ids"]).iter().map(|&x| x as i32).collect();
        // The fixture pads to its longest row, 24 = max_length: the same layout, and the
        // padded positions hold the tokenizer's padding id (RoBERTa's is 1).
        assert_eq!(encoded_ids, want, "{family}");
        let mask: Vec<f32> = flat(&exp["attention_mask"])
            .iter()
            .map(|&x| x as f32)
            .collect();
        assert_eq!(encoded_mask, mask, "{family}");
    }
}

#[test]
fn unknown_families_and_pickles_are_refused_at_check_time() {
    let scratch = scratch("families-refused");
    let model = scratch.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let mut config: serde_json::Value = json(&dir("bert").join("config.json"));
    config["model_type"] = "gpt2".into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let spec = family_pipeline(&scratch, &model, "hf_encoder");
    let out = run(&["check", spec.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("config.json: model_type `gpt2` is not supported (supported: bert, distilbert, roberta, xlm-roberta, camembert, electra, deberta-v2, modernbert)"),
        "{stderr}"
    );
    config["model_type"] = "bert".into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    std::fs::write(model.join("pytorch_model.bin"), b"not read").unwrap();
    let out = run(&["check", spec.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pytorch_model.bin: pipe reads safetensors only"),
        "{stderr}"
    );
}

/// A pipeline on `model` (a family's fixture folder): its tokenizer, the encoder as layer
/// `encoder` of type `kind`, dropout and a 4-way dense head; 2 steps of AdamW on 64 rows.
fn family_pipeline(
    scratch: &std::path::Path,
    model: &std::path::Path,
    kind: &str,
) -> std::path::PathBuf {
    let spec = scratch.join("family.toml");
    let text = format!(
        r#"name = "family"
seed = 3

[dataset]
format = "ag_news_csv"
train = "data/ag_news/train.csv"
test = "data/ag_news/test.csv"
text = ["title", "description"]
labels = ["World", "Sports", "Business", "Sci/Tech"]
validation = 0.25
limit = 64

[vectorizer]
type = "pretrained"
from = "{model}"
max_length = 32

[[model.layers]]
name = "encoder"
type = "{kind}"
from = "{model}"

[[model.layers]]
type = "dropout"
rate = 0.1

[[model.layers]]
name = "classifier"
type = "dense"
units = 4

[[stages]]
name = "train"
epochs = 1
batch_size = 16
steps_per_epoch = 2
optimizer = {{ type = "adamw", learning_rate = 1e-3 }}
"#,
        model = model.display()
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// DistilBERT's config names its layer count `n_layers`.
fn exp_layers(family: &str) -> Option<u64> {
    json(&dir(family).join("config.json"))["n_layers"].as_u64()
}

/// The tensors of a safetensors file: name → shape, and its metadata.
fn header(path: &std::path::Path) -> (Vec<(String, Vec<u64>)>, serde_json::Value) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut h: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let metadata = h.remove("__metadata__").unwrap_or_default();
    let mut names: Vec<(String, Vec<u64>)> = h
        .into_iter()
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            (k, shape)
        })
        .collect();
    names.sort();
    (names, metadata)
}

#[test]
fn each_family_trains_predicts_and_exports_under_its_own_tensor_names() {
    for &family in FAMILIES {
        let scratch = scratch(&format!("family-{family}"));
        let spec = family_pipeline(&scratch, &dir(family), "hf_encoder");
        let runs = scratch.join("runs");
        let out = pipe()
            .args(["run", spec.to_str().unwrap(), "--quiet"])
            .arg(format!("--runs-dir={}", runs.display()))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{family}: {stdout}\n{stderr}");
        let run_dir = only_run(&runs, "family");
        assert_eq!(json(&run_dir.join("run.json"))["status"], "completed");
        // The last layer's attention over a text: rows over its tokens that sum to 1.
        let last_layer = json(&dir(family).join("expected.json"))["config"]["num_hidden_layers"]
            .as_u64()
            .or_else(|| exp_layers(family))
            .unwrap()
            - 1;
        let layer = format!("encoder.encoder.{last_layer}");
        let out = run(&[
            "attention",
            run_dir.to_str().unwrap(),
            "The striker scored twice in the final",
            "--layer",
            &layer,
            "--head",
            "mean",
            "--json",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{family}: {stderr}");
        let map: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let tokens = map["tokens"].as_array().unwrap().len();
        for row in map["weights"].as_array().unwrap() {
            let row: Vec<f64> = (row.as_array().unwrap().iter())
                .map(|w| w.as_f64().unwrap())
                .collect();
            assert_eq!(row.len(), tokens, "{family}");
            assert!(
                (row.iter().sum::<f64>() - 1.0).abs() < 1e-5,
                "{family}: {row:?}"
            );
        }
        let exported = scratch.join("exported");
        let out = run(&[
            "export",
            run_dir.to_str().unwrap(),
            "--format",
            "hf",
            "--out",
            exported.to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{family}: {stdout}\n{stderr}");
        // The names and shapes transformers saved for this family's sequence classifier.
        let exp = json(&dir(family).join("expected.json"));
        let (names, metadata) = header(&exported.join("model.safetensors"));
        let want = exp["tensor_shapes"].as_object().unwrap();
        let mut want: Vec<(String, Vec<u64>)> = want
            .iter()
            .filter(|(k, _)| !k.ends_with("position_ids"))
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap())
                        .collect(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(names, want, "{family}");
        assert_eq!(metadata["format"], "pt", "{family}");
        let config = json(&exported.join("config.json"));
        let source = json(&dir(family).join("config.json"));
        assert_eq!(config["model_type"], source["model_type"], "{family}");
        assert_eq!(config["architectures"], source["architectures"], "{family}");
        assert_eq!(config["id2label"]["3"], "Sci/Tech");
        assert_eq!(config["label2id"]["Sports"], 1);
        let tokenizer_config = json(&exported.join("tokenizer_config.json"));
        assert_eq!(tokenizer_config["model_max_length"], 32, "{family}");
        assert!(exported.join("tokenizer.json").is_file());
        // As ONNX: token types only where the family has more than one; onnxruntime's
        // probabilities are pipe predict's.
        let inputs: &[&str] = match family {
            "bert" | "electra" => &["input_ids", "attention_mask", "token_type_ids"],
            _ => &["input_ids", "attention_mask"],
        };
        let rows = common::test_rows(&scratch, 24);
        crate::onnx_export::exports_and_matches_predict(
            &run_dir,
            &scratch.join("onnx"),
            inputs,
            &rows,
        );
        // The exported encoder is the run's: read back as a pretrained `from`, it loads
        // under the family's names into the same weights.
        let config = EncoderConfig::load(&exported).unwrap();
        assert_eq!(
            config.family,
            EncoderConfig::load(&dir(family)).unwrap().family
        );
        let loaded = HfEncoder::<Flex>::init(&config, None, Pooling::Cls, &Default::default())
            .load_pretrained(&exported, &config)
            .unwrap();
        let changed = loaded.pooler.dense.weight.val();
        let source = HfEncoder::<Flex>::init(&config, None, Pooling::Cls, &Default::default())
            .load_pretrained(&dir(family), &config)
            .unwrap();
        let moved = (changed - source.pooler.dense.weight.val())
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 0.0, "{family}: two AdamW steps moved the pooler");
    }
}

#[test]
fn an_export_refuses_what_a_sequence_classifier_cannot_express() {
    let scratch = scratch("families-export-refused");
    let runs = scratch.join("runs");
    let out = pipe()
        .args([
            "run",
            "pipelines/agnews_transformer_masked.toml",
            "--quiet",
            "--set=dataset.limit=64",
            "--set=stages.train.epochs=1",
        ])
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let run_dir = only_run(&runs, "agnews_transformer_masked");
    let out = run(&[
        "export",
        run_dir.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        scratch.join("out").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--format hf exports an hf_encoder"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!scratch.join("out").exists());
}

/// A copy of a family fixture folder whose config.json `edit` changes.
fn edited_copy(
    scratch: &std::path::Path,
    family: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> std::path::PathBuf {
    let to = scratch.join(format!("{family}-edited"));
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(dir(family)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
    let mut config = json(&to.join("config.json"));
    edit(&mut config);
    std::fs::write(to.join("config.json"), config.to_string()).unwrap();
    to
}

/// `pipe check` on a pipeline whose tokenizer is `vectorizer` and encoder `model`: its one
/// error line.
fn check_error(
    scratch: &std::path::Path,
    vectorizer: &std::path::Path,
    model: &std::path::Path,
    sets: &[&str],
) -> String {
    let spec = family_pipeline(scratch, model, "hf_encoder");
    let out = pipe()
        .arg("check")
        .arg(&spec)
        .arg(format!(
            "--set=vectorizer.from=\"{}\"",
            vectorizer.display()
        ))
        .args(sets)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn configs_that_contradict_their_weights_are_refused_naming_the_tensor_and_key() {
    let scratch = scratch("families-contradictions");
    let wider = edited_copy(&scratch, "bert", |c| c["intermediate_size"] = 65.into());
    let err = check_error(&scratch, &wider, &wider, &[]);
    assert!(
        err.contains("model.safetensors: tensor `bert.encoder.layer.0.intermediate.dense.weight` has shape [64, 32], but")
            && err.contains("implies [65, 32] (`intermediate_size`)"),
        "{err}"
    );
    let deeper = edited_copy(&scratch, "roberta", |c| c["num_hidden_layers"] = 3.into());
    let err = check_error(&scratch, &deeper, &deeper, &[]);
    assert!(
        err.contains("no tensor `roberta.encoder.layer.2.attention.self.query.weight`"),
        "{err}"
    );
    let shallower = edited_copy(&scratch, "distilbert", |c| c["n_layers"] = 1.into());
    let err = check_error(&scratch, &shallower, &shallower, &[]);
    assert!(
        err.contains("unexpected tensor `distilbert.transformer.layer.1.")
            && err.contains("(1 layers, model_type `distilbert`)"),
        "{err}"
    );
    // tiny_bert's 1,000-token vocabulary against a 500-row embedding table.
    let model = dir("bert");
    let err = check_error(&scratch, &common::fixtures().join("tiny_bert"), &model, &[]);
    assert!(
        err.contains("the tokenizer has 1000 ids but the model only 500 (`vocab_size` in")
            && err.contains("families/bert/config.json"),
        "{err}"
    );
    let err = check_error(
        &scratch,
        &model,
        &model,
        &["--set=vectorizer.max_length=65"],
    );
    assert!(
        err.contains("sequences of length 65 exceed max_position_embeddings 64 in")
            && err.contains("families/bert/config.json"),
        "{err}"
    );
    // RoBERTa's positions start after the padding id: 66 rows hold 64 tokens.
    let roberta = dir("roberta");
    let err = check_error(
        &scratch,
        &roberta,
        &roberta,
        &["--set=vectorizer.max_length=65"],
    );
    assert!(
        err.contains("exceed the 64 positions of max_position_embeddings 66"),
        "{err}"
    );
}

#[test]
fn a_stage_freezes_an_encoders_embeddings_and_first_layer_by_name() {
    for family in ["bert", "modernbert"] {
        let scratch = scratch(&format!("families-freeze-{family}"));
        let spec = family_pipeline(&scratch, &dir(family), "hf_encoder");
        let runs = scratch.join("runs");
        let out = pipe()
            .args(["run", spec.to_str().unwrap(), "--quiet"])
            .arg("--set=stages.train.freeze=[\"encoder.embeddings\", \"encoder.layer.0\"]")
            .arg(format!("--runs-dir={}", runs.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{family}: {:?}", text(&out));
        let exported = scratch.join("exported");
        let run_dir = only_run(&runs, "family");
        let out = run(&[
            "export",
            run_dir.to_str().unwrap(),
            "--format=hf",
            &format!("--out={}", exported.display()),
        ]);
        assert!(out.status.success(), "{family}: {:?}", text(&out));
        let before = common::tensors(&dir(family).join("model.safetensors"));
        let after = common::tensors(&exported.join("model.safetensors"));
        let (embeddings, first, second) = match family {
            "bert" => (
                "bert.embeddings.word_embeddings.weight",
                "bert.encoder.layer.0.attention.self.query.weight",
                "bert.encoder.layer.1.attention.self.query.weight",
            ),
            _ => (
                "model.embeddings.tok_embeddings.weight",
                "model.layers.0.attn.Wqkv.weight",
                "model.layers.1.attn.Wqkv.weight",
            ),
        };
        assert_eq!(
            before[embeddings], after[embeddings],
            "{family}: embeddings frozen"
        );
        assert_eq!(before[first], after[first], "{family}: layer 0 frozen");
        assert_ne!(before[second], after[second], "{family}: layer 1 trained");
    }
    // A part the encoder does not have is refused, naming the parts it has.
    let scratch = scratch("families-freeze-unknown");
    let spec = family_pipeline(&scratch, &dir("bert"), "hf_encoder");
    let out = run(&[
        "check",
        spec.to_str().unwrap(),
        "--set=stages.train.freeze=[\"encoder.layer.7\"]",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`freeze` pattern `encoder.layer.7`: layer `encoder` has no such part (its parts: embeddings, layer.0, layer.1, pooler)"),
        "{stderr}"
    );
}

#[test]
fn a_sharded_checkpoint_loads_as_the_single_file_does() {
    let scratch = scratch("families-sharded");
    let source = dir("roberta");
    let sharded = scratch.join("roberta-sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::copy(source.join("config.json"), sharded.join("config.json")).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, half) in names.chunks(names.len() / 2 + 1).enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = half
            .iter()
            .map(|n| (n.clone(), file.tensor(n).unwrap()))
            .collect();
        safetensors::tensor::serialize_to_file(views, None, &sharded.join(&shard)).unwrap();
        for n in half {
            weight_map.insert(n.clone(), shard.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let config = EncoderConfig::load(&source).unwrap();
    let device = Default::default();
    let exp = json(&source.join("expected.json"));
    let outputs = |from: &std::path::Path| {
        let model = HfEncoder::<Flex>::init(&config, None, Pooling::Cls, &device)
            .load_pretrained(from, &config)
            .unwrap();
        let ids = ints::<Flex>(&exp["input_ids"], &device);
        let mask = ints::<Flex>(&exp["attention_mask"], &device).float();
        values(
            model
                .encode(ids.clone(), ids.zeros_like(), mask)
                .pop()
                .unwrap(),
        )
    };
    assert_eq!(outputs(&sharded), outputs(&source));
    // A shard the index names but the folder lacks is named.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let err = HfEncoder::<Flex>::init(&config, None, Pooling::Cls, &device)
        .load_pretrained(&sharded, &config)
        .unwrap_err();
    assert!(
        err.contains("names model-00002-of-00002.safetensors (for "),
        "{err}"
    );
}

/// A run on a pretrained model is self-contained: with the model's folder gone, it still
/// predicts, evaluates and exports (it keeps the encoder's config.json; the tokenizer and the
/// weights were its own already), and a completed run keeps no resume point.
#[test]
fn a_pretrained_run_serves_its_model_after_the_source_is_gone() {
    let scratch = scratch("family-self-contained");
    // A copy of the fixture, as it is, to take away later.
    let model = edited_copy(&scratch, "roberta", |_| {});
    let spec = family_pipeline(&scratch, &model, "hf_encoder");
    let runs = scratch.join("runs");
    let out = pipe()
        .args(["run", spec.to_str().unwrap(), "--quiet"])
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let run_dir = only_run(&runs, "family");
    let before = common::predict_json(&run_dir, &["Stocks fell sharply".to_string()]);
    std::fs::remove_dir_all(&model).unwrap();

    let after = common::predict_json(&run_dir, &["Stocks fell sharply".to_string()]);
    assert_eq!(before, after);
    let run_text = run_dir.to_str().unwrap();
    let rows = common::test_rows(&scratch, 20);
    let out = run(&["eval", run_text, "--data", rows.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let exported = scratch.join("exported");
    let out = run(&[
        "export",
        run_text,
        "--format",
        "hf",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(json(&exported.join("config.json"))["model_type"], "roberta");
    let names: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("resume")), "{names:?}");
}
