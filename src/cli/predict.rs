//! `pipe predict RUN TEXT|-` / `pipe predict RUN --data FILE [--out FILE]`: the label and class
//! probabilities of each text (one per line from stdin with `-`, or each row of a CSV/JSONL
//! file), batched.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::eval::{TrainedRun, Weights, argmax};
use crate::backend::DeviceChoice;
use crate::data::Example;
use crate::run::atomic_write;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe predict runs/agnews_transformer/20261201-101500-1a2b3c \"The team won the final\" \"Stocks fell sharply\"\n  cut -f2 texts.tsv | pipe predict runs/agnews_transformer - --json\n  pipe predict runs/sports_csv --data new_rows.csv --out predictions.csv"
)]
pub struct PredictArgs {
    /// A run folder, or a folder of runs (`runs/<pipeline>`): its newest usable run.
    pub run: PathBuf,
    /// Texts to classify; `-` reads one text per line from stdin (a blank line gives an empty
    /// output line, or `"label": null` with --json, so that output lines match input lines).
    #[arg(required_unless_present = "data", conflicts_with = "data")]
    pub texts: Vec<String>,
    /// A CSV (with header) or JSONL file whose rows to classify, read with the pipeline's text
    /// columns; a label column is not needed. `.jsonl` is JSON Lines, `.csv` CSV.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Write the predictions to this .csv or .jsonl file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub weights: Weights,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// One JSON object per text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// Where predictions go.
#[derive(Clone, Copy, PartialEq)]
enum Sink {
    Lines,
    JsonLines,
    Csv,
}

pub fn run(args: PredictArgs) -> Result<i32> {
    let sink = match args.out.as_deref().map(out_kind) {
        None if args.json => Sink::JsonLines,
        None => Sink::Lines,
        Some(Ok(kind)) => kind,
        Some(Err(e)) => {
            errln!("--out: error: {e}");
            return Ok(super::EXIT_INVALID);
        }
    };
    let trained = match TrainedRun::open(&args.run, &args.weights)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    // `None`: a blank input line, which gets a blank answer in its place.
    let texts: Vec<Option<String>> = match &args.data {
        Some(data) => {
            let mut dataset = trained.loaded.spec.dataset.clone();
            dataset.format = crate::data::format_of_file(data, &dataset.format);
            let rows = crate::data::read_texts(data, &dataset)?;
            rows.into_iter().map(|e| Some(e.text)).collect()
        }
        None => read_texts(&args.texts)?,
    };
    let examples: Vec<Example> = texts
        .iter()
        .flatten()
        .map(|t| Example {
            text: t.clone(),
            label: 0,
        })
        .collect();
    let probs = trained.probabilities(&examples, &args.device, args.batch_size)?;
    let labels = &trained.loaded.spec.dataset.labels;
    // A text and its probabilities (one per text, in order), or `None` for a blank line.
    let mut probs = probs.iter();
    let rows: Vec<Row> = texts
        .iter()
        .map(|t| {
            let text = t.as_deref()?;
            Some((text, probs.next()?.as_slice()))
        })
        .collect();
    match (&args.out, sink) {
        (Some(out), Sink::Csv) => write_file(out, &csv_rows(labels, &rows)?)?,
        (Some(out), _) => write_file(out, json_rows(labels, &rows).as_bytes())?,
        (None, Sink::JsonLines) => out!("{}", json_rows(labels, &rows)),
        (None, _) => {
            for row in &rows {
                outln!(
                    "{}",
                    row.map(|(_, p)| plain_line(labels, p)).unwrap_or_default()
                );
            }
        }
    }
    Ok(0)
}

/// One input's text and class probabilities; `None` for a blank line.
type Row<'a> = Option<(&'a str, &'a [f32])>;

/// The texts given as arguments, with `-` read from stdin line by line.
fn read_texts(args: &[String]) -> Result<Vec<Option<String>>> {
    let mut texts = Vec::new();
    for t in args {
        if t != "-" {
            texts.push(Some(t.clone()));
            continue;
        }
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading stdin")?;
            texts.push((!line.trim().is_empty()).then_some(line));
        }
    }
    Ok(texts)
}

/// The kind of file `--out` names, by its extension.
fn out_kind(path: &Path) -> Result<Sink, String> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv") => Ok(Sink::Csv),
        Some("jsonl" | "ndjson") => Ok(Sink::JsonLines),
        _ => Err(format!(
            "{}: the file name must end in .csv or .jsonl",
            path.display()
        )),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, bytes)?;
    errln!("wrote {}", path.display());
    Ok(())
}

/// `label<TAB>class=p class=p …`, as the terminal shows a prediction.
fn plain_line(labels: &[String], p: &[f32]) -> String {
    let shown: Vec<String> = labels
        .iter()
        .zip(p)
        .map(|(l, v)| format!("{l}={v:.4}"))
        .collect();
    format!("{}\t{}", labels[argmax(p)], shown.join(" "))
}

/// One JSON object per row (`label` and `probabilities` null for a blank line), each ending
/// in a newline.
fn json_rows(labels: &[String], rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let value = match row {
            Some((text, p)) => {
                let map: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .zip(p.iter())
                    .map(|(l, v)| (l.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({"text": text, "label": labels[argmax(p)], "probabilities": map})
            }
            None => {
                serde_json::json!({"text": "", "label": null, "probabilities": null})
            }
        };
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// A CSV with a header: `label`, one probability column per class, then `text`.
fn csv_rows(labels: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = std::iter::once("label")
        .chain(labels.iter().map(String::as_str))
        .chain(std::iter::once("text"));
    writer.write_record(header)?;
    for row in rows {
        let record: Vec<String> = match row {
            Some((text, p)) => std::iter::once(labels[argmax(p)].clone())
                .chain(p.iter().map(|v| format!("{v:.6}")))
                .chain(std::iter::once(text.to_string()))
                .collect(),
            // The label, a probability per class and the text: all empty.
            None => vec![String::new(); labels.len() + 2],
        };
        writer.write_record(&record)?;
    }
    Ok(writer.into_inner().map_err(|e| e.into_error())?)
}
