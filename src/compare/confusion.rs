//! The confusion-matrix figure of `pipe eval --plot`: counts in the cells, colour by the share
//! of each true class (row-normalised, so a small class reads as clearly as a large one), the
//! class names on both axes.

use std::path::Path;

use anyhow::bail;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

use super::image::{Figure, ImageKind, PlotError, write_image};

/// Pixels per cell, and room for the class names and the title around the grid.
const CELL: u32 = 90;
const LEFT: u32 = 170;
const TOP: u32 = 80;
const BOTTOM: u32 = 110;
const RIGHT: u32 = 30;

/// The image size for `classes` classes.
pub fn confusion_size(classes: usize) -> (u32, u32) {
    let grid = CELL * classes as u32;
    (LEFT + grid + RIGHT, TOP + grid + BOTTOM)
}

/// Draws `confusion` (rows: true class, columns: predicted) with `labels` and `title` to
/// `path`, PNG or SVG by its extension.
pub fn plot_confusion(
    confusion: &[Vec<usize>],
    labels: &[String],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let kind = ImageKind::of(path)?;
    if confusion.is_empty() || confusion.len() != labels.len() {
        bail!("nothing to plot: no classes");
    }
    let figure = ConfusionMatrix {
        confusion,
        labels,
        title,
    };
    write_image(kind, path, confusion_size(labels.len()), &figure).map_err(|e| e.cannot_draw(path))
}

/// The confusion-matrix grid with its class names.
struct ConfusionMatrix<'a> {
    confusion: &'a [Vec<usize>],
    labels: &'a [String],
    title: &'a str,
}

impl Figure for ConfusionMatrix<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        draw(root, self.confusion, self.labels, self.title)
    }
}

/// White to a deep blue with the row share `t` in [0, 1].
fn shade(t: f64) -> RGBColor {
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// A label cut to `max` characters, so that long class names keep to their cell.
fn short(label: &str, max: usize) -> String {
    match label.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &label[..cut]),
        None => label.to_string(),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    confusion: &[Vec<usize>],
    labels: &[String],
    title: &str,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let n = labels.len() as i32;
    let (cell, left, top) = (CELL as i32, LEFT as i32, TOP as i32);
    let centred = |size: u32| {
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(text_anchor::Pos::new(
                text_anchor::HPos::Center,
                text_anchor::VPos::Center,
            ))
    };
    let right_aligned = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Right,
            text_anchor::VPos::Center,
        ));
    root.draw_text(title, &centred(17), (root.dim_in_pixel().0 as i32 / 2, 28))?;
    for (i, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let y = top + i as i32 * cell;
        for (j, &count) in row.iter().enumerate() {
            let x = left + j as i32 * cell;
            let share = count as f64 / total;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                shade(share).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                BLACK.mix(0.25),
            ))?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            root.draw_text(
                &count.to_string(),
                &centred(16).color(&ink),
                (x + cell / 2, y + cell / 2 - 8),
            )?;
            root.draw_text(
                &format!("{:.0} %", 100.0 * share),
                &centred(12).color(&ink),
                (x + cell / 2, y + cell / 2 + 14),
            )?;
        }
        root.draw_text(
            &short(&labels[i], 18),
            &right_aligned,
            (left - 10, y + cell / 2),
        )?;
    }
    let below = top + n * cell;
    for (j, label) in labels.iter().enumerate() {
        let x = left + j as i32 * cell + cell / 2;
        root.draw_text(&short(label, 11), &centred(14), (x, below + 16))?;
    }
    root.draw_text(
        "predicted class",
        &centred(15),
        (left + n * cell / 2, below + 50),
    )?;
    root.draw_text("true class", &centred(15), (left / 2 - 20, top - 22))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shade_runs_from_white_to_blue() {
        assert_eq!(shade(0.0), RGBColor(255, 255, 255));
        assert_eq!(shade(1.0), RGBColor(8, 48, 107));
    }

    #[test]
    fn a_png_of_the_expected_size_with_the_cells_coloured_by_row_share() {
        let path = std::env::temp_dir().join(format!("pipe-cm-{}.png", std::process::id()));
        let labels: Vec<String> = ["World", "Sports", "Business"].map(String::from).to_vec();
        let confusion = vec![vec![90, 5, 5], vec![0, 10, 0], vec![30, 30, 40]];
        plot_confusion(&confusion, &labels, "test", &path).unwrap();
        let image = image_rgb(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!((image.0, image.1), confusion_size(3));
        // A pixel near the top-left corner of each diagonal cell, away from its text.
        let at = |i: u32, j: u32| {
            let (x, y) = (LEFT + j * CELL + 6, TOP + i * CELL + 6);
            let k = ((y * image.0 + x) * 3) as usize;
            RGBColor(image.2[k], image.2[k + 1], image.2[k + 2])
        };
        assert_eq!(at(0, 0), shade(0.9));
        assert_eq!(at(1, 1), shade(1.0));
        assert_eq!(at(1, 0), shade(0.0));
        assert_eq!(at(2, 2), shade(0.4));
        assert!(
            plot_confusion(&confusion, &labels, "t", Path::new("cm.gif"))
                .unwrap_err()
                .to_string()
                .contains("must end in .png or .svg")
        );
    }

    fn image_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }
}
