//! Progress on stderr: an indicatif bar per stage on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::MetricRow;
use crate::train::engine::Progress;

pub fn for_terminal(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar {
            bar: None,
            stage: String::new(),
            epochs: 0,
            pass: PassLines::default(),
        })
    } else {
        Box::new(Lines {
            stage: String::new(),
            epochs: 0,
            steps: 0,
            last: None,
            epoch_start: Instant::now(),
            pass: PassLines::default(),
        })
    }
}

struct Silent;

impl Progress for Silent {
    fn stage_start(&mut self, _: &str, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: usize, _: f64, _: f64, _: f64) {}
    fn epoch_end(&mut self, _: &MetricRow) {}
    fn finish(&mut self) {}
}

struct Bar {
    bar: Option<ProgressBar>,
    stage: String,
    epochs: usize,
    pass: PassLines,
}

/// Lines for a pass that is not training, one every 10 s at most and one at its end, with
/// rows/s and the time left.
#[derive(Default)]
struct PassLines {
    /// The pass being reported, when it started and when it was last reported.
    current: Option<(String, Instant, Instant)>,
}

impl PassLines {
    fn line(&mut self, what: &str, done: usize, total: usize) -> Option<String> {
        let now = Instant::now();
        let fresh = !matches!(&self.current, Some((w, _, _)) if w == what);
        if fresh {
            self.current = Some((what.to_string(), now, now));
        }
        let (_, started, last) = self.current.as_mut().expect("set above");
        let due = now.duration_since(*last).as_secs() >= 10 || done >= total;
        if !due {
            return None;
        }
        *last = now;
        let seconds = now.duration_since(*started).as_secs_f64().max(1e-9);
        let rate = done as f64 / seconds;
        let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
        Some(format!(
            "{what}: {done}/{total} rows, {rate:.0} rows/s, ETA {eta:.0}s"
        ))
    }
}

impl Progress for Bar {
    fn stage_start(&mut self, stage: &str, epochs: usize, steps: usize) {
        self.finish();
        self.stage = stage.to_string();
        self.epochs = epochs;
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        self.bar = Some(bar);
    }
    fn step(&mut self, epoch: usize, step: usize, loss: f64, accuracy: f64, rate: f64) {
        if let Some(bar) = &self.bar {
            if step == 1 {
                bar.reset();
            }
            bar.set_prefix(format!("{} epoch {epoch}/{}", self.stage, self.epochs));
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {loss:.4} acc {accuracy:.4} {rate:.0} samples/s"
            ));
        }
    }
    fn epoch_end(&mut self, row: &MetricRow) {
        let line = format!(
            "{} epoch {}/{} {}: loss {:.4} accuracy {:.4}",
            row.stage, row.epoch, self.epochs, row.split, row.loss, row.accuracy
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => errln!("{line}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
    fn pass(&mut self, what: &str, done: usize, total: usize) {
        if let Some(line) = self.pass.line(what, done, total) {
            match &self.bar {
                Some(bar) => bar.println(line),
                None => errln!("{line}"),
            }
        }
    }
}

struct Lines {
    stage: String,
    epochs: usize,
    steps: usize,
    last: Option<Instant>,
    epoch_start: Instant,
    pass: PassLines,
}

impl Progress for Lines {
    fn stage_start(&mut self, stage: &str, epochs: usize, steps: usize) {
        self.stage = stage.to_string();
        self.epochs = epochs;
        self.steps = steps;
        errln!("stage {stage}: {epochs} epoch(s) of {steps} steps");
    }
    fn step(&mut self, epoch: usize, step: usize, loss: f64, accuracy: f64, rate: f64) {
        // One line every 10 s at most keeps CI logs readable.
        if step <= 1 {
            self.epoch_start = Instant::now();
        }
        let due = self.last.is_none_or(|t| t.elapsed().as_secs() >= 10) || step == self.steps;
        if due {
            self.last = Some(Instant::now());
            let per_step = self.epoch_start.elapsed().as_secs_f64() / step.max(1) as f64;
            let eta = per_step * self.steps.saturating_sub(step) as f64;
            errln!(
                "{} epoch {epoch}/{} step {step}/{} loss {loss:.4} acc {accuracy:.4} {rate:.0} samples/s ETA {eta:.0}s",
                self.stage,
                self.epochs,
                self.steps
            );
        }
    }
    fn epoch_end(&mut self, row: &MetricRow) {
        errln!(
            "{} epoch {}/{} {}: loss {:.4} accuracy {:.4}",
            row.stage,
            row.epoch,
            self.epochs,
            row.split,
            row.loss,
            row.accuracy
        );
    }
    fn finish(&mut self) {}
    fn pass(&mut self, what: &str, done: usize, total: usize) {
        if let Some(line) = self.pass.line(what, done, total) {
            errln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_reports_its_end_and_not_every_batch() {
        let mut lines = PassLines::default();
        assert_eq!(lines.line("frozen features", 64, 1000), None);
        assert_eq!(lines.line("frozen features", 128, 1000), None);
        let end = lines.line("frozen features", 1000, 1000).unwrap();
        assert!(
            end.starts_with("frozen features: 1000/1000 rows, "),
            "{end}"
        );
        assert!(end.ends_with("ETA 0s"), "{end}");
        // Another pass starts its own clock.
        assert_eq!(lines.line("validation", 10, 20), None);
    }
}
