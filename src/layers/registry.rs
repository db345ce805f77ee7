//! The one place that maps a layer `type` name to its config and module. Adding a layer type
//! is one new file in `layers/` plus one line in the `registry!` call below.

// Layers (and the records burn derives for them) are built once and moved rarely, so the size
// difference between a BERT and a dropout variant does not matter.
#![allow(clippy::large_enum_variant)]

use burn::prelude::*;

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value};

macro_rules! registry {
    ($($name:literal => $variant:ident($config:ty, $module:ident)),* $(,)?) => {
        /// Every layer type name, in registry order.
        pub const LAYER_TYPES: &[&str] = &[$($name),*];

        /// A parsed layer configuration of any registered type.
        #[derive(Clone, Debug)]
        pub enum LayerConfig {
            $($variant($config)),*
        }

        /// A built layer of any registered type.
        #[derive(Module, Debug)]
        pub enum LayerModule<B: Backend> {
            $($variant(<$config as LayerDef>::Module<B>)),*
        }

        impl LayerConfig {
            /// Parses a layer's own keys; `Err` carries serde's message and the key path.
            pub fn parse(kind: &str, params: toml::Value) -> Result<Option<Self>, (String, String)> {
                match kind {
                    $($name => parse_as::<$config>(params).map(|c| Some(LayerConfig::$variant(c))),)*
                    _ => Ok(None),
                }
            }
            pub fn type_name(&self) -> &'static str {
                match self { $(LayerConfig::$variant(_) => $name),* }
            }
            pub fn arity(&self) -> std::ops::RangeInclusive<usize> {
                match self { $(LayerConfig::$variant(c) => c.arity()),* }
            }
            pub fn validate(&self) -> Result<(), String> {
                match self { $(LayerConfig::$variant(c) => c.validate()),* }
            }
            pub fn infer(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> Result<Vec<(String, TensorSpec)>, String> {
                match self { $(LayerConfig::$variant(c) => c.infer(inputs, ctx)),* }
            }
            pub fn param_count(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> usize {
                match self { $(LayerConfig::$variant(c) => c.param_count(inputs, ctx)),* }
            }
            pub fn init<B: Backend>(&self, inputs: &[TensorSpec], ctx: &InferCtx, device: &B::Device) -> Result<LayerModule<B>, String> {
                match self { $(LayerConfig::$variant(c) => c.init::<B>(inputs, ctx, device).map(LayerModule::$variant)),* }
            }
            /// The JSON schema of each layer type's own keys, for `pipe schema`.
            pub fn schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($name, generator.subschema_for::<$config>())),*]
            }
        }

        impl<B: Backend> LayerForward<B> for LayerModule<B> {
            fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
                match self { $(LayerModule::$variant(m) => m.forward(inputs, ctx)),* }
            }
            fn forward_logits(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
                match self { $(LayerModule::$variant(m) => m.forward_logits(inputs, ctx)),* }
            }
        }
    };
}

use super::bert::BertLayerConfig;
use super::dense::DenseConfig;
use super::dropout::DropoutConfig;
use super::embedding::EmbeddingConfig;
use super::global_average_pooling_1d::GlobalAveragePooling1dConfig;
use super::layer_normalization::LayerNormalizationConfig;
use super::multi_head_attention::MultiHeadAttentionConfig;
use super::token_and_position_embedding::TokenAndPositionEmbeddingConfig;
use super::transformer_block::TransformerBlockConfig;

registry! {
    "bert" => Bert(BertLayerConfig, bert),
    "dense" => Dense(DenseConfig, dense),
    "dropout" => Dropout(DropoutConfig, dropout),
    "embedding" => Embedding(EmbeddingConfig, embedding),
    "global_average_pooling_1d" => GlobalAveragePooling1d(GlobalAveragePooling1dConfig, global_average_pooling_1d),
    "layer_normalization" => LayerNormalization(LayerNormalizationConfig, layer_normalization),
    "multi_head_attention" => MultiHeadAttention(MultiHeadAttentionConfig, multi_head_attention),
    "token_and_position_embedding" => TokenAndPositionEmbedding(TokenAndPositionEmbeddingConfig, token_and_position_embedding),
    "transformer_block" => TransformerBlock(TransformerBlockConfig, transformer_block),
}

fn parse_as<T: serde::de::DeserializeOwned>(params: toml::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(params).map_err(|e| {
        let path = e.path().to_string();
        (
            e.into_inner().message().to_string(),
            if path == "." { String::new() } else { path },
        )
    })
}
