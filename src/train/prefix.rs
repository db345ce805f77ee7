//! A frozen prefix of the graph (the leading layers a stage freezes) runs without autodiff and
//! with dropout off, as a frozen feature extractor should. When everything the trainable
//! layers read from it is a per-example vector (e.g. BERT's pooled output), those vectors are
//! computed once per split and reused every epoch: training the head then costs only the head.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;

use crate::data::batch::EncodedSplit;
use crate::graph::{Graph, Plan};
use crate::layers::{Value, ValueKind};

/// Prefix outputs of every row of one split: for each needed output, rows × dim floats.
pub struct FeatureCache {
    columns: Vec<(usize, Vec<f32>)>,
}

pub struct FrozenPrefix<B: AutodiffBackend> {
    /// Layers `..len` are frozen.
    pub len: usize,
    model: Graph<B::InnerBackend>,
    needed: Vec<(usize, usize)>,
    pub train_cache: Option<FeatureCache>,
    pub validation_cache: Option<FeatureCache>,
}

type Given<B> = Vec<Vec<Option<Value<B>>>>;

impl<B: AutodiffBackend> FrozenPrefix<B> {
    pub fn new(model: &Graph<B>, len: usize) -> Self {
        FrozenPrefix {
            len,
            model: model.valid(),
            needed: model.needed_from_prefix(len),
            train_cache: None,
            validation_cache: None,
        }
    }

    /// True when every output read past the prefix is a fixed-size vector per example.
    pub fn cacheable(&self, plan: &Plan) -> bool {
        self.needed.iter().all(|&(l, o)| {
            let spec = &plan.layers[l].outputs[o].1;
            spec.kind == ValueKind::Float && spec.rank() == 1 && spec.features().is_some()
        })
    }

    /// Runs the prefix over a whole split once.
    pub fn features(
        &self,
        split: &EncodedSplit,
        batch_size: usize,
        device: &B::Device,
    ) -> FeatureCache {
        let mut columns: Vec<(usize, Vec<f32>)> =
            self.needed.iter().map(|_| (0, Vec::new())).collect();
        let rows: Vec<usize> = (0..split.len()).collect();
        for chunk in rows.chunks(batch_size.max(1)) {
            let (inputs, _) = split.batch::<B::InnerBackend>(chunk, device);
            let outputs = self.model.run_layers(&inputs, 0, self.len, Vec::new());
            for (k, &(l, o)) in self.needed.iter().enumerate() {
                let t = outputs[l][o].clone().expect("prefix output").vector();
                let [_, dim] = t.dims();
                columns[k].0 = dim;
                columns[k]
                    .1
                    .extend(t.into_data().convert::<f32>().to_vec::<f32>().expect("f32"));
            }
        }
        FeatureCache { columns }
    }

    /// Prefix outputs for `rows` on the inner backend: from the cache, or computed now.
    pub fn given_inner(
        &self,
        split: &EncodedSplit,
        cache: Option<&FeatureCache>,
        rows: &[usize],
        device: &B::Device,
    ) -> Given<B::InnerBackend> {
        match cache {
            Some(cache) => {
                let mut given: Given<B::InnerBackend> = (0..self.len).map(|_| Vec::new()).collect();
                for (k, &(l, o)) in self.needed.iter().enumerate() {
                    let (dim, data) = &cache.columns[k];
                    let mut gathered = Vec::with_capacity(rows.len() * dim);
                    for &r in rows {
                        gathered.extend_from_slice(&data[r * dim..(r + 1) * dim]);
                    }
                    let t =
                        Tensor::from_data(TensorData::new(gathered, [rows.len(), *dim]), device);
                    if given[l].len() <= o {
                        given[l].resize_with(o + 1, || None);
                    }
                    given[l][o] = Some(Value::Vector(t));
                }
                given
            }
            None => {
                let (inputs, _) = split.batch::<B::InnerBackend>(rows, device);
                self.model.run_layers(&inputs, 0, self.len, Vec::new())
            }
        }
    }

    /// The same, lifted onto the autodiff backend as constants (no gradient flows back).
    pub fn given(
        &self,
        split: &EncodedSplit,
        cache: Option<&FeatureCache>,
        rows: &[usize],
        device: &B::Device,
    ) -> Given<B> {
        self.given_inner(split, cache, rows, device)
            .into_iter()
            .map(|outs| outs.into_iter().map(|v| v.map(lift::<B>)).collect())
            .collect()
    }
}

fn lift<B: AutodiffBackend>(v: Value<B::InnerBackend>) -> Value<B> {
    match v {
        Value::Ids(t) => Value::Ids(Tensor::from_inner(t)),
        Value::Vector(t) => Value::Vector(Tensor::from_inner(t)),
        Value::Sequence(t) => Value::Sequence(Tensor::from_inner(t)),
    }
}
