//! Exporting a trained run for use outside pipe. `hf`: a Hugging Face sequence-classification
//! folder that transformers loads.

pub mod hf;
pub mod onnx;

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendTask, DeviceChoice, dispatch};
use crate::graph::Plan;
use crate::graph::compile::Graph;
use crate::pretrained::EncoderConfig;
use crate::run::{atomic_write, checkpoint};
use crate::spec::Spec;
use crate::spec::VectorizerSpec;
use crate::vectorize::Vectorizer;

/// Writes the run as a Hugging Face `…ForSequenceClassification` folder into `out` (created if
/// absent; files of the same names in it are replaced, nothing else is touched). Returns the
/// files written. `weights`: the run's weights file to export.
pub fn export_hf(
    weights: &Path,
    spec: &Spec,
    plan: &Plan,
    vectorizer: &Vectorizer,
    out: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    let layout = hf::layout(plan).map_err(|e| anyhow!(e))?;
    let Vectorizer::Subword(tokenizer) = vectorizer else {
        bail!(
            "--format hf needs a tokenizer.json vectorizer (pretrained, wordpiece or bpe); this run's is text_vectorization"
        );
    };
    let max_length = tokenizer.padding().len;
    let model_dir = layout.encoder_config.model_dir().map_err(|e| anyhow!(e))?;
    let encoder = EncoderConfig::load(&model_dir).map_err(|e| anyhow!(e))?;
    let source_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("config.json"))?)
            .with_context(|| format!("{}", model_dir.join("config.json").display()))?;
    let config = hf::config_json(&source_config, &spec.dataset.labels).map_err(|e| anyhow!(e))?;
    let tensors = dispatch(
        &DeviceChoice::Cpu,
        HfWeights {
            plan,
            weights: weights.to_path_buf(),
            layout: &layout,
            encoder: &encoder,
        },
    )??;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files = hf::written_files(out);
    let pretty = |v: &serde_json::Value| -> Result<Vec<u8>> {
        let mut text = serde_json::to_string_pretty(v)?;
        text.push('\n');
        Ok(text.into_bytes())
    };
    atomic_write(&files[0], &pretty(&config)?)?;
    hf::write_safetensors(&files[1], &tensors).map_err(|e| anyhow!(e))?;
    let json = tokenizer
        .tokenizer()
        .to_string(true)
        .map_err(|e| anyhow!("serialising the tokenizer: {e}"))?;
    atomic_write(&files[2], json.as_bytes())?;
    let source_tokenizer_config: Option<serde_json::Value> = match &spec.vectorizer {
        VectorizerSpec::Pretrained(p) => {
            crate::pretrained::locate(&p.from, &["tokenizer_config.json"])
                .ok()
                .and_then(|dir| std::fs::read_to_string(dir.join("tokenizer_config.json")).ok())
                .and_then(|t| serde_json::from_str(&t).ok())
        }
        _ => None,
    };
    let tokenizer_config = hf::tokenizer_config(
        source_tokenizer_config.as_ref(),
        tokenizer.tokenizer(),
        max_length,
    );
    atomic_write(&files[3], &pretty(&tokenizer_config)?)?;
    Ok(files)
}

struct HfWeights<'a> {
    plan: &'a Plan,
    weights: std::path::PathBuf,
    layout: &'a hf::HfLayout,
    encoder: &'a EncoderConfig,
}

impl BackendTask for HfWeights<'_> {
    type Output = Result<Vec<hf::HfTensor>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = Graph::<B::InnerBackend>::init(self.plan, &device, false)
            .map_err(anyhow::Error::msg)?;
        let model = checkpoint::load(model, &self.weights)?;
        hf::hf_tensors(&model, self.layout, self.encoder).map_err(anyhow::Error::msg)
    }
}
