//! Adam and AdamW in one parallel pass per parameter tensor on burn-flex.
//!
//! burn's optimizers update a parameter with about thirteen element-wise tensor operations,
//! each a full pass over the tensor into a new buffer, and burn-flex runs element-wise
//! operations on one core below 4M elements: for model A's 640k-weight embedding that is the
//! largest serial part of a training step after the products. The kernel here reads the
//! parameter, its gradient and both moments once and writes the three results once, over
//! rayon's pool. It evaluates burn 0.21's formulas operation by operation, in the same order
//! and in f32 (Rust never contracts `a * b + c` into a fused multiply-add on its own), so its
//! results are bit-identical to burn's `Adam` / `AdamW` (tested), and so are runs and their
//! resume points.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::{DType, TensorMetadata};
use rayon::prelude::*;

use super::math::multiversion;
use super::reference::{unwrap, wrap};
use super::{cast, flex, is};

/// Which of burn's update rules, with its hyper-parameters as burn stores them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdamRule {
    /// `burn::optim::Adam`; `l2` is its weight decay added to the gradient (`p·λ + g`).
    Adam { l2: Option<f32> },
    /// `burn::optim::AdamW`: decoupled decay `p·(1 − lr·λ)`.
    AdamW { weight_decay: f32 },
}

/// The hyper-parameters of one update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub rule: AdamRule,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub learning_rate: f64,
}

/// The moments of one parameter, as burn's `AdaptiveMomentumState` holds them.
pub struct Moments<B: Backend, const D: usize> {
    /// Updates applied so far.
    pub time: usize,
    pub moment_1: Tensor<B, D>,
    pub moment_2: Tensor<B, D>,
}

/// What a parameter's update needs, handed back untouched when the kernel does not apply.
pub type AdamInputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Option<Moments<B, D>>);

/// The updated parameter and moments on `Flex` with f32 tensors of one shape; `Err` returns
/// the inputs (other backends and dtypes keep burn's own optimizer).
#[allow(clippy::type_complexity)]
pub fn adam_step<B: Backend, const D: usize>(
    step: &AdamStep,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<Moments<B, D>>,
) -> Result<(Tensor<B, D>, Moments<B, D>), AdamInputs<B, D>> {
    if !is::<B, Flex>() {
        return Err((param, grad, moments));
    }
    let f32_of = |t: &Tensor<B, D>| t.dtype() == DType::F32;
    let dims = param.dims();
    let fits = f32_of(&param)
        && f32_of(&grad)
        && grad.dims() == dims
        && moments.as_ref().is_none_or(|m| {
            f32_of(&m.moment_1)
                && f32_of(&m.moment_2)
                && m.moment_1.dims() == dims
                && m.moment_2.dims() == dims
        });
    if !fits {
        return Err((param, grad, moments));
    }
    let raw = |t: Tensor<B, D>| -> FlexTensor { unwrap(cast::<_, Tensor<Flex, D>>(t)) };
    let time = moments.as_ref().map_or(0, |m| m.time) + 1;
    let previous = moments.map(|m| (raw(m.moment_1), raw(m.moment_2)));
    let (p, m, v) = update(step, time, &raw(param), &raw(grad), previous.as_ref());
    let back = |t: FlexTensor| -> Tensor<B, D> { cast(wrap::<Flex, D>(t)) };
    Ok((
        back(p),
        Moments {
            time,
            moment_1: back(m),
            moment_2: back(v),
        },
    ))
}

/// Scalars of the update at step `time`, each computed as burn computes it.
#[derive(Clone, Copy)]
struct Factors {
    rule: AdamRule,
    beta_1: f32,
    beta_2: f32,
    /// 1 − β₁ and 1 − β₂.
    keep_1: f32,
    keep_2: f32,
    /// Adam: √(1 − β₂ᵗ) / (1 − β₁ᵗ) and ε·√(1 − β₂ᵗ).
    combined: f32,
    epsilon_corrected: f32,
    /// AdamW: 1 − β₁ᵗ, 1 − β₂ᵗ, ε, and the decay factor (None when lr·λ = 0).
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    decay: Option<f32>,
    learning_rate: f32,
}

impl Factors {
    fn new(step: &AdamStep, time: usize) -> Self {
        let t = time as i32;
        let correction_1 = 1.0 - step.beta_1.powi(t);
        let correction_2 = 1.0 - step.beta_2.powi(t);
        let bias_correction_2_sqrt = correction_2.sqrt();
        let decay = match step.rule {
            AdamRule::AdamW { weight_decay } => {
                let rate = step.learning_rate * weight_decay as f64;
                (rate != 0.0).then_some((1.0 - rate) as f32)
            }
            AdamRule::Adam { .. } => None,
        };
        Factors {
            rule: step.rule,
            beta_1: step.beta_1,
            beta_2: step.beta_2,
            keep_1: 1.0 - step.beta_1,
            keep_2: 1.0 - step.beta_2,
            combined: bias_correction_2_sqrt / correction_1,
            epsilon_corrected: step.epsilon * bias_correction_2_sqrt,
            correction_1,
            correction_2,
            epsilon: step.epsilon,
            decay,
            learning_rate: step.learning_rate as f32,
        }
    }
}

const ELEMENTS_PER_TASK: usize = 16_384;

fn update(
    step: &AdamStep,
    time: usize,
    param: &FlexTensor,
    grad: &FlexTensor,
    moments: Option<&(FlexTensor, FlexTensor)>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dims = param.shape().to_vec();
    let factors = Factors::new(step, time);
    let (param, grad) = (flex::contiguous(param), flex::contiguous(grad));
    let moments = moments.map(|(m, v)| (flex::contiguous(m), flex::contiguous(v)));
    let (p, g) = (flex::values(&param), flex::values(&grad));
    let n = p.len();
    let (mut p_out, mut m_out, mut v_out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let outputs = p_out
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(m_out.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(v_out.par_chunks_mut(ELEMENTS_PER_TASK))
        .enumerate();
    match &moments {
        Some((m, v)) => {
            let (m, v) = (flex::values(m), flex::values(v));
            outputs.for_each(|(i, ((po, mo), vo))| {
                let range = i * ELEMENTS_PER_TASK..(i * ELEMENTS_PER_TASK + po.len());
                let old = Some((&m[range.clone()], &v[range.clone()]));
                adam_slice(&factors, &p[range.clone()], &g[range], old, po, mo, vo);
            })
        }
        None => outputs.for_each(|(i, ((po, mo), vo))| {
            let range = i * ELEMENTS_PER_TASK..(i * ELEMENTS_PER_TASK + po.len());
            adam_slice(&factors, &p[range.clone()], &g[range], None, po, mo, vo);
        }),
    }
    (
        flex::tensor(p_out, &dims),
        flex::tensor(m_out, &dims),
        flex::tensor(v_out, &dims),
    )
}

multiversion! {
    fn adam_slice(
        f: &Factors,
        p: &[f32],
        g: &[f32],
        old: Option<(&[f32], &[f32])>,
        p_out: &mut [f32],
        m_out: &mut [f32],
        v_out: &mut [f32],
    ) {
        // Equal lengths up front, so the loop runs without bounds checks.
        let n = p.len();
        let (g, p_out, m_out, v_out) = (&g[..n], &mut p_out[..n], &mut m_out[..n], &mut v_out[..n]);
        let old = old.map(|(m, v)| (&m[..n], &v[..n]));
        for i in 0..n {
            let grad = match f.rule {
                AdamRule::Adam { l2: Some(penalty) } => p[i] * penalty + g[i],
                _ => g[i],
            };
            let (m, v) = match old {
                Some((m, v)) => (
                    m[i] * f.beta_1 + grad * f.keep_1,
                    v[i] * f.beta_2 + (grad * grad) * f.keep_2,
                ),
                None => (grad * f.keep_1, (grad * grad) * f.keep_2),
            };
            p_out[i] = match f.rule {
                AdamRule::Adam { .. } => {
                    let delta = (m * f.combined) / (v.sqrt() + f.epsilon_corrected);
                    p[i] - delta * f.learning_rate
                }
                AdamRule::AdamW { .. } => {
                    let delta = (m / f.correction_1) / ((v / f.correction_2).sqrt() + f.epsilon);
                    let decayed = f.decay.map_or(p[i], |keep| p[i] * keep);
                    decayed - delta * f.learning_rate
                }
            };
            m_out[i] = m;
            v_out[i] = v;
        }
    }
}
