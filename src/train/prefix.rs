//! A frozen prefix of the graph (the leading layers a stage freezes) runs without autodiff and
//! with dropout off, as a frozen feature extractor should. When everything the trainable
//! layers read from it is a per-example vector (e.g. BERT's pooled output), those vectors are
//! computed once per split and reused every epoch: training the head then costs only the head.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;

use std::path::Path;

use crate::data::EncodedSplit;
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

    /// Runs the prefix over a whole split once. With `store`, the vectors are also kept on disk
    /// under a key that hashes the prefix's weights and configuration and the encoded rows, so
    /// another run over the same frozen encoder and data (another seed, another head) skips it.
    pub fn features(
        &self,
        plan: &Plan,
        split: &EncodedSplit,
        batch_size: usize,
        device: &B::Device,
        store: Option<&Path>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> FeatureCache {
        // Only the outputs read past the prefix: an encoder whose pooler alone is read runs its
        // last layer for the first position only (`LayerForward::forward_read`).
        let outputs = &self.needed;
        let file = store.map(|dir| dir.join(format!("{}.f32", self.key(plan, split, outputs))));
        let columns = file
            .as_ref()
            .and_then(|f| read_columns(f, outputs, split.len()))
            .unwrap_or_else(|| {
                let computed = self.compute(split, batch_size, device, outputs, progress);
                if let Some(f) = &file
                    && let Err(e) = write_columns(f, &computed)
                {
                    tracing::warn!(error = %e, "feature cache not written");
                }
                computed
            });
        FeatureCache { columns }
    }

    fn compute(
        &self,
        split: &EncodedSplit,
        batch_size: usize,
        device: &B::Device,
        outputs: &[(usize, usize)],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Vec<(usize, Vec<f32>)> {
        let mut columns: Vec<(usize, Vec<f32>)> = outputs.iter().map(|_| (0, Vec::new())).collect();
        // Rows sorted by length, so dynamically padded batches carry little padding.
        let mut order: Vec<usize> = (0..split.len()).collect();
        order.sort_by_key(|&r| split.length(r));
        let mut by_row: Vec<Vec<Vec<f32>>> = vec![Vec::new(); outputs.len()];
        for v in by_row.iter_mut() {
            v.resize(split.len(), Vec::new());
        }
        let mut done = 0;
        for chunk in order.chunks(batch_size.max(1)) {
            let (inputs, _) = split.batch::<B::InnerBackend>(chunk, device);
            let values = self.model.run_layers(&inputs, 0, self.len, Vec::new());
            for (k, &(l, o)) in outputs.iter().enumerate() {
                let t = values[l][o].clone().expect("prefix output").vector();
                let [_, dim] = t.dims();
                columns[k].0 = dim;
                let data: Vec<f32> = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
                for (i, &r) in chunk.iter().enumerate() {
                    by_row[k][r] = data[i * dim..(i + 1) * dim].to_vec();
                }
            }
            done += chunk.len();
            progress(done, split.len());
        }
        for (k, rows) in by_row.into_iter().enumerate() {
            columns[k].1 = rows.concat();
        }
        columns
    }

    /// Identity of (prefix weights, prefix configuration, encoded rows): BLAKE3 of canonical
    /// little-endian bytes, so a cache written by one build of pipe is found by the next (a
    /// `DefaultHasher` over `Debug` text may change with any Rust release or field rename).
    fn key(&self, plan: &Plan, split: &EncodedSplit, outputs: &[(usize, usize)]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"pipe feature cache v2\0");
        for l in &plan.layers[..self.len] {
            let config = serde_json::to_vec(&l.config.to_json()).expect("layer config as JSON");
            h.update(&(config.len() as u64).to_le_bytes())
                .update(&config);
        }
        let words = |h: &mut blake3::Hasher, values: &mut dyn Iterator<Item = u64>| {
            for v in values {
                h.update(&v.to_le_bytes());
            }
        };
        words(
            &mut h,
            &mut outputs.iter().flat_map(|&(l, o)| [l as u64, o as u64]),
        );
        split.hash_into(&mut h);
        struct Weights<'a>(&'a mut blake3::Hasher);
        impl<IB: Backend> burn::module::ModuleVisitor<IB> for Weights<'_> {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<IB, D>>) {
                let value = param.val();
                // Features computed in a half precision are not f32's, even from weights that
                // both dtypes hold exactly; f32 keys stay as they were.
                if value.dtype() != burn::tensor::DType::F32 {
                    self.0.update(format!("{:?}", value.dtype()).as_bytes());
                }
                let data = value.into_data().convert::<f32>();
                self.0.update(&(data.shape.len() as u64).to_le_bytes());
                for &d in data.shape.iter() {
                    self.0.update(&(d as u64).to_le_bytes());
                }
                for v in data.to_vec::<f32>().unwrap_or_default() {
                    self.0.update(&v.to_le_bytes());
                }
            }
        }
        for layer in &self.model.layers[..self.len] {
            burn::module::Module::visit(layer, &mut Weights(&mut h));
        }
        // 128 bits name the file: collisions are out of reach, and the name stays short.
        h.finalize().to_hex()[..32].to_string()
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

/// `[rows, dim]` f32 columns: a little-endian header (count, then rows and dim per column) and the data.
fn write_columns(path: &Path, columns: &[(usize, Vec<f32>)]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = Vec::new();
    bytes.extend((columns.len() as u64).to_le_bytes());
    for (dim, data) in columns {
        bytes.extend((*dim as u64).to_le_bytes());
        bytes.extend((data.len() as u64).to_le_bytes());
    }
    for (_, data) in columns {
        for v in data {
            bytes.extend(v.to_le_bytes());
        }
    }
    crate::run::atomic_write(path, &bytes)
}

fn read_columns(
    path: &Path,
    outputs: &[(usize, usize)],
    rows: usize,
) -> Option<Vec<(usize, Vec<f32>)>> {
    let bytes = std::fs::read(path).ok()?;
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    let n = word(0)? as usize;
    if n != outputs.len() {
        return None;
    }
    let mut offset = (1 + 2 * n) * 8;
    let mut columns = Vec::with_capacity(n);
    for k in 0..n {
        let (dim, len) = (word(1 + 2 * k)? as usize, word(2 + 2 * k)? as usize);
        if len != rows * dim {
            return None;
        }
        let raw = bytes.get(offset..offset + len * 4)?;
        columns.push((
            dim,
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ));
        offset += len * 4;
    }
    tracing::info!(file = %path.display(), "frozen prefix features read from cache");
    Some(columns)
}
