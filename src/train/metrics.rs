//! Loss and metrics. The loss takes logits (a final softmax is folded into log-softmax).

use burn::prelude::*;

use crate::run::Score;

/// The class with the highest probability (the first of equals).
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Mean sparse categorical cross-entropy of logits [n, c] against labels [n].
/// (One fused operation: log-softmax and the pick in one node, with its own gradient.)
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    crate::fused::cross_entropy(logits, labels)
}

/// Number of rows whose arg-max equals the label.
pub fn correct<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> usize {
    let [n, _] = logits.dims();
    let predicted = logits.argmax(1).reshape([n]);
    predicted
        .equal(labels)
        .int()
        .sum()
        .into_scalar()
        .elem::<i64>() as usize
}

/// Running sums over an epoch or an evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Running {
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

impl Running {
    pub fn add(&mut self, loss: f64, correct: usize, n: usize) {
        self.loss_sum += loss * n as f64;
        self.correct += correct;
        self.seen += n;
    }
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
    pub fn score(&self) -> Score {
        Score {
            loss: self.loss(),
            accuracy: self.accuracy(),
            macro_f1: None,
        }
    }
}

/// Per-class precision / recall / F1 and the confusion matrix (rows = true class).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassReport {
    pub accuracy: f64,
    /// The unweighted mean of the classes' F1 (each class counts alike, however rare).
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    pub confusion: Vec<Vec<usize>>,
    pub labels: Vec<String>,
    pub rows: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

pub fn class_report(truth: &[usize], predicted: &[usize], labels: &[String]) -> ClassReport {
    let c = labels.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let per_class = (0..c)
        .map(|k| {
            let tp = confusion[k][k] as f64;
            let predicted_k: usize = (0..c).map(|t| confusion[t][k]).sum();
            let support: usize = confusion[k].iter().sum();
            let precision = if predicted_k > 0 {
                tp / predicted_k as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                label: labels[k].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect::<Vec<ClassScores>>();
    let right: usize = (0..c).map(|k| confusion[k][k]).sum();
    ClassReport {
        accuracy: right as f64 / truth.len().max(1) as f64,
        macro_f1: per_class.iter().map(|k| k.f1).sum::<f64>() / c.max(1) as f64,
        per_class,
        confusion,
        labels: labels.to_vec(),
        rows: truth.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let device = Default::default();
        let logits = Tensor::<Flex, 2>::from_floats([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], &device);
        let labels = Tensor::<Flex, 1, Int>::from_ints([2, 0], &device);
        let loss: f32 = cross_entropy(logits.clone(), labels.clone()).into_scalar();
        let l0 = -(3f64.exp() / (1f64.exp() + 2f64.exp() + 3f64.exp())).ln();
        let l1 = (3f64).ln();
        assert!((loss as f64 - (l0 + l1) / 2.0).abs() < 1e-6);
        assert_eq!(correct(logits, labels), 2);
    }

    /// Macro-F1 weighs a rare class like a common one: here the majority class is perfect
    /// and the rare one never found, so accuracy is high and macro-F1 is not.
    #[test]
    fn macro_f1_is_the_mean_of_class_f1() {
        let labels = vec!["common".to_string(), "rare".to_string()];
        let truth = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        let predicted = [0; 10];
        let report = class_report(&truth, &predicted, &labels);
        assert_eq!(report.accuracy, 0.8);
        let f1_common = 2.0 * 0.8 * 1.0 / 1.8;
        assert!(
            (report.macro_f1 - f1_common / 2.0).abs() < 1e-12,
            "{}",
            report.macro_f1
        );
    }

    #[test]
    fn softmax_saturation_stays_finite() {
        // A softmax output of exactly 0 would give log(0) = -inf; log-softmax on logits does not.
        let device = Default::default();
        let logits = Tensor::<Flex, 2>::from_floats([[1000.0, -1000.0]], &device);
        let labels = Tensor::<Flex, 1, Int>::from_ints([1], &device);
        let loss: f32 = cross_entropy(logits, labels).into_scalar();
        assert!((loss - 2000.0).abs() < 1e-2, "{loss}");
    }

    #[test]
    fn report_counts() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let r = class_report(&[0, 0, 1, 1], &[0, 1, 1, 1], &labels);
        assert_eq!(r.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert!((r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
    }
}
