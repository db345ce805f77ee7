//! Dynamic batching: requests wait in a bounded queue; the model thread takes the oldest, then
//! whatever else arrives within `max_wait`, up to `max_batch` texts, runs them as one batch and
//! hands each request its rows back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::metrics::Metrics;

/// The class probabilities of a request's texts, or why the model could not give them.
pub type Reply = std::result::Result<Vec<Vec<f32>>, String>;

/// A request's texts waiting for the model.
pub struct Job {
    pub texts: Vec<String>,
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The queue is full: come back later (503 with Retry-After).
    Full,
    /// The model thread has stopped.
    Stopped,
}

/// The sending end of the queue, one clone per connection.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// A queue of at most `capacity` waiting requests, and its receiving end for the model.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Queue, Receiver<Job>) {
        let (jobs, waiting) = std::sync::mpsc::sync_channel(capacity.max(1));
        (Queue { jobs, metrics }, waiting)
    }

    pub fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        // Counted before sending, so the model never takes a job the gauge has not seen.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        let refused = match self.jobs.try_send(job) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => Refused::Full,
            Err(TrySendError::Disconnected(_)) => Refused::Stopped,
        };
        self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        Err(refused)
    }
}

/// How batches are formed.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Texts in one batch at most (a single larger request still runs whole).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_wait: Duration,
}

/// The model's side of the queue: [`Batches::next_batch`] blocks for the next batch's texts (`None`
/// once every [`Queue`] is gone), [`Batches::done`] answers its requests.
pub struct Batches {
    waiting: Receiver<Job>,
    batching: Batching,
    metrics: Arc<Metrics>,
    /// The jobs of the batches handed to the model and not yet answered, oldest first.
    running: VecDeque<Vec<Job>>,
}

impl Batches {
    pub fn new(waiting: Receiver<Job>, batching: Batching, metrics: Arc<Metrics>) -> Self {
        Batches {
            waiting,
            batching,
            metrics,
            running: VecDeque::new(),
        }
    }

    /// The texts of the next batch, in job order.
    pub fn next_batch(&mut self) -> Option<Vec<String>> {
        loop {
            let jobs = self.gather()?;
            if jobs.is_empty() {
                continue;
            }
            self.metrics.batch(jobs.iter().map(|j| j.texts.len()).sum());
            let texts = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
            self.running.push_back(jobs);
            return Some(texts);
        }
    }

    /// The oldest waiting job and those that arrive within `max_wait`, less those whose client
    /// has gone; `None` once the queue is closed and empty.
    fn gather(&mut self) -> Option<Vec<Job>> {
        let first = self.waiting.recv().ok()?;
        let mut count = first.texts.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + self.batching.max_wait;
        while count < self.batching.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.waiting.recv_timeout(left) {
                Ok(job) => {
                    count += job.texts.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let depth = &self.metrics.queue_depth;
        depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        // Clients that gave up while waiting are not worth a forward pass.
        jobs.retain(|j| !j.reply.is_closed());
        Some(jobs)
    }

    /// Hands each job of the oldest running batch its rows of `probs`.
    pub fn done(&mut self, probs: Vec<Vec<f32>>) -> Result<()> {
        let jobs = self.running.pop_front().expect("a batch was handed out");
        let mut rows = probs.into_iter();
        for job in jobs {
            let mine: Vec<Vec<f32>> = rows.by_ref().take(job.texts.len()).collect();
            // A client that went away meanwhile is no error.
            let _ = job.reply.send(Ok(mine));
        }
        Ok(())
    }

    /// Answers every job still running with `error` (the model failed).
    pub fn fail(&mut self, error: &str) {
        for job in self.running.drain(..).flatten() {
            let _ = job.reply.send(Err(error.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(texts: &[&str]) -> (Job, tokio::sync::oneshot::Receiver<Reply>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let texts = texts.iter().map(|t| t.to_string()).collect();
        (Job { texts, reply }, answer)
    }

    #[test]
    fn waiting_jobs_share_a_batch_and_each_gets_its_own_rows() {
        let metrics = Arc::new(Metrics::default());
        let (queue, waiting) = Queue::new(2, metrics.clone());
        let batching = Batching {
            max_batch: 3,
            max_wait: Duration::from_millis(50),
        };
        let mut batches = Batches::new(waiting, batching, metrics.clone());
        let (a, mut a_answer) = job(&["a1", "a2"]);
        let (b, mut b_answer) = job(&["b1"]);
        let (c, _) = job(&["c1"]);
        queue.submit(a).unwrap();
        queue.submit(b).unwrap();
        assert_eq!(queue.submit(c).unwrap_err(), Refused::Full);
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 2);
        assert_eq!(batches.next_batch().unwrap(), ["a1", "a2", "b1"]);
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 0);
        batches
            .done(vec![vec![1.0, 0.0], vec![0.5, 0.5], vec![0.0, 1.0]])
            .unwrap();
        assert_eq!(a_answer.try_recv().unwrap().unwrap().len(), 2);
        assert_eq!(b_answer.try_recv().unwrap().unwrap(), [vec![0.0, 1.0]]);
        // A client gone before its batch forms is skipped; a closed queue ends the batches.
        let (gone, gone_answer) = job(&["x"]);
        queue.submit(gone).unwrap();
        drop(gone_answer);
        drop(queue);
        assert!(batches.next_batch().is_none());
    }
}
