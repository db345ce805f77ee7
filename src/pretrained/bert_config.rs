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
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads.max(1))
        {
            return Err(format!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                config.hidden_size,
                config.num_attention_heads
            ));
        }
        match config.hidden_act.as_str() {
            "gelu" | "relu" | "gelu_new" | "gelu_pytorch_tanh" => Ok(config),
            other => Err(format!(
                "{}: unsupported hidden_act `{other}`",
                path.display()
            )),
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
