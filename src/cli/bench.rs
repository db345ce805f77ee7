//! `pipe bench`: throughput of the lesson's models at the peers' shapes, with ratios to the
//! PyTorch / Keras figures measured on this machine (../shared/peers).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{DataFiles, load_plan};
use crate::backend::{DeviceChoice, dispatch_with};
use crate::bench::peers::{self, PeerResult};
use crate::bench::{Case, Measurement, Timing, median};
use crate::data::EncodedSplit;
use crate::data::encode_splits;
use crate::text_table::{self, Align};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe bench --model a --steps 10\n  pipe bench --peers-python ../shared/peers/.venv/bin/python --rounds 3"
)]
pub struct BenchArgs {
    /// Which model to measure.
    #[arg(long, value_enum, default_value_t = BenchModel::All)]
    pub model: BenchModel,
    /// Timed steps per phase (after the warm-up steps); the peers run as many.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub warmup: Option<usize>,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// MiniLM cases: a BERT of MiniLM's shape built from its config.json with random weights,
    /// as the PyTorch peer builds its own (no model.safetensors needed, only config.json and
    /// the tokenizer). Step times do not depend on the weights' values.
    #[arg(long)]
    pub random_weights: bool,
    /// MiniLM cases on another checkpoint folder (config.json, model.safetensors, tokenizer
    /// files; any family pipe loads): bert_finetune with its encoder and tokenizer read from
    /// there, beside scripts/torch_family_bench.py on the same folder.
    /// scripts/make_bench_checkpoints.py writes one of each family in MiniLM's shape.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// A python with PyTorch and Keras (../shared/peers/setup_venv.sh makes one): run the
    /// peers' scripts beside pipe in this call, A B A B. Default: $PIPE_PEERS_PYTHON.
    #[arg(long)]
    pub peers_python: Option<PathBuf>,
    /// Where the peers' scripts are.
    #[arg(long, default_value = "../shared/peers")]
    pub peers_dir: PathBuf,
    /// Rounds of pipe and peers in turn (medians are printed); with a peers python only.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Stored peer JSON lines, used (and labelled so) when no peers python is given.
    #[arg(long, default_value = "../shared/peers/results-2026-12-01.jsonl")]
    pub peers: PathBuf,
    /// Print JSON lines instead of the table.
    #[arg(long)]
    pub json: bool,
    /// `f32` (default) or `bf16-mixed`: pipe's large products on AMX tiles (on CUDA, its linear
    /// and attention products in bf16), beside PyTorch under `torch.autocast(bfloat16)`
    /// (`--autocast bf16`; the Keras peers are left out).
    #[arg(long, value_enum, default_value_t = BenchPrecision::F32)]
    pub precision: BenchPrecision,
}

/// `pipe bench --precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPrecision {
    F32,
    Bf16Mixed,
}

impl BenchPrecision {
    fn runtime(self) -> crate::spec::runtime::Precision {
        match self {
            BenchPrecision::F32 => crate::spec::runtime::Precision::F32,
            BenchPrecision::Bf16Mixed => crate::spec::runtime::Precision::Bf16Mixed,
        }
    }
}

/// `pipe bench --model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    /// The lesson's transformer (model A).
    A,
    /// MiniLM fine-tune and frozen features.
    Bert,
    /// Both.
    All,
}

impl BenchModel {
    /// The peers' names of the models measured, in the order they run.
    fn names(self) -> &'static [&'static str] {
        match self {
            BenchModel::A => &["a"],
            BenchModel::Bert => &["bert"],
            BenchModel::All => &["a", "bert"],
        }
    }
}

fn encoded(
    spec_path: &Path,
    sets: &[String],
    rows: usize,
) -> Result<(crate::spec::LoadedSpec, crate::graph::Plan, EncodedSplit)> {
    let mut sets = sets.to_vec();
    sets.push(format!("dataset.limit={rows}"));
    let (loaded, plan) = load_plan(spec_path, &sets, DataFiles::Checked)
        .map_err(|_| anyhow::anyhow!("{} does not check", spec_path.display()))?;
    let vectorizer = crate::data::fit_vectorizer(&loaded.spec, None)?;
    let splits = encode_splits(&loaded.spec.dataset, loaded.spec.seed, &vectorizer, None)?;
    Ok((loaded, plan, splits.train))
}

fn timing(args: &BenchArgs, warmup: usize, steps: usize) -> Timing {
    Timing {
        warmup: args.warmup.unwrap_or(warmup),
        steps: args.steps.unwrap_or(steps),
    }
}

/// pipe's cases for one model (`a` or `bert`).
fn pipe_cases(model: &str, args: &BenchArgs, device: &DeviceChoice) -> Result<Vec<Measurement>> {
    let mut results = Vec::new();
    if model == "a" {
        let (loaded, plan, data) =
            encoded(Path::new("pipelines/agnews_transformer.toml"), &[], 9999)?;
        let stage = &loaded.spec.stages[0];
        errln!(
            "bench: model A, train batch 128 / infer batch 256, length 256, {} real rows",
            data.len()
        );
        results.extend(dispatch_with(
            device,
            args.precision.runtime(),
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
                timing: timing(args, 3, 20),
                device_name: device.describe(),
            },
        )??);
        return Ok(results);
    }
    let spec = Path::new("pipelines/bert_finetune.toml");
    for (variant, sets, frozen) in [
        (
            "length 128",
            vec!["vectorizer.padding=\"max_length\"".to_string()],
            false,
        ),
        ("dynamic padding, length buckets", vec![], true),
    ] {
        let sets = minilm_sets(sets, args.random_weights, args.checkpoint.as_deref());
        let (loaded, plan, data) = encoded(spec, &sets, 512)?;
        let stage = loaded.spec.stages.last().context("a finetune stage")?;
        // The table says so: these figures are not the pretrained model's.
        let mut variant = variant.to_string();
        if let Some(dir) = &args.checkpoint {
            variant = format!("{variant}, {}", checkpoint_family(dir)?);
        }
        if args.random_weights {
            variant = format!("{variant}, random weights");
        }
        errln!(
            "bench: MiniLM (bert_finetune), batch 32, {variant}, {} real rows",
            data.len()
        );
        results.extend(dispatch_with(
            device,
            args.precision.runtime(),
            Case {
                model: "B",
                variant: &variant,
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
                timing: timing(args, 2, 8),
                device_name: device.describe(),
            },
        )??);
    }
    Ok(results)
}

/// The `--set`s of one MiniLM case, plus random weights in MiniLM's shape when asked for,
/// and the encoder and tokenizer of `--checkpoint`.
fn minilm_sets(
    mut sets: Vec<String>,
    random_weights: bool,
    checkpoint: Option<&Path>,
) -> Vec<String> {
    if random_weights {
        sets.push("model.bert.pretrained=false".into());
    }
    if let Some(dir) = checkpoint {
        let dir = serde_json::to_string(&dir.to_string_lossy()).expect("a string");
        sets.push(format!("model.bert.from={dir}"));
        sets.push(format!("vectorizer.from={dir}"));
    }
    sets
}

/// `--checkpoint`'s `model_type`, for the table's variant column.
fn checkpoint_family(dir: &Path) -> Result<String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--checkpoint: cannot read {}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--checkpoint: {} is not JSON", path.display()))?;
    let family = config["model_type"].as_str().unwrap_or("no model_type");
    Ok(format!("{family} checkpoint"))
}

/// `items` grouped by `key`, in order of first appearance.
fn groups<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Vec<&T>> {
    let mut out: Vec<(K, Vec<&T>)> = Vec::new();
    for item in items {
        let k = key(item);
        match out.iter_mut().find(|(seen, _)| *seen == k) {
            Some((_, group)) => group.push(item),
            None => out.push((k, vec![item])),
        }
    }
    out.into_iter().map(|(_, group)| group).collect()
}

/// Medians over rounds of pipe's measurements with the same model, phase and variant.
fn pipe_medians(all: &[Measurement]) -> Vec<Measurement> {
    groups(all, |m| {
        (m.model.clone(), m.phase.clone(), m.variant.clone())
    })
    .into_iter()
    .map(|same| {
        let med = |f: fn(&Measurement) -> f64| median(same.iter().map(|x| f(x)).collect());
        Measurement {
            samples_per_s: med(|x| x.samples_per_s),
            step_ms_median: med(|x| x.step_ms_median),
            cores_busy: med(|x| x.cores_busy),
            peak_rss_mb: same.iter().map(|x| x.peak_rss_mb).fold(0.0, f64::max),
            ..same[0].clone()
        }
    })
    .collect()
}

/// Medians over rounds of each peer framework's figure for a model and phase.
fn peer_medians(all: &[PeerResult]) -> Vec<PeerResult> {
    let key = |p: &PeerResult| {
        (
            p.framework.clone(),
            p.model.clone(),
            p.phase.clone(),
            p.threads.clone(),
        )
    };
    groups(all, key)
        .into_iter()
        .map(|same| {
            let busy: Vec<f64> = same.iter().filter_map(|x| x.cores_busy).collect();
            PeerResult {
                samples_per_s: median(same.iter().map(|x| x.samples_per_s).collect()),
                cores_busy: (!busy.is_empty()).then(|| median(busy)),
                ..same[0].clone()
            }
        })
        .collect()
}

pub fn run(args: BenchArgs) -> Result<i32> {
    // Bad arguments are invalid input (exit 2), each named as its flag.
    let invalid = |flag: &str, value: &dyn std::fmt::Display, message: &str| {
        errln!("{flag} {value}: error: {message}");
        Ok(super::EXIT_INVALID)
    };
    let device = args.device.clone();
    let models = args.model.names();
    if args.steps == Some(0) {
        return invalid("--steps", &0, "must be at least 1");
    }
    if args.rounds == 0 {
        return invalid("--rounds", &0, "must be at least 1");
    }
    if args.checkpoint.is_some() && args.model != BenchModel::Bert {
        let message = "applies to the MiniLM cases: give --model bert";
        return invalid("--checkpoint", &"with --model a or all", message);
    }
    if let Some(dir) = &args.checkpoint
        && !dir.join("config.json").is_file()
    {
        let message = "no config.json there (a checkpoint folder holds config.json, \
                       model.safetensors and the tokenizer files)";
        return invalid("--checkpoint", &dir.display(), message);
    }
    let python = peers::python(args.peers_python.clone());
    let gpu = match device {
        DeviceChoice::Cuda(i) => Some(format!("cuda:{i}")),
        _ => None,
    };
    let rounds = if python.is_some() { args.rounds } else { 1 };
    let scratch = std::env::temp_dir().join(format!("pipe-bench-peers-{}", std::process::id()));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let measured = (|| -> Result<()> {
        for round in 1..=rounds {
            for model in models {
                ours.extend(pipe_cases(model, &args, &device)?);
                let Some(py) = &python else { continue };
                let autocast = args.precision == BenchPrecision::Bf16Mixed;
                let scripts = peers::scripts_for(model, gpu.is_some());
                // Keras has no autocast to set beside bf16-mixed: PyTorch's alone then.
                let scripts = scripts
                    .iter()
                    .filter(|s| !autocast || s.file.starts_with("torch"));
                for script in scripts {
                    errln!("bench: round {round}/{rounds}, {}", script.file);
                    let (warmup, steps) = if *model == "a" { (3, 20) } else { (2, 8) };
                    let how = peers::PeerRun {
                        steps: args.steps.unwrap_or(steps),
                        warmup: args.warmup.unwrap_or(warmup),
                        gpu: gpu.as_deref(),
                        autocast,
                        checkpoint: args.checkpoint.as_deref(),
                    };
                    theirs.extend(peers::run(py, &args.peers_dir, script, &how, &scratch)?);
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    measured?;
    let results = pipe_medians(&ours);
    let (peer_results, source) = match python {
        Some(_) => (
            peer_medians(&theirs),
            format!("same run, median of {rounds} interleaved rounds"),
        ),
        // The stored figures are PyTorch's BERT of MiniLM's shape, not this checkpoint's model.
        None if args.checkpoint.is_some() => (
            Vec::new(),
            "no stored figures for --checkpoint (give --peers-python)".into(),
        ),
        None => (
            peers::load(&args.peers),
            format!("stored figures, not this run: {}", args.peers.display()),
        ),
    };
    if args.json {
        for m in &results {
            outln!("{}", serde_json::to_string(m)?);
        }
        return Ok(0);
    }
    print_table(&results, &peer_results, &source, gpu.is_some());
    if peer_results.is_empty() && args.checkpoint.is_some() && python.is_none() {
        outln!("(--checkpoint without --peers-python: ratios omitted)");
    } else if peer_results.is_empty() {
        outln!(
            "(no peer figures at {}: ratios omitted)",
            args.peers.display()
        );
    }
    Ok(0)
}

fn print_table(results: &[Measurement], peer_results: &[PeerResult], source: &str, on_gpu: bool) {
    let rows = results.iter().map(|m| {
        let ratios: Vec<String> = peers::matching(peer_results, &m.model, &m.phase, on_gpu)
            .iter()
            .map(|p| {
                let busy = p
                    .cores_busy
                    .map(|b| format!(", {b:.2} cores"))
                    .unwrap_or_default();
                format!(
                    "{} {:.0}/s{busy} → {:.2}x",
                    p.framework,
                    p.samples_per_s,
                    m.samples_per_s / p.samples_per_s
                )
            })
            .collect();
        vec![
            m.model.clone(),
            m.phase.clone(),
            m.variant.clone(),
            m.batch.to_string(),
            format!("{:.1}", m.samples_per_s),
            format!("{:.1}", m.step_ms_median),
            format!("{:.0}", m.peak_rss_mb),
            format!("{:.2}", m.cores_busy),
            ratios.join("; "),
        ]
    });
    let peers_header = format!("vs peers ({source})");
    let columns = [
        ("model", Align::Left),
        ("phase", Align::Left),
        ("variant", Align::Left),
        ("batch", Align::Right),
        ("samples/s", Align::Right),
        ("step ms", Align::Right),
        ("RSS MiB", Align::Right),
        ("cores", Align::Right),
        (peers_header.as_str(), Align::Left),
    ];
    out!("{}", text_table::plain(&columns, rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_appearance_order() {
        let items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let got: Vec<Vec<i32>> = groups(&items, |x| x.0)
            .into_iter()
            .map(|g| g.iter().map(|x| x.1).collect())
            .collect();
        assert_eq!(got, vec![vec![1, 3], vec![2, 5], vec![4]]);
    }

    #[test]
    fn random_weights_only_change_the_bert_layers_loading() {
        let base = vec!["vectorizer.padding=\"max_length\"".to_string()];
        assert_eq!(minilm_sets(base.clone(), false, None), base);
        assert_eq!(
            minilm_sets(base.clone(), true, None),
            [base[0].clone(), "model.bert.pretrained=false".into()]
        );
    }

    #[test]
    fn a_checkpoint_replaces_the_encoder_and_the_tokenizer() {
        let sets = minilm_sets(vec![], false, Some(Path::new("/tmp/ck \"quoted\"")));
        assert_eq!(
            sets,
            [
                r#"model.bert.from="/tmp/ck \"quoted\"""#.to_string(),
                r#"vectorizer.from="/tmp/ck \"quoted\"""#.to_string(),
            ]
        );
    }
}
