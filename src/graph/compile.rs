//! Plan → one burn Module: the layers in order, with the routing between them.

use burn::module::{ModuleMapper, Param, ParamId};
use burn::prelude::*;

use super::plan::{Plan, Source};
use crate::data::batch::Inputs;
use crate::layers::{LayerForward, LayerModule, Value};

/// The whole model. Layers run in spec order (the plan guarantees inputs come first).
#[derive(Module, Debug)]
pub struct Graph<B: Backend> {
    pub layers: Vec<LayerModule<B>>,
    #[module(skip)]
    routes: Vec<Vec<Source>>,
    /// Per layer, which of its outputs a later layer (or, for the last, the loss) reads.
    #[module(skip)]
    read: Vec<Vec<bool>>,
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
        let graph = Graph {
            layers,
            routes: plan.layers.iter().map(|l| l.sources.clone()).collect(),
            read: outputs_read(plan),
        };
        Ok(stable_param_ids(graph))
    }

    /// Logits [batch, classes]: a final softmax is left out, so the loss can use log-softmax.
    pub fn logits(&self, inputs: &Inputs<B>) -> Tensor<B, 2> {
        let outputs = self.run_layers(inputs, 0, self.layers.len(), Vec::new());
        final_value(outputs).vector()
    }

    /// Logits, with the outputs of layers `..from` already given (a frozen prefix).
    pub fn logits_from(
        &self,
        inputs: &Inputs<B>,
        from: usize,
        given: Vec<Vec<Option<Value<B>>>>,
    ) -> Tensor<B, 2> {
        let outputs = self.run_layers(inputs, from, self.layers.len(), given);
        final_value(outputs).vector()
    }

    /// Which outputs of layers `..prefix` the layers after it read.
    pub fn needed_from_prefix(&self, prefix: usize) -> Vec<(usize, usize)> {
        let mut needed: Vec<(usize, usize)> = self.routes[prefix..]
            .iter()
            .flatten()
            .filter_map(|s| match *s {
                Source::Layer { layer, output } if layer < prefix => Some((layer, output)),
                _ => None,
            })
            .collect();
        needed.sort();
        needed.dedup();
        needed
    }

    /// The attention weights of layer `layer` for these inputs (see
    /// [`LayerForward::attention_maps`]): the layers before it run as in [`Graph::logits`].
    pub fn attention_maps(&self, inputs: &Inputs<B>, layer: usize) -> Vec<(String, Tensor<B, 4>)> {
        let outputs = self.run_layers(inputs, 0, layer, Vec::new());
        let args = self.layer_args(inputs, layer, &outputs);
        self.layers[layer].attention_maps(args, &inputs.ctx())
    }

    /// What layer `i` reads: graph inputs and earlier layers' outputs, in its input order.
    fn layer_args(
        &self,
        inputs: &Inputs<B>,
        i: usize,
        outputs: &[Vec<Option<Value<B>>>],
    ) -> Vec<Value<B>> {
        self.routes[i]
            .iter()
            .map(|s| match *s {
                Source::Input(k) => match k {
                    0 => Value::Ids(inputs.ids.clone()),
                    1 => Value::Vector(inputs.mask.clone()),
                    _ => Value::Ids(inputs.token_type_ids.clone()),
                },
                Source::Layer { layer, output } => outputs[layer][output]
                    .clone()
                    .expect("the plan orders layers after their inputs"),
            })
            .collect()
    }

    /// Runs layers `from..to`; `outputs` holds (at least) what they read from layers `..from`.
    pub fn run_layers(
        &self,
        inputs: &Inputs<B>,
        from: usize,
        to: usize,
        mut outputs: Vec<Vec<Option<Value<B>>>>,
    ) -> Vec<Vec<Option<Value<B>>>> {
        let ctx = inputs.ctx();
        outputs.resize_with(from, Vec::new);
        let last = self.layers.len() - 1;
        for i in from..to {
            let args = self.layer_args(inputs, i, &outputs);
            let layer = &self.layers[i];
            let out = if i == last {
                layer
                    .forward_logits(args, &ctx)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                layer.forward_read(args, &ctx, &self.read[i])
            };
            outputs.push(out);
        }
        outputs
    }
}

/// Per layer, which of its outputs a later layer reads; the last layer's first output is the
/// model's.
fn outputs_read(plan: &Plan) -> Vec<Vec<bool>> {
    let mut read: Vec<Vec<bool>> = (plan.layers.iter())
        .map(|l| vec![false; l.outputs.len()])
        .collect();
    for source in plan.layers.iter().flat_map(|l| &l.sources) {
        if let Source::Layer { layer, output } = *source {
            read[layer][output] = true;
        }
    }
    if let Some(first) = read.last_mut().and_then(|r| r.first_mut()) {
        *first = true;
    }
    read
}

fn final_value<B: Backend>(outputs: Vec<Vec<Option<Value<B>>>>) -> Value<B> {
    outputs
        .into_iter()
        .next_back()
        .and_then(|o| o.into_iter().next().flatten())
        .expect("the graph has layers")
}

/// Gives every parameter an id derived from its path in the module tree, so a model built in
/// another process has the same ids and optimizer state (keyed by id) loads onto it.
pub fn stable_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Ids {
        path: Vec<String>,
    }
    impl<B: Backend> ModuleMapper<B> for Ids {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            // FNV-1a over the path: stable across processes and builds.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.path.join(".").bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            Param::from_mapped_value(ParamId::from(h), tensor, mapper)
        }
    }
    module.map(&mut Ids { path: Vec::new() })
}
