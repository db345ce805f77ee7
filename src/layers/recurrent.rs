//! What `lstm` and `gru` share: running a recurrent module forwards (and, bidirectional,
//! backwards) over each row's real tokens only, so that padding does not change the final
//! state, and picking the outputs Keras returns.

use burn::prelude::*;

use super::{TensorSpec, Value};

/// A recurrent layer's output shape for `width` outputs per step.
pub fn output(
    inputs: &[TensorSpec],
    width: usize,
    return_sequences: bool,
) -> Vec<(String, TensorSpec)> {
    let dims = match return_sequences {
        true => vec![inputs[0].dims[0], Some(width)],
        false => vec![Some(width)],
    };
    vec![("output".into(), TensorSpec::float(dims))]
}

/// Each row's real length, [batch, 1]: the mask's sum, or the whole length without a mask.
fn lengths<B: Backend>(
    mask: Option<&Tensor<B, 2>>,
    [b, l]: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    match mask {
        Some(m) => m.clone().sum_dim(1).int(),
        None => Tensor::<B, 2, Int>::full([b, 1], l as i64, device),
    }
}

/// For each row, the positions of its real tokens in reverse, then its padding in place
/// (an involution: applying it twice restores the order). [batch, length]
fn reverse_index<B: Backend>(lengths: &Tensor<B, 2, Int>, l: usize) -> Tensor<B, 2, Int> {
    let [b, _] = lengths.dims();
    let t = Tensor::<B, 1, Int>::arange(0..l as i64, &lengths.device())
        .reshape([1, l])
        .expand([b, l]);
    let len = lengths.clone().expand([b, l]);
    let reversed = len.clone().sub_scalar(1) - t.clone();
    t.clone().mask_where(t.lower(len), reversed)
}

/// `x` re-ordered along the sequence by `index` [batch, length].
fn gather_steps<B: Backend>(x: Tensor<B, 3>, index: &Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    x.gather(1, index.clone().reshape([b, l, 1]).expand([b, l, d]))
}

/// The step at each row's last real token (the first, for an empty row). [batch, d]
fn last_step<B: Backend>(outputs: Tensor<B, 3>, lengths: &Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, _, d] = outputs.dims();
    let at = lengths
        .clone()
        .sub_scalar(1)
        .clamp_min(0)
        .reshape([b, 1, 1])
        .expand([b, 1, d]);
    outputs.gather(1, at).reshape([b, d])
}

/// Runs `forward` (and `backward`, for a bidirectional layer) over `x`, both mapping
/// [batch, length, d] to their per-step outputs [batch, length, units]. Only each row's real
/// tokens are read when `mask` is given: the backward direction runs over the real tokens
/// reversed. Returns the final states, concatenated (forward first), or with
/// `return_sequences` the per-step outputs of both directions in the original order.
///
/// # Shapes
/// - x: [batch, length, d]; mask: [batch, length]
/// - output: [batch, units·directions], or [batch, length, units·directions]
pub fn run<B: Backend>(
    x: Tensor<B, 3>,
    mask: Option<&Tensor<B, 2>>,
    return_sequences: bool,
    forward: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>,
    backward: Option<&dyn Fn(Tensor<B, 3>) -> Tensor<B, 3>>,
) -> Value<B> {
    let [b, l, _] = x.dims();
    let lengths = lengths(mask, [b, l], &x.device());
    let ahead = backward.map(|run_back| {
        let index = reverse_index(&lengths, l);
        (run_back(gather_steps(x.clone(), &index)), index)
    });
    let outputs = forward(x);
    match (return_sequences, ahead) {
        (true, None) => Value::Sequence(outputs),
        (true, Some((back, index))) => {
            Value::Sequence(Tensor::cat(vec![outputs, gather_steps(back, &index)], 2))
        }
        (false, None) => Value::Vector(last_step(outputs, &lengths)),
        (false, Some((back, _))) => Value::Vector(Tensor::cat(
            vec![last_step(outputs, &lengths), last_step(back, &lengths)],
            1,
        )),
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    type B = Flex;

    /// A running sum over the steps: a recurrence whose state is easy to check.
    fn cumulative(x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.cumsum(1)
    }

    #[test]
    fn padding_does_not_reach_either_direction_of_the_final_state() {
        let device = Default::default();
        // Row 0: 1, 2, 3 and two padded steps holding 100; row 1: five real steps.
        let x = Tensor::<B, 1>::from_floats(
            [1.0, 2.0, 3.0, 100.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            &device,
        )
        .reshape([2, 5, 1]);
        let mask = Tensor::<B, 1>::from_floats(
            [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            &device,
        )
        .reshape([2, 5]);
        // Backwards, each step also weighs its position in the reversed sequence (x·1, x·2, ...).
        let weighted = |x: Tensor<B, 3>| {
            let [b, l, _] = x.dims();
            let w = Tensor::<B, 1, Int>::arange(1..l as i64 + 1, &device)
                .float()
                .reshape([1, l, 1]);
            (x * w.expand([b, l, 1])).cumsum(1)
        };
        let out = run(x.clone(), Some(&mask), false, cumulative, Some(&weighted)).vector();
        // Forward: 1+2+3 and 5. Backward: 3·1 + 2·2 + 1·3 = 10 and 15.
        assert_eq!(
            out.into_data().to_vec::<f32>().unwrap(),
            vec![6.0, 10.0, 5.0, 15.0]
        );
        let unmasked = run(x.clone(), None, false, cumulative, None).vector();
        assert_eq!(
            unmasked.into_data().to_vec::<f32>().unwrap(),
            vec![206.0, 5.0]
        );
        // Per step, in the original order: the backward outputs are undone from the reversal.
        let steps = run(x, Some(&mask), true, cumulative, Some(&weighted)).sequence();
        let row0: Vec<f32> = steps
            .slice([0..1, 0..3, 1..2])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(row0, vec![10.0, 7.0, 3.0]);
    }
}
