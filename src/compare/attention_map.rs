//! The attention heat-map of `pipe attention --out`: one row per query token, one column per
//! key token, the tokens on both axes, colour from white (the matrix's smallest weight) to deep
//! red (its largest), both on the colour bar, and a title naming the layer, head and label.

use std::path::Path;

use anyhow::bail;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

use super::image::{Figure, ImageKind, PlotError, write_image};

/// Room for the token names (left, bottom), the title (top) and the colour bar (right).
const LEFT: u32 = 150;
const TOP: u32 = 70;
const BOTTOM: u32 = 120;
const RIGHT: u32 = 110;

/// Pixels per cell for `tokens` tokens: a grid of about 640 pixels, cells 14 to 48 wide.
fn cell(tokens: usize) -> u32 {
    (640 / tokens.max(1) as u32).clamp(14, 48)
}

/// The image size for `tokens` tokens.
pub fn attention_size(tokens: usize) -> (u32, u32) {
    let grid = cell(tokens) * tokens as u32;
    (LEFT + grid + RIGHT, TOP + grid + BOTTOM)
}

/// Draws `weights` (rows: queries, columns: keys, both `tokens`) with `title` to `path`, PNG or
/// SVG by its extension.
pub fn plot_attention(
    tokens: &[String],
    weights: &[Vec<f32>],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let kind = ImageKind::of(path)?;
    if tokens.is_empty() || weights.len() != tokens.len() {
        bail!("nothing to plot: no tokens");
    }
    let figure = AttentionMap {
        tokens,
        weights,
        title,
    };
    write_image(kind, path, attention_size(tokens.len()), &figure).map_err(|e| e.cannot_draw(path))
}

/// The heat map of one head's weights.
struct AttentionMap<'a> {
    tokens: &'a [String],
    weights: &'a [Vec<f32>],
    title: &'a str,
}

impl Figure for AttentionMap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        draw(root, self.tokens, self.weights, self.title)
    }
}

/// White to a deep red with `t` in [0, 1].
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 165.0), mix(255.0, 15.0), mix(255.0, 21.0))
}

/// A token cut to `max` characters, so that it keeps to its row.
fn short(token: &str, max: usize) -> String {
    match token.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &token[..cut]),
        None => token.to_string(),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    tokens: &[String],
    weights: &[Vec<f32>],
    title: &str,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let n = tokens.len() as i32;
    let (cell, left, top) = (cell(tokens.len()) as i32, LEFT as i32, TOP as i32);
    let font = |size: u32, h: text_anchor::HPos| {
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(text_anchor::Pos::new(h, text_anchor::VPos::Center))
    };
    let label_size = (cell as u32).clamp(10, 15);
    root.draw_text(
        title,
        &font(16, text_anchor::HPos::Center),
        (root.dim_in_pixel().0 as i32 / 2, 26),
    )?;
    // The colour runs over the weights' own range (as seaborn's heatmap does): a trained
    // classifier's attention can be near uniform, 0.1 ± 0.005 over ten tokens, which a 0-based
    // scale would show as one flat colour. The bar gives the range.
    let (low, high) = weights
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &w| (lo.min(w), hi.max(w)));
    let range = (low as f64, high as f64);
    let shade = |w: f32| {
        let spread = range.1 - range.0;
        heat(if spread > 1e-9 {
            (w as f64 - range.0) / spread
        } else {
            1.0
        })
    };
    for (i, row) in weights.iter().enumerate() {
        let y = top + i as i32 * cell;
        for (j, &w) in row.iter().enumerate() {
            let x = left + j as i32 * cell;
            let corners = [(x, y), (x + cell, y + cell)];
            root.draw(&Rectangle::new(corners, shade(w).filled()))?;
            root.draw(&Rectangle::new(corners, BLACK.mix(0.12)))?;
        }
        root.draw_text(
            &short(&tokens[i], 16),
            &font(label_size, text_anchor::HPos::Right),
            (left - 8, y + cell / 2),
        )?;
    }
    // Key tokens below the grid, written downwards so that long ones do not overlap.
    let below = top + n * cell;
    let vertical = ("sans-serif", label_size)
        .into_font()
        .transform(FontTransform::Rotate90)
        .color(&BLACK);
    for (j, token) in tokens.iter().enumerate() {
        let x = left + j as i32 * cell + cell / 2 + label_size as i32 / 2;
        root.draw_text(&short(token, 14), &vertical, (x, below + 8))?;
    }
    root.draw_text(
        "query token (row) attends to key token (column)",
        &font(13, text_anchor::HPos::Center),
        (left + n * cell / 2, top - 18),
    )?;
    draw_colour_bar(root, (left + n * cell + 30, top), n * cell, range)
}

/// The colour scale: the smallest weight at the bottom, the largest at the top.
fn draw_colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    height: i32,
    (low, high): (f64, f64),
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let steps = 64;
    let height = height.max(steps);
    for s in 0..steps {
        let y0 = y + height * s / steps;
        let y1 = y + height * (s + 1) / steps;
        let t = 1.0 - s as f64 / (steps - 1) as f64;
        root.draw(&Rectangle::new([(x, y0), (x + 16, y1)], heat(t).filled()))?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + 16, y + height)],
        BLACK.mix(0.4),
    ))?;
    let font = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Left,
            text_anchor::VPos::Center,
        ));
    // As many decimals as it takes for the two ends to read differently (a near-uniform map
    // spans 0.0962 to 0.1047).
    let decimals = (3..7)
        .find(|&d| format!("{low:.d$}") != format!("{high:.d$}"))
        .unwrap_or(3);
    root.draw_text(&format!("{high:.decimals$}"), &font, (x + 22, y + 4))?;
    root.draw_text(
        &format!("{low:.decimals$}"),
        &font,
        (x + 22, y + height - 4),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_runs_from_white_to_red_and_cells_are_sized_to_the_tokens() {
        assert_eq!(heat(0.0), RGBColor(255, 255, 255));
        assert_eq!(heat(1.0), RGBColor(165, 15, 21));
        assert_eq!(cell(4), 48);
        assert_eq!(cell(200), 14);
        assert_eq!(attention_size(10).0, LEFT + 10 * 48 + RIGHT);
    }

    #[test]
    fn a_png_of_the_expected_size_with_the_strongest_cell_darkest() {
        let path = std::env::temp_dir().join(format!("pipe-att-{}.png", std::process::id()));
        let tokens: Vec<String> = ["the", "team", "won"].map(String::from).to_vec();
        let weights = vec![
            vec![0.2, 0.8, 0.0],
            vec![0.1, 0.1, 0.8],
            vec![0.5, 0.25, 0.25],
        ];
        plot_attention(&tokens, &weights, "block, head 0", &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((info.width, info.height), attention_size(3));
        let c = cell(3);
        let at = |i: u32, j: u32| {
            let (x, y) = (LEFT + j * c + c / 2, TOP + i * c + c / 2);
            let k = ((y * info.width + x) * 3) as usize;
            RGBColor(buf[k], buf[k + 1], buf[k + 2])
        };
        assert_eq!(at(0, 1), heat(1.0));
        assert_eq!(at(0, 2), heat(0.0));
        assert_eq!(at(2, 0), heat(0.5f32 as f64 / 0.8f32 as f64));
    }
}
