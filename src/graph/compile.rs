//! Plan → one burn Module: the layers in order, with the routing between them.

use burn::prelude::*;

use super::plan::{Plan, Source};
use crate::layers::{ForwardCtx, LayerForward, LayerModule, Value};

/// The whole model. Layers run in spec order (the plan guarantees inputs come first).
#[derive(Module, Debug)]
pub struct Graph<B: Backend> {
    pub layers: Vec<LayerModule<B>>,
    #[module(skip)]
    routes: Vec<Vec<Source>>,
}

/// One batch of model inputs.
#[derive(Clone, Debug)]
pub struct Inputs<B: Backend> {
    pub ids: Tensor<B, 2, Int>,
    pub mask: Tensor<B, 2>,
    pub token_type_ids: Tensor<B, 2, Int>,
}

impl<B: Backend> Graph<B> {
    /// Fresh weights for every layer, drawn in layer order from the backend's seeded RNG;
    /// pretrained layers load their weights unless a checkpoint will replace them anyway.
    pub fn init(plan: &Plan, device: &B::Device, load_pretrained: bool) -> Result<Self, String> {
        let mut ctx = plan.ctx.clone();
        ctx.load_pretrained = load_pretrained;
        let layers = plan
            .layers
            .iter()
            .map(|l| {
                l.config
                    .init::<B>(&l.input_specs, &ctx, device)
                    .map_err(|e| format!("layer `{}` ({}): {e}", l.name, l.config.type_name()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Graph {
            layers,
            routes: plan.layers.iter().map(|l| l.sources.clone()).collect(),
        })
    }

    /// Logits [batch, classes]: a final softmax is left out, so the loss can use log-softmax.
    pub fn logits(&self, inputs: &Inputs<B>) -> Tensor<B, 2> {
        self.run(inputs, 0, None).vector()
    }

    /// Runs layers `from..`, with the outputs of earlier layers supplied by `cached`
    /// (used to reuse a frozen prefix's outputs).
    pub fn run(
        &self,
        inputs: &Inputs<B>,
        from: usize,
        cached: Option<Vec<Vec<Value<B>>>>,
    ) -> Value<B> {
        let ctx = ForwardCtx {
            mask: inputs.mask.clone(),
            token_type_ids: inputs.token_type_ids.clone(),
        };
        let input_values = [
            Value::Ids(inputs.ids.clone()),
            Value::Vector(inputs.mask.clone()),
            Value::Ids(inputs.token_type_ids.clone()),
        ];
        let mut outputs: Vec<Vec<Value<B>>> = cached.unwrap_or_default();
        outputs.truncate(from);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate().skip(from) {
            let args: Vec<Value<B>> = self.routes[i]
                .iter()
                .map(|s| match *s {
                    Source::Input(k) => input_values[k].clone(),
                    Source::Layer(l, o) => outputs[l][o].clone(),
                })
                .collect();
            let out = if i == last {
                layer.forward_logits(args, &ctx)
            } else {
                layer.forward(args, &ctx)
            };
            outputs.push(out);
        }
        outputs
            .pop()
            .and_then(|o| o.into_iter().next())
            .expect("the graph has layers")
    }
}
