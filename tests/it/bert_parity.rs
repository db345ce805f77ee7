//! BERT against the PyTorch/transformers fixtures in tests/fixtures (README there: tolerances); the MiniLM checks need ../shared/models and skip, saying so, without it.

use crate::common;
use common::{flat, floats2, ints, max_diff, values};

use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::TensorData;
use pipe::layers::hf_encoder::{HfEncoder, Pooling};
use pipe::pretrained::EncoderConfig;
use pipe::spec::OptimizerSpec;
use pipe::train::metrics::cross_entropy;
use pipe::train::optim::StageOptimizer;
use serde_json::Value as Json;

type Cpu = Flex;
type Ad = Autodiff<Flex>;

fn fixture(name: &str) -> Json {
    serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

fn bert<B: Backend>(dir: &std::path::Path, device: &B::Device) -> HfEncoder<B> {
    let config = EncoderConfig::load(dir).unwrap();
    HfEncoder::<B>::init(&config, None, Pooling::Cls, device)
        .load_pretrained(dir, &config)
        .unwrap()
}

#[derive(Module, Debug)]
struct Head<B: Backend> {
    classifier: Linear<B>,
}

fn head<B: Backend>(device: &B::Device) -> Head<B> {
    let mut h = Head {
        classifier: burn::nn::LinearConfig::new(32, 4).init(device),
    };
    let mut store =
        SafetensorsStore::from_file(common::fixtures().join("tiny_bert/model.safetensors"))
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true);
    let r = h.load_from(&mut store).unwrap();
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    h
}

#[test]
fn tiny_bert_hidden_states_pooler_and_logits() {
    let exp = fixture("tiny_bert");
    let device = Default::default();
    for dir in ["tiny_bert", "tiny_bert_base"] {
        let model = bert::<Cpu>(&common::fixtures().join(dir), &device);
        let ids = ints::<Cpu>(&exp["input_ids"], &device);
        let types = ints::<Cpu>(&exp["token_type_ids"], &device);
        let mask = ints::<Cpu>(&exp["attention_mask"], &device).float();
        let states = model.encode(ids, types, mask.clone());
        let hidden = flat(&exp["hidden_states"]);
        let per = hidden.len() / 3;
        for (i, s) in states.iter().enumerate() {
            let d = max_diff(&values(s.clone()), &hidden[(i + 1) * per..(i + 2) * per]);
            assert!(d < 1e-5, "{dir}: layer {i} output off by {d}");
        }
        let last = states.last().unwrap().clone();
        let d = max_diff(&values(last.clone()), &flat(&exp["last_hidden_state"]));
        assert!(d < 1e-5, "{dir}: last_hidden_state off by {d}");
        let pooled = model.pool(&last, &mask);
        let d = max_diff(&values(pooled.clone()), &flat(&exp["pooler_output"]));
        assert!(d < 1e-5, "{dir}: pooler_output off by {d}");
        if dir.ends_with("tiny_bert") {
            let logits = head::<Cpu>(&device).classifier.forward(pooled);
            let d = max_diff(&values(logits), &flat(&exp["logits"]));
            assert!(d < 1e-5, "logits off by {d}");
        }
    }
}

#[derive(Module, Debug)]
struct Classifier<B: Backend> {
    bert: HfEncoder<B>,
    head: Head<B>,
}

fn trace(optimizer: OptimizerSpec, key: &str) {
    let exp = fixture("tiny_bert");
    let t = &exp["train"][key];
    let device = Default::default();
    let mut model = Classifier::<Ad> {
        bert: bert::<Ad>(&common::fixtures().join("tiny_bert"), &device),
        head: head::<Ad>(&device),
    };
    let ids = ints::<Ad>(&exp["input_ids"], &device);
    let types = ints::<Ad>(&exp["token_type_ids"], &device);
    let mask = ints::<Ad>(&exp["attention_mask"], &device).float();
    let labels: Vec<i32> = flat(&exp["labels"]).into_iter().map(|x| x as i32).collect();
    let labels = Tensor::<Ad, 1, Int>::from_data(TensorData::new(labels, [3]), &device);
    let lr = optimizer.learning_rate();
    let mut optim = StageOptimizer::<Classifier<Ad>, Ad>::new(&optimizer, None);
    let loss_of = |m: &Classifier<Ad>| {
        let states = m.bert.encode(ids.clone(), types.clone(), mask.clone());
        let pooled = m.bert.pool(states.last().unwrap(), &mask);
        cross_entropy(m.head.classifier.forward(pooled), labels.clone())
    };
    let expected = flat(&t["losses_before_step"]);
    for (step, want) in expected.iter().enumerate() {
        let loss = loss_of(&model);
        let got = loss.clone().into_scalar().elem::<f64>();
        let tol = if step == 0 { 1e-6 } else { 1e-5 };
        assert!(
            (got - want).abs() < tol,
            "{key} step {step}: loss {got} vs {want}"
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    let got = loss_of(&model).into_scalar().elem::<f64>();
    let want = t["loss_after_last_step"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-5,
        "{key} after 3 steps: {got} vs {want}"
    );
    let after = &t["params_after"];
    let w = values(model.head.classifier.weight.val().transpose());
    let d = max_diff(&w, &flat(&after["classifier.weight"]));
    assert!(
        d < 1e-5,
        "{key}: classifier.weight after 3 steps off by {d}"
    );
}

#[test]
fn tiny_bert_sgd_trace() {
    trace(
        OptimizerSpec::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        },
        "sgd",
    );
}

#[test]
fn tiny_bert_adamw_trace() {
    trace(
        OptimizerSpec::AdamW {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        },
        "adamw",
    );
}

#[test]
fn minilm_tokens_hidden_states_mean_and_pooler() {
    let Some(minilm) = common::shared_model("all-MiniLM-L6-v2", "MiniLM parity") else {
        return;
    };
    let exp = fixture("minilm");
    let device = Default::default();
    // Token ids through pipe's pretrained vectorizer (fixed padding to 128).
    let texts: Vec<String> = {
        let opts = pipe::data::source::SourceOptions {
            format: pipe::data::source::Format::AgNewsCsv,
            text: vec!["title".into(), "description".into()],
            label: "label".into(),
            labels: vec![
                "World".into(),
                "Sports".into(),
                "Business".into(),
                "Sci/Tech".into(),
            ],
            unescape_backslash: false,
            limit: Some(4),
        };
        pipe::data::source::load(&common::root().join("data/ag_news/test.csv"), &opts)
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect()
    };
    let spec = pipe::spec::vectorizer::PretrainedVectorizerSpec {
        from: minilm.display().to_string(),
        max_length: 128,
        padding: pipe::spec::vectorizer::Padding::MaxLength,
    };
    let tok = pipe::vectorize::SubwordTokenizer::pretrained(&spec).unwrap();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let (enc_ids, enc_mask) =
        crate::common::batch_of(&pipe::vectorize::Vectorizer::Subword(tok), &refs);
    let want_ids: Vec<i32> = flat(&exp["input_ids"])
        .into_iter()
        .map(|x| x as i32)
        .collect();
    assert_eq!(enc_ids, want_ids, "token ids must match exactly");
    let want_mask: Vec<f32> = flat(&exp["attention_mask"])
        .into_iter()
        .map(|x| x as f32)
        .collect();
    assert_eq!(enc_mask, want_mask);

    let model = bert::<Cpu>(&minilm, &device);
    let ids = ints::<Cpu>(&exp["input_ids"], &device);
    let types = ints::<Cpu>(&exp["token_type_ids"], &device);
    let mask = floats2::<Cpu>(&exp["attention_mask"], &device);
    let last = model.encode(ids, types, mask.clone()).pop().unwrap();
    let slice = last.clone().slice([0..4, 0..8, 0..16]);
    let d = max_diff(&values(slice), &flat(&exp["last_hidden_state_first8x16"]));
    assert!(d < 1e-4, "hidden-state slice off by {d}");
    let mean = pipe::layers::global_average_pooling_1d::masked_mean(last.clone(), mask.clone());
    let d = max_diff(&values(mean), &flat(&exp["masked_mean"]));
    assert!(d < 2e-5, "masked mean off by {d}");
    let d = max_diff(
        &values(model.pool(&last, &mask)),
        &flat(&exp["pooler_output"]),
    );
    assert!(d < 2e-5, "pooler off by {d}");
}

#[test]
fn parameter_counts_match_transformers() {
    let counts: Json = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("param_counts.json")).unwrap(),
    )
    .unwrap();
    let model = |name| common::shared_model(name, "its parameter count");
    for (dir, key) in [
        (
            model("bert-base-uncased"),
            "bert_base_uncased_L12_H768_A12_I3072",
        ),
        (model("bert_uncased_L-4_H-128_A-2"), "bert_L4_H128_A2_I512"),
        (
            model("all-MiniLM-L6-v2"),
            "all_MiniLM_L6_v2_L6_H384_A12_I1536",
        ),
        (
            Some(common::fixtures().join("tiny_bert")),
            "tiny_bert_fixture_L2_H32_A4_I64_V1000_P64",
        ),
    ] {
        let Some(dir) = dir else { continue };
        let config = EncoderConfig::load(&dir).unwrap();
        assert_eq!(
            config.param_count() as u64,
            counts[key]["bert_model_with_pooler"].as_u64().unwrap(),
            "{}",
            dir.display()
        );
    }
    // The formula agrees with the module burn actually builds.
    let config = EncoderConfig::load(&common::fixtures().join("tiny_bert")).unwrap();
    let built = HfEncoder::<Cpu>::init(&config, None, Pooling::Cls, &Default::default());
    assert_eq!(built.num_params(), 52_320);
}
