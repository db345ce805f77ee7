//! `--format hf`: a run as a Hugging Face `…ForSequenceClassification` folder (config.json,
//! model.safetensors under the family's tensor names, the tokenizer files) that transformers'
//! `AutoModelForSequenceClassification` and `AutoTokenizer` load offline and that give the
//! probabilities `pipe predict` gives.
//!
//! What it can express: one `hf_encoder` (or `bert`) on the token ids whose `pooled_output`
//! (the family's classifier input) goes, through `dropout` layers only, into one `dense` layer
//! with a unit per class and no activation but softmax. That is the family's own
//! classification head; anything else has no place in transformers' class.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use serde_json::{Value, json};

use crate::graph::compile::Graph;
use crate::graph::plan::{Plan, Source};
use crate::layers::dense::Activation;
use crate::layers::hf_encoder::HfEncoderConfig;
use crate::layers::{LayerConfig, LayerModule};
use crate::pretrained::checkpoint::{classifier_name, encoder_plan, pooler_plan};
use crate::pretrained::{EncoderConfig, Family};

/// Where the encoder and its classifier sit in a plan that `--format hf` can express.
#[derive(Clone, Debug)]
pub struct HfLayout {
    pub encoder: usize,
    pub classifier: usize,
    pub encoder_config: HfEncoderConfig,
}

const CAN_EXPORT: &str = "--format hf exports an hf_encoder (or bert) whose pooled_output \
     goes, through dropout layers only, into one dense layer with a unit per class";

/// The plan's encoder and classifier, or one line saying what `--format hf` cannot express.
pub fn layout(plan: &Plan) -> Result<HfLayout, String> {
    let refuse = |why: String| Err(format!("{why}; {CAN_EXPORT}"));
    let Some(last) = plan.layers.len().checked_sub(1) else {
        return refuse("the pipeline has no layers".into());
    };
    let classifier = &plan.layers[last];
    match &classifier.config {
        LayerConfig::Dense(d)
            if matches!(d.activation, Activation::Linear | Activation::Softmax) && d.use_bias => {}
        other => {
            return refuse(format!(
                "the last layer `{}` is a {} (not a dense layer with a bias and no activation but softmax)",
                classifier.name,
                other.type_name()
            ));
        }
    }
    // Walk back from the classifier through dropouts to the encoder.
    let mut at = last;
    loop {
        let [Source::Layer { layer, output }] = plan.layers[at].sources[..] else {
            return refuse(format!(
                "layer `{}` does not read one earlier layer",
                plan.layers[at].name
            ));
        };
        let source = &plan.layers[layer];
        match &source.config {
            LayerConfig::Dropout(_) => at = layer,
            LayerConfig::HfEncoder(c) | LayerConfig::Bert(c) => {
                if source.outputs[output].0 != "pooled_output" {
                    return refuse(format!(
                        "the classifier reads `{}.{}`, not its pooled_output",
                        source.name, source.outputs[output].0
                    ));
                }
                let others = (0..plan.layers.len())
                    .filter(|&i| i != layer && i != last)
                    .find(|&i| !matches!(plan.layers[i].config, LayerConfig::Dropout(_)));
                if let Some(i) = others {
                    return refuse(format!(
                        "layer `{}` ({}) has no place in a sequence classifier",
                        plan.layers[i].name,
                        plan.layers[i].config.type_name()
                    ));
                }
                if !matches!(source.sources[..], [Source::Input(0)]) {
                    return refuse(format!("`{}` does not read the token ids", source.name));
                }
                return Ok(HfLayout {
                    encoder: layer,
                    classifier: last,
                    encoder_config: c.clone(),
                });
            }
            other => {
                return refuse(format!(
                    "layer `{}` ({}) stands between the encoder and the classifier",
                    source.name,
                    other.type_name()
                ));
            }
        }
    }
}

/// transformers' class for a sequence classifier of `model_type`.
pub fn architecture(model_type: &str) -> &'static str {
    match model_type {
        "roberta" => "RobertaForSequenceClassification",
        "xlm-roberta" => "XLMRobertaForSequenceClassification",
        "camembert" => "CamembertForSequenceClassification",
        "distilbert" => "DistilBertForSequenceClassification",
        "electra" => "ElectraForSequenceClassification",
        "deberta-v2" => "DebertaV2ForSequenceClassification",
        "modernbert" => "ModernBertForSequenceClassification",
        _ => "BertForSequenceClassification",
    }
}

/// config.json for the export: the source model's, as a sequence classifier of `labels`.
pub fn config_json(source: &Value, labels: &[String]) -> Result<Value, String> {
    let mut config = source.clone();
    let object = config
        .as_object_mut()
        .ok_or("the model's config.json is not a JSON object")?;
    let model_type = object
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("bert")
        .to_string();
    object.insert("architectures".into(), json!([architecture(&model_type)]));
    let id2label: serde_json::Map<String, Value> = (labels.iter().enumerate())
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    let label2id: serde_json::Map<String, Value> = (labels.iter().enumerate())
        .map(|(i, l)| (l.clone(), json!(i)))
        .collect();
    object.insert("id2label".into(), Value::Object(id2label));
    object.insert("label2id".into(), Value::Object(label2id));
    object.insert("problem_type".into(), json!("single_label_classification"));
    object.insert("torch_dtype".into(), json!("float32"));
    object.remove("dtype");
    Ok(config)
}

/// One tensor of an export: its Hugging Face name, PyTorch shape and values.
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of the exported model, under the family's Hugging Face names.
pub fn hf_tensors<B: Backend>(
    graph: &Graph<B>,
    layout: &HfLayout,
    c: &EncoderConfig,
) -> Result<Vec<HfTensor>, String> {
    let encoder = match &graph.layers[layout.encoder] {
        LayerModule::HfEncoder(m) | LayerModule::Bert(m) => m,
        _ => return Err("internal: the export layout's encoder is not an encoder".into()),
    };
    let snapshots = |module: &dyn Fn() -> Vec<burn::store::TensorSnapshot>| {
        module()
            .into_iter()
            .map(|s| {
                let data = s
                    .to_data()
                    .map_err(|e| format!("{}: {e:?}", s.full_path()))?;
                let values = data
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| format!("{}: {e:?}", s.full_path()))?;
                Ok((s.full_path(), (s.shape.to_vec(), values)))
            })
            .collect::<Result<HashMap<String, (Vec<usize>, Vec<f32>)>, String>>()
    };
    let mut by_path =
        snapshots(&|| encoder.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true))?;
    let prefix = c.family.base_prefix();
    let pooler_hf = match c.family {
        Family::Bert => format!("{prefix}.pooler.dense"),
        Family::Roberta | Family::Electra => "classifier.dense".into(),
        Family::DistilBert => "pre_classifier".into(),
        Family::DebertaV2 => "pooler.dense".into(),
        Family::ModernBert => "head.dense".into(),
    };
    let mut out = Vec::new();
    let mut take = |hf: String, path: &str, shape: &[usize]| -> Result<(), String> {
        let (got, values) = by_path
            .remove(path)
            .ok_or_else(|| format!("internal: the encoder has no `{path}`"))?;
        if got != shape {
            return Err(format!(
                "internal: `{path}` is {got:?}, {hf} needs {shape:?}"
            ));
        }
        out.push((hf, got, values));
        Ok(())
    };
    for t in encoder_plan(c) {
        take(format!("{prefix}.{}", t.hf_name), &t.module_path, &t.shape)?;
    }
    for t in pooler_plan(c, &pooler_hf) {
        take(t.hf_name, &t.module_path, &t.shape)?;
    }
    let classifier = &graph.layers[layout.classifier];
    let LayerModule::Dense(dense) = classifier else {
        return Err("internal: the export layout's classifier is not a dense layer".into());
    };
    let mut head = snapshots(&|| dense.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true))?;
    let name = classifier_name(c.family);
    for (param, path) in [("weight", "linear.weight"), ("bias", "linear.bias")] {
        let (shape, values) = head
            .remove(path)
            .ok_or_else(|| format!("internal: the classifier has no `{path}`"))?;
        out.push((format!("{name}.{param}"), shape, values));
    }
    Ok(out)
}

/// Writes `tensors` as a safetensors file that transformers reads (`format: pt`).
pub fn write_safetensors(path: &Path, tensors: &[HfTensor]) -> Result<(), String> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = (tensors.iter())
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = (tensors.iter().zip(&bytes))
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    crate::run::atomic_write(path, &data).map_err(|e| format!("{}: {e}", path.display()))
}

/// tokenizer_config.json for the export: the source model's where it has one (so AutoTokenizer
/// picks the family's tokenizer class and special tokens), else one naming the tokenizer.json's
/// special tokens; `model_max_length` is the run's `max_length` either way, so `truncation=True`
/// cuts where pipe cuts.
pub fn tokenizer_config(
    source: Option<&Value>,
    tokenizer: &tokenizers::Tokenizer,
    max_length: usize,
) -> Value {
    let mut config = source.cloned().unwrap_or_else(|| {
        let mut c = serde_json::Map::new();
        c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        for (key, candidates) in [
            ("pad_token", &["[PAD]", "<pad>"][..]),
            ("unk_token", &["[UNK]", "<unk>"]),
            ("cls_token", &["[CLS]", "<s>"]),
            ("sep_token", &["[SEP]", "</s>"]),
            ("mask_token", &["[MASK]", "<mask>"]),
            ("bos_token", &["<s>"]),
            ("eos_token", &["</s>"]),
        ] {
            if let Some(t) = candidates
                .iter()
                .find(|t| tokenizer.token_to_id(t).is_some())
            {
                c.insert(key.into(), json!(t));
            }
        }
        Value::Object(c)
    });
    if let Some(object) = config.as_object_mut() {
        object.insert("model_max_length".into(), json!(max_length));
    }
    config
}

/// The files an export writes, in the order it writes them.
pub fn written_files(out: &Path) -> Vec<PathBuf> {
    [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|f| out.join(f))
    .collect()
}
