//! `pipe attention RUN "text"`: what a trained model's attention looks at for one text. Runs
//! the final model on the text and shows one attention layer's weights (token × token): the
//! three strongest keys per token in the terminal, a heat-map with `--out`, or the matrix with
//! `--json`. Padding is never shown; for a layer that is not masked, the share of each row that
//! went to padding is reported beside it, so that rows still add up to 1.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;

use super::EXIT_INVALID;
use super::eval::{TrainedRun, argmax};
use crate::backend::{BackendTask, DeviceChoice, dispatch};
use crate::compare::{ImageKind, plot_attention};
use crate::data::EncodedSplit;
use crate::graph::{Graph, Plan};
use crate::run::checkpoint;

/// The layer types whose attention can be drawn.
const ATTENTION_TYPES: &[&str] = &[
    "multi_head_attention",
    "transformer_block",
    "hf_encoder",
    "bert",
];

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe attention runs/sports_csv/20261201-101500-1a2b3c \"The team won the final in extra time\"\n  pipe attention runs/sports_csv/20261201-101500-1a2b3c \"The team won the final\" --head 1 --out attention.png\n  pipe attention runs/bert_finetune/20261201-101500-1a2b3c \"Stocks fell sharply\" --layer bert.encoder.5 --json"
)]
pub struct AttentionArgs {
    /// A run folder, or a folder of runs (`runs/<pipeline>`): its newest usable run.
    pub run: PathBuf,
    #[command(flatten)]
    pub weights: super::eval::Weights,
    /// The text to run the model on.
    pub text: String,
    /// The attention layer: a `multi_head_attention` or `transformer_block` layer's name, or
    /// `NAME.encoder.N` for encoder layer N of a `bert` layer (default: the last attention).
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// One head (`0`, `1`, ...) or `mean` over the heads. Default: every head with --json,
    /// their mean otherwise.
    #[arg(long, value_name = "N|mean", value_parser = parse_head)]
    pub head: Option<Head>,
    /// Draw the heat-map to this .png or .svg file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print tokens, weights, layer, head and label as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// `cpu`, `ndarray`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
}

/// `--head`: one head by number, or their mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Index(usize),
    Mean,
}

fn parse_head(text: &str) -> Result<Head, String> {
    match text {
        "mean" => Ok(Head::Mean),
        n => n
            .parse()
            .map(Head::Index)
            .map_err(|_| format!("expected a head number (0, 1, ...) or `mean`, got `{n}`")),
    }
}

pub fn run(args: AttentionArgs) -> Result<i32> {
    if let Some(Err(e)) = args.out.as_deref().map(ImageKind::of) {
        errln!("--out: error: {e}");
        return Ok(EXIT_INVALID);
    }
    let trained = match TrainedRun::open(&args.run, &args.weights)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let (layer, within) = match choose_layer(&trained.plan, args.layer.as_deref()) {
        Ok(v) => v,
        Err(message) => {
            errln!("{message}");
            return Ok(EXIT_INVALID);
        }
    };
    let split = EncodedSplit::encode(&trained.vectorizer, &[args.text.as_str()], &[0]);
    let task = AttentionTask {
        plan: &trained.plan,
        weights: trained.weights.clone(),
        split: &split,
        layer,
    };
    let (probabilities, maps) = dispatch(&args.device, task)??;
    let layer_name = &trained.plan.layers[layer].name;
    let names: Vec<String> = maps
        .iter()
        .map(|m| qualified(layer_name, &m.name))
        .collect();
    let chosen = match &within {
        Some(sub) => maps.iter().position(|m| &m.name == sub),
        None => maps.len().checked_sub(1),
    };
    let Some(map) = chosen.map(|i| &maps[i]) else {
        errln!(
            "--layer {}: error: no such attention in `{layer_name}` (it has: {})",
            args.layer.as_deref().unwrap_or(layer_name),
            names.join(", ")
        );
        return Ok(EXIT_INVALID);
    };
    if let Some(Head::Index(h)) = args.head
        && h >= map.heads
    {
        errln!(
            "--head {h}: error: `{}` has {} heads (0 to {})",
            qualified(layer_name, &map.name),
            map.heads,
            map.heads - 1
        );
        return Ok(EXIT_INVALID);
    }
    let labels = &trained.loaded.spec.dataset.labels;
    let best = argmax(&probabilities);
    let view = View::new(
        map,
        &split,
        &trained.vectorizer,
        args.head.or((!args.json).then_some(Head::Mean)),
    );
    let shown = qualified(layer_name, &map.name);
    let label = labels
        .get(best)
        .cloned()
        .unwrap_or_else(|| best.to_string());
    if args.json {
        outln!(
            "{}",
            view.json(&shown, &label, probabilities[best], &args.text)
        );
    }
    if let Some(out) = &args.out {
        let title = format!(
            "{shown}, {}: predicted {label} ({:.2})",
            view.head_text(),
            probabilities[best]
        );
        let first = view.matrices.first().map(Vec::as_slice).unwrap_or(&[]);
        plot_attention(&view.tokens, first, &title, out)?;
        if !args.json {
            errln!("wrote {}", out.display());
        }
    }
    if !args.json && args.out.is_none() {
        view.print_top(&shown, &label, probabilities[best]);
    }
    Ok(0)
}

/// `NAME` or `NAME.encoder.N`: the layer index and the attention within it (`None`: its last).
fn choose_layer(plan: &Plan, wanted: Option<&str>) -> Result<(usize, Option<String>), String> {
    let candidates: Vec<usize> = (0..plan.layers.len())
        .filter(|&i| ATTENTION_TYPES.contains(&plan.layers[i].config.type_name()))
        .collect();
    let names: Vec<&str> = candidates
        .iter()
        .map(|&i| plan.layers[i].name.as_str())
        .collect();
    let Some(wanted) = wanted else {
        return candidates.last().map(|&i| (i, None)).ok_or_else(|| {
            format!(
                "error: the model has no attention layer ({})",
                ATTENTION_TYPES.join(", ")
            )
        });
    };
    for &i in &candidates {
        let name = &plan.layers[i].name;
        if wanted == name {
            return Ok((i, None));
        }
        if let Some(sub) = wanted
            .strip_prefix(name.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            return Ok((i, Some(sub.to_string())));
        }
    }
    Err(format!(
        "--layer {wanted}: error: no attention layer of that name (attention layers: {})",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

fn qualified(layer: &str, within: &str) -> String {
    if within.is_empty() {
        layer.to_string()
    } else {
        format!("{layer}.{within}")
    }
}

/// One attention's weights for the one text: [heads, queries, keys], row-major.
struct AttentionMap {
    name: String,
    heads: usize,
    len: usize,
    weights: Vec<f32>,
}

struct AttentionTask<'a> {
    plan: &'a Plan,
    weights: PathBuf,
    split: &'a EncodedSplit,
    layer: usize,
}

impl BackendTask for AttentionTask<'_> {
    type Output = Result<(Vec<f32>, Vec<AttentionMap>)>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Inference on the inner backend: no autodiff graph, dropout off.
        let model = Graph::<B::InnerBackend>::init(self.plan, &device, false)
            .map_err(anyhow::Error::msg)?;
        let model = checkpoint::load(model, &self.weights)?;
        let (inputs, _) = self.split.batch::<B::InnerBackend>(&[0], &device);
        let probabilities = burn::tensor::activation::softmax(model.logits(&inputs), 1);
        let probabilities: Vec<f32> = probabilities.into_data().convert::<f32>().to_vec()?;
        let mut maps = Vec::new();
        for (name, weights) in model.attention_maps(&inputs, self.layer) {
            let [_, heads, len, keys] = weights.dims();
            if len != keys {
                bail!("`{name}` attends over a different sequence; only self-attention is drawn");
            }
            let weights: Vec<f32> = weights.into_data().convert::<f32>().to_vec()?;
            maps.push(AttentionMap {
                name,
                heads,
                len,
                weights,
            });
        }
        Ok((probabilities, maps))
    }
}

/// The weights as shown: real tokens only, one matrix per head (or one for the chosen head or
/// the mean), and per row the weight that went to padding.
struct View {
    tokens: Vec<String>,
    head: Option<Head>,
    heads: usize,
    matrices: Vec<Vec<Vec<f32>>>,
    padding: Vec<Vec<f32>>,
}

impl View {
    fn new(
        map: &AttentionMap,
        split: &EncodedSplit,
        vectorizer: &crate::vectorize::Vectorizer,
        head: Option<Head>,
    ) -> Self {
        // The real tokens come first; the rest of the row is padding.
        let ids = split.ids(0);
        let real: Vec<usize> = (0..map.len.min(ids.len())).collect();
        let tokens = real.iter().map(|&p| vectorizer.token(ids[p])).collect();
        let at = |h: usize, q: usize, k: usize| map.weights[(h * map.len + q) * map.len + k];
        let matrix = |h: usize| -> Vec<Vec<f32>> {
            real.iter()
                .map(|&q| real.iter().map(|&k| at(h, q, k)).collect())
                .collect()
        };
        let per_head: Vec<Vec<Vec<f32>>> = (0..map.heads).map(matrix).collect();
        let matrices = match head {
            Some(Head::Index(h)) => vec![per_head[h].clone()],
            Some(Head::Mean) => vec![mean(&per_head)],
            None => per_head,
        };
        let padding = matrices
            .iter()
            .map(|m| {
                m.iter()
                    .map(|row| (1.0 - row.iter().sum::<f32>()).max(0.0))
                    .collect()
            })
            .collect();
        View {
            tokens,
            head,
            heads: map.heads,
            matrices,
            padding,
        }
    }

    fn head_text(&self) -> String {
        match self.head {
            Some(Head::Index(h)) => format!("head {h} of {}", self.heads),
            Some(Head::Mean) | None => format!("mean of {} heads", self.heads),
        }
    }

    fn json(&self, layer: &str, label: &str, probability: f32, text: &str) -> serde_json::Value {
        let (head, weights, padding) = match self.head {
            None => (
                serde_json::json!("all"),
                serde_json::json!(self.matrices),
                serde_json::json!(self.padding),
            ),
            Some(h) => (
                match h {
                    Head::Index(i) => serde_json::json!(i),
                    Head::Mean => serde_json::json!("mean"),
                },
                serde_json::json!(self.matrices[0]),
                serde_json::json!(self.padding[0]),
            ),
        };
        serde_json::json!({
            "text": text,
            "layer": layer,
            "heads": self.heads,
            "head": head,
            "label": label,
            "probability": probability,
            "tokens": self.tokens,
            "weights": weights,
            "padding_weight": padding,
        })
    }

    /// For each token, the three tokens it attends to most.
    fn print_top(&self, layer: &str, label: &str, probability: f32) {
        outln!(
            "{layer}, {}: predicted {label} ({probability:.2})",
            self.head_text()
        );
        let matrix = &self.matrices[0];
        let padding = &self.padding[0];
        let share = padding.iter().sum::<f32>() / padding.len().max(1) as f32;
        if share > 1e-3 {
            outln!(
                "this layer is not masked: {:.0} % of each token's attention goes to padding, on average (not shown)",
                100.0 * share
            );
        }
        let width = self
            .tokens
            .iter()
            .map(|t| t.chars().count())
            .max()
            .unwrap_or(0);
        for (token, row) in self.tokens.iter().zip(matrix) {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top: Vec<String> = (order.iter().take(3))
                .map(|&k| format!("{} {}", self.tokens[k], weight_text(row[k])))
                .collect();
            outln!("{token:>width$} → {}", top.join("  "));
        }
    }
}

/// Four decimals (a near-uniform row over ten tokens is 0.1 everywhere give or take a few
/// ten-thousandths), or three significant digits below 0.0001 (an unmasked layer's real tokens).
fn weight_text(w: f32) -> String {
    if w >= 1e-4 || w == 0.0 {
        format!("{w:.4}")
    } else {
        format!("{w:.2e}")
    }
}

fn mean(per_head: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let n = per_head.len().max(1) as f32;
    let mut out = per_head[0].clone();
    for m in &per_head[1..] {
        for (row, other) in out.iter_mut().zip(m) {
            for (w, o) in row.iter_mut().zip(other) {
                *w += o;
            }
        }
    }
    out.iter_mut().flatten().for_each(|w| *w /= n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_as_numbers_or_mean() {
        assert_eq!(parse_head("0"), Ok(Head::Index(0)));
        assert_eq!(parse_head("mean"), Ok(Head::Mean));
        assert!(parse_head("first").unwrap_err().contains("`first`"));
    }

    #[test]
    fn the_mean_of_heads_averages_each_cell() {
        let a = vec![vec![1.0, 0.0], vec![0.5, 0.5]];
        let b = vec![vec![0.0, 1.0], vec![0.5, 0.5]];
        assert_eq!(mean(&[a, b]), vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
    }
}
