//! burn's Adam and AdamW as one optimizer whose update takes pipe's fused kernel on the CPU
//! backend ([`crate::fused::adam`]: one parallel pass instead of thirteen serial ones, with
//! the same bits) and burn's own code everywhere else.

use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    SimpleOptimizer, decay::WeightDecayConfig,
};
use burn::prelude::*;

use crate::fused::adam::{AdamRule, AdamStep, Moments, adam_step};

/// Adam (L2 weight decay in the gradient, Keras' defaults from the spec) or AdamW (decoupled
/// decay, PyTorch's). Its state is burn's `AdamState`, so resume points keep burn's layout.
#[derive(Clone)]
pub struct FusedAdam {
    /// Everything but the learning rate, which each step passes.
    hyper: AdamStep,
    /// burn's optimizer with the same settings, for backends the kernel does not cover.
    reference: Reference,
}

#[derive(Clone)]
enum Reference {
    Adam(Adam),
    AdamW(AdamW),
}

impl FusedAdam {
    pub fn adam(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: Option<f32>) -> Self {
        let reference = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        FusedAdam {
            hyper: AdamStep {
                rule: AdamRule::Adam { l2: weight_decay },
                beta_1,
                beta_2,
                epsilon,
                learning_rate: 0.0,
            },
            reference: Reference::Adam(reference),
        }
    }

    pub fn adamw(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let reference = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        FusedAdam {
            hyper: AdamStep {
                rule: AdamRule::AdamW { weight_decay },
                beta_1,
                beta_2,
                epsilon,
                learning_rate: 0.0,
            },
            reference: Reference::AdamW(reference),
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let step = AdamStep {
            learning_rate: lr,
            ..self.hyper
        };
        let moments = state.map(|s| Moments {
            time: s.momentum.time,
            moment_1: s.momentum.moment_1,
            moment_2: s.momentum.moment_2,
        });
        let state_of =
            |m: Moments<B, D>| AdaptiveMomentumState::new(m.time, m.moment_1, m.moment_2);
        match adam_step(&step, tensor, grad, moments) {
            Ok((tensor, moments)) => (tensor, Some(AdamState::new(state_of(moments)))),
            Err((tensor, grad, moments)) => {
                let momentum = moments.map(state_of);
                match &self.reference {
                    Reference::Adam(o) => o.step(lr, tensor, grad, momentum.map(AdamState::new)),
                    Reference::AdamW(o) => {
                        let (tensor, state) =
                            o.step(lr, tensor, grad, momentum.map(AdamWState::new));
                        (tensor, state.map(|s| AdamState::new(s.momentum)))
                    }
                }
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AdamState::new(state.momentum.to_device(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{DType, Distribution};

    type B = Flex;

    fn random(shape: [usize; 2], seed: u64) -> Tensor<B, 2> {
        B::seed(&Default::default(), seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    fn bits(t: &Tensor<B, 2>) -> Vec<u32> {
        let values = t.to_data().to_vec::<f32>().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Four steps of both optimizers from the same start, with changing gradients and learning
    /// rates; every parameter and moment bit must agree.
    fn same_bits<O: SimpleOptimizer<B>>(
        fused: &FusedAdam,
        burns: &O,
        state_of: impl Fn(&O::State<2>) -> AdaptiveMomentumState<B, 2>,
    ) {
        // 40,000 elements: several kernel tasks and a ragged last one.
        let shape = [200, 200];
        // One draw for both: the backend's RNG is global, and tests on other threads draw
        // from it too, so two seeded draws need not agree.
        let start = random(shape, 1);
        let (mut p_fused, mut p_burn) = (start.clone(), start);
        let (mut s_fused, mut s_burn) = (None, None);
        for step in 0..4u64 {
            let grad = random(shape, 10 + step);
            let lr = 0.01 / (step + 1) as f64;
            let (p, s) = fused.step(lr, p_fused, grad.clone(), s_fused);
            (p_fused, s_fused) = (p, s);
            let (p, s) = burns.step(lr, p_burn, grad, s_burn);
            (p_burn, s_burn) = (p, s);
            assert_eq!(
                bits(&p_fused),
                bits(&p_burn),
                "parameters after step {step}"
            );
            let (a, b) = (
                &s_fused.as_ref().unwrap().momentum,
                state_of(s_burn.as_ref().unwrap()),
            );
            assert_eq!(a.time, b.time);
            assert_eq!(bits(&a.moment_1), bits(&b.moment_1), "m after step {step}");
            assert_eq!(bits(&a.moment_2), bits(&b.moment_2), "v after step {step}");
        }
    }

    #[test]
    fn adam_matches_burns_bit_for_bit() {
        for decay in [None, Some(0.01f32)] {
            let fused = FusedAdam::adam(0.9, 0.999, 1e-7, decay);
            let burns = AdamConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(1e-7)
                .with_weight_decay(decay.map(WeightDecayConfig::new))
                .build();
            same_bits(&fused, &burns, |s: &AdamState<B, 2>| s.momentum.clone());
        }
    }

    #[test]
    fn adamw_matches_burns_bit_for_bit() {
        for decay in [0.0f32, 0.01] {
            let fused = FusedAdam::adamw(0.9, 0.999, 1e-8, decay);
            let burns = AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .build();
            same_bits(&fused, &burns, |s: &AdamWState<B, 2>| s.momentum.clone());
        }
    }

    #[test]
    fn other_dtypes_take_burns_optimizer() {
        let device = Default::default();
        let f64_tensor = |v: [f32; 2]| {
            Tensor::<B, 1>::from_floats(v, &device).cast(burn::tensor::FloatDType::F64)
        };
        let (p, g) = (f64_tensor([1.0, -2.0]), f64_tensor([0.5, 0.5]));
        assert_eq!(p.dtype(), DType::F64);
        let fused = FusedAdam::adam(0.9, 0.999, 1e-7, None);
        let (p, state) = fused.step(0.1, p, g, None);
        assert_eq!(p.dtype(), DType::F64);
        // First Adam step: −lr·sign(g) (up to ε).
        let values = p.to_data().to_vec::<f64>().unwrap();
        assert!(
            (values[0] - 0.9).abs() < 1e-6 && (values[1] + 2.1).abs() < 1e-6,
            "{values:?}"
        );
        assert_eq!(state.unwrap().momentum.time, 1);
    }
}
