//! `pipe eval RUN --data FILE`: accuracy, per-class precision/recall/F1 and the confusion
//! matrix of a run's final model, on stdout and as eval.json in the run folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;

use super::load_run_plan;
use crate::backend::{BackendTask, DeviceChoice, dispatch};
use crate::data::batch::EncodedSplit;
use crate::data::{Example, read};
use crate::graph::{Graph, Plan};
use crate::run::{RunDir, atomic_write, checkpoint};
use crate::spec::LoadedSpec;
use crate::spec::dataset::DatasetFormat;
use crate::train::engine::predict;
use crate::train::metrics::class_report;
use crate::vectorize::Vectorizer;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A run folder.
    pub run: PathBuf,
    /// Data file with labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format, when it differs from the pipeline's dataset (`ag_news_csv`, `csv`, `jsonl`).
    #[arg(long)]
    pub format: Option<String>,
    /// Device for inference (default cpu).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// A finished run, ready for inference.
pub struct TrainedRun {
    pub run: RunDir,
    pub loaded: LoadedSpec,
    pub plan: Plan,
    pub vectorizer: Vectorizer,
}

impl TrainedRun {
    pub fn open(path: &Path) -> Result<Result<Self, i32>> {
        let run = RunDir::open(path)?;
        if !run.model_weights().is_file() {
            bail!(
                "{}: no final model (model/model.safetensors); the run did not complete",
                run.path.display()
            );
        }
        let (loaded, plan) = match load_run_plan(&run, false) {
            Ok(v) => v,
            Err(code) => return Ok(Err(code)),
        };
        let vectorizer = Vectorizer::load(&loaded.spec.vectorizer, &run.vectorizer_dir())
            .with_context(|| format!("loading {}", run.vectorizer_dir().display()))?;
        Ok(Ok(TrainedRun {
            run,
            loaded,
            plan,
            vectorizer,
        }))
    }

    /// Class probabilities for each example.
    pub fn probabilities(
        &self,
        examples: &[Example],
        device: &str,
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let device = DeviceChoice::parse(device).map_err(anyhow::Error::msg)?;
        let split = EncodedSplit::new(&self.vectorizer, examples);
        dispatch(
            &device,
            Infer {
                plan: &self.plan,
                weights: self.run.model_weights(),
                split: &split,
                batch_size,
            },
        )?
    }
}

struct Infer<'a> {
    plan: &'a Plan,
    weights: PathBuf,
    split: &'a EncodedSplit,
    batch_size: usize,
}

impl BackendTask for Infer<'_> {
    type Output = Result<Vec<Vec<f32>>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Inference runs on the inner backend: no autodiff graph, dropout off.
        let model = Graph::<B::InnerBackend>::init(self.plan, &device, false)
            .map_err(anyhow::Error::msg)?;
        let model = checkpoint::load(model, &self.weights)?;
        Ok(predict(&model, self.split, self.batch_size, &device))
    }
}

pub fn run(args: EvalArgs) -> Result<i32> {
    let trained = match TrainedRun::open(&args.run)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut dataset = trained.loaded.spec.dataset.clone();
    if let Some(f) = &args.format {
        dataset.format = match f.as_str() {
            "ag_news_csv" => DatasetFormat::AgNewsCsv,
            "csv" => DatasetFormat::Csv,
            "jsonl" => DatasetFormat::Jsonl,
            other => bail!("unknown --format `{other}` (ag_news_csv, csv, jsonl)"),
        };
    }
    let examples = read(&args.data, &dataset)?;
    let probs = trained.probabilities(&examples, &args.device, args.batch_size)?;
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let report = class_report(&truth, &predicted, &dataset.labels);

    println!(
        "{} on {} ({} rows)",
        trained.run.path.display(),
        args.data.display(),
        report.rows
    );
    println!("accuracy {:.4}", report.accuracy);
    println!();
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9}",
        "class", "precision", "recall", "f1", "support"
    );
    for c in &report.per_class {
        println!(
            "{:<14} {:>9.4} {:>9.4} {:>9.4} {:>9}",
            c.label, c.precision, c.recall, c.f1, c.support
        );
    }
    println!();
    println!("confusion matrix (rows: true class, columns: predicted)");
    print!("{:<14}", "");
    for l in &report.labels {
        print!(" {:>9}", truncate(l, 9));
    }
    println!();
    for (l, row) in report.labels.iter().zip(&report.confusion) {
        print!("{:<14}", truncate(l, 14));
        for v in row {
            print!(" {v:>9}");
        }
        println!();
    }
    let json = serde_json::json!({
        "data": args.data,
        "report": report,
        "evaluated_at": chrono::Utc::now().to_rfc3339(),
    });
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    atomic_write(&trained.run.eval_json(), text.as_bytes())?;
    Ok(0)
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
