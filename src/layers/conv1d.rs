//! `conv1d`: Keras' `Conv1D` on a sequence, channels last — `filters` windows of `kernel_size`
//! tokens slid along the sequence, then an activation. burn-nn's `Conv1d` does the work on the
//! channels-first layout; the kernel starts Glorot-uniform and the bias at zero, as in Keras.

use burn::nn::PaddingConfig1d;
use burn::nn::conv::{Conv1d as BurnConv1d, Conv1dConfig as BurnConv1dConfig};
use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, OnnxGraph, OnnxValue};

use super::dense::{Activation, activate, activate_onnx};
use super::{
    ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, init, positive, require_rank,
};

fn one() -> usize {
    1
}

/// How the windows meet the sequence's ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConvPadding {
    /// Only whole windows: `(length − kernel_size) / strides + 1` outputs.
    #[default]
    Valid,
    /// Zero-padded at both ends so that the output keeps the input's length (strides 1 only).
    Same,
}

/// A 1-d convolution along the sequence (Keras' `Conv1D`, channels last): each output
/// position is a learned weighted sum of a window of positions, per filter, then the
/// activation.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv1dConfig {
    /// Output channels (features): how many windows are learned.
    pub filters: usize,
    /// Window length, in tokens.
    pub kernel_size: usize,
    /// Step between windows, in tokens (default 1).
    #[serde(default = "one")]
    pub strides: usize,
    /// How the windows meet the sequence's ends: `valid` (default; whole windows only, so the
    /// output is shorter) or `same` (zero-padded, so the output keeps the length; strides 1).
    #[serde(default)]
    pub padding: ConvPadding,
    /// Applied to each output (default `linear`: none).
    #[serde(default)]
    pub activation: Activation,
}

#[derive(Module, Debug)]
pub struct Conv1d<B: Backend> {
    conv: BurnConv1d<B>,
    #[module(skip)]
    activation: Activation,
}

impl Conv1dConfig {
    /// The output length for an input of `length` tokens.
    fn output_length(&self, length: usize) -> Result<usize, String> {
        match self.padding {
            ConvPadding::Same => Ok(length),
            ConvPadding::Valid if length < self.kernel_size => Err(format!(
                "kernel_size {} is longer than the sequence ({length} tokens)",
                self.kernel_size
            )),
            ConvPadding::Valid => Ok((length - self.kernel_size) / self.strides + 1),
        }
    }
}

impl LayerDef for Conv1dConfig {
    type Module<B: Backend> = Conv1d<B>;

    fn validate(&self) -> Result<(), String> {
        positive(self.filters, "filters")?;
        positive(self.kernel_size, "kernel_size")?;
        positive(self.strides, "strides")?;
        if self.padding == ConvPadding::Same && self.strides != 1 {
            return Err("`padding = \"same\"` needs `strides = 1`".into());
        }
        Ok(())
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        ctx: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        require_rank(inputs, &[2], "conv1d")?;
        if ctx.dynamic_padding {
            return Err(
                "a convolution reads the padding at a sequence's end, and `padding = \"longest\"` \
                 changes how much there is with the batch: use `padding = \"max_length\"`"
                    .into(),
            );
        }
        let length = inputs[0].dims[0]
            .map(|l| self.output_length(l))
            .transpose()?;
        Ok(vec![(
            "output".into(),
            TensorSpec::float(vec![length, Some(self.filters)]),
        )])
    }
    fn param_count(&self, inputs: &[TensorSpec], _: &InferCtx) -> usize {
        let d_in = inputs[0].features().unwrap_or(0);
        self.kernel_size * d_in * self.filters + self.filters
    }
    fn init<B: Backend>(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
        device: &B::Device,
    ) -> Result<Conv1d<B>, String> {
        let (d_in, k, f) = (
            inputs[0].features().unwrap_or(0),
            self.kernel_size,
            self.filters,
        );
        let padding = match self.padding {
            ConvPadding::Valid => PaddingConfig1d::Valid,
            ConvPadding::Same => PaddingConfig1d::Same,
        };
        let mut conv = BurnConv1dConfig::new(d_in, f, k)
            .with_stride(self.strides)
            .with_padding(padding)
            .init(device);
        // Keras' fans for a [kernel, in, out] kernel: kernel·in and kernel·out.
        conv.weight = init::uniform([f, d_in, k], init::glorot_limit(k * d_in, k * f), device);
        conv.bias = Some(burn::module::Param::from_tensor(Tensor::zeros([f], device)));
        Ok(Conv1d {
            conv,
            activation: self.activation,
        })
    }
}

impl<B: Backend> Conv1d<B> {
    /// # Shapes
    /// - x: [batch, length, channels in]; output: [batch, output length, filters]
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = self.conv.forward(x.swap_dims(1, 2)).swap_dims(1, 2);
        activate(y, self.activation)
    }
}

impl<B: Backend> LayerForward<B> for Conv1d<B> {
    /// # Shapes
    /// - input: [batch, length, channels in]; output: [batch, output length, filters]
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input").sequence();
        vec![Value::Sequence(self.apply(x))]
    }
    /// As [`Conv1d::apply`]: an ONNX `Conv` on the channels-first layout, padded as burn's
    /// `Same` pads (the odd one of an even window's padding at the end). The activation stays
    /// as the layer's head too (it has no `forward_logits` of its own).
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: Vec<OnnxValue>,
        _: bool,
    ) -> Result<Vec<OnnxValue>, String> {
        let x = inputs.into_iter().next().expect("one input");
        let [_, _, k] = self.conv.weight.dims();
        let (stride, dilation) = (self.conv.stride as i64, self.conv.dilation as i64);
        if self.conv.groups != 1 || dilation != 1 {
            return Err("conv1d with groups or dilation has no ONNX form in pipe".into());
        }
        let (left, right) = match self.conv.padding {
            PaddingConfig1d::Valid => (0, 0),
            PaddingConfig1d::Explicit(left, right) => (left as i64, right as i64),
            // Only with strides 1 (validated): k − 1 in all, the larger half at the end.
            PaddingConfig1d::Same if stride == 1 => {
                let total = k as i64 - 1;
                (total / 2, total - total / 2)
            }
            PaddingConfig1d::Same => {
                return Err(
                    "conv1d `padding = \"same\"` with `strides` above 1 has no ONNX \
                     form in pipe"
                        .into(),
                );
            }
        };
        let channels_first = g.transpose(&x.name, &[0, 2, 1]);
        let weight = g.weight("kernel", &self.conv.weight.val());
        let mut conv_inputs = vec![channels_first, weight];
        if let Some(bias) = &self.conv.bias {
            conv_inputs.push(g.weight("bias", &bias.val()));
        }
        let refs: Vec<&str> = conv_inputs.iter().map(String::as_str).collect();
        let y = g.op(
            "Conv",
            &refs,
            vec![
                ("kernel_shape", Attr::Ints(vec![k as i64])),
                ("strides", Attr::Ints(vec![stride])),
                ("pads", Attr::Ints(vec![left, right])),
                ("dilations", Attr::Ints(vec![1])),
            ],
        );
        let y = g.transpose(&y, &[0, 2, 1]);
        Ok(vec![OnnxValue::new(
            activate_onnx(g, &y, self.activation),
            3,
        )])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::layers::testing::{assert_close, pattern, tensor, values};

    type B = Flex;

    fn config(padding: ConvPadding, strides: usize) -> Conv1dConfig {
        Conv1dConfig {
            filters: 2,
            kernel_size: 3,
            strides,
            padding,
            activation: Activation::Linear,
        }
    }

    fn built(c: &Conv1dConfig, d_in: usize) -> Conv1d<B> {
        let spec = [TensorSpec::float(vec![Some(6), Some(d_in)])];
        c.init::<B>(&spec, &InferCtx::default(), &Default::default())
            .unwrap()
    }

    #[test]
    fn output_lengths_and_parameter_count_match_the_built_layer() {
        let spec = [TensorSpec::float(vec![Some(10), Some(4)])];
        let ctx = InferCtx::default();
        let shape = |c: &Conv1dConfig| c.infer(&spec, &ctx).unwrap()[0].1.dims.clone();
        assert_eq!(
            shape(&config(ConvPadding::Valid, 1)),
            vec![Some(8), Some(2)]
        );
        assert_eq!(
            shape(&config(ConvPadding::Valid, 2)),
            vec![Some(4), Some(2)]
        );
        assert_eq!(
            shape(&config(ConvPadding::Same, 1)),
            vec![Some(10), Some(2)]
        );
        assert!(config(ConvPadding::Same, 2).validate().is_err());
        let c = config(ConvPadding::Valid, 1);
        assert_eq!(c.param_count(&spec, &ctx), 3 * 4 * 2 + 2);
        assert_eq!(built(&c, 4).num_params(), c.param_count(&spec, &ctx));
        let dynamic = InferCtx {
            dynamic_padding: true,
            ..Default::default()
        };
        assert!(c.infer(&spec, &dynamic).unwrap_err().contains("max_length"));
    }

    #[test]
    fn constant_weights_sum_each_window() {
        let device = Default::default();
        for (padding, expected) in [
            // Windows of 3 over 1..=6 with every weight 1 and 2 input channels: 2·(sum).
            (ConvPadding::Valid, vec![12.0, 18.0, 24.0, 30.0]),
            // Zero-padded by one at each end.
            (ConvPadding::Same, vec![6.0, 12.0, 18.0, 24.0, 30.0, 22.0]),
        ] {
            let c = config(padding, 1);
            let mut layer = built(&c, 2);
            layer.conv.weight = burn::module::Param::from_tensor(Tensor::ones([2, 2, 3], &device));
            let x: Vec<f32> = (1..=6).flat_map(|v| [v as f32, v as f32]).collect();
            let x = Tensor::<B, 1>::from_floats(x.as_slice(), &device).reshape([1, 6, 2]);
            let y: Vec<f32> = layer.apply(x).into_data().to_vec().unwrap();
            let first: Vec<f32> = y.chunks(2).map(|c| c[0]).collect();
            assert_eq!(first, expected, "{padding:?}");
            assert!(
                y.chunks(2).all(|c| c[0] == c[1]),
                "both filters see the same"
            );
        }
    }

    /// Keras' definition, in plain Rust: output[t][o] = Σ_j Σ_c kernel[o][c][j] · x[t·s + j][c]
    /// + bias[o], windows starting at each multiple of the stride that fits.
    fn plain_conv(
        x: &[Vec<f32>],
        kernel: &[f32],
        bias: &[f32],
        k: usize,
        stride: usize,
    ) -> Vec<f32> {
        let (d_in, filters) = (x[0].len(), bias.len());
        let mut out = Vec::new();
        for start in (0..=x.len() - k).step_by(stride) {
            for (o, b) in bias.iter().enumerate() {
                let mut sum = *b;
                for j in 0..k {
                    for c in 0..d_in {
                        sum += kernel[(o * d_in + c) * k + j] * x[start + j][c];
                    }
                }
                out.push(sum);
            }
        }
        assert_eq!(out.len() % filters, 0);
        out
    }

    #[test]
    fn hand_set_weights_match_a_plain_convolution() {
        let x: Vec<Vec<f32>> = (0..7)
            .map(|t| vec![t as f32 - 3.0, ((t * 5) % 7) as f32 - 3.0])
            .collect();
        for strides in [1, 2] {
            let c = Conv1dConfig {
                activation: Activation::Relu,
                ..config(ConvPadding::Valid, strides)
            };
            let spec = [TensorSpec::float(vec![Some(7), Some(2)])];
            let mut layer = c
                .init::<B>(&spec, &InferCtx::default(), &Default::default())
                .unwrap();
            let (kernel, bias) = (pattern(2 * 2 * 3, 1), [0.25, -0.5]);
            layer.conv.weight = burn::module::Param::from_tensor(tensor(&kernel, [2, 2, 3]));
            layer.conv.bias = Some(burn::module::Param::from_tensor(tensor(&bias, [2])));
            let got = values(layer.apply(tensor(&x.concat(), [1, 7, 2])));
            let expected: Vec<f32> = plain_conv(&x, &kernel, &bias, 3, strides)
                .into_iter()
                .map(|v| v.max(0.0))
                .collect();
            assert_eq!(got.len(), expected.len());
            // Some outputs are clipped by the ReLU, some pass.
            assert!(expected.contains(&0.0) && expected.iter().any(|&v| v > 0.0));
            assert_close(&got, &expected, 1e-5);
        }
    }

    #[test]
    fn too_short_sequences_and_token_ids_are_refused() {
        let c = config(ConvPadding::Valid, 1);
        let ctx = InferCtx::default();
        let short = [TensorSpec::float(vec![Some(2), Some(4)])];
        let err = c.infer(&short, &ctx).unwrap_err();
        assert!(
            err.contains("kernel_size 3 is longer than the sequence (2 tokens)"),
            "{err}"
        );
        assert!(config(ConvPadding::Same, 1).infer(&short, &ctx).is_ok());
        let ids = c.infer(&[TensorSpec::ids(Some(6))], &ctx).unwrap_err();
        assert!(ids.contains("float features"), "{ids}");
        let zero = Conv1dConfig {
            kernel_size: 0,
            ..c
        };
        assert!(zero.validate().unwrap_err().contains("`kernel_size`"));
    }
}
