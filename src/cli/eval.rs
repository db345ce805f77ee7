//! `pipe eval RUN --data FILE`: accuracy, per-class precision/recall/F1 and the confusion
//! matrix of a run's final model, on stdout and as eval.json in the run folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;

use super::load_trained_plan;
use crate::backend::{BackendTask, DeviceChoice, dispatch_with};
use crate::compare::{ImageKind, plot_confusion};
use crate::data::EncodedSplit;
use crate::data::encode_file;
use crate::graph::{Graph, Plan};
use crate::run::{RunDir, atomic_write, checkpoint};
use crate::spec::LoadedSpec;
use crate::spec::dataset::DatasetFormat;
use crate::spec::runtime::Precision;
use crate::text_table::{self, Align};
use crate::train::evaluate::predict;
use crate::train::metrics::{ClassReport, class_report};
use crate::vectorize::Vectorizer;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data data/ag_news/test.csv\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data my_rows.jsonl --format jsonl --json\n  pipe eval runs/agnews_transformer/20261201-101500-1a2b3c --data data/ag_news/test.csv --plot confusion.png"
)]
pub struct EvalArgs {
    /// A run folder, or a folder of runs (`runs/<pipeline>`): its newest usable run.
    pub run: PathBuf,
    #[command(flatten)]
    pub weights: Weights,
    /// Data file with labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format; by default `.jsonl`/`.ndjson` files are JSON Lines, `.csv` files CSV, and
    /// others in the pipeline's format.
    #[arg(long, value_enum)]
    pub format: Option<DatasetFormat>,
    #[command(flatten)]
    pub inference: Inference,
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

/// `--device` and `--precision`, shared by the verbs that run a trained model.
#[derive(clap::Args, Debug, Clone)]
pub struct Inference {
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// `run`: bf16-mixed where the run trained in it, else f32. Or `f32`, `bf16-mixed`, `bf16`
    /// (`bf16-true`) or `f16` (`16-true`), as `runtime.precision` means them.
    #[arg(long, value_enum, default_value_t = InferencePrecision::Run)]
    pub precision: InferencePrecision,
}

/// `--precision` of the verbs that run a trained model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum InferencePrecision {
    /// bf16-mixed where the run trained in it (its weights are f32: autocast's products, the
    /// speed the run was set up for), f32 otherwise: a pure bf16 or f16 run's weights are read
    /// exactly in f32, which burn-flex runs several times faster than half precision.
    Run,
    F32,
    Bf16Mixed,
    #[value(alias = "bf16-true")]
    Bf16,
    #[value(alias = "16-true")]
    F16,
}

impl Inference {
    /// The precision to run a model in that trained in `trained`.
    pub fn precision(&self, trained: Precision) -> Precision {
        match self.precision {
            // burn-ndarray runs f32 only, and trained the run in f32 where it trained it.
            InferencePrecision::Run if matches!(self.device, DeviceChoice::NdArray) => {
                Precision::F32
            }
            InferencePrecision::Run if trained == Precision::Bf16Mixed => Precision::Bf16Mixed,
            InferencePrecision::Run | InferencePrecision::F32 => Precision::F32,
            InferencePrecision::Bf16Mixed => Precision::Bf16Mixed,
            InferencePrecision::Bf16 => Precision::Bf16,
            InferencePrecision::F16 => Precision::F16,
        }
    }
}

/// Which weights of a run a verb uses.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq)]
pub enum Checkpoint {
    /// model/model.safetensors: what the run ended with.
    #[default]
    Final,
    /// The last stage's best checkpoint by its monitor (checkpoints/<stage>-best.safetensors).
    Best,
    /// The last stage's newest checkpoint (checkpoints/<stage>-last.safetensors), which a run
    /// that did not complete also has.
    Last,
}

/// `--checkpoint`, shared by the verbs that use a trained model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Weights {
    /// The weights to use: `final` (the run's model), or the last stage's `best` or `last`
    /// checkpoint.
    #[arg(long, value_enum, default_value = "final")]
    pub checkpoint: Checkpoint,
}

impl Checkpoint {
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Final => "final",
            Checkpoint::Best => "best",
            Checkpoint::Last => "last",
        }
    }

    /// Where these weights are in `run` (whose spec is `spec`); they may be missing.
    fn path(self, run: &RunDir, spec: &crate::spec::Spec) -> PathBuf {
        let Some((i, stage)) = spec.stages.iter().enumerate().next_back() else {
            return run.model_weights();
        };
        match self {
            Checkpoint::Final => run.model_weights(),
            which => run.checkpoint(&stage.name_or_default(i), which.name()),
        }
    }

    /// Whether `run` has these weights, read without loading its spec: the final model, or a
    /// checkpoint file of that kind.
    fn present(self, run: &RunDir) -> bool {
        if self == Checkpoint::Final {
            return run.model_weights().is_file();
        }
        let suffix = format!("-{}.safetensors", self.name());
        std::fs::read_dir(run.checkpoints()).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        })
    }

    fn wanted(self) -> &'static str {
        match self {
            Checkpoint::Final => "a final model (none completed)",
            Checkpoint::Best => "a best checkpoint",
            Checkpoint::Last => "a checkpoint",
        }
    }
}

/// A trained run, ready for inference.
pub struct TrainedRun {
    pub run: RunDir,
    pub loaded: LoadedSpec,
    pub plan: Plan,
    pub vectorizer: Vectorizer,
    /// The weights file used (see [`Checkpoint`]).
    pub weights: PathBuf,
}

impl TrainedRun {
    /// The run at `path` (or the newest usable one in a folder of runs) with the weights
    /// `weights` names.
    pub fn open(path: &Path, weights: &Weights) -> Result<Result<Self, i32>> {
        let which = weights.checkpoint;
        let (run, picked) = RunDir::open_or_newest(path, |run| which.present(run), which.wanted())
            .map_err(|e| super::Invalid(e.to_string()))?;
        if picked {
            errln!("using {}", run.path.display());
        }
        let (loaded, plan) = match load_trained_plan(&run) {
            Ok(v) => v,
            Err(code) => return Ok(Err(code)),
        };
        let weights = which.path(&run, &loaded.spec);
        if !weights.is_file() {
            let missing = match which {
                Checkpoint::Final => format!(
                    "{}: no final model (model/model.safetensors): the run did not complete; \
                     `--checkpoint last` uses its newest checkpoint",
                    run.path.display()
                ),
                _ => format!(
                    "{}: no {} checkpoint ({} is missing)",
                    run.path.display(),
                    which.name(),
                    weights.display()
                ),
            };
            return Err(super::Invalid(missing).into());
        }
        let vectorizer = Vectorizer::load(&loaded.spec.vectorizer, &run.vectorizer_dir())
            .with_context(|| format!("loading {}", run.vectorizer_dir().display()))?;
        Ok(Ok(TrainedRun {
            run,
            loaded,
            plan,
            vectorizer,
            weights,
        }))
    }

    /// Class probabilities for each row of `split`.
    pub fn probabilities_of(
        &self,
        split: &EncodedSplit,
        inference: &Inference,
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let mut next = Some(split.clone());
        let mut out = Vec::new();
        self.probabilities_each(inference, batch_size, &mut || Ok(next.take()), &mut |p| {
            out = p;
            Ok(())
        })?;
        Ok(out)
    }

    /// Class probabilities of one split after another, on one model loaded once: `next` hands
    /// the splits over until it gives `None`, `done` gets each one's probabilities in row order.
    /// The model runs in [`Inference::precision`] of the run's own.
    pub fn probabilities_each(
        &self,
        inference: &Inference,
        batch_size: usize,
        next: &mut dyn FnMut() -> Result<Option<EncodedSplit>>,
        done: &mut dyn FnMut(Vec<Vec<f32>>) -> Result<()>,
    ) -> Result<()> {
        dispatch_with(
            &inference.device,
            inference.precision(self.loaded.spec.runtime.precision),
            Infer {
                plan: &self.plan,
                weights: self.weights.clone(),
                batch_size,
                next,
                done,
            },
        )?
    }
}

struct Infer<'a> {
    plan: &'a Plan,
    weights: PathBuf,
    batch_size: usize,
    next: &'a mut dyn FnMut() -> Result<Option<EncodedSplit>>,
    done: &'a mut dyn FnMut(Vec<Vec<f32>>) -> Result<()>,
}

impl BackendTask for Infer<'_> {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Inference runs on the inner backend: no autodiff graph, dropout off.
        let model = Graph::<B::InnerBackend>::init(self.plan, &device, false)
            .map_err(anyhow::Error::msg)?;
        let model = checkpoint::load(model, &self.weights)?;
        while let Some(split) = (self.next)()? {
            (self.done)(predict(&model, &split, self.batch_size, &device))?;
        }
        Ok(())
    }
}

pub fn run(args: EvalArgs) -> Result<i32> {
    // Checked before any inference: a wrong file name should not cost a pass over the data.
    if let Some(Err(e)) = args.plot.as_deref().map(ImageKind::of) {
        errln!("--plot: error: {e}");
        return Ok(super::EXIT_INVALID);
    }
    let trained = match TrainedRun::open(&args.run, &args.weights)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut dataset = trained.loaded.spec.dataset.clone();
    dataset.format = match &args.format {
        Some(format) => format.clone(),
        None => crate::data::format_of_file(&args.data, &dataset.format),
    };
    // Every row of the file, through the encoded cache: a second eval of the same file (or the
    // run's own test file) maps the rows encoded before.
    dataset.limit = None;
    // Only where the run's runs dir exists from here: eval run elsewhere makes no folders.
    let cache = trained.loaded.spec.runtime.existing_data_cache();
    let rows = encode_file(&args.data, &dataset, &trained.vectorizer, cache.as_deref())?;
    let split = EncodedSplit::new(rows, trained.vectorizer.padding());
    let probs = trained.probabilities_of(&split, &args.inference, args.batch_size)?;
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let truth: Vec<usize> = (0..split.len()).map(|r| split.label(r) as usize).collect();
    let report = class_report(&truth, &predicted, &dataset.labels);
    let json = serde_json::json!({
        "run": trained.run.path.display().to_string(),
        "data": args.data.display().to_string(),
        "checkpoint": args.weights.checkpoint.name(),
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
        errln!("wrote {}", plot.display());
    }
    if args.json {
        out!("{text}");
    } else {
        outln!(
            "{} on {} ({} rows)",
            trained.run.path.display(),
            args.data.display(),
            report.rows
        );
        out!("{}", report_tables(&report));
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
    let mut out = format!(
        "accuracy {:.4}  macro-F1 {:.4}\n\n",
        report.accuracy, report.macro_f1
    );
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

pub use crate::train::metrics::argmax;
