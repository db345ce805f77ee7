//! Synchronous data parallelism (`[runtime] devices`): every step splits the global batch into
//! one contiguous shard per worker, each worker computes its shard's gradients on its own fork
//! of the model (on its own device), burn's collective all-reduce sums them, and the optimizer
//! takes one step with the result.
//!
//! Each worker's loss is its shard's mean times the shard's share of the batch, so the sum of
//! the workers' gradients is the full batch's mean gradient whatever the shard sizes (an
//! epoch's last, smaller batch included). The weights are stepped once and forked to the
//! workers again at the next step: on the CPU a fork shares the weights' memory, so no copy is
//! made; across GPUs it is a broadcast of the weights per step.

use anyhow::{Result, anyhow};
use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, finish_collective, register, reset_collective,
};
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use crate::graph::Graph;

/// The gradients of a batch or of one worker's shard of it, with what the step reports.
pub struct ShardResult {
    /// Already scaled by the shard's share of the batch (and by the accumulation).
    pub grads: GradientsParams,
    /// The mean loss over the shard's rows, unscaled.
    pub loss: f64,
    /// How many of its rows were predicted right.
    pub correct: usize,
}

/// The workers of a data-parallel run, registered with burn's collective for as long as this
/// lives.
pub struct DataParallel<B: AutodiffBackend> {
    devices: Vec<B::Device>,
}

impl<B: AutodiffBackend> DataParallel<B> {
    /// Registers one collective peer per device (registration waits for all of them, so each
    /// registers from its own thread).
    pub fn start(devices: Vec<B::Device>) -> Result<Self> {
        let config = CollectiveConfig::default().with_num_devices(devices.len());
        let registered: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (devices.iter().enumerate())
                .map(|(w, device)| {
                    let config = config.clone();
                    let device = device.clone();
                    scope
                        .spawn(move || register::<B::InnerBackend>(PeerId::from(w), device, config))
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        for r in registered {
            r.map_err(|_| anyhow!("a worker panicked while registering"))?
                .map_err(|e| anyhow!("registering the data-parallel workers: {e:?}"))?;
        }
        Ok(DataParallel { devices })
    }

    pub fn workers(&self) -> usize {
        self.devices.len()
    }

    pub fn device(&self, worker: usize) -> &B::Device {
        &self.devices[worker]
    }

    /// The gradients of the global batch `rows` for `model`: `shard(worker, fork, rows, share)`
    /// runs on a thread per worker. The returned loss is the batch's mean, the gradients are on
    /// worker 0's device. A batch with fewer rows than workers runs on worker 0 alone.
    pub fn gradients<F>(&self, model: &Graph<B>, rows: &[usize], shard: F) -> Result<ShardResult>
    where
        F: Fn(usize, &Graph<B>, &[usize], f64) -> ShardResult + Sync,
    {
        let n = self.devices.len();
        if rows.len() < n {
            return Ok(shard(0, model, rows, 1.0));
        }
        let total = rows.len() as f64;
        let shards = split_evenly(rows, n);
        let forks: Vec<Graph<B>> = (self.devices.iter())
            .map(|d| model.clone().fork(d))
            .collect();
        let results: Vec<Result<(ShardResult, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (forks.into_iter().zip(&shards).enumerate())
                .map(|(w, (fork, part))| {
                    let shard = &shard;
                    scope.spawn(move || {
                        let share = part.len() as f64 / total;
                        let mut result = shard(w, &fork, part, share);
                        result.grads = (result.grads)
                            .all_reduce::<B::InnerBackend>(PeerId::from(w), ReduceOperation::Sum)
                            .map_err(|e| anyhow!("all-reduce of worker {w}'s gradients: {e:?}"))?;
                        Ok((result, part.len()))
                    })
                })
                .collect();
            (handles.into_iter())
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a data-parallel worker panicked")))
                })
                .collect()
        });
        // Running statistics (batch_normalization's) were updated by each worker on its own
        // thread; burn folds such per-thread updates in (their mean) only when the module is
        // synced, and the workers' threads end with the step. Folding them in now makes each
        // step move the statistics once, by the mean of the shards' updates.
        let _ = model.valid();
        let mut grads = None;
        let (mut loss, mut right) = (0.0, 0);
        for r in results {
            let (shard, len) = r?;
            loss += shard.loss * len as f64 / total;
            right += shard.correct;
            // Every worker holds the same sum; worker 0's is on the model's device.
            grads.get_or_insert(shard.grads);
        }
        Ok(ShardResult {
            grads: grads.expect("at least two workers"),
            loss,
            correct: right,
        })
    }
}

impl<B: AutodiffBackend> Drop for DataParallel<B> {
    fn drop(&mut self) {
        for w in 0..self.devices.len() {
            let _ = finish_collective::<B::InnerBackend>(PeerId::from(w));
        }
        // A later stage registers its workers afresh.
        reset_collective::<B::InnerBackend>();
    }
}

/// `rows` in `n` contiguous parts whose sizes differ by at most one (the first ones larger).
pub fn split_evenly(rows: &[usize], n: usize) -> Vec<&[usize]> {
    let (base, extra) = (rows.len() / n, rows.len() % n);
    let mut parts = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        parts.push(&rows[start..start + len]);
        start += len;
    }
    parts
}

/// The dropout stream of `worker` at the step whose one-device seed is `step_seed`.
pub fn worker_seed(step_seed: u64, worker: usize) -> u64 {
    step_seed ^ (worker as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_with_sizes_one_apart() {
        let rows: Vec<usize> = (0..7).collect();
        let parts = split_evenly(&rows, 3);
        assert_eq!(parts, vec![&[0, 1, 2][..], &[3, 4][..], &[5, 6][..]]);
        assert_eq!(split_evenly(&rows[..4], 2), vec![&[0, 1][..], &[2, 3][..]]);
        assert_ne!(worker_seed(5, 0), worker_seed(5, 1));
    }
}
