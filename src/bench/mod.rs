//! `pipe bench`: training and inference throughput of pipelines at fixed shapes, measured the
//! way ../shared/peers measures PyTorch and Keras (median step time after warm-up, a host
//! sync every step), so the figures can be set side by side.

pub mod peers;

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use crate::backend::BackendTask;
use crate::data::EncodedSplit;
use crate::graph::{Graph, Plan};
use crate::spec::StageSpec;
use crate::train::freeze::set_trainable;
use crate::train::metrics::cross_entropy;
use crate::train::optim::StageOptimizer;
use crate::train::prefix::FrozenPrefix;

/// One measured phase, in the peers' JSON-line form.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub framework: String,
    pub model: String,
    pub phase: String,
    pub variant: String,
    pub batch: usize,
    pub seq_len: String,
    pub samples_per_s: f64,
    pub step_ms_median: f64,
    pub timed_steps: usize,
    pub warmup_steps: usize,
    pub peak_rss_mb: f64,
    /// (user + sys CPU time) / wall time over the timed steps: cores kept busy.
    pub cores_busy: f64,
    pub device: String,
}

pub struct Timing {
    pub warmup: usize,
    pub steps: usize,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU seconds (user + sys) this process has used so far, all threads.
pub fn process_cpu_s() -> f64 {
    cpu_s(libc::RUSAGE_SELF)
}

/// CPU seconds (user + sys) of this process's waited-for children so far.
pub fn children_cpu_s() -> f64 {
    cpu_s(libc::RUSAGE_CHILDREN)
}

fn cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// One phase's timing: samples/s at the median step, the median step in ms, cores busy.
struct PhaseTiming(f64, f64, f64);

/// Times `step(i)` over warm-up + timed steps.
fn time_steps(timing: &Timing, batch: usize, mut step: impl FnMut(usize)) -> PhaseTiming {
    for i in 0..timing.warmup {
        step(i);
    }
    let mut ms = Vec::with_capacity(timing.steps);
    let (cpu0, wall0) = (process_cpu_s(), Instant::now());
    for i in 0..timing.steps {
        let t = Instant::now();
        step(timing.warmup + i);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let busy = (process_cpu_s() - cpu0) / wall0.elapsed().as_secs_f64().max(1e-9);
    let m = median(ms);
    PhaseTiming(batch as f64 / (m / 1000.0), m, busy)
}

/// What one benchmark case trains and runs.
pub struct Case<'a> {
    pub model: &'a str,
    pub variant: &'a str,
    pub plan: &'a Plan,
    pub stage: &'a StageSpec,
    pub data: &'a EncodedSplit,
    pub train_batch: usize,
    pub infer_batch: usize,
    pub seq_len: String,
    /// Also measure head training on a frozen first layer, recomputed vs cached.
    pub frozen_prefix: bool,
    pub timing: Timing,
    pub device_name: String,
}

impl BackendTask for Case<'_> {
    type Output = Result<Vec<Measurement>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_case::<B>(self, device)
    }
}

/// Rows of batch `step`: in file order, or (dynamic padding) batched by length as
/// `bucket_by_length` and the evaluation passes do, visiting the length-sorted batches spread
/// over the whole range (stride 7) rather than shortest first.
fn rows(data: &EncodedSplit, step: usize, batch: usize) -> Vec<usize> {
    if !data.padding.dynamic {
        return (0..batch)
            .map(|i| (step * batch + i) % data.len())
            .collect();
    }
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&r| data.length(r));
    let batches = data.len().div_ceil(batch).max(1);
    let b = (step * 7) % batches;
    (0..batch)
        .map(|i| order[(b * batch + i) % data.len()])
        .collect()
}

fn run_case<B: AutodiffBackend>(case: Case<'_>, device: B::Device) -> Result<Vec<Measurement>> {
    B::seed(&device, 0);
    let mut out = Vec::new();
    let measurement =
        |phase: &str, variant: &str, batch: usize, PhaseTiming(sps, ms, busy)| Measurement {
            framework: "pipe-burn".into(),
            model: case.model.into(),
            phase: phase.into(),
            variant: variant.into(),
            batch,
            seq_len: case.seq_len.clone(),
            samples_per_s: sps,
            step_ms_median: ms,
            timed_steps: case.timing.steps,
            warmup_steps: case.timing.warmup,
            peak_rss_mb: peak_rss_mb(),
            cores_busy: busy,
            device: case.device_name.clone(),
        };

    // Training: forward + loss + backward + optimizer step, loss read back each step.
    let mut model = Graph::<B>::init(case.plan, &device, true).map_err(anyhow::Error::msg)?;
    let mut optim = StageOptimizer::<Graph<B>, B>::new(&case.stage.optimizer, None);
    let lr = case.stage.optimizer.learning_rate();
    let timing = time_steps(&case.timing, case.train_batch, |i| {
        let (inputs, labels) = case
            .data
            .batch::<B>(&rows(case.data, i, case.train_batch), &device);
        let loss = cross_entropy(model.logits(&inputs), labels);
        let _ = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model.clone(), grads);
    });
    out.push(measurement("train", case.variant, case.train_batch, timing));

    // Inference: forward + softmax without autodiff, probabilities read back.
    let inner = model.valid();
    let timing = time_steps(&case.timing, case.infer_batch, |i| {
        let (inputs, _) = case
            .data
            .batch::<B::InnerBackend>(&rows(case.data, i, case.infer_batch), &device);
        let probs = burn::tensor::activation::softmax(inner.logits(&inputs), 1);
        let _ = probs.into_data();
    });
    out.push(measurement("infer", case.variant, case.infer_batch, timing));

    if case.frozen_prefix {
        // Head training over a frozen first layer: every step recomputes it, or reads the cache.
        model.layers = model
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| set_trainable(l, i != 0))
            .collect();
        let prefix = FrozenPrefix::<B>::new(&model, 1);
        let mut optim = StageOptimizer::<Graph<B>, B>::new(&case.stage.optimizer, None);
        // The frozen-head phases name their own variant; random weights still say so.
        let frozen_variant = |how: &str| {
            if case.variant.contains("random weights") {
                format!("{how}, random weights")
            } else {
                how.to_string()
            }
        };
        let mut head_step =
            |model: Graph<B>, cache: Option<&crate::train::prefix::FeatureCache>, i: usize| {
                let r = rows(case.data, i, case.train_batch);
                let (inputs, labels) = case.data.batch::<B>(&r, &device);
                let given = prefix.given(case.data, cache, &r, &device);
                let loss = cross_entropy(model.logits_from(&inputs, 1, given), labels);
                let _ = loss.clone().into_scalar();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                optim.step(lr, model, grads)
            };
        let timing = time_steps(&case.timing, case.train_batch, |i| {
            model = head_step(model.clone(), None, i);
        });
        out.push(measurement(
            "train_head_frozen",
            &frozen_variant("recomputed each step"),
            case.train_batch,
            timing,
        ));
        let t = Instant::now();
        let cache = prefix.features(case.plan, case.data, 64, &device, None, &mut |_, _| {});
        errln!(
            "bench: {} rows' features encoded once in {:.1} s",
            case.data.len(),
            t.elapsed().as_secs_f64()
        );
        let timing = time_steps(&case.timing, case.train_batch, |i| {
            model = head_step(model.clone(), Some(&cache), i);
        });
        out.push(measurement(
            "train_head_frozen",
            &frozen_variant("features cached"),
            case.train_batch,
            timing,
        ));
    }
    Ok(out)
}
