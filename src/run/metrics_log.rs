//! metrics.csv (deterministic: same spec + seed give the same bytes on CPU) and timing.csv
//! (throughput and wall time, which vary run to run and so live in their own file).

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::tensorboard::EventWriter;

pub const METRICS_HEADER: [&str; 9] = [
    "stage",
    "epoch",
    "step",
    "split",
    "loss",
    "accuracy",
    "lr",
    "global_step",
    "samples",
];
pub const TIMING_HEADER: [&str; 6] = [
    "stage",
    "epoch",
    "step",
    "split",
    "samples_per_s",
    "elapsed_s",
];

/// The split of a step row: the training batches of the optimizer steps since the previous
/// step row (an epoch's `train` row covers the whole epoch). A split of its own, so that
/// readers of `train` rows see the epoch rows they always saw.
pub const TRAIN_STEP: &str = "train_step";

/// Where training stood when a row was logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainingPosition {
    pub epoch: usize,
    /// Optimizer steps completed in the stage.
    pub step: usize,
    /// Optimizer steps completed in the run, over all stages.
    pub global_step: usize,
    /// Training rows seen in the run, over all stages.
    pub samples: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricRow {
    pub stage: String,
    pub epoch: usize,
    /// Optimizer steps completed in the stage.
    pub step: usize,
    /// `train`, `train_step` ([`TRAIN_STEP`]), `validation` or `test`.
    pub split: String,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    /// Optimizer steps completed in the run, over all stages.
    pub global_step: usize,
    /// Training rows seen in the run, over all stages.
    pub samples: usize,
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
    /// A row of `split` in `stage`, logged where training stood `at`.
    pub fn new(
        stage: &str,
        split: &str,
        at: TrainingPosition,
        score: Score,
        lr: f64,
        samples_per_s: f64,
        elapsed_s: f64,
    ) -> Self {
        MetricRow {
            stage: stage.to_string(),
            epoch: at.epoch,
            step: at.step,
            split: split.to_string(),
            loss: score.loss,
            accuracy: score.accuracy,
            lr,
            global_step: at.global_step,
            samples: at.samples,
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
        for (path, header) in [(metrics, &METRICS_HEADER[..]), (timing, &TIMING_HEADER[..])] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            super::atomic_write(path, kept_rows(&text, rows, header).as_bytes())?;
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
            row.global_step.to_string(),
            row.samples.to_string(),
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
                "global_step": row.global_step, "samples": row.samples,
                "samples_per_s": row.samples_per_s, "elapsed_s": row.elapsed_s,
            });
            outln!("{v}");
        }
        Ok(())
    }
}

/// The header and the first `rows` rows of a log's `text`, under the current `header`. A
/// log begun by an older pipe, whose header lacked the last columns, keeps its rows with those
/// fields empty, so that the rows appended after them have as many fields.
fn kept_rows(text: &str, rows: usize, header: &[&str]) -> String {
    let mut lines = text.lines();
    let fields = (lines.next()).map_or(header.len(), |h| h.split(',').count());
    let padding = ",".repeat(header.len().saturating_sub(fields));
    let mut out = header.join(",") + "\n";
    for line in lines.take(rows) {
        out.push_str(line);
        out.push_str(&padding);
        out.push('\n');
    }
    out
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
        let count = |i: usize| number(&row, i).unwrap_or(0.0) as usize;
        let at = TrainingPosition {
            epoch: count(1),
            step: count(2),
            global_step: count(7),
            samples: count(8),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(split: &str, step: usize) -> MetricRow {
        let at = TrainingPosition {
            epoch: 1,
            step,
            global_step: step + 10,
            samples: 32 * step,
        };
        let score = Score {
            loss: 0.5,
            accuracy: 0.75,
            macro_f1: None,
        };
        MetricRow::new("train", split, at, score, 1e-3, 100.0, 1.5)
    }

    #[test]
    fn reopening_keeps_the_rows_before_the_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        let (metrics, timing) = (
            dir.path().join("metrics.csv"),
            dir.path().join("timing.csv"),
        );
        let mut log = MetricsLog::create(&metrics, &timing, false).unwrap();
        for step in 1..=3 {
            log.log(&row(TRAIN_STEP, step)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::reopen(&metrics, &timing, 2, false).unwrap();
        assert_eq!(log.rows(), 2);
        log.log(&row("train", 3)).unwrap();
        let text = std::fs::read_to_string(&metrics).unwrap();
        assert_eq!(
            text,
            "stage,epoch,step,split,loss,accuracy,lr,global_step,samples\n\
             train,1,1,train_step,0.500000,0.750000,1e-3,11,32\n\
             train,1,2,train_step,0.500000,0.750000,1e-3,12,64\n\
             train,1,3,train,0.500000,0.750000,1e-3,13,96\n"
        );
        assert_eq!(std::fs::read_to_string(&timing).unwrap().lines().count(), 4);
    }

    /// A run begun before the step columns existed, resumed: its rows keep their values, with
    /// the new fields empty, and every line has the header's fields.
    #[test]
    fn a_log_of_an_older_header_gets_the_current_one() {
        let old = "stage,epoch,step,split,loss,accuracy,lr\n\
                   train,1,4,train,1.0,0.5,1e-3\n\
                   train,1,4,validation,1.1,0.4,1e-3\n";
        assert_eq!(
            kept_rows(old, 1, &METRICS_HEADER),
            "stage,epoch,step,split,loss,accuracy,lr,global_step,samples\n\
             train,1,4,train,1.0,0.5,1e-3,,\n"
        );
        assert_eq!(
            kept_rows("", 0, &TIMING_HEADER),
            TIMING_HEADER.join(",") + "\n"
        );
    }
}
