//! ModernBERT's layers: pre-LayerNorm (none before the first layer's attention), rotary
//! positions on queries and keys (rotate-half; one base for global layers, another for local
//! ones), global attention or a sliding window of ±`local_attention / 2` keys, and a GeGLU
//! feed-forward `Wo(act(input) · gate)`; a final LayerNorm. The query|key|value and the
//! input|gate projections stay fused as the checkpoint stores them.

use burn::nn::{Dropout, LayerNorm, Linear};
use burn::prelude::*;

use crate::fused::{self, AttentionOptions, PartOptions, Rotary};
use crate::pretrained::encoder_config::ModernBertOptions;

/// One ModernBERT layer, named after its Hugging Face tensors.
#[derive(Module, Debug)]
pub struct PreNormLayer<B: Backend> {
    /// `attn_norm`; absent in the first layer, whose input is already normalised.
    pub attn_norm: Option<LayerNorm<B>>,
    /// `attn.Wqkv`: hidden → query | key | value.
    pub qkv: Linear<B>,
    /// `attn.Wo`.
    pub attention_output: Linear<B>,
    pub mlp_norm: LayerNorm<B>,
    /// `mlp.Wi`: hidden → input | gate, each `intermediate_size` wide.
    pub mlp_input: Linear<B>,
    /// `mlp.Wo`.
    pub mlp_output: Linear<B>,
    pub attention_dropout: Dropout,
    pub mlp_dropout: Dropout,
}

/// The rotary table of one base: cos and sin of the angles position · base^(−2k/d), each half
/// repeated (rotate-half layout), computed as transformers does in f32.
fn rotary_table(len: usize, head_dim: usize, base: f64) -> Rotary {
    let (cos, sin) = rotary_values(len, head_dim, base);
    Rotary {
        cos: cos.into(),
        sin: sin.into(),
        head_dim,
    }
}

/// The values of [`rotary_table`], position by position: cos and sin, each [len · head_dim].
pub fn rotary_values(len: usize, head_dim: usize, base: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|k| 1.0 / (base as f32).powf((2 * k) as f32 / head_dim as f32))
        .collect();
    let (mut cos, mut sin) = (
        Vec::with_capacity(len * head_dim),
        Vec::with_capacity(len * head_dim),
    );
    for p in 0..len {
        for k in 0..head_dim {
            let angle = p as f32 * inv_freq[k % half];
            cos.push((angle as f64).cos() as f32);
            sin.push((angle as f64).sin() as f32);
        }
    }
    (cos, sin)
}

/// What every layer of one forward pass shares.
pub struct Pass<'a, B: Backend> {
    pub options: &'a ModernBertOptions,
    pub num_heads: usize,
    pub eps: f64,
    /// Rotary tables of the global and the local layers.
    pub global: Rotary,
    pub local: Rotary,
    pub mask: Tensor<B, 2>,
    /// The feed-forward's activation is exact GELU: GeGLU runs as one fused operation.
    pub exact_gelu: bool,
}

impl<'a, B: Backend> Pass<'a, B> {
    /// # Shapes
    /// - mask: [batch, length]
    pub fn new(
        options: &'a ModernBertOptions,
        num_heads: usize,
        hidden: usize,
        eps: f64,
        mask: Tensor<B, 2>,
        exact_gelu: bool,
    ) -> Self {
        let len = mask.dims()[1];
        let head_dim = hidden / num_heads;
        Pass {
            global: rotary_table(len, head_dim, options.global_rope_theta),
            local: rotary_table(len, head_dim, options.local_rope_theta),
            options,
            num_heads,
            eps,
            mask,
            exact_gelu,
        }
    }

    /// Queries and keys rotated, values as they are, for layer `index`: the parts of the
    /// packed projection, each [batch, length, hidden].
    ///
    /// # Shapes
    /// - x: [batch, length, hidden] (normalised); output: three [batch, length, hidden]
    fn qkv(
        &self,
        layer: &PreNormLayer<B>,
        index: usize,
        x: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let qkv = fused::linear_seq(&layer.qkv, x);
        let rotary = match self.options.global_layers[index] {
            true => &self.global,
            false => &self.local,
        };
        let part = |part: usize, rotary: Option<&Rotary>| {
            let options = PartOptions {
                part,
                parts: 3,
                rotary: rotary.cloned(),
            };
            fused::packed_part(qkv.clone(), options)
        };
        (part(0, Some(rotary)), part(1, Some(rotary)), part(2, None))
    }

    /// The attention options of layer `index`: local layers mask keys beyond the window too
    /// (once, as transformers' product of the two masks does).
    fn attention_options(&self, index: usize, hidden: usize) -> AttentionOptions {
        let d = hidden / self.num_heads;
        AttentionOptions {
            window: (!self.options.global_layers[index]).then_some(self.options.half_window),
            ..AttentionOptions::new(self.num_heads, 1.0 / (d as f32).sqrt(), f32::MIN)
        }
    }

    /// Attention weights of layer `index`.
    ///
    /// # Shapes
    /// - x: [batch, length, hidden] (the layer's input); output: [batch, heads, length, length]
    pub fn attention_weights(
        &self,
        layer: &PreNormLayer<B>,
        index: usize,
        x: Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        let x = self.attn_input(layer, x);
        let options = self.attention_options(index, x.dims()[2]);
        let (q, k, _) = self.qkv(layer, index, x);
        fused::reference::attention_probs(q, k, Some(self.mask.clone()), None, options)
    }

    fn attn_input(&self, layer: &PreNormLayer<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &layer.attn_norm {
            Some(norm) => fused::layer_norm_module(norm, x, self.eps),
            None => x,
        }
    }

    /// One layer: x + attention(attn_norm(x)), then + GeGLU(mlp_norm(x)).
    ///
    /// # Shapes
    /// - x: [batch, length, hidden]; output: [batch, length, hidden]
    pub fn layer(
        &self,
        layer: &PreNormLayer<B>,
        index: usize,
        x: Tensor<B, 3>,
        act: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let options = self.attention_options(index, x.dims()[2]);
        let (q, k, v) = self.qkv(layer, index, self.attn_input(layer, x.clone()));
        let dropout = layer.attention_dropout.prob;
        let context = fused::attention(q, k, v, Some(self.mask.clone()), dropout, options);
        let attended = fused::dropout(fused::linear_seq(&layer.attention_output, context), dropout);
        let x = x + attended;
        let normed = fused::layer_norm_module(&layer.mlp_norm, x.clone(), self.eps);
        let both = fused::linear_seq(&layer.mlp_input, normed);
        let gated = if self.exact_gelu {
            fused::geglu(both)
        } else {
            let [b, l, two_i] = both.dims();
            let i = two_i / 2;
            let input = both.clone().slice([0..b, 0..l, 0..i]);
            act(input) * both.slice([0..b, 0..l, i..two_i])
        };
        let inner = fused::dropout(gated, layer.mlp_dropout.prob);
        x + fused::linear_seq(&layer.mlp_output, inner)
    }
}

/// Random layers as transformers initialises them (normal 0.02, LayerNorms 1/0), biases only
/// where the config has them.
pub fn init<B: Backend>(
    c: &crate::pretrained::EncoderConfig,
    m: &ModernBertOptions,
    dropout: Option<f64>,
    device: &B::Device,
) -> Vec<PreNormLayer<B>> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let linear = |d_in: usize, d_out: usize, bias: bool| {
        let mut l = super::linear(d_in, d_out, device);
        if !bias {
            l.bias = None;
        }
        l
    };
    let norm = || super::norm_with_bias(h, c.layer_norm_eps, m.norm_bias, device);
    let drop = |p: f64| burn::nn::DropoutConfig::new(dropout.unwrap_or(p)).init();
    (0..c.num_hidden_layers)
        .map(|n| PreNormLayer {
            attn_norm: (n > 0).then(norm),
            qkv: linear(h, 3 * h, m.attention_bias),
            attention_output: linear(h, h, m.attention_bias),
            mlp_norm: norm(),
            mlp_input: linear(h, 2 * i, m.mlp_bias),
            mlp_output: linear(i, h, m.mlp_bias),
            attention_dropout: drop(c.attention_probs_dropout_prob),
            mlp_dropout: drop(c.hidden_dropout_prob),
        })
        .collect()
}
