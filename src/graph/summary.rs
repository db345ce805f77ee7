//! The Keras-style model table printed by `pipe summary` and saved as summary.txt.

use super::plan::{Plan, Source};
use crate::text_table::{self, Align};

/// `659592` → `659,592`, as Keras prints parameter counts.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn summary_table(name: &str, plan: &Plan) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (i, layer) in plan.layers.iter().enumerate() {
        let connected: Vec<String> = layer
            .sources
            .iter()
            .map(|s| match *s {
                Source::Input(k) => {
                    if k == 0 {
                        "input".to_string()
                    } else {
                        format!("input.{}", plan.inputs[k].0)
                    }
                }
                Source::Layer {
                    layer: l,
                    output: o,
                } => {
                    let src = &plan.layers[l];
                    if o == 0 {
                        src.name.clone()
                    } else {
                        format!("{}.{}", src.name, src.outputs[o].0)
                    }
                }
            })
            .collect();
        let sequential = match layer.sources.as_slice() {
            [Source::Input(0)] => i == 0,
            [Source::Layer { layer, output: 0 }] => *layer + 1 == i,
            _ => false,
        };
        let frozen = if layer.trainable { "" } else { ", frozen" };
        rows.push([
            format!("{} ({}{frozen})", layer.name, layer.config.type_name()),
            layer.outputs[0].1.to_string(),
            thousands(layer.params),
            if sequential {
                String::new()
            } else {
                connected.join(", ")
            },
        ]);
    }
    let with_connections = rows.iter().any(|r| !r[3].is_empty());
    let columns = [
        ("Layer (type)", Align::Left),
        ("Output Shape", Align::Left),
        ("Param #", Align::Right),
        ("Connected to", Align::Left),
    ];
    let ncol = if with_connections { 4 } else { 3 };
    let mut out = format!("Model: \"{name}\"\n");
    out += &text_table::keras(
        &columns[..ncol],
        rows.into_iter().map(|r| r[..ncol].to_vec()),
    );
    let total = plan.total_params();
    let trainable = plan.trainable_params();
    let mb = |n: usize| n as f64 * 4.0 / (1024.0 * 1024.0);
    out += &format!(
        " Total params: {} ({:.2} MB)\n",
        thousands(total),
        mb(total)
    );
    out += &format!(
        " Trainable params: {} ({:.2} MB)\n",
        thousands(trainable),
        mb(trainable)
    );
    out += &format!(
        " Non-trainable params: {} ({:.2} MB)\n",
        thousands(total - trainable),
        mb(total - trainable)
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(659592), "659,592");
        assert_eq!(super::thousands(84), "84");
        assert_eq!(super::thousands(109482240), "109,482,240");
    }
}
