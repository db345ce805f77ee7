//! Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel
//! Hyperparameter Tuning", MLSys 2020) over a sweep's finite list of trials.
//!
//! Trials train to the first rung (`min_epochs`), then pause. Whenever a process slot is free,
//! the best waiting trial that ranks in the top `1/reduction` of everything that reached its
//! rung is promoted to the next rung (highest rung first); only when none can be, a new trial
//! starts. Once every trial has started and nothing more can be promoted, the trials still
//! waiting are pruned. This file only decides; `pipe sweep` runs the processes.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::spec::policy::Mode;

/// The epochs at which trials report: `min_epochs · reduction^k` below `max_epochs`, then
/// `max_epochs` itself (e.g. 1, 3, 9 for min 1, reduction 3, max 9).
pub fn rungs(min_epochs: usize, reduction: usize, max_epochs: usize) -> Result<Vec<usize>> {
    if min_epochs == 0 {
        bail!("--min-epochs must be at least 1");
    }
    if reduction < 2 {
        bail!("--reduction must be at least 2 (each rung keeps 1/reduction of its trials)");
    }
    if min_epochs > max_epochs {
        bail!("--min-epochs {min_epochs} is more than the {max_epochs} epochs a trial trains");
    }
    let mut rungs = Vec::new();
    let mut epochs = min_epochs;
    while epochs < max_epochs {
        rungs.push(epochs);
        epochs = epochs.saturating_mul(reduction);
    }
    rungs.push(max_epochs);
    Ok(rungs)
}

/// One decision at a rung, as sweep.json records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub trial: usize,
    /// The rung's epochs.
    pub epochs: usize,
    /// `promoted` (to the next rung) or `pruned`.
    pub decision: String,
    pub value: f64,
    /// 1 = best of the trials that reached the rung so far.
    pub rank: usize,
    /// How many trials had reached the rung when this was decided.
    pub of: usize,
}

/// The scheduler's state: each trial's value at every rung it reached.
#[derive(Clone, Debug)]
pub struct Asha {
    pub rungs: Vec<usize>,
    reduction: usize,
    mode: Mode,
    results: Vec<Vec<f64>>,
    /// Trials paused at their last rung, neither promoted nor pruned yet.
    waiting: BTreeSet<usize>,
    pub decisions: Vec<Decision>,
}

impl Asha {
    pub fn new(trials: usize, rungs: Vec<usize>, reduction: usize, mode: Mode) -> Self {
        Asha {
            rungs,
            reduction,
            mode,
            results: vec![Vec::new(); trials],
            waiting: BTreeSet::new(),
            decisions: Vec::new(),
        }
    }

    /// The scheduler as it was when `results` (each trial's value at the rungs it reached)
    /// and `decisions` were recorded, for a controller that resumes: a trial waits where its
    /// last rung below the top has no decision yet.
    pub fn restore(
        rungs: Vec<usize>,
        reduction: usize,
        mode: Mode,
        results: Vec<Vec<f64>>,
        decisions: Vec<Decision>,
    ) -> Self {
        let decided = |t: usize, epochs: usize| {
            (decisions.iter()).any(|d| d.trial == t && d.epochs == epochs)
        };
        let waiting = (results.iter().enumerate())
            .filter(|(t, r)| {
                !r.is_empty() && r.len() < rungs.len() && !decided(*t, rungs[r.len() - 1])
            })
            .map(|(t, _)| t)
            .collect();
        Asha {
            rungs,
            reduction,
            mode,
            results,
            waiting,
            decisions,
        }
    }

    /// The epochs `trial` trains to next: the rung after the last one it reported.
    pub fn target(&self, trial: usize) -> usize {
        let reached = self.results[trial].len();
        self.rungs[reached.min(self.rungs.len() - 1)]
    }

    /// `trial` reached its next rung with `value` (NaN when the metric is missing: it ranks
    /// last). Below the top rung it waits there for a decision.
    pub fn report(&mut self, trial: usize, value: f64) {
        self.results[trial].push(value);
        if self.results[trial].len() < self.rungs.len() {
            self.waiting.insert(trial);
        }
    }

    /// Whether `a` ranks before `b`: the better value, NaN last, then the lower trial number.
    fn before(&self, (ta, a): (usize, f64), (tb, b): (usize, f64)) -> std::cmp::Ordering {
        let key = |v: f64| match (v.is_nan(), self.mode) {
            (true, _) => f64::INFINITY,
            (false, Mode::Min) => v,
            (false, Mode::Max) => -v,
        };
        key(a).total_cmp(&key(b)).then(ta.cmp(&tb))
    }

    /// Everything that reached rung `k`, best first.
    fn ranking(&self, k: usize) -> Vec<(usize, f64)> {
        let mut at: Vec<(usize, f64)> = (self.results.iter().enumerate())
            .filter_map(|(t, r)| r.get(k).map(|&v| (t, v)))
            .collect();
        at.sort_by(|&a, &b| self.before(a, b));
        at
    }

    /// The next promotion, if any: the best waiting trial in the top `1/reduction` of its rung,
    /// from the highest rung down. Returns the trial and the epochs it now trains to.
    pub fn promote(&mut self) -> Option<(usize, usize)> {
        for k in (0..self.rungs.len() - 1).rev() {
            let ranking = self.ranking(k);
            let keep = ranking.len() / self.reduction;
            let found = ranking[..keep]
                .iter()
                .enumerate()
                .find(|(_, (t, _))| self.waiting.contains(t) && self.results[*t].len() == k + 1);
            if let Some((rank, &(trial, value))) = found {
                self.waiting.remove(&trial);
                self.decisions.push(Decision {
                    trial,
                    epochs: self.rungs[k],
                    decision: "promoted".into(),
                    value,
                    rank: rank + 1,
                    of: ranking.len(),
                });
                return Some((trial, self.rungs[k + 1]));
            }
        }
        None
    }

    /// Once nothing more can start or be promoted: prunes every trial still waiting.
    pub fn prune_waiting(&mut self) -> Vec<usize> {
        let waiting: Vec<usize> = std::mem::take(&mut self.waiting).into_iter().collect();
        for &trial in &waiting {
            let k = self.results[trial].len() - 1;
            let ranking = self.ranking(k);
            let rank = ranking.iter().position(|&(t, _)| t == trial).unwrap_or(0);
            self.decisions.push(Decision {
                trial,
                epochs: self.rungs[k],
                decision: "pruned".into(),
                value: self.results[trial][k],
                rank: rank + 1,
                of: ranking.len(),
            });
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_the_reduction_and_end_at_the_maximum() {
        assert_eq!(rungs(1, 3, 9).unwrap(), vec![1, 3, 9]);
        assert_eq!(rungs(1, 3, 10).unwrap(), vec![1, 3, 9, 10]);
        assert_eq!(rungs(2, 2, 2).unwrap(), vec![2]);
        assert!(rungs(0, 3, 9).is_err());
        assert!(rungs(1, 1, 9).is_err());
        assert!(rungs(4, 3, 3).is_err());
    }

    /// Runs the scheduler with one process slot: `value(trial, epochs)` stands in for training.
    fn simulate(asha: &mut Asha, trials: usize, value: impl Fn(usize, usize) -> f64) -> usize {
        let mut next = 0;
        let mut epochs_trained = 0;
        loop {
            let (trial, from, to) = match asha.promote() {
                Some((t, to)) => (t, asha.rungs[asha.results[t].len() - 1], to),
                None if next < trials => {
                    next += 1;
                    (next - 1, 0, asha.rungs[0])
                }
                None => break,
            };
            epochs_trained += to - from;
            asha.report(trial, value(trial, to));
        }
        asha.prune_waiting();
        epochs_trained
    }

    #[test]
    fn a_restored_scheduler_decides_as_the_one_it_was_saved_from() {
        let value = |t: usize, e: usize| ((t * 7919 + e * 31) % 97) as f64 / 97.0;
        let mut whole = Asha::new(9, rungs(1, 3, 9).unwrap(), 3, Mode::Max);
        simulate(&mut whole, 9, value);
        // Saved after every number of events (a promotion or a start, then its report), as
        // sweep.json saves it, restored, and run on to the end: the same decisions.
        for cut in 0..20 {
            let mut first = Asha::new(9, rungs(1, 3, 9).unwrap(), 3, Mode::Max);
            let mut next = 0;
            for _ in 0..cut {
                let (trial, to) = match first.promote() {
                    Some(p) => p,
                    None if next < 9 => {
                        next += 1;
                        (next - 1, first.rungs[0])
                    }
                    None => break,
                };
                first.report(trial, value(trial, to));
            }
            let mut restored = Asha::restore(
                first.rungs.clone(),
                3,
                Mode::Max,
                first.results.clone(),
                first.decisions.clone(),
            );
            assert_eq!(restored.waiting, first.waiting, "cut {cut}");
            loop {
                let (trial, to) = match restored.promote() {
                    Some(p) => p,
                    None if next < 9 => {
                        next += 1;
                        (next - 1, restored.rungs[0])
                    }
                    None => break,
                };
                restored.report(trial, value(trial, to));
            }
            restored.prune_waiting();
            assert_eq!(restored.decisions, whole.decisions, "cut {cut}");
        }
    }

    #[test]
    fn one_slot_promotes_early_prunes_the_rest_and_keeps_the_best_trial() {
        // Trial 5 is the best at every rung (the accuracy is higher for trials nearer 5).
        let mut asha = Asha::new(9, rungs(1, 3, 9).unwrap(), 3, Mode::Max);
        let value = |t: usize, e: usize| 1.0 - (t as f64 - 5.0).abs() / 10.0 + e as f64 / 100.0;
        let epochs = simulate(&mut asha, 9, value);
        // Asynchronous: with one slot, the early trials are promoted on few results (2, 3, 4
        // and then 6 too), so more epochs than synchronous halving's 21, far fewer than 81.
        assert_eq!(epochs, 9 + 5 * 2 + 2 * 6);
        let finished: Vec<usize> = (0..9).filter(|&t| asha.results[t].len() == 3).collect();
        assert_eq!(finished, vec![4, 5]);
        let pruned: Vec<usize> = (asha.decisions.iter())
            .filter(|d| d.decision == "pruned")
            .map(|d| d.trial)
            .collect();
        assert_eq!(
            pruned,
            vec![0, 1, 2, 3, 6, 7, 8],
            "each unfinished trial, once"
        );
    }

    #[test]
    fn a_full_rung_promotes_its_top_third() {
        let mut asha = Asha::new(9, rungs(1, 3, 9).unwrap(), 3, Mode::Max);
        for t in 0..9 {
            asha.report(t, t as f64);
        }
        let promoted: Vec<_> = std::iter::from_fn(|| asha.promote()).collect();
        assert_eq!(promoted, vec![(8, 3), (7, 3), (6, 3)]);
        let ranks: Vec<_> = asha.decisions.iter().map(|d| (d.rank, d.of)).collect();
        assert_eq!(ranks, vec![(1, 9), (2, 9), (3, 9)]);
        assert_eq!(asha.prune_waiting(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn losses_rank_lowest_first_and_missing_values_last() {
        let mut asha = Asha::new(3, vec![1, 2], 3, Mode::Min);
        asha.report(0, f64::NAN);
        asha.report(1, 0.9);
        assert_eq!(asha.promote(), None, "two results: the top third is empty");
        asha.report(2, 0.5);
        assert_eq!(asha.promote(), Some((2, 2)));
        assert_eq!(asha.promote(), None);
        asha.report(2, 0.4);
        assert_eq!(asha.prune_waiting(), vec![0, 1]);
        let ranks: Vec<(usize, usize)> = (asha.decisions.iter().skip(1))
            .map(|d| (d.trial, d.rank))
            .collect();
        assert_eq!(ranks, vec![(0, 3), (1, 2)]);
    }
}
