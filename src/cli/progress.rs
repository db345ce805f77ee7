//! Progress on stderr: an indicatif bar per stage on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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

/// Lines for a pass that is not training, one every 10 s at most, with rows/s and the time
/// left; and one at its end: always for the frozen features (a pass once a stage), only after
/// a long one for validation and test (they run every epoch, most in a second).
struct PassLines {
    every: Duration,
    /// The pass being reported.
    current: Option<Pass>,
}

struct Pass {
    what: String,
    started: Instant,
    /// When it was last reported, if it was.
    reported: Option<Instant>,
}

impl Default for PassLines {
    fn default() -> Self {
        PassLines {
            every: Duration::from_secs(10),
            current: None,
        }
    }
}

impl PassLines {
    /// The line due after `done` of `total` rows of pass `what`, if one is; `end_always`: its
    /// end is reported even when the pass was short.
    fn line(&mut self, what: &str, done: usize, total: usize, end_always: bool) -> Option<String> {
        let now = Instant::now();
        if !matches!(&self.current, Some(p) if p.what == what) {
            self.current = Some(Pass {
                what: what.to_string(),
                started: now,
                reported: None,
            });
        }
        let pass = self.current.as_mut().expect("set above");
        let started = pass.started;
        let ended = done >= total;
        let due = match ended {
            true => end_always || pass.reported.is_some(),
            false => now.duration_since(pass.reported.unwrap_or(started)) >= self.every,
        };
        if due {
            pass.reported = Some(now);
        }
        if ended {
            // The next pass of the same name (the next epoch's validation) starts afresh.
            self.current = None;
        }
        if !due {
            return None;
        }
        let rate = done as f64 / now.duration_since(started).as_secs_f64().max(1e-9);
        let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
        Some(format!(
            "{what}: {done}/{total} rows, {rate:.0} rows/s, ETA {eta:.0}s"
        ))
    }
}

impl Bar {
    /// A line above the bar, or alone without one.
    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => errln!("{line}"),
        }
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
        if let Some(line) = self.pass.line(what, done, total, true) {
            self.println(line);
        }
    }
    fn evaluation(&mut self, what: &str, done: usize, total: usize) {
        if let Some(line) = self.pass.line(what, done, total, false) {
            self.println(line);
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
        if let Some(line) = self.pass.line(what, done, total, true) {
            errln!("{line}");
        }
    }
    fn evaluation(&mut self, what: &str, done: usize, total: usize) {
        if let Some(line) = self.pass.line(what, done, total, false) {
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
        assert_eq!(lines.line("frozen features", 64, 1000, true), None);
        assert_eq!(lines.line("frozen features", 128, 1000, true), None);
        let end = lines.line("frozen features", 1000, 1000, true).unwrap();
        assert!(
            end.starts_with("frozen features: 1000/1000 rows, "),
            "{end}"
        );
        assert!(end.ends_with("ETA 0s"), "{end}");
        // Another pass starts its own clock.
        assert_eq!(lines.line("validation", 10, 20, false), None);
    }

    /// Validation and test report only a long pass: every `every` while it runs, then its
    /// end; a short one says nothing, however often it runs.
    #[test]
    fn a_held_out_pass_is_reported_only_when_it_is_long() {
        let mut lines = PassLines::default();
        for _ in 0..3 {
            assert_eq!(lines.line("train: validation", 10, 20, false), None);
            assert_eq!(lines.line("train: validation", 20, 20, false), None);
        }
        let mut long = PassLines {
            every: Duration::ZERO,
            current: None,
        };
        let during = long.line("test", 10, 40, false).unwrap();
        assert!(during.starts_with("test: 10/40 rows, "), "{during}");
        assert!(during.contains(" rows/s, ETA "), "{during}");
        let end = long.line("test", 40, 40, false).unwrap();
        assert!(end.starts_with("test: 40/40 rows, "), "{end}");
        // The next pass of the same name starts its own clock, unreported.
        long.every = Duration::from_secs(3600);
        assert_eq!(long.line("test", 10, 40, false), None);
        assert_eq!(long.line("test", 40, 40, false), None);
    }
}
