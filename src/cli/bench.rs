//! `pipe bench`: throughput of the lesson's models at the peers' shapes, with ratios to the
//! PyTorch / Keras figures measured on this machine (../shared/peers).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::load_plan;
use crate::backend::{DeviceChoice, dispatch};
use crate::bench::{Case, Measurement, Timing, peers};
use crate::data::batch::EncodedSplit;
use crate::data::load_splits;
use crate::vectorize::Vectorizer;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// `a` (the lesson's transformer), `bert` (MiniLM fine-tune and frozen features), or `all`.
    #[arg(long, default_value = "all")]
    pub model: String,
    /// Timed steps per phase (after the warm-up steps).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub warmup: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The peers' JSON lines to compare with.
    #[arg(long, default_value = "../shared/peers/results-2026-11-27.jsonl")]
    pub peers: PathBuf,
    /// Print JSON lines instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn encoded(
    spec_path: &Path,
    sets: &[String],
    rows: usize,
) -> Result<(crate::spec::LoadedSpec, crate::graph::Plan, EncodedSplit)> {
    let mut sets = sets.to_vec();
    sets.push(format!("dataset.limit={rows}"));
    let (loaded, plan) = load_plan(spec_path, &sets, true)
        .map_err(|_| anyhow::anyhow!("{} does not check", spec_path.display()))?;
    let splits = load_splits(&loaded.spec.dataset, loaded.spec.seed)?;
    let vectorizer = Vectorizer::fit(
        &loaded.spec.vectorizer,
        splits.train.iter().map(|e| e.text.as_str()),
    )?;
    let data = EncodedSplit::new(&vectorizer, &splits.train);
    Ok((loaded, plan, data))
}

pub fn run(args: BenchArgs) -> Result<i32> {
    let device = DeviceChoice::parse(&args.device).map_err(anyhow::Error::msg)?;
    let mut results: Vec<Measurement> = Vec::new();
    let which = args.model.as_str();
    if !matches!(which, "a" | "bert" | "all") {
        bail!("--model must be a, bert or all");
    }
    if which == "a" || which == "all" {
        let (loaded, plan, data) =
            encoded(Path::new("pipelines/agnews_transformer.toml"), &[], 9999)?;
        let stage = &loaded.spec.stages[0];
        eprintln!(
            "bench: model A, train batch 128 / infer batch 256, length 256, {} real rows",
            data.len()
        );
        results.extend(dispatch(
            &device,
            Case {
                model: "A",
                variant: "lesson shapes",
                plan: &plan,
                stage,
                data: &data,
                train_batch: 128,
                infer_batch: 256,
                seq_len: "256".into(),
                frozen_prefix: false,
                timing: Timing {
                    warmup: args.warmup.unwrap_or(3),
                    steps: args.steps.unwrap_or(20),
                },
                device_name: device.describe(),
            },
        )??);
    }
    if which == "bert" || which == "all" {
        let spec = Path::new("pipelines/bert_finetune.toml");
        for (variant, sets, frozen) in [
            (
                "length 128",
                vec!["vectorizer.padding=\"max_length\"".to_string()],
                false,
            ),
            ("dynamic padding, length buckets", vec![], true),
        ] {
            let (loaded, plan, data) = encoded(spec, &sets, 512)?;
            let stage = loaded.spec.stages.last().context("a finetune stage")?;
            eprintln!(
                "bench: MiniLM (bert_finetune), batch 32, {variant}, {} real rows",
                data.len()
            );
            results.extend(dispatch(
                &device,
                Case {
                    model: "B",
                    variant,
                    plan: &plan,
                    stage,
                    data: &data,
                    train_batch: 32,
                    infer_batch: 32,
                    seq_len: if frozen {
                        "≤128 (batch longest)".into()
                    } else {
                        "128".into()
                    },
                    frozen_prefix: frozen,
                    timing: Timing {
                        warmup: args.warmup.unwrap_or(2),
                        steps: args.steps.unwrap_or(8),
                    },
                    device_name: device.describe(),
                },
            )??);
        }
    }

    let peer_results = peers::load(&args.peers);
    if args.json {
        for m in &results {
            println!("{}", serde_json::to_string(m)?);
        }
        return Ok(0);
    }
    println!(
        "{:<5} {:<18} {:<46} {:>5} {:>12} {:>10} {:>9}  vs peers (default threads, same machine)",
        "model", "phase", "variant", "batch", "samples/s", "step ms", "RSS MiB"
    );
    for m in &results {
        let ratios: Vec<String> = peers::matching(&peer_results, &m.model, &m.phase)
            .iter()
            .map(|p| format!("{} {:.2}x", p.framework, m.samples_per_s / p.samples_per_s))
            .collect();
        println!(
            "{:<5} {:<18} {:<46} {:>5} {:>12.1} {:>10.1} {:>9.0}  {}",
            m.model,
            m.phase,
            m.variant,
            m.batch,
            m.samples_per_s,
            m.step_ms_median,
            m.peak_rss_mb,
            ratios.join(", ")
        );
    }
    if peer_results.is_empty() {
        println!(
            "(no peer figures at {}: ratios omitted)",
            args.peers.display()
        );
    }
    Ok(0)
}
