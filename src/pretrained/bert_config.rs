//! A Hugging Face BERT `config.json`.

use std::path::Path;

use serde::Deserialize;

fn gelu() -> String {
    "gelu".into()
}
fn eps() -> f64 {
    1e-12
}
fn two() -> usize {
    2
}
fn dropout() -> f64 {
    0.1
}

#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "dropout")]
    pub attention_probs_dropout_prob: f64,
}

impl BertConfig {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: BertConfig =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .check()
            .map(|()| config)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Sizes a BERT can be built with: every count at least 1 (a zero would build empty
    /// tables that the first batch indexes out of range), heads dividing the width,
    /// probabilities in [0, 1), a positive LayerNorm epsilon.
    pub fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1, got 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`{key}` must be in [0, 1), got {p}"));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(format!(
                "`layer_norm_eps` must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        match self.hidden_act.as_str() {
            "gelu" | "relu" | "gelu_new" | "gelu_pytorch_tanh" => Ok(()),
            other => Err(format!("unsupported hidden_act `{other}`")),
        }
    }

    /// Parameters of `BertModel` with its pooler (the closed formula of the fixtures).
    pub fn param_count(&self) -> usize {
        let (v, p, t, h, i, l) = (
            self.vocab_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        let emb = (v + p + t) * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h;
        emb + l * layer + (h * h + h)
    }
}
