//! Writing a model as an ONNX graph: the node builder each layer's
//! [`LayerForward::to_onnx`](crate::layers::LayerForward::to_onnx) writes its forward pass with,
//! and the protobuf messages (generated from the official onnx.proto3). Graphs use opset
//! [`OPSET`] of the default domain only, so any ONNX runtime of the last years runs them.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;

use std::collections::HashMap;

use burn::prelude::*;

use proto::attribute_proto::AttributeType;
use proto::tensor_proto::DataType;
use proto::{AttributeProto, NodeProto, TensorProto};

/// The default domain's opset the graphs are written for: 17 brings `LayerNormalization`.
pub const OPSET: i64 = 17;
/// The IR version that opset 17 needs (onnx's `IR_VERSION` 8).
pub const IR_VERSION: i64 = 8;

/// A value in the graph being written: its name and its rank, batch included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxValue {
    pub name: String,
    pub rank: usize,
}

impl OnnxValue {
    pub fn new(name: String, rank: usize) -> Self {
        OnnxValue { name, rank }
    }
}

/// The graph inputs a model reads (Hugging Face's names): created on first use, so that the
/// exported model asks only for what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GraphInput {
    /// `input_ids` [batch, sequence] int64.
    InputIds,
    /// `attention_mask` [batch, sequence] int64, 1 on real tokens.
    AttentionMask,
    /// `token_type_ids` [batch, sequence] int64.
    TokenTypeIds,
}

impl GraphInput {
    pub fn name(self) -> &'static str {
        match self {
            GraphInput::InputIds => "input_ids",
            GraphInput::AttentionMask => "attention_mask",
            GraphInput::TokenTypeIds => "token_type_ids",
        }
    }
}

/// An attribute of a node, by ONNX's attribute kinds.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// A graph under construction: nodes in execution order and the weights they read.
#[derive(Default)]
pub struct OnnxGraph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// The graph inputs read so far.
    pub inputs: Vec<GraphInput>,
    /// The longest sequence the model is given (the vectorizer truncates to it): the rows of
    /// position-indexed tables written as constants (rotary angles, relative distances).
    pub max_length: usize,
    /// The name prefix of what is written now (the layer's name), for readable graphs.
    scope: String,
    taken: HashMap<String, usize>,
    /// Shared constants (`[-1]`, `0.5`, ...) by their bytes: written once per graph.
    constants: HashMap<(i32, Vec<i64>, Vec<u8>), String>,
    /// The float mask [batch, sequence] (1.0 on real tokens), once cast.
    float_mask: Option<String>,
}

impl OnnxGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names written from now on start with `scope` (a layer's name).
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// Names written from now on start with the scope, then `/part` (a sublayer).
    pub fn push_scope(&mut self, part: &str) {
        if !self.scope.is_empty() {
            self.scope.push('/');
        }
        self.scope.push_str(part);
    }

    /// Back to the scope before the last [`push_scope`](Self::push_scope).
    pub fn pop_scope(&mut self) {
        let cut = self.scope.rfind('/').unwrap_or(0);
        self.scope.truncate(cut);
    }

    /// A name not used before, under the current scope.
    pub fn fresh(&mut self, what: &str) -> String {
        let base = if self.scope.is_empty() {
            what.to_string()
        } else {
            format!("{}/{what}", self.scope)
        };
        let n = self.taken.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 { base } else { format!("{base}_{n}") }
    }

    /// A graph input, declared on first use.
    pub fn input(&mut self, input: GraphInput) -> String {
        if !self.inputs.contains(&input) {
            self.inputs.push(input);
        }
        input.name().to_string()
    }

    /// The attention mask as floats [batch, sequence]: 1.0 on real tokens, 0.0 on padding (what
    /// pipe's layers read as `ForwardCtx::mask`).
    pub fn mask(&mut self) -> String {
        if let Some(m) = &self.float_mask {
            return m.clone();
        }
        let scope = std::mem::take(&mut self.scope);
        let mask = self.input(GraphInput::AttentionMask);
        let m = self.op(
            "Cast",
            &[&mask],
            vec![("to", Attr::Int(DataType::Float as i64))],
        );
        self.scope = scope;
        self.float_mask = Some(m.clone());
        m
    }

    /// One node with one output; returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.op_n(op_type, inputs, 1, attrs).remove(0)
    }

    /// One node with `outputs` outputs; returns their names.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        let name = self.fresh(op_type);
        let outs: Vec<String> = (0..outputs)
            .map(|i| match i {
                0 => format!("{name}:0"),
                _ => format!("{name}:{i}"),
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name,
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        outs
    }

    /// A float weight from a burn tensor, stored in the graph under the scope.
    pub fn weight<B: Backend, const D: usize>(&mut self, what: &str, t: &Tensor<B, D>) -> String {
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let values: Vec<f32> = t
            .to_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("a float tensor converts to f32");
        self.floats(what, &dims, &values)
    }

    /// A float initializer of shape `dims`.
    pub fn floats(&mut self, what: &str, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// An int64 initializer (a lookup table), under the scope.
    pub fn int_table(&mut self, what: &str, values: &[i64]) -> String {
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// A constant: an int64 vector (shapes, axes, indices).
    pub fn ints(&mut self, values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(DataType::Int64, vec![values.len() as i64], bytes)
    }

    /// A constant: an int64 scalar.
    pub fn int_scalar(&mut self, value: i64) -> String {
        self.constant(DataType::Int64, vec![], value.to_le_bytes().to_vec())
    }

    /// A constant: a float scalar.
    pub fn scalar(&mut self, value: f32) -> String {
        self.constant(DataType::Float, vec![], value.to_le_bytes().to_vec())
    }

    fn constant(&mut self, kind: DataType, dims: Vec<i64>, bytes: Vec<u8>) -> String {
        let key = (kind as i32, dims.clone(), bytes.clone());
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = format!("const_{}", self.constants.len());
        self.initializers.push(TensorProto {
            dims,
            data_type: kind as i32,
            raw_data: bytes,
            name: name.clone(),
            ..Default::default()
        });
        self.constants.insert(key, name.clone());
        name
    }

    /// `x · weight (+ bias)` for a burn `Linear` (weight [d_in, d_out]) on the last dimension
    /// of `x`, whatever its rank.
    pub fn linear<B: Backend>(&mut self, x: &str, linear: &burn::nn::Linear<B>) -> String {
        let w = self.weight("weight", &linear.weight.val());
        let y = self.op("MatMul", &[x, &w], vec![]);
        match &linear.bias {
            Some(b) => {
                let b = self.weight("bias", &b.val());
                self.op("Add", &[&y, &b], vec![])
            }
            None => y,
        }
    }

    /// A burn `LayerNorm` (gamma, optional beta) over the last dimension.
    pub fn layer_norm<B: Backend>(
        &mut self,
        x: &str,
        norm: &burn::nn::LayerNorm<B>,
        epsilon: f64,
    ) -> String {
        let gamma = self.weight("gamma", &norm.gamma.val());
        let mut inputs = vec![x.to_string(), gamma];
        if let Some(beta) = &norm.beta {
            inputs.push(self.weight("beta", &beta.val()));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.op(
            "LayerNormalization",
            &refs,
            vec![
                ("axis", Attr::Int(-1)),
                ("epsilon", Attr::Float(epsilon as f32)),
            ],
        )
    }

    /// Elementwise binary op with a float scalar on the right (`Mul`, `Add`, `Sub`, `Div`).
    pub fn with_scalar(&mut self, op_type: &str, x: &str, value: f32) -> String {
        let c = self.scalar(value);
        self.op(op_type, &[x, &c], vec![])
    }

    /// `Reshape` to `shape` (0 keeps that dimension, -1 is inferred).
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    /// `Transpose` by `perm`.
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// `Unsqueeze` at `axes`.
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.op("Unsqueeze", &[x, &a], vec![])
    }

    /// Exact (erf) GELU from primitives (the `Gelu` op arrives only with opset 20):
    /// x · (1 + erf(x / √2)) / 2.
    pub fn gelu(&mut self, x: &str) -> String {
        let scaled = self.with_scalar("Mul", x, std::f32::consts::FRAC_1_SQRT_2);
        let erf = self.op("Erf", &[&scaled], vec![]);
        let one_plus = self.with_scalar("Add", &erf, 1.0);
        let y = self.op("Mul", &[x, &one_plus], vec![]);
        self.with_scalar("Mul", &y, 0.5)
    }

    /// The length (axis 1) of `x` [batch, length, ...] as a 1-element int64 vector.
    pub fn length_of(&mut self, x: &str) -> String {
        self.op(
            "Shape",
            &[x],
            vec![("start", Attr::Int(1)), ("end", Attr::Int(2))],
        )
    }

    /// The first `length` (a 1-element int64 vector) rows of `table` (on axis `axis`).
    pub fn first_rows(&mut self, table: &str, length: &str, axis: i64) -> String {
        let zero = self.ints(&[0]);
        let axes = self.ints(&[axis]);
        self.op("Slice", &[table, &zero, length, &axes], vec![])
    }

    /// Positions `0..length` (int64 [length]) of a [batch, length] input.
    pub fn positions(&mut self, x: &str) -> String {
        let length = self.length_of(x);
        let zero = self.ints(&[0]);
        let length = self.op("Squeeze", &[&length, &zero], vec![]);
        let (start, step) = (self.int_scalar(0), self.int_scalar(1));
        self.op("Range", &[&start, &length, &step], vec![])
    }

    /// Query position − key position for every pair of positions of `x` [batch, length, ...]:
    /// int64 [length, length] (relative-position tables and windows read it).
    pub fn distances(&mut self, x: &str) -> String {
        let positions = self.positions(x);
        let queries = self.unsqueeze(&positions, &[1]);
        let keys = self.unsqueeze(&positions, &[0]);
        self.op("Sub", &[&queries, &keys], vec![])
    }

    /// Gathers position `index` of axis 1: [batch, length, d] → [batch, d].
    pub fn take_position(&mut self, x: &str, index: i64) -> String {
        let i = self.int_scalar(index);
        self.op("Gather", &[x, &i], vec![("axis", Attr::Int(1))])
    }

    /// The additive attention bias for keys from a float mask [batch, keys]: 0 on real keys,
    /// `masked` (a large negative number) on padding, shaped [batch, 1, 1, keys].
    pub fn key_bias(&mut self, mask: &str, masked: f32) -> String {
        let one_minus = {
            let one = self.scalar(1.0);
            self.op("Sub", &[&one, mask], vec![])
        };
        let bias = self.with_scalar("Mul", &one_minus, masked);
        self.unsqueeze(&bias, &[1, 2])
    }

    /// Makes `value` available under `name` too (a graph output's fixed name).
    pub fn name_output(&mut self, value: &str, name: &str) {
        self.nodes.push(NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: format!("output/{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
    }

    /// Splits [batch, length, heads·d] into [batch, heads, length, d].
    pub fn split_heads(&mut self, x: &str, heads: usize) -> String {
        let x = self.reshape(x, &[0, 0, heads as i64, -1]);
        self.transpose(&x, &[0, 2, 1, 3])
    }

    /// Joins [batch, heads, length, d] back into [batch, length, heads·d].
    pub fn merge_heads(&mut self, x: &str) -> String {
        let x = self.transpose(x, &[0, 2, 1, 3]);
        self.reshape(&x, &[0, 0, -1])
    }

    /// Attention scores q·kᵀ·`scale` per head from [batch, l, heads·d] projections:
    /// [batch, heads, lq, lk].
    pub fn attention_scores(&mut self, q: &str, k: &str, heads: usize, scale: f32) -> String {
        let q = self.split_heads(q, heads);
        let k = self.reshape(k, &[0, 0, heads as i64, -1]);
        let k_t = self.transpose(&k, &[0, 2, 3, 1]);
        let scores = self.op("MatMul", &[&q, &k_t], vec![]);
        self.with_scalar("Mul", &scores, scale)
    }

    /// softmax(scores (+ bias)) · v, heads merged: scores [batch, heads, lq, lk], v
    /// [batch, lk, heads·dv], bias broadcasting to the scores; output [batch, lq, heads·dv].
    pub fn attend(&mut self, scores: &str, v: &str, heads: usize, bias: Option<&str>) -> String {
        let scores = match bias {
            Some(b) => self.op("Add", &[scores, b], vec![]),
            None => scores.to_string(),
        };
        let weights = self.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
        let v = self.split_heads(v, heads);
        let context = self.op("MatMul", &[&weights, &v], vec![]);
        self.merge_heads(&context)
    }

    /// The mean over positions [batch, length, d] → [batch, d]: over every position, or over
    /// those where `mask` [batch, length] is 1 (divided by at least 1, so an empty row gives 0).
    pub fn mean_over_positions(&mut self, x: &str, mask: Option<&str>) -> String {
        match mask {
            // Opset 17's ReduceMean takes its axes as an attribute (an input from 18 on).
            None => self.op(
                "ReduceMean",
                &[x],
                vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
            ),
            Some(mask) => {
                let axis = self.ints(&[1]);
                let m = self.unsqueeze(mask, &[2]);
                let masked = self.op("Mul", &[x, &m], vec![]);
                let sum = self.op(
                    "ReduceSum",
                    &[&masked, &axis],
                    vec![("keepdims", Attr::Int(0))],
                );
                let count = self.op(
                    "ReduceSum",
                    &[mask, &axis],
                    vec![("keepdims", Attr::Int(1))],
                );
                let one = self.scalar(1.0);
                let count = self.op("Max", &[&count, &one], vec![]);
                self.op("Div", &[&sum, &count], vec![])
            }
        }
    }

    /// Serialises the graph with `output` (probabilities [batch, classes]) as its one output.
    pub fn into_model(self, outputs: &[(String, usize)], producer_version: &str) -> Vec<u8> {
        use prost::Message;
        use proto::type_proto::{Tensor as TensorType, Value as TypeValue};
        use proto::{
            GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
            ValueInfoProto, tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value,
        };
        let info = |name: &str, kind: DataType, dims: Vec<Value>| ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                value: Some(TypeValue::TensorType(TensorType {
                    elem_type: kind as i32,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .into_iter()
                            .map(|v| Dimension {
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let batch = || Value::DimParam("batch".into());
        let mut inputs = self.inputs.clone();
        inputs.sort();
        let graph = GraphProto {
            name: "pipe".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: inputs
                .iter()
                .map(|i| {
                    let seq = Value::DimParam("sequence".into());
                    info(i.name(), DataType::Int64, vec![batch(), seq])
                })
                .collect(),
            output: outputs
                .iter()
                .map(|(name, classes)| {
                    let dims = vec![batch(), Value::DimValue(*classes as i64)];
                    info(name, DataType::Float, dims)
                })
                .collect(),
            ..Default::default()
        };
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "pipe".into(),
            producer_version: producer_version.into(),
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
    }
    a
}
