//! The machinery behind the layer registry: the `registry!` list in `layers/mod.rs` is the one
//! place that maps a layer `type` name to its module, config and burn module. Adding a layer
//! type is one new file in `layers/` plus one line in that list.

/// Declares the layer modules and generates the types that dispatch over them. Invoked once,
/// in `layers/mod.rs`, so that `pub mod dense;` finds `src/layers/dense.rs`.
macro_rules! registry {
    ($($name:literal => $module:ident :: $config:ident as $variant:ident),* $(,)?) => {
        $(
            pub mod $module;
        )*

        /// Every layer type name, in registry order.
        pub const LAYER_TYPES: &[&str] = &[$($name),*];

        /// A parsed layer configuration of any registered type.
        #[derive(Clone, Debug)]
        pub enum LayerConfig {
            $($variant($module::$config)),*
        }

        /// A built layer of any registered type.
        #[derive(Module, Debug)]
        pub enum LayerModule<B: Backend> {
            $($variant(<$module::$config as LayerDef>::Module<B>)),*
        }

        impl LayerConfig {
            /// Parses a layer's own keys; `Err` carries serde's message and the key path.
            pub fn parse(kind: &str, params: toml::Value) -> Result<Option<Self>, (String, String)> {
                match kind {
                    $($name => $crate::layers::registry::parse_as::<$module::$config>(params).map(|c| Some(LayerConfig::$variant(c))),)*
                    _ => Ok(None),
                }
            }
            /// `{"type": ..., "config": {...}}` with every field, defaults included: canonical
            /// bytes for the feature cache's key.
            pub fn to_json(&self) -> serde_json::Value {
                match self { $(LayerConfig::$variant(c) => serde_json::json!({"type": $name, "config": c})),* }
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
            pub fn parts(&self) -> Vec<String> {
                match self { $(LayerConfig::$variant(c) => c.parts()),* }
            }
            pub fn infer(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> Result<Vec<(String, TensorSpec)>, String> {
                match self { $(LayerConfig::$variant(c) => c.infer(inputs, ctx)),* }
            }
            pub fn param_count(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> usize {
                match self { $(LayerConfig::$variant(c) => c.param_count(inputs, ctx)),* }
            }
            pub fn state_count(&self, inputs: &[TensorSpec], ctx: &InferCtx) -> usize {
                match self { $(LayerConfig::$variant(c) => c.state_count(inputs, ctx)),* }
            }
            pub fn init<B: Backend>(&self, inputs: &[TensorSpec], ctx: &InferCtx, device: &B::Device) -> Result<LayerModule<B>, String> {
                match self { $(LayerConfig::$variant(c) => c.init::<B>(inputs, ctx, device).map(LayerModule::$variant)),* }
            }
            /// The JSON schema of each layer type's own keys, for `pipe schema`.
            pub fn schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($name, generator.subschema_for::<$module::$config>())),*]
            }
        }

        impl<B: Backend> LayerForward<B> for LayerModule<B> {
            fn forward(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
                match self { $(LayerModule::$variant(m) => m.forward(inputs, ctx)),* }
            }
            fn forward_read(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>, read: &[bool]) -> Vec<Option<Value<B>>> {
                match self { $(LayerModule::$variant(m) => m.forward_read(inputs, ctx, read)),* }
            }
            fn freeze_parts(self, parts: &[String]) -> Self {
                match self { $(LayerModule::$variant(m) => LayerModule::$variant(LayerForward::<B>::freeze_parts(m, parts))),* }
            }
            fn forward_logits(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<Value<B>> {
                match self { $(LayerModule::$variant(m) => m.forward_logits(inputs, ctx)),* }
            }
            fn to_onnx(&self, g: &mut $crate::onnx::OnnxGraph, inputs: Vec<$crate::onnx::OnnxValue>, head: bool) -> Result<Vec<$crate::onnx::OnnxValue>, String> {
                match self { $(LayerModule::$variant(m) => LayerForward::<B>::to_onnx(m, g, inputs, head)),* }
            }
            fn attention_maps(&self, inputs: Vec<Value<B>>, ctx: &ForwardCtx<B>) -> Vec<(String, Tensor<B, 4>)> {
                match self { $(LayerModule::$variant(m) => m.attention_maps(inputs, ctx)),* }
            }
        }
    };
}

pub(crate) fn parse_as<T: serde::de::DeserializeOwned>(
    params: toml::Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(params).map_err(|e| {
        let path = e.path().to_string();
        (
            e.into_inner().message().to_string(),
            if path == "." { String::new() } else { path },
        )
    })
}

pub(crate) use registry;
