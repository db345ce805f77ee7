//! The Keras-style model table printed by `pipe summary` and saved as summary.txt.

use super::plan::{Plan, Source};

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
                Source::Layer(l, o) => {
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
            [Source::Layer(l, 0)] => *l + 1 == i,
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
    let headers = ["Layer (type)", "Output Shape", "Param #", "Connected to"];
    let ncol = if with_connections { 4 } else { 3 };
    let mut widths: Vec<usize> = headers[..ncol].iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for c in 0..ncol {
            widths[c] = widths[c].max(r[c].chars().count());
        }
    }
    let line = |l: &str, m: &str, r: &str, fill: &str| -> String {
        let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let row = |cells: &[String], bar: &str| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let pad = widths[c] - s.chars().count();
                if c == 2 {
                    format!(" {}{s} ", " ".repeat(pad))
                } else {
                    format!(" {s}{} ", " ".repeat(pad))
                }
            })
            .collect();
        format!("{bar}{}{bar}\n", parts.join(bar))
    };
    let mut out = format!("Model: \"{name}\"\n");
    out += &line("┏", "┳", "┓", "━");
    let head: Vec<String> = headers[..ncol].iter().map(|s| s.to_string()).collect();
    out += &row(&head, "┃");
    out += &line("┡", "╇", "┩", "━");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out += &line("├", "┼", "┤", "─");
        }
        out += &row(&r[..ncol], "│");
    }
    out += &line("└", "┴", "┘", "─");
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
