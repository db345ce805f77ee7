//! What `GET /metrics` reports, in Prometheus' text format (version 0.0.4): requests by status,
//! a latency histogram, the texts per model batch and the queue's depth.
//!
//! The format is a few lines of text per series; counting needs atomics and nothing else, so a
//! metrics crate (and its registry) would add more than it saves.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds of the batch-size buckets, in texts.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A Prometheus histogram: a count per bucket (not cumulative until printed), a sum and a count.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// The sum in millionths, so that it can be an atomic integer.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|&b| b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = (value * 1e6).round() as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The server's counters, shared by every connection and the model thread.
pub struct Metrics {
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
    latency: Histogram,
    batch_texts: Histogram,
    texts: AtomicU64,
    /// Requests waiting for the model (queued, not yet in a batch).
    pub queue_depth: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            by_status: Default::default(),
            latency: Histogram::new(&LATENCY_BUCKETS),
            batch_texts: Histogram::new(&BATCH_BUCKETS),
            texts: AtomicU64::new(0),
            queue_depth: AtomicUsize::new(0),
        }
    }
}

impl Metrics {
    /// A request answered with `status` after `took`.
    pub fn answered(&self, status: u16, took: Duration) {
        if let Ok(mut by_status) = self.by_status.lock() {
            *by_status.entry(status).or_default() += 1;
        }
        self.latency.observe(took.as_secs_f64());
    }

    /// A batch of `texts` texts went through the model.
    pub fn batch(&self, texts: usize) {
        self.batch_texts.observe(texts as f64);
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP pipe_requests_total Requests answered, by HTTP status.\n");
        out.push_str("# TYPE pipe_requests_total counter\n");
        if let Ok(by_status) = self.by_status.lock() {
            for (status, n) in by_status.iter() {
                let _ = writeln!(out, "pipe_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        self.latency.render(
            &mut out,
            "pipe_request_duration_seconds",
            "Time from a request's arrival to its answer.",
        );
        self.batch_texts.render(
            &mut out,
            "pipe_batch_texts",
            "Texts in each batch the model ran.",
        );
        let texts = self.texts.load(Ordering::Relaxed);
        let depth = self.queue_depth.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP pipe_texts_total Texts classified.\n# TYPE pipe_texts_total counter\n\
             pipe_texts_total {texts}\n\
             # HELP pipe_queue_depth Requests waiting for the model.\n# TYPE pipe_queue_depth gauge\n\
             pipe_queue_depth {depth}\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.answered(200, Duration::from_millis(3));
        m.answered(200, Duration::from_millis(30));
        m.answered(503, Duration::from_secs(20));
        m.batch(5);
        let text = m.render();
        assert!(
            text.contains("pipe_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pipe_requests_total{status=\"503\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("pipe_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("pipe_request_duration_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("pipe_request_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("pipe_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("pipe_request_duration_seconds_count 3\n"));
        assert!(text.contains("pipe_batch_texts_bucket{le=\"4\"} 0\n"));
        assert!(text.contains("pipe_batch_texts_bucket{le=\"8\"} 1\n"));
        assert!(text.contains("pipe_texts_total 5\n"));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
