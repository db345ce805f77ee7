//! `--format onnx`: the whole graph, tokens in and probabilities out, as one ONNX model
//! (opset [`crate::onnx::OPSET`], dynamic batch and sequence axes, Hugging Face's input names),
//! with the vectorizer beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;

use crate::backend::{BackendTask, DeviceChoice, dispatch};
use crate::graph::Plan;
use crate::graph::compile::Graph;
use crate::graph::plan::Source;
use crate::layers::{LayerForward, ValueKind};
use crate::onnx::{Attr, GraphInput, OPSET, OnnxGraph, OnnxValue};
use crate::run::{atomic_write, checkpoint};
use crate::spec::Spec;
use crate::vectorize::Vectorizer;

/// The model file's name in the output folder.
pub const MODEL_FILE: &str = "model.onnx";
/// What a client needs besides the model: inputs, labels, how to tokenize.
pub const CONFIG_FILE: &str = "pipe_onnx.json";

/// Writes `model.onnx`, the vectorizer (`tokenizer.json`, and `vocab.txt` for
/// text_vectorization) and `pipe_onnx.json` into `out`. Returns the files written. Nothing
/// is written when a layer has no ONNX form.
pub fn export_onnx(
    weights: &Path,
    spec: &Spec,
    plan: &Plan,
    vectorizer: &Vectorizer,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let model = dispatch(
        &DeviceChoice::Cpu,
        OnnxModel {
            plan,
            weights: weights.to_path_buf(),
        },
    )??;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let model_path = out.join(MODEL_FILE);
    atomic_write(&model_path, &model.bytes)?;
    vectorizer.save(out)?;
    let config_path = out.join(CONFIG_FILE);
    let mut text = serde_json::to_string_pretty(&client_config(spec, vectorizer, &model.inputs))?;
    text.push('\n');
    atomic_write(&config_path, text.as_bytes())?;
    let mut files = vec![model_path, out.join("tokenizer.json")];
    if let Vectorizer::TextVectorization(_) = vectorizer {
        files.push(out.join("vocab.txt"));
    }
    files.push(config_path);
    Ok(files)
}

/// The model's inputs, labels and tokenizing rules, for a client of the ONNX file.
fn client_config(spec: &Spec, vectorizer: &Vectorizer, inputs: &[GraphInput]) -> serde_json::Value {
    // The vectorizer's own padding: its length, whether batches stop at their longest row.
    let padded = vectorizer.padding();
    let rules = match vectorizer {
        Vectorizer::TextVectorization(_) => {
            "Keras TextVectorization: ASCII letters lowercased, the 32 ASCII punctuation \
             characters deleted, split on whitespace; each word's line in vocab.txt (counting \
             from 0) is its id, line 0 (\"\") is padding and line 1 ([UNK]) every word outside \
             the vocabulary; at most max_length ids. tokenizer.json does all of this."
        }
        Vectorizer::Subword(_) => {
            "tokenizer.json (Hugging Face tokenizers), with its special tokens; at most \
             max_length ids"
        }
    };
    json!({
        "format": "onnx",
        "opset": OPSET,
        "inputs": inputs.iter().map(|i| i.name()).collect::<Vec<_>>(),
        "outputs": ["logits", "probabilities"],
        "labels": spec.dataset.labels,
        // What the model read as one text: these columns of a row, joined by one space.
        "text_columns": spec.dataset.text,
        "vectorizer": {
            "tokenizer": "tokenizer.json",
            "max_length": padded.len,
            "padding": if padded.dynamic { "longest" } else { "max_length" },
            "pad_id": padded.pad_id,
            "rules": rules,
        },
    })
}

struct OnnxModel<'a> {
    plan: &'a Plan,
    weights: PathBuf,
}

struct Written {
    bytes: Vec<u8>,
    inputs: Vec<GraphInput>,
}

impl BackendTask for OnnxModel<'_> {
    type Output = Result<Written>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = Graph::<B::InnerBackend>::init(self.plan, &device, false)
            .map_err(anyhow::Error::msg)?;
        let model = checkpoint::load(model, &self.weights)?;
        let mut g = OnnxGraph::new();
        g.max_length = (self.plan.ctx.sequence_length)
            .ok_or_else(|| anyhow!("the vectorizer's longest sequence is not known"))?;
        let logits = write_graph(&mut g, self.plan, &model).map_err(|e| anyhow!(e))?;
        g.set_scope("");
        let probabilities = g.op("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
        g.name_output(&logits, "logits");
        g.name_output(&probabilities, "probabilities");
        let inputs = g.inputs.clone();
        let classes = self.plan.num_classes;
        let outputs = [
            ("logits".to_string(), classes),
            ("probabilities".to_string(), classes),
        ];
        let bytes = g.into_model(&outputs, env!("CARGO_PKG_VERSION"));
        Ok(Written { bytes, inputs })
    }
}

/// Every layer's nodes in plan order; returns the logits' name. Errors name the layer.
fn write_graph<B: burn::prelude::Backend>(
    g: &mut OnnxGraph,
    plan: &Plan,
    model: &Graph<B>,
) -> Result<String, String> {
    let mut outputs: Vec<Vec<OnnxValue>> = Vec::with_capacity(plan.layers.len());
    let last = plan.layers.len() - 1;
    for (i, (layer, module)) in plan.layers.iter().zip(&model.layers).enumerate() {
        let args = layer
            .sources
            .iter()
            .map(|s| match *s {
                Source::Input(0) => OnnxValue::new(g.input(GraphInput::InputIds), 2),
                Source::Input(1) => OnnxValue::new(g.mask(), 2),
                Source::Input(_) => OnnxValue::new(g.input(GraphInput::TokenTypeIds), 2),
                Source::Layer { layer, output } => outputs[layer][output].clone(),
            })
            .collect();
        g.set_scope(&layer.name);
        let out = module.to_onnx(g, args, i == last).map_err(|e| {
            format!(
                "layer `{}` ({}) cannot be exported to ONNX: {e}",
                layer.name,
                layer.config.type_name()
            )
        })?;
        outputs.push(out);
    }
    let logits = &outputs[last][0];
    let last_kind = plan.layers[last].outputs[0].1.kind;
    if logits.rank != 2 || last_kind != ValueKind::Float {
        return Err(format!(
            "the last layer `{}` gives {}, not one score per class",
            plan.layers[last].name, plan.layers[last].outputs[0].1
        ));
    }
    Ok(logits.name.clone())
}
