//! Learning-rate schedules as pure functions of the optimizer step, so that a resumed run
//! lands on exactly the same rate. burn's schedulers are stateful iterators whose `init`
//! rejects a rate of exactly 0, which a warmup from zero needs.

use crate::spec::ScheduleSpec;

/// Warmup steps: a fraction of the stage's steps when below 1, else a step count.
pub fn warmup_steps(warmup: f64, total_steps: usize) -> usize {
    if warmup < 1.0 {
        (warmup * total_steps as f64).round() as usize
    } else {
        warmup as usize
    }
}

/// The learning rate for optimizer step `step` (0-based) of `total_steps`.
pub fn learning_rate(schedule: &ScheduleSpec, base: f64, step: usize, total_steps: usize) -> f64 {
    let total = total_steps.max(1);
    match schedule {
        ScheduleSpec::Constant => base,
        ScheduleSpec::Linear { warmup } => {
            // As HF `get_linear_schedule_with_warmup`: step t uses lr·t/w during warmup,
            // then lr·(T-t)/(T-w).
            let w = warmup_steps(*warmup, total);
            if step < w {
                base * step as f64 / w as f64
            } else {
                base * (total.saturating_sub(step)) as f64 / (total - w).max(1) as f64
            }
        }
        ScheduleSpec::Cosine { warmup, min_lr } => {
            let w = warmup_steps(*warmup, total);
            if step < w {
                base * step as f64 / w as f64
            } else {
                let progress = (step - w) as f64 / (total - w).max(1) as f64;
                min_lr
                    + (base - min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
            }
        }
        ScheduleSpec::Noam { warmup } => {
            let w = warmup_steps(*warmup, total).max(1) as f64;
            let t = (step + 1) as f64;
            // Scaled so that the peak (at t = w) equals `base`.
            base * w.sqrt() * (t.powf(-0.5)).min(t * w.powf(-1.5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_then_decay_to_zero() {
        let s = ScheduleSpec::Linear { warmup: 0.1 };
        assert_eq!(learning_rate(&s, 1.0, 0, 100), 0.0);
        assert!((learning_rate(&s, 1.0, 5, 100) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 55, 100) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&s, 1.0, 99, 100) > 0.0);
    }

    #[test]
    fn cosine_and_noam_peak_at_base() {
        let c = ScheduleSpec::Cosine {
            warmup: 10.0,
            min_lr: 0.0,
        };
        assert!((learning_rate(&c, 2.0, 10, 110) - 2.0).abs() < 1e-12);
        assert!(learning_rate(&c, 2.0, 109, 110) < 0.01);
        let n = ScheduleSpec::Noam { warmup: 4.0 };
        let peak = (0..100)
            .map(|s| learning_rate(&n, 1.0, s, 100))
            .fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 1e-9, "{peak}");
    }

    #[test]
    fn warmup_fraction_or_steps() {
        assert_eq!(warmup_steps(0.1, 313), 31);
        assert_eq!(warmup_steps(50.0, 313), 50);
    }
}
