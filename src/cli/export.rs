//! `pipe export RUN --format hf --out DIR`: the run's model in a format other tools load.

use std::path::PathBuf;

use anyhow::Result;

use super::eval::TrainedRun;

/// The formats `pipe export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Hugging Face `…ForSequenceClassification` folder: config.json, model.safetensors and
    /// the tokenizer files, for `AutoModelForSequenceClassification.from_pretrained(DIR)`.
    Hf,
    /// `model.onnx` (opset 17; inputs `input_ids`, `attention_mask`, `token_type_ids` as the
    /// model reads them, dynamic batch and sequence axes; outputs `logits` and
    /// `probabilities`), the vectorizer's `tokenizer.json` and `pipe_onnx.json` (labels,
    /// inputs, tokenizing rules), for onnxruntime and any other ONNX runtime.
    Onnx,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  pipe export runs/bert_finetune/20261201-101500-1a2b3c --format hf --out exported/\n  python -c 'from transformers import pipeline; print(pipeline(\"text-classification\", model=\"exported\")(\"Stocks fell\"))'"
)]
pub struct ExportArgs {
    /// A run folder, or a folder of runs (`runs/<pipeline>`): its newest usable run.
    pub run: PathBuf,
    #[command(flatten)]
    pub weights: super::eval::Weights,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The folder to write into (created if absent; files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let trained = match TrainedRun::open(&args.run, &args.weights)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let export = match args.format {
        ExportFormat::Hf => crate::export::export_hf,
        ExportFormat::Onnx => crate::export::onnx::export_onnx,
    };
    let files = match export(
        &trained.weights,
        &trained.loaded.spec,
        &trained.plan,
        &trained.vectorizer,
        &args.out,
    ) {
        Ok(files) => files,
        Err(e) => {
            errln!("error: {}: {e:#}", args.run.display());
            return Ok(super::EXIT_INVALID);
        }
    };
    for f in files {
        outln!("wrote {}", f.display());
    }
    Ok(0)
}
