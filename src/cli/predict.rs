//! `pipe predict RUN TEXT|-`: the label and class probabilities of each text (one per line
//! from stdin with `-`), batched.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Result;

use super::eval::{TrainedRun, argmax};
use crate::backend::DeviceChoice;
use crate::data::Example;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe predict runs/agnews_transformer/20261201-101500-1a2b3c \"The team won the final\" \"Stocks fell sharply\"\n  cut -f2 texts.tsv | pipe predict runs/agnews_transformer/20261201-101500-1a2b3c - --json"
)]
pub struct PredictArgs {
    /// A run folder.
    pub run: PathBuf,
    /// Texts to classify; `-` reads one text per line from stdin.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// One JSON object per text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

pub fn run(args: PredictArgs) -> Result<i32> {
    let trained = match TrainedRun::open(&args.run)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut texts = Vec::new();
    for t in &args.texts {
        if t == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    texts.push(line);
                }
            }
        } else {
            texts.push(t.clone());
        }
    }
    let examples: Vec<Example> = texts
        .iter()
        .map(|t| Example {
            text: t.clone(),
            label: 0,
        })
        .collect();
    let probs = trained.probabilities(&examples, &args.device, args.batch_size)?;
    let labels = &trained.loaded.spec.dataset.labels;
    for (text, p) in texts.iter().zip(&probs) {
        let best = argmax(p);
        if args.json {
            let map: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .zip(p)
                .map(|(l, v)| (l.clone(), serde_json::json!(v)))
                .collect();
            println!(
                "{}",
                serde_json::json!({"text": text, "label": labels[best], "probabilities": map})
            );
        } else {
            let shown: Vec<String> = labels
                .iter()
                .zip(p)
                .map(|(l, v)| format!("{l}={v:.4}"))
                .collect();
            println!("{}\t{}", labels[best], shown.join(" "));
        }
    }
    Ok(0)
}
