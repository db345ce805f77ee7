//! `pipe predict RUN TEXT|-` / `pipe predict RUN --data FILE [--out FILE]`: the label and class
//! probabilities of each text (one per line from stdin with `-`, or each row of a CSV/JSONL
//! file), batched.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::eval::{Inference, TrainedRun, Weights, argmax};
use crate::data::EncodedSplit;

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
    #[command(flatten)]
    pub inference: Inference,
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

/// Texts are read, encoded and classified this many at a time, so that a file or a stdin of any
/// length streams through in bounded memory, each prediction written as its chunk is done.
const CHUNK_TEXTS: usize = 8192;

/// A chunk of inputs in order; `None` is a blank stdin line, answered by a blank line.
type Chunk = Result<Vec<Option<String>>>;

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
    let mut dataset = trained.loaded.spec.dataset.clone();
    if let Some(data) = &args.data {
        dataset.format = crate::data::format_of_file(data, &dataset.format);
    }
    let labels = &trained.loaded.spec.dataset.labels;
    let mut output = Output::open(args.out.as_deref(), sink, labels)?;
    let (chunks, inputs) = std::sync::mpsc::sync_channel::<Chunk>(2);
    std::thread::scope(|scope| -> Result<()> {
        let (data, texts) = (args.data.as_deref(), &args.texts);
        scope.spawn(move || read_inputs(data, &dataset, texts, &chunks));
        // The chunks handed to the model, oldest first, until their predictions are written.
        let pending = std::cell::RefCell::new(std::collections::VecDeque::new());
        let vectorizer = &trained.vectorizer;
        trained.probabilities_each(
            &args.inference,
            args.batch_size,
            &mut || {
                let Ok(chunk) = inputs.recv() else {
                    return Ok(None);
                };
                let chunk = chunk?;
                let texts: Vec<&str> = chunk.iter().flatten().map(String::as_str).collect();
                let split = EncodedSplit::encode(vectorizer, &texts, &vec![0; texts.len()]);
                pending.borrow_mut().push_back(chunk);
                Ok(Some(split))
            },
            &mut |probs| {
                let chunk = pending.borrow_mut().pop_front().expect("a chunk per split");
                output.write(&chunk, &probs)
            },
        )
    })?;
    output.finish()?;
    Ok(0)
}

/// Sends the inputs in chunks: the rows of `data`, else `texts` with `-` read from stdin line
/// by line. Stops early when the receiver is gone (the model failed).
fn read_inputs(
    data: Option<&Path>,
    dataset: &crate::spec::dataset::DatasetSpec,
    texts: &[String],
    chunks: &std::sync::mpsc::SyncSender<Chunk>,
) {
    let mut chunk = Vec::with_capacity(CHUNK_TEXTS);
    let mut push = |text: Option<String>| -> bool {
        chunk.push(text);
        if chunk.len() < CHUNK_TEXTS {
            return true;
        }
        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_TEXTS));
        chunks.send(Ok(full)).is_ok()
    };
    let read: Result<()> = match data {
        Some(data) => {
            let gone = || crate::data::DataError::Read {
                path: data.to_path_buf(),
                error: std::io::Error::other("nobody reads the predictions any more"),
            };
            crate::data::each_text(data, dataset, &mut |text| match push(Some(text)) {
                true => Ok(()),
                false => Err(gone()),
            })
            .map(drop)
            .map_err(Into::into)
        }
        None => read_texts(texts, &mut push),
    };
    let _ = match read {
        Ok(()) if chunk.is_empty() => Ok(()),
        Ok(()) => chunks.send(Ok(chunk)),
        Err(e) => chunks.send(Err(e)),
    };
}

/// The texts given as arguments into `push`, with `-` read from stdin line by line (a blank
/// line is `None`), until `push` says stop.
fn read_texts(args: &[String], push: &mut dyn FnMut(Option<String>) -> bool) -> Result<()> {
    for t in args {
        if t != "-" {
            if !push(Some(t.clone())) {
                return Ok(());
            }
            continue;
        }
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading stdin")?;
            if !push((!line.trim().is_empty()).then_some(line)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One input's text and class probabilities; `None` for a blank line.
type Row<'a> = Option<(&'a str, &'a [f32])>;

/// Where predictions are written as they come: stdout, or a temporary file beside `--out`
/// renamed into place at the end (an interrupted predict leaves no half file).
struct Output<'a> {
    kind: Sink,
    labels: &'a [String],
    file: Option<(PathBuf, std::io::BufWriter<tempfile::NamedTempFile>)>,
    /// Whether anything was written yet (a CSV's header goes first).
    started: bool,
}

impl<'a> Output<'a> {
    fn open(out: Option<&Path>, kind: Sink, labels: &'a [String]) -> Result<Self> {
        let file = match out {
            Some(path) => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let tmp = crate::run::shared_temp_file(dir)
                    .with_context(|| format!("writing {}", path.display()))?;
                Some((path.to_path_buf(), std::io::BufWriter::new(tmp)))
            }
            None => None,
        };
        Ok(Output {
            kind,
            labels,
            file,
            started: false,
        })
    }

    fn write(&mut self, chunk: &[Option<String>], probs: &[Vec<f32>]) -> Result<()> {
        let mut probs = probs.iter();
        let rows: Vec<Row> = (chunk.iter())
            .map(|t| Some((t.as_deref()?, probs.next()?.as_slice())))
            .collect();
        let labels = self.labels;
        let text = match self.kind {
            Sink::Csv => csv_rows(labels, &rows, !self.started)?,
            Sink::JsonLines => json_rows(labels, &rows),
            Sink::Lines => (rows.iter())
                .map(|row| row.map(|(_, p)| plain_line(labels, p)).unwrap_or_default() + "\n")
                .collect(),
        };
        self.started = true;
        match &mut self.file {
            Some((path, file)) => std::io::Write::write_all(file, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?,
            None => out!("{text}"),
        }
        Ok(())
    }

    /// Renames the file into place; a CSV of no rows still gets its header.
    fn finish(mut self) -> Result<()> {
        if self.kind == Sink::Csv && !self.started {
            self.write(&[], &[])?;
        }
        let Some((path, file)) = self.file else {
            return Ok(());
        };
        let named = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", path.display());
        let file = file.into_inner().map_err(|e| named(e.into_error()))?;
        file.as_file().sync_all().map_err(named)?;
        file.persist(&path).map_err(|e| named(e.error))?;
        errln!("wrote {}", path.display());
        Ok(())
    }
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
            Some((text, p)) => crate::serve::api::prediction(labels, text, p),
            None => {
                serde_json::json!({"text": "", "label": null, "probabilities": null})
            }
        };
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// CSV rows: `label`, one probability column per class, then `text`; with `header`, the
/// column names first.
fn csv_rows(labels: &[String], rows: &[Row], header: bool) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if header {
        let names = std::iter::once("label")
            .chain(labels.iter().map(String::as_str))
            .chain(std::iter::once("text"));
        writer.write_record(names)?;
    }
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
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8"))
}
