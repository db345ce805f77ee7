//! `pipe eval RUN --data FILE`: accuracy, per-class precision/recall/F1 and the confusion
//! matrix of a run's final model, on stdout and as eval.json in the run folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;

use super::load_run_plan;
use crate::backend::{BackendTask, DeviceChoice, dispatch};
use crate::compare::{ImageKind, plot_confusion};
use crate::data::batch::EncodedSplit;
use crate::data::{Example, read};
use crate::graph::{Graph, Plan};
use crate::run::{RunDir, atomic_write, checkpoint};
use crate::spec::LoadedSpec;
use crate::spec::dataset::DatasetFormat;
use crate::text_table::{self, Align};
use crate::train::evaluate::predict;
use crate::train::metrics::{ClassReport, class_report};
use crate::vectorize::Vectorizer;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data data/ag_news/test.csv\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data my_rows.jsonl --format jsonl --json\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data data/ag_news/test.csv --plot confusion.png"
)]
pub struct EvalArgs {
    /// A run folder.
    pub run: PathBuf,
    /// Data file with labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format, when it differs from the pipeline's dataset.
    #[arg(long, value_enum)]
    pub format: Option<DatasetFormat>,
    /// Device for inference: `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the report as JSON on stdout (what eval.json holds) instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also draw the confusion matrix (counts, colour by the share of each true class) to this
    /// .png or .svg file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
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
        device: &DeviceChoice,
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let split = EncodedSplit::new(&self.vectorizer, examples);
        dispatch(
            device,
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
    // Checked before any inference: a wrong file name should not cost a pass over the data.
    if args
        .plot
        .as_deref()
        .is_some_and(|p| ImageKind::of(p).is_err())
    {
        eprintln!("--plot: error: the file name must end in .png or .svg");
        return Ok(super::EXIT_INVALID);
    }
    let trained = match TrainedRun::open(&args.run)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut dataset = trained.loaded.spec.dataset.clone();
    if let Some(format) = &args.format {
        dataset.format = format.clone();
    }
    let examples = read(&args.data, &dataset)?;
    let probs = trained.probabilities(&examples, &args.device, args.batch_size)?;
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let report = class_report(&truth, &predicted, &dataset.labels);
    let json = serde_json::json!({
        "run": trained.run.path.display().to_string(),
        "data": args.data.display().to_string(),
        "report": report,
        "evaluated_at": chrono::Utc::now().to_rfc3339(),
    });
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    atomic_write(&trained.run.eval_json(), text.as_bytes())?;
    if let Some(plot) = &args.plot {
        let title = format!(
            "{} {} on {}: accuracy {:.1} %",
            trained.loaded.spec.name,
            trained.run.name(),
            args.data.file_name().map_or_else(
                || args.data.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            100.0 * report.accuracy
        );
        plot_confusion(&report.confusion, &report.labels, &title, plot)?;
        eprintln!("wrote {}", plot.display());
    }
    if args.json {
        print!("{text}");
    } else {
        println!(
            "{} on {} ({} rows)",
            trained.run.path.display(),
            args.data.display(),
            report.rows
        );
        print!("{}", report_tables(&report));
    }
    Ok(0)
}

/// Accuracy, the per-class scores and the confusion matrix, as `pipe eval` prints them.
fn report_tables(report: &ClassReport) -> String {
    let scores = report.per_class.iter().map(|c| {
        vec![
            c.label.clone(),
            format!("{:.4}", c.precision),
            format!("{:.4}", c.recall),
            format!("{:.4}", c.f1),
            c.support.to_string(),
        ]
    });
    let mut out = format!("accuracy {:.4}\n\n", report.accuracy);
    out += &text_table::plain(
        &[
            ("class", Align::Left),
            ("precision", Align::Right),
            ("recall", Align::Right),
            ("f1", Align::Right),
            ("support", Align::Right),
        ],
        scores,
    );
    out += "\nconfusion matrix (rows: true class, columns: predicted)\n";
    let mut columns = vec![("", Align::Left)];
    columns.extend(report.labels.iter().map(|l| (l.as_str(), Align::Right)));
    let rows = report.labels.iter().zip(&report.confusion).map(|(l, row)| {
        std::iter::once(l.clone())
            .chain(row.iter().map(|v| v.to_string()))
            .collect()
    });
    out += &text_table::plain(&columns, rows);
    out
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}
