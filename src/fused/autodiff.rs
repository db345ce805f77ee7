//! `PipeOps` for `Autodiff<B>`: each fused operation is one tracked node whose backward pass
//! calls the inner backend's fused backward, instead of burn-autodiff's graph of primitives.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, OpsPrep};
use burn::tensor::TensorMetadata;
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{AttentionMasks, AttentionOptions, PartOptions, PipeOps, RelativeOptions};

/// The node ids of an operation's tracked parents.
macro_rules! ids {
    ($parents:expr) => {
        $parents.map(|p| p.map(|node| node.id))
    };
}

impl<B: PipeOps, C: CheckpointStrategy> PipeOps for Autodiff<B, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<FloatTensor<Self>>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        // Parents q, k, v and, with a score bias, the bias: its gradient is the scores'.
        let bias = masks.bias.clone();
        let masks = masks.map(|m| m.primitive);
        match bias {
            Some(bias) => attention_node::<B, C, 4>(
                AttentionBackward::<4>.prepare::<C>([
                    q.node.clone(),
                    k.node.clone(),
                    v.node.clone(),
                    bias.node.clone(),
                ]),
                [q.primitive, k.primitive, v.primitive],
                masks,
                options,
            ),
            None => attention_node::<B, C, 3>(
                AttentionBackward::<3>.prepare::<C>([
                    q.node.clone(),
                    k.node.clone(),
                    v.node.clone(),
                ]),
                [q.primitive, k.primitive, v.primitive],
                masks,
                options,
            ),
        }
    }

    fn fused_relative_scores(
        x: FloatTensor<Self>,
        table: FloatTensor<Self>,
        options: RelativeOptions,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RelativeBackward;

        impl<B: PipeOps> Backward<B, 2> for RelativeBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, RelativeOptions);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, table, options) = ops.state;
                let (dx, dtable) = B::fused_relative_scores_backward(x, table, grad, options);
                register_grads::<B, 2>(grads, ids!(ops.parents), [dx, dtable]);
            }
        }

        match RelativeBackward
            .prepare::<C>([x.node.clone(), table.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_relative_scores(
                    x.primitive.clone(),
                    table.primitive.clone(),
                    options.clone(),
                );
                prep.finish((x.primitive, table.primitive, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_relative_scores(
                x.primitive,
                table.primitive,
                options,
            )),
        }
    }

    fn fused_packed_part(x: FloatTensor<Self>, options: PartOptions) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PartBackward;

        impl<B: PipeOps> Backward<B, 1> for PartBackward {
            type State = PartOptions;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let dx = B::fused_packed_part_backward(grad, ops.state);
                register_grads::<B, 1>(grads, ids!(ops.parents), [dx]);
            }
        }

        match PartBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_packed_part(x.primitive, options.clone());
                prep.finish(options, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_packed_part(x.primitive, options)),
        }
    }

    fn fused_geglu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        keeps_input_node::<B, C>(x, B::fused_geglu, B::fused_geglu_backward)
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        // Parents x, γ and β, or x and γ alone: γ must not be credited twice.
        match beta {
            Some(beta) => layer_norm_node::<B, C, 3>(
                LayerNormBackward::<3>.prepare::<C>([
                    x.node.clone(),
                    gamma.node.clone(),
                    beta.node.clone(),
                ]),
                x.primitive,
                gamma.primitive,
                Some(beta.primitive),
                epsilon,
            ),
            None => layer_norm_node::<B, C, 2>(
                LayerNormBackward::<2>.prepare::<C>([x.node.clone(), gamma.node.clone()]),
                x.primitive,
                gamma.primitive,
                None,
                epsilon,
            ),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        // Parents x, W and b, or x and W alone (a layer without a bias).
        let (nodes, x, weight, bias) = (
            [x.node.clone(), weight.node.clone()],
            x.primitive,
            weight.primitive,
            bias,
        );
        match bias {
            Some(b) => linear_node::<B, C, 3>(
                LinearBackward::<3>.prepare::<C>([nodes[0].clone(), nodes[1].clone(), b.node]),
                x,
                weight,
                Some(b.primitive),
            ),
            None => {
                linear_node::<B, C, 2>(LinearBackward::<2>.prepare::<C>(nodes), x, weight, None)
            }
        }
    }

    fn fused_mean_pool(x: FloatTensor<Self>, mask: Option<FloatTensor<Self>>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MeanPoolBackward;

        impl<B: PipeOps> Backward<B, 1> for MeanPoolBackward {
            /// The mask and the sequence length.
            type State = (Option<FloatTensor<B>>, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (mask, length) = ops.state;
                register_grads::<B, 1>(
                    grads,
                    ids!(ops.parents),
                    [B::fused_mean_pool_backward(mask, grad, length)],
                );
            }
        }

        let length = x.primitive.shape()[1];
        let mask = mask.map(|m| m.primitive);
        match MeanPoolBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_mean_pool(x.primitive, mask.clone());
                prep.finish((mask, length), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_mean_pool(x.primitive, mask)),
        }
    }

    fn fused_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ReluBackward;

        impl<B: PipeOps> Backward<B, 1> for ReluBackward {
            /// The output: its sign is the mask, and x itself need not be kept.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                register_grads::<B, 1>(
                    grads,
                    ids!(ops.parents),
                    [B::fused_relu_backward(ops.state, grad)],
                );
            }
        }

        match ReluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_relu(x.primitive);
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_relu(x.primitive)),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        keeps_input_node::<B, C>(x, B::fused_gelu, B::fused_gelu_backward)
    }

    fn fused_residual(
        x: FloatTensor<Self>,
        z: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ResidualBackward;

        impl<B: PipeOps> Backward<B, 2> for ResidualBackward {
            type State = Option<FloatTensor<B>>;

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let dz = match ops.state {
                    Some(mask) => B::fused_multiply(grad.clone(), mask),
                    None => grad.clone(),
                };
                register_grads::<B, 2>(grads, ids!(ops.parents), [grad, dz]);
            }
        }

        let mask = mask.map(|m| m.primitive);
        match ResidualBackward
            .prepare::<C>([x.node.clone(), z.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_residual(x.primitive, z.primitive, mask.clone());
                prep.finish(mask, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_residual(x.primitive, z.primitive, mask))
            }
        }
    }

    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropyBackward;

        impl<B: PipeOps> Backward<B, 1> for CrossEntropyBackward {
            type State = (FloatTensor<B>, IntTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (logits, labels) = ops.state;
                register_grads::<B, 1>(
                    grads,
                    ids!(ops.parents),
                    [B::fused_cross_entropy_backward(logits, labels, grad)],
                );
            }
        }

        match CrossEntropyBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::fused_cross_entropy(logits.primitive.clone(), labels.clone());
                prep.finish((logits.primitive, labels), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_cross_entropy(logits.primitive, labels))
            }
        }
    }
}

/// Gives each tracked parent its gradient.
/// `values` may hold more than `N` (LayerNorm's dβ without β): the extra ones are dropped.
fn register_grads<B: PipeOps, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: impl IntoIterator<Item = FloatTensor<B>>,
) {
    for (id, grad) in parents.into_iter().zip(values) {
        if let Some(id) = id {
            grads.register::<B>(id, grad);
        }
    }
}

/// Attention's node over its first `N` parents (q, k, v, score bias): dq, dk, dv and, with
/// a bias, the scores' gradient.
#[derive(Debug)]
struct AttentionBackward<const N: usize>;

/// q, k, v, the weights before dropout, the masks (the bias left out) and the options.
type AttentionState<B> = (
    [FloatTensor<B>; 4],
    AttentionMasks<FloatTensor<B>>,
    AttentionOptions,
);

impl<B: PipeOps, const N: usize> Backward<B, N> for AttentionBackward<N> {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([q, k, v, probs], masks, options) = ops.state;
        let g = B::fused_attention_backward(q, k, v, probs, masks, grad, options, N == 4);
        let all = [g.q, g.k, g.v].into_iter().chain(g.bias);
        register_grads::<B, N>(grads, ids!(ops.parents), all);
    }
}

fn attention_node<B: PipeOps, C: CheckpointStrategy, const N: usize>(
    prep: OpsPrep<AttentionBackward<N>, B, AttentionState<B>, C, N>,
    [q, k, v]: [FloatTensor<B>; 3],
    masks: AttentionMasks<FloatTensor<B>>,
    options: AttentionOptions,
) -> FloatTensor<Autodiff<B, C>> {
    match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, probs) =
                B::fused_attention_forward(q.clone(), k.clone(), v.clone(), masks.clone(), options);
            let saved = AttentionMasks {
                bias: None,
                ..masks
            };
            prep.finish(([q, k, v, probs], saved, options), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(q, k, v, masks, options)),
    }
}

/// The backward pass of a one-input operation that keeps its input: dx = f(x, grad).
type FromInput<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

/// The node of a one-input operation whose backward pass reads its input (GELU, GeGLU).
#[derive(Debug)]
struct KeepsInputBackward<B: PipeOps>(FromInput<B>);

impl<B: PipeOps> Backward<B, 1> for KeepsInputBackward<B> {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let dx = (self.0)(ops.state, grad);
        register_grads::<B, 1>(grads, ids!(ops.parents), [dx]);
    }
}

fn keeps_input_node<B: PipeOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    backward: FromInput<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match KeepsInputBackward(backward)
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(x.primitive.clone());
            prep.finish(x.primitive, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    }
}

/// A linear layer's node over its first `N` parents (x, W, b): dx, dW and, with b, db.
#[derive(Debug)]
struct LinearBackward<const N: usize>;

type LinearState<B> = (FloatTensor<B>, FloatTensor<B>);

impl<B: PipeOps, const N: usize> Backward<B, N> for LinearBackward<N> {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let (dx, dw, db) = B::fused_linear_backward(x, weight, grad);
        register_grads::<B, N>(grads, ids!(ops.parents), [dx, dw, db]);
    }
}

fn linear_node<B: PipeOps, C: CheckpointStrategy, const N: usize>(
    prep: OpsPrep<LinearBackward<N>, B, LinearState<B>, C, N>,
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<Autodiff<B, C>> {
    match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = B::fused_linear(x.clone(), weight.clone(), bias);
            prep.finish((x, weight), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(x, weight, bias)),
    }
}

/// LayerNorm's node over its first `N` parents (x, γ, β): dx, dγ and, with β, dβ.
#[derive(Debug)]
struct LayerNormBackward<const N: usize>;

type LayerNormState<B> = (FloatTensor<B>, FloatTensor<B>, f64);

impl<B: PipeOps, const N: usize> Backward<B, N> for LayerNormBackward<N> {
    type State = LayerNormState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, epsilon) = ops.state;
        let (dx, dgamma, dbeta) = B::fused_layer_norm_backward(x, gamma, epsilon, grad);
        register_grads::<B, N>(grads, ids!(ops.parents), [dx, dgamma, dbeta]);
    }
}

/// Runs the forward pass of a prepared LayerNorm node, keeping x and γ where it is tracked.
fn layer_norm_node<B: PipeOps, C: CheckpointStrategy, const N: usize>(
    prep: OpsPrep<LayerNormBackward<N>, B, LayerNormState<B>, C, N>,
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: Option<FloatTensor<B>>,
    epsilon: f64,
) -> FloatTensor<Autodiff<B, C>> {
    match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = B::fused_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
            prep.finish((x, gamma, epsilon), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(x, gamma, beta, epsilon)),
    }
}
