//! metrics.csv (deterministic: same spec + seed give the same bytes on CPU) and timing.csv
//! (throughput and wall time, which vary run to run and so live in their own file).

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::tensorboard::EventWriter;

pub const METRICS_HEADER: [&str; 7] = ["stage", "epoch", "step", "split", "loss", "accuracy", "lr"];
pub const TIMING_HEADER: [&str; 6] = [
    "stage",
    "epoch",
    "step",
    "split",
    "samples_per_s",
    "elapsed_s",
];

#[derive(Clone, Debug, Serialize)]
pub struct MetricRow {
    pub stage: String,
    pub epoch: usize,
    /// Optimizer steps completed in the stage.
    pub step: usize,
    /// `train`, `validation` or `test`.
    pub split: String,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    #[serde(skip)]
    pub samples_per_s: f64,
    #[serde(skip)]
    pub elapsed_s: f64,
}

/// A loss and an accuracy, of one pass over some rows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of rows whose most probable class is the label, in [0, 1].
    pub accuracy: f64,
    /// The mean of the classes' F1, for a pass over held-out rows (`None` for training
    /// batches, whose predictions are not kept).
    pub macro_f1: Option<f64>,
}

impl MetricRow {
    /// A row of `split` after `step` optimizer steps of `epoch` in `stage`.
    pub fn new(
        stage: &str,
        split: &str,
        (epoch, step): (usize, usize),
        score: Score,
        lr: f64,
        samples_per_s: f64,
        elapsed_s: f64,
    ) -> Self {
        MetricRow {
            stage: stage.to_string(),
            epoch,
            step,
            split: split.to_string(),
            loss: score.loss,
            accuracy: score.accuracy,
            lr,
            samples_per_s,
            elapsed_s,
        }
    }
}

pub struct MetricsLog {
    metrics: csv::Writer<File>,
    timing: csv::Writer<File>,
    json: bool,
    rows: usize,
    /// The TensorBoard event file beside metrics.csv; `None` once writing it failed (the run
    /// goes on: metrics.csv is the record).
    events: Option<EventWriter>,
}

/// The TensorBoard event file in `metrics`' folder, or a warning.
fn event_writer(metrics: &Path) -> Option<EventWriter> {
    let dir = metrics.parent().unwrap_or(Path::new("."));
    EventWriter::create(dir)
        .inspect_err(|e| tracing::warn!(error = %e, "no TensorBoard event file"))
        .ok()
}

impl MetricsLog {
    pub fn create(metrics: &Path, timing: &Path, json: bool) -> std::io::Result<Self> {
        let mut m = csv::Writer::from_path(metrics)?;
        m.write_record(METRICS_HEADER)?;
        m.flush()?;
        let mut t = csv::Writer::from_path(timing)?;
        t.write_record(TIMING_HEADER)?;
        t.flush()?;
        Ok(MetricsLog {
            metrics: m,
            timing: t,
            json,
            rows: 0,
            events: event_writer(metrics),
        })
    }

    /// Reopens the logs of a resumed run, keeping the header and the first `rows` rows: rows
    /// logged after the resume point are dropped so none is duplicated or missing. The event
    /// file is written anew from the rows kept.
    pub fn reopen(metrics: &Path, timing: &Path, rows: usize, json: bool) -> std::io::Result<Self> {
        for path in [metrics, timing] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let kept: Vec<&str> = text.lines().take(rows + 1).collect();
            let mut out = kept.join("\n");
            out.push('\n');
            super::atomic_write(path, out.as_bytes())?;
        }
        let mut events = event_writer(metrics);
        if let Some(writer) = &mut events
            && let Err(e) = replay(metrics, timing, writer)
        {
            tracing::warn!(error = %e, "TensorBoard event file not rewritten");
            events = None;
        }
        let open = |p: &Path| std::fs::OpenOptions::new().append(true).open(p);
        Ok(MetricsLog {
            metrics: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(open(metrics)?),
            timing: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(open(timing)?),
            json,
            rows,
            events,
        })
    }

    /// Rows written so far (header excluded).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn log(&mut self, row: &MetricRow) -> std::io::Result<()> {
        self.metrics.write_record([
            row.stage.clone(),
            row.epoch.to_string(),
            row.step.to_string(),
            row.split.clone(),
            format!("{:.6}", row.loss),
            format!("{:.6}", row.accuracy),
            format!("{:e}", row.lr),
        ])?;
        self.metrics.flush()?;
        self.rows += 1;
        self.timing.write_record([
            row.stage.clone(),
            row.epoch.to_string(),
            row.step.to_string(),
            row.split.clone(),
            format!("{:.1}", row.samples_per_s),
            format!("{:.3}", row.elapsed_s),
        ])?;
        self.timing.flush()?;
        if let Some(events) = &mut self.events
            && let Err(e) = events.log(row)
        {
            tracing::warn!(error = %e, "TensorBoard event file no longer written");
            self.events = None;
        }
        if self.json {
            let v = serde_json::json!({
                "event": "metrics", "stage": row.stage, "epoch": row.epoch, "step": row.step,
                "split": row.split, "loss": row.loss, "accuracy": row.accuracy, "lr": row.lr,
                "samples_per_s": row.samples_per_s, "elapsed_s": row.elapsed_s,
            });
            outln!("{v}");
        }
        Ok(())
    }
}

/// Logs the rows of metrics.csv (with timing.csv's throughput) to `events`.
fn replay(metrics: &Path, timing: &Path, events: &mut EventWriter) -> std::io::Result<()> {
    let bad = |e: csv::Error| std::io::Error::other(e.to_string());
    let mut m = csv::Reader::from_path(metrics).map_err(bad)?;
    let mut t = csv::Reader::from_path(timing).map_err(bad)?;
    for (row, speed) in m.records().zip(t.records()) {
        let (row, speed) = (row.map_err(bad)?, speed.map_err(bad)?);
        let number = |r: &csv::StringRecord, i: usize| r.get(i).and_then(|v| v.parse().ok());
        let score = Score {
            loss: number(&row, 4).unwrap_or(f64::NAN),
            accuracy: number(&row, 5).unwrap_or(f64::NAN),
            macro_f1: None,
        };
        let at = (
            number(&row, 1).unwrap_or(0.0) as usize,
            number(&row, 2).unwrap_or(0.0) as usize,
        );
        events.log(&MetricRow::new(
            row.get(0).unwrap_or_default(),
            row.get(3).unwrap_or_default(),
            at,
            score,
            number(&row, 6).unwrap_or(f64::NAN),
            number(&speed, 4).unwrap_or(0.0),
            number(&speed, 5).unwrap_or(0.0),
        ))?;
    }
    Ok(())
}
