//! The peers' measurements (../shared/peers/results-*.jsonl), for ratios.

use std::path::Path;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct PeerResult {
    pub framework: String,
    pub model: String,
    pub phase: String,
    pub threads: serde_json::Value,
    pub samples_per_s: f64,
    #[serde(default)]
    pub batch: usize,
}

pub fn load(path: &Path) -> Vec<PeerResult> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The peers' figures for a model and phase with the frameworks' default threading.
pub fn matching<'a>(peers: &'a [PeerResult], model: &str, phase: &str) -> Vec<&'a PeerResult> {
    peers
        .iter()
        .filter(|p| {
            p.model == model && p.phase == phase && p.threads == serde_json::json!("default")
        })
        .collect()
}
