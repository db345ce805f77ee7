//! `[model]`: the layer graph. Each layer's own keys are checked by its type in `layers::registry`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// Every layer's name: its own, or the automatic `type_N` ([`auto_names`]).
    pub fn layer_names(&self) -> Vec<String> {
        let kinds: Vec<(Option<String>, String)> = (self.layers.iter())
            .map(|l| (l.name.clone(), l.kind.clone()))
            .collect();
        auto_names(&kinds)
    }
}

/// One layer. Keys other than the common ones below belong to the layer type.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LayerSpec {
    /// Unique name; auto-named `<type>`, `<type>_1`, ... when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Layer type, e.g. `dense`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Input: an earlier layer, or one of its named outputs (`bert.pooled_output`).
    /// Defaults to the previous layer's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Several inputs, for layers that take more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// `false` keeps the layer's weights fixed in every stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable: Option<bool>,
    /// The layer type's own keys.
    #[serde(flatten)]
    #[schemars(skip)]
    pub params: toml::Table,
}

/// Keras-style automatic names: the first unnamed `dense` is `dense`, the next `dense_1`, ...
/// skipping names already taken explicitly.
pub fn auto_names(layers: &[(Option<String>, String)]) -> Vec<String> {
    let taken: std::collections::HashSet<&str> =
        layers.iter().filter_map(|(n, _)| n.as_deref()).collect();
    let mut counters: std::collections::HashMap<&str, usize> = Default::default();
    layers
        .iter()
        .map(|(name, kind)| {
            if let Some(n) = name {
                return n.clone();
            }
            loop {
                let c = counters.entry(kind.as_str()).or_insert(0);
                let candidate = if *c == 0 {
                    kind.clone()
                } else {
                    format!("{kind}_{c}")
                };
                *c += 1;
                if !taken.contains(candidate.as_str()) {
                    return candidate;
                }
            }
        })
        .collect()
}
