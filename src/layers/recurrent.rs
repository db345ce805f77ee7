//! What `lstm` and `gru` share: their keys, their module (a cell per direction), and running
//! a cell forwards (and, bidirectional, backwards) over each row's real tokens only, so that
//! padding does not change the final state, picking the outputs Keras returns.

use burn::nn::GateController;
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::{
    ForwardCtx, InferCtx, LayerForward, TensorSpec, Value, positive, rate, require_aligned,
    require_masked, require_rank,
};

fn yes() -> bool {
    true
}

/// The keys of `lstm` and `gru`: a recurrent layer over a sequence (Keras' `LSTM` / `GRU`,
/// optionally in `Bidirectional`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrentConfig {
    /// Features of the hidden state, per direction: the output is `units` wide, or
    /// 2·`units` when `bidirectional`.
    pub units: usize,
    /// Return the output at every step, [length, units·directions], instead of the final
    /// state, [units·directions] (default false, as Keras).
    #[serde(default)]
    pub return_sequences: bool,
    /// Also run backwards over the sequence; the two directions' outputs are concatenated,
    /// forward first (default false).
    #[serde(default)]
    pub bidirectional: bool,
    /// Dropout on the input values while training, a rate in [0, 1) (Keras' `dropout`, but
    /// drawn for each value of each step rather than once per sequence; default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Read each row only up to its last real token, so that padding changes neither
    /// direction's final state (default true). `false` is refused with `padding = "longest"`;
    /// `true` needs the input's positions to be the tokens' (not after a `valid` or strided
    /// `conv1d`, or a `max_pooling_1d`).
    #[serde(default = "yes")]
    pub masked: bool,
}

impl RecurrentConfig {
    fn directions(&self) -> usize {
        1 + usize::from(self.bidirectional)
    }

    /// Positive units, a dropout rate in [0, 1).
    pub fn validate(&self) -> Result<(), String> {
        positive(self.units, "units")?;
        rate(self.dropout, "dropout")
    }

    /// The output shape of layer type `what`.
    pub fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
        what: &str,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_masked(self.masked, ctx)?;
        require_aligned(self.masked, &inputs[0], ctx)?;
        require_rank(inputs, &[2], what)?;
        let dims = match self.return_sequences {
            true => vec![inputs[0].dims[0], Some(self.units * self.directions())],
            false => vec![Some(self.units * self.directions())],
        };
        Ok(vec![("output".into(), TensorSpec::float(dims))])
    }

    /// Parameters of `gates` gates per direction, each with burn's (and PyTorch's) two biases.
    pub fn param_count(&self, inputs: &[TensorSpec], gates: usize) -> usize {
        let (d, u) = (inputs[0].features().unwrap_or(0), self.units);
        self.directions() * gates * (d * u + u * u + 2 * u)
    }

    /// The layer with a fresh `cell()` per direction.
    pub fn build<B: Backend, M: Module<B>>(&self, cell: impl Fn() -> M) -> Recurrent<B, M> {
        Recurrent {
            forward: cell(),
            backward: self.bidirectional.then(&cell),
            return_sequences: self.return_sequences,
            dropout: self.dropout,
            masked: self.masked,
            backend: std::marker::PhantomData,
        }
    }
}

/// A recurrent cell run over a whole sequence.
pub trait Steps<B: Backend> {
    /// # Shapes
    /// - x: [batch, length, d]; output: the hidden state after each step, [batch, length, units]
    fn steps(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;
    /// [`Steps::steps`] as ONNX nodes, on the time-major layout ONNX's recurrent ops read: one
    /// forward pass over every step from a zero state. Errors name what of the cell ONNX
    /// cannot express.
    ///
    /// # Shapes
    /// - x: [length, batch, d]; output: [length, batch, units]
    fn steps_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, String>;
}

/// An `lstm` or `gru` layer: a cell per direction.
#[derive(Module, Debug)]
pub struct Recurrent<B: Backend, M: Module<B>> {
    /// The cell run over each row from its first token.
    pub(crate) forward: M,
    /// The bidirectional layer's second cell, run over each row's real tokens from the last.
    pub(crate) backward: Option<M>,
    #[module(skip)]
    return_sequences: bool,
    #[module(skip)]
    dropout: f64,
    #[module(skip)]
    masked: bool,
    #[module(skip)]
    backend: std::marker::PhantomData<B>,
}

impl<B: Backend, M: Module<B> + Steps<B>> LayerForward<B> for Recurrent<B, M> {
    /// # Shapes
    /// - input: [batch, length, d]; output: [batch, units·directions] or, with
    ///   `return_sequences`, [batch, length, units·directions]
    fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        let x = crate::fused::dropout(x, self.dropout);
        let backward = self.backward.as_ref().map(|m| move |x| m.steps(x));
        let out = run(
            x,
            self.masked.then_some(&ctx.mask),
            self.return_sequences,
            |x| self.forward.steps(x),
            backward
                .as_ref()
                .map(|f| f as &dyn Fn(Tensor<B, 3>) -> Tensor<B, 3>),
        );
        vec![out]
    }
    /// As [`run`]: the forward cell over every step (padding included, as burn runs it), the
    /// backward one over each row's real tokens reversed (`ReverseSequence` by the mask's
    /// lengths, padding left in place, as [`reverse_index`]), the outputs picked at each row's
    /// last real token or, per step, the backward ones put back in order.
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = inputs.into_iter().next().expect("one input");
        let lengths = onnx_lengths(g, &x.name, self.masked);
        let steps = g.transpose(&x.name, &[1, 0, 2]);
        let mut outputs = vec![self.forward.steps_onnx(g, &steps)?];
        if let Some(cell) = &self.backward {
            let reversed = onnx_reverse(g, &steps, &lengths);
            let back = cell.steps_onnx(g, &reversed)?;
            outputs.push(match self.return_sequences {
                true => onnx_reverse(g, &back, &lengths),
                false => back,
            });
        }
        let (outputs, axis, rank) = match self.return_sequences {
            true => {
                let outputs = outputs
                    .iter()
                    .map(|o| g.transpose(o, &[1, 0, 2]))
                    .collect::<Vec<_>>();
                (outputs, 2, 3)
            }
            false => {
                let one = g.int_scalar(1);
                let last = g.op("Sub", &[&lengths, &one], vec![]);
                let zero = g.int_scalar(0);
                let last = g.op("Max", &[&last, &zero], vec![]);
                let at = g.unsqueeze(&last, &[1]);
                let outputs = outputs
                    .iter()
                    .map(|o| {
                        let rows = g.transpose(o, &[1, 0, 2]);
                        g.op(
                            "GatherND",
                            &[&rows, &at],
                            vec![("batch_dims", Attr::Int(1))],
                        )
                    })
                    .collect::<Vec<_>>();
                (outputs, 1, 2)
            }
        };
        let y = match outputs.as_slice() {
            [one] => one.clone(),
            both => {
                let refs: Vec<&str> = both.iter().map(String::as_str).collect();
                g.op("Concat", &refs, vec![("axis", Attr::Int(axis))])
            }
        };
        Ok(vec![OnnxValue::new(y, rank)])
    }
}

/// [`lengths`] as ONNX nodes: each row's real length [batch] (int64), the mask's sum or the
/// whole length of `x` [batch, length, d].
fn onnx_lengths(g: &mut OnnxGraph, x: &str, masked: bool) -> String {
    if masked {
        let mask = g.mask();
        let axis = g.ints(&[1]);
        let sum = g.op(
            "ReduceSum",
            &[&mask, &axis],
            vec![("keepdims", Attr::Int(0))],
        );
        return g.op(
            "Cast",
            &[&sum],
            vec![("to", Attr::Int(DataType::Int64 as i64))],
        );
    }
    let length = g.length_of(x);
    let batch = g.op(
        "Shape",
        &[x],
        vec![("start", Attr::Int(0)), ("end", Attr::Int(1))],
    );
    g.op("Expand", &[&length, &batch], vec![])
}

/// [`gather_steps`] by [`reverse_index`] as ONNX nodes: each row's first `lengths` steps
/// reversed, the rest in place, on the time-major layout [length, batch, d].
fn onnx_reverse(g: &mut OnnxGraph, steps: &str, lengths: &str) -> String {
    g.op(
        "ReverseSequence",
        &[steps, lengths],
        vec![("batch_axis", Attr::Int(1)), ("time_axis", Attr::Int(0))],
    )
}

/// The weights of ONNX's `LSTM` / `GRU` for one direction from burn's `gates`, in the op's gate
/// order: `W` [1, gates·units, d] and `R` [1, gates·units, units] (burn's [d_in, d_out]
/// kernels transposed), and `B` [1, 2·gates·units] (every input bias, then every hidden one;
/// zeros where a transform has none).
pub(super) fn onnx_gate_weights<B: Backend>(
    g: &mut OnnxGraph,
    gates: &[&GateController<B>],
) -> [String; 3] {
    let (mut w, mut r, mut biases, mut hidden_biases) = (vec![], vec![], vec![], vec![]);
    for gate in gates {
        w.push(gate.input_transform.weight.val().transpose());
        r.push(gate.hidden_transform.weight.val().transpose());
        biases.push(bias_or_zeros(&gate.input_transform));
        hidden_biases.push(bias_or_zeros(&gate.hidden_transform));
    }
    biases.extend(hidden_biases);
    let w = g.weight("W", &Tensor::cat(w, 0).unsqueeze::<3>());
    let r = g.weight("R", &Tensor::cat(r, 0).unsqueeze::<3>());
    let b = g.weight("B", &Tensor::cat(biases, 0).unsqueeze::<2>());
    [w, r, b]
}

/// A linear transform's bias, or zeros [d_out] without one.
fn bias_or_zeros<B: Backend>(linear: &burn::nn::Linear<B>) -> Tensor<B, 1> {
    match &linear.bias {
        Some(b) => b.val(),
        None => {
            let [_, units] = linear.weight.dims();
            Tensor::zeros([units], &linear.weight.device())
        }
    }
}

/// The one direction's output `Y` [length, 1, batch, units] of ONNX's `LSTM` / `GRU` as
/// [length, batch, units].
pub(super) fn onnx_one_direction(g: &mut OnnxGraph, y: &str) -> String {
    let axis = g.ints(&[1]);
    g.op("Squeeze", &[y, &axis], vec![])
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

/// The checks `lstm` and `gru` share, each run on its own layer type.
#[cfg(test)]
pub(super) mod checks {
    use burn::backend::Flex;
    use burn::module::Module;
    use burn::prelude::*;

    use super::RecurrentConfig;
    use crate::layers::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value};

    type B = Flex;

    /// A masked 3-unit layer.
    pub fn config(bidirectional: bool, return_sequences: bool) -> RecurrentConfig {
        RecurrentConfig {
            units: 3,
            return_sequences,
            bidirectional,
            dropout: 0.0,
            masked: true,
        }
    }

    /// `param_count` is the built module's, `gates · (d·u + u·u + 2u)` in one direction (burn's
    /// two biases per gate), and a bidirectional sequence is twice the units wide.
    pub fn counts_match_the_module<C: LayerDef>(
        layer: impl Fn(RecurrentConfig) -> C,
        gates: usize,
    ) {
        let spec = [TensorSpec::float(vec![Some(6), Some(4)])];
        let ctx = InferCtx {
            sequence_length: Some(6),
            ..Default::default()
        };
        for bidirectional in [false, true] {
            let c = layer(config(bidirectional, false));
            let built = c.init::<B>(&spec, &ctx, &Default::default()).unwrap();
            assert_eq!(built.num_params(), c.param_count(&spec, &ctx));
        }
        assert_eq!(
            layer(config(false, false)).param_count(&spec, &ctx),
            gates * (4 * 3 + 3 * 3 + 6)
        );
        let out = layer(config(true, true)).infer(&spec, &ctx).unwrap();
        assert_eq!(out[0].1.dims, vec![Some(6), Some(6)]);
    }

    /// Padding after the real tokens changes neither direction's final state.
    pub fn padding_changes_neither_final_state<C: LayerDef>(layer: impl Fn(RecurrentConfig) -> C) {
        let device = Default::default();
        let spec = [TensorSpec::float(vec![None, Some(2)])];
        let layer = layer(config(true, false))
            .init::<B>(&spec, &InferCtx::default(), &device)
            .unwrap();
        let ctx = |len: usize, pad: usize| ForwardCtx {
            mask: Tensor::<B, 1>::from_floats(
                [vec![1.0; len], vec![0.0; pad]].concat().as_slice(),
                &device,
            )
            .reshape([1, len + pad]),
            token_type_ids: Tensor::zeros([1, len + pad], &device),
        };
        let real = Tensor::<B, 3>::random([1, 4, 2], burn::tensor::Distribution::Default, &device);
        let padded = Tensor::cat(
            vec![real.clone(), Tensor::ones([1, 3, 2], &device) * 7.0],
            1,
        );
        let a = layer.forward(vec![Value::Sequence(real)], &ctx(4, 0));
        let b = layer.forward(vec![Value::Sequence(padded)], &ctx(4, 3));
        let diff: f32 = (a[0].clone().vector() - b[0].clone().vector())
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-6, "padding moved the final state by {diff}");
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

    fn config(return_sequences: bool, bidirectional: bool, masked: bool) -> RecurrentConfig {
        RecurrentConfig {
            units: 3,
            return_sequences,
            bidirectional,
            dropout: 0.0,
            masked,
        }
    }

    #[test]
    fn output_shapes_follow_return_sequences_and_directions() {
        let ctx = InferCtx {
            sequence_length: Some(6),
            ..Default::default()
        };
        let spec = [TensorSpec::float(vec![Some(6), Some(4)])];
        let dims = |c: RecurrentConfig| c.infer(&spec, &ctx, "lstm").unwrap()[0].1.dims.clone();
        assert_eq!(dims(config(false, false, true)), vec![Some(3)]);
        assert_eq!(dims(config(false, true, true)), vec![Some(6)]);
        assert_eq!(dims(config(true, false, true)), vec![Some(6), Some(3)]);
        assert_eq!(dims(config(true, true, true)), vec![Some(6), Some(6)]);
        // Per direction: `gates` · (d·u + u·u + 2u).
        assert_eq!(
            config(false, true, true).param_count(&spec, 3),
            2 * 3 * (12 + 9 + 6)
        );
    }

    #[test]
    fn refusals_name_the_layer_and_the_fix() {
        let ctx = InferCtx {
            sequence_length: Some(6),
            ..Default::default()
        };
        let err = config(false, false, true)
            .infer(&[TensorSpec::ids(Some(6))], &ctx, "gru")
            .unwrap_err();
        assert!(err.contains("gru needs float features"), "{err}");
        // After a length-changing layer the mask no longer lines up with the positions.
        let shortened = [TensorSpec::float(vec![Some(4), Some(4)])];
        let err = config(false, false, true)
            .infer(&shortened, &ctx, "lstm")
            .unwrap_err();
        assert!(err.contains("one position per token (6)"), "{err}");
        assert!(
            config(false, false, false)
                .infer(&shortened, &ctx, "lstm")
                .is_ok()
        );
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..ctx
        };
        let unknown = [TensorSpec::float(vec![None, Some(4)])];
        let err = config(false, false, false)
            .infer(&unknown, &dynamic, "lstm")
            .unwrap_err();
        assert!(err.contains("set `masked = true`"), "{err}");
        assert!(
            config(false, false, true)
                .infer(&unknown, &dynamic, "lstm")
                .is_ok()
        );
        let no_units = RecurrentConfig {
            units: 0,
            ..config(false, false, true)
        };
        assert!(no_units.validate().unwrap_err().contains("`units`"));
        let bad_dropout = RecurrentConfig {
            dropout: 1.0,
            ..config(false, false, true)
        };
        assert!(bad_dropout.validate().unwrap_err().contains("`dropout`"));
    }

    #[test]
    fn an_empty_row_returns_its_first_step() {
        let device = Default::default();
        let x = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device).reshape([1, 3, 1]);
        let mask = Tensor::<B, 2>::zeros([1, 3], &device);
        let out = run(x, Some(&mask), false, cumulative, Some(&cumulative)).vector();
        assert_eq!(out.into_data().to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    }
}
