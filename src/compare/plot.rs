//! `pipe compare --plot`: the runs' learning curves from their metrics.csv, loss and accuracy
//! side by side on one x axis across stages, with a legend naming each run by what differs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::bail;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use super::image::{Figure, ImageKind, PlotError, write_image};
use super::load::{Loaded, RunSummary};
use super::table::{FIXED_COLUMNS, MISSING, Table, is_metric_column};
use crate::run::TRAIN_STEP;

/// Pixel size of [`plot`]'s output (the SVG uses the same user units).
pub const PLOT_SIZE: (u32, u32) = (1400, 640);

/// Learning curves from metrics.csv of each readable run: two panels (loss, accuracy) vs. a
/// global x = optimizer steps counted across stages, one line per run and per split (train
/// solid, from the `train_step` rows where the run has them, else from its epoch rows;
/// validation dashed with a mark at each point; test a dot), legend labelled by the differing
/// config keys
/// (`k=v, k2=v2`, keys shortened to their shortest unambiguous dotted suffix, or the run name if
/// nothing differs). Output format from the extension: .png or .svg; anything else → Err. Runs
/// whose metrics.csv is missing/empty are skipped (not fatal); none to draw at all is an error.
pub fn plot(runs: &[Loaded], table: &Table, path: &Path) -> anyhow::Result<()> {
    plot_with_size(runs, table, path, PLOT_SIZE)
}

/// [`plot`] at `size` pixels.
pub fn plot_with_size(
    runs: &[Loaded],
    table: &Table,
    path: &Path,
    size: (u32, u32),
) -> anyhow::Result<()> {
    let kind = ImageKind::of(path)?;
    let curves = collect_curves(runs, table);
    if curves.is_empty() {
        bail!("nothing to plot: none of the runs has rows in metrics.csv");
    }
    // Curves without any text beat no plot at all, should the font fail to render.
    match draw_file(kind, path, size, &curves, true) {
        Err(PlotError::Font(_)) => draw_file(kind, path, size, &curves, false),
        other => other,
    }
    .map_err(|e| e.cannot_draw(path))
}

#[derive(Debug, Deserialize)]
struct MetricRow {
    stage: String,
    step: usize,
    split: String,
    #[serde(default, deserialize_with = "csv::invalid_option")]
    loss: Option<f64>,
    #[serde(default, deserialize_with = "csv::invalid_option")]
    accuracy: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    x: f64,
    loss: Option<f64>,
    accuracy: Option<f64>,
}

#[derive(Debug)]
struct RunCurves {
    label: String,
    /// Split → points in file order.
    splits: BTreeMap<String, Vec<Point>>,
    /// Stage name and the x where it starts.
    stages: Vec<(String, f64)>,
}

/// A run that is still writing its first epoch, or a row cut off mid-write, should not stop the
/// others from being drawn, so unparsable rows are dropped.
fn read_metrics(path: &Path) -> Vec<MetricRow> {
    let Ok(mut reader) = csv::Reader::from_path(path) else {
        return Vec::new();
    };
    reader.deserialize().filter_map(Result::ok).collect()
}

/// Places each row on one x axis spanning all stages: the optimizer steps of the run so far
/// (metrics.csv's `global_step`, worked out from `stage` and `step` so that files written
/// before that column existed place alike). Steps in metrics.csv count from the start of their
/// stage, and stage k starts where stage k-1's last step was. With the stages' starts.
fn place_rows(rows: &[MetricRow]) -> (Vec<f64>, Vec<(String, f64)>) {
    let mut order: Vec<&str> = Vec::new();
    let mut last_step: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        if !order.contains(&r.stage.as_str()) {
            order.push(&r.stage);
        }
        let m = last_step.entry(&r.stage).or_insert(0);
        *m = (*m).max(r.step);
    }
    let mut offsets: HashMap<&str, usize> = HashMap::new();
    let mut stages = Vec::new();
    let mut start = 0;
    for s in &order {
        offsets.insert(s, start);
        stages.push((s.to_string(), start as f64));
        start += last_step[s];
    }
    let xs = (rows.iter())
        .map(|r| (offsets[r.stage.as_str()] + r.step) as f64)
        .collect();
    (xs, stages)
}

/// Each split's points; a run with `train_step` rows draws its train line from them (the
/// epoch's `train` row, its mean, would stand apart at the epoch's last step).
fn split_points(rows: &[MetricRow], xs: &[f64]) -> BTreeMap<String, Vec<Point>> {
    let mut splits: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (r, &x) in rows.iter().zip(xs) {
        splits.entry(r.split.clone()).or_default().push(Point {
            x,
            loss: r.loss,
            accuracy: r.accuracy,
        });
    }
    if let Some(steps) = splits.remove(TRAIN_STEP) {
        splits.insert("train".to_string(), steps);
    }
    splits
}

fn collect_curves(runs: &[Loaded], table: &Table) -> Vec<RunCurves> {
    let mut ok: Vec<&RunSummary> = runs
        .iter()
        .filter_map(|r| match r {
            Loaded::Ok(r) => Some(r),
            Loaded::Unreadable { .. } => None,
        })
        .collect();
    // Same order as the table, so colors follow the ranking the user asked for.
    let rank = |r: &RunSummary| {
        table
            .rows
            .iter()
            .position(|row| row[0] == r.name)
            .unwrap_or(usize::MAX)
    };
    ok.sort_by_key(|r| rank(r));

    let labels = legend_labels(&ok, table);
    ok.iter()
        .zip(labels)
        .filter_map(|(run, label)| {
            let rows = read_metrics(&run.path.join("metrics.csv"));
            if rows.is_empty() {
                return None;
            }
            let (xs, stages) = place_rows(&rows);
            Some(RunCurves {
                label,
                splits: split_points(&rows, &xs),
                stages,
            })
        })
        .collect()
}

fn legend_labels(runs: &[&RunSummary], table: &Table) -> Vec<String> {
    const MAX_KEYS: usize = 4;
    let pipelines: BTreeSet<&str> = runs.iter().map(|r| r.pipeline.as_str()).collect();
    let mixed = pipelines.len() > 1;
    let keys: Vec<&String> = table
        .columns
        .iter()
        .skip(FIXED_COLUMNS.len())
        .filter(|c| !is_metric_column(c))
        // Across pipelines almost every key differs; the ones some run lacks are explained by
        // the pipeline name, which then leads the label.
        .filter(|k| !mixed || (*k != "name" && runs.iter().all(|r| r.config.contains_key(*k))))
        .collect();
    let shown = &keys[..keys.len().min(MAX_KEYS)];
    let short = shortest_suffixes(shown);
    let mut labels: Vec<String> = runs
        .iter()
        .map(|r| {
            let mut values: Vec<String> = shown
                .iter()
                .zip(&short)
                .map(|(k, s)| format!("{s}={}", r.config.get(*k).map_or(MISSING, |v| v)))
                .collect();
            if keys.len() > shown.len() {
                values.push("…".to_string());
            }
            match (mixed, values.is_empty()) {
                (false, true) => r.name.clone(),
                (false, false) => values.join(", "),
                (true, true) => format!("{}: {}", r.pipeline, r.name),
                (true, false) => format!("{}: {}", r.pipeline, values.join(", ")),
            }
        })
        .collect();
    // Identical labels (the table came from another selection, or keys were cut off) would
    // make runs indistinguishable in the legend.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for l in &labels {
        *counts.entry(l.clone()).or_default() += 1;
    }
    for (l, r) in labels.iter_mut().zip(runs) {
        if counts[l.as_str()] > 1 && *l != r.name {
            *l = format!("{l} ({})", r.name);
        }
    }
    labels
}

/// `stages.train.optimizer.learning_rate` → `learning_rate` unless another key ends the same
/// way: full keys would make the legend wider than the plot.
fn shortest_suffixes(keys: &[&String]) -> Vec<String> {
    let parts: Vec<Vec<&str>> = keys.iter().map(|k| k.split('.').collect()).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = (1..=p.len())
                .find(|&n| {
                    let suffix = &p[p.len() - n..];
                    parts
                        .iter()
                        .enumerate()
                        .all(|(j, q)| j == i || !q.ends_with(suffix))
                })
                .unwrap_or(p.len());
            p[p.len() - n..].join(".")
        })
        .collect()
}

/// Both panels and, with `text`, their labels and the legend.
struct CurvesFigure<'a> {
    curves: &'a [RunCurves],
    text: bool,
}

impl Figure for CurvesFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        Ok(draw(root, self.curves, self.text)?)
    }
}

fn draw_file(
    kind: ImageKind,
    path: &Path,
    size: (u32, u32),
    curves: &[RunCurves],
    text: bool,
) -> Result<(), PlotError> {
    write_image(kind, path, size, &CurvesFigure { curves, text })
}

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Loss,
    Accuracy,
}

impl Metric {
    fn title(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Accuracy => "accuracy",
        }
    }
    fn of(self, p: &Point) -> Option<f64> {
        match self {
            Metric::Loss => p.loss,
            Metric::Accuracy => p.accuracy,
        }
        .filter(|v| v.is_finite())
    }
}

/// Matplotlib's tab10: distinct, and familiar to anyone used to Keras plots.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[RunCurves],
    text: bool,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let x_max = curves
        .iter()
        .flat_map(|c| c.splits.values().flatten())
        .map(|p| p.x)
        .fold(1.0_f64, f64::max);
    // Stage boundaries only mean something when every run shares them.
    let stages = curves
        .first()
        .map(|c| &c.stages)
        .filter(|s| s.len() > 1 && curves.iter().all(|c| &c.stages == *s));
    let (charts, legend) = if text {
        let (_, h) = root.dim_in_pixel();
        let rows = 1 + curves.len().div_ceil(legend_columns(curves.len()));
        let strip = (16 + LEGEND_ROW * rows as u32).min(h * 2 / 5);
        let (charts, legend) = root.split_vertically(h - strip);
        (charts, Some(legend))
    } else {
        (root.clone(), None)
    };
    let panels = charts.split_evenly((1, 2));
    for (area, metric) in panels.iter().zip([Metric::Loss, Metric::Accuracy]) {
        draw_panel(area, curves, metric, x_max, stages, text)?;
    }
    if let Some(legend) = legend {
        draw_legend(&legend, curves)?;
    }
    Ok(())
}

const LEGEND_ROW: u32 = 22;

fn legend_columns(runs: usize) -> usize {
    if runs <= 4 { 1 } else { 2 }
}

/// Below the panels rather than inside them: any corner of a learning-curve panel can hold data
/// (validation loss climbing when a run overfits), and labels of differing keys can be long.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[RunCurves],
) -> DrawResult<DB> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let font =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let (w, h) = area.dim_in_pixel();
    let row_y = |row: usize| 12 + (LEGEND_ROW as i32) * row as i32 + LEGEND_ROW as i32 / 2;
    let left = 60;
    let max_rows = ((h.saturating_sub(12)) / LEGEND_ROW) as usize;

    let key = BLACK.mix(0.75).stroke_width(2);
    let y = row_y(0);
    area.draw(&PathElement::new(vec![(left, y), (left + 24, y)], key))?;
    area.draw(&Text::new("train", (left + 32, y), font.clone()))?;
    let x = left + 110;
    area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], key))?;
    area.draw(&PathElement::new(vec![(x + 15, y), (x + 24, y)], key))?;
    area.draw(&Circle::new((x + 12, y), 3, key))?;
    area.draw(&Text::new("validation", (x + 32, y), font.clone()))?;
    let x = x + 140;
    area.draw(&Circle::new((x + 12, y), 5, BLACK.mix(0.75).filled()))?;
    area.draw(&Text::new("test", (x + 32, y), font.clone()))?;

    let columns = legend_columns(curves.len());
    let col_w = (w as i32 - left) / columns as i32;
    // DejaVu Sans at 15px averages about 8.5px per character.
    let max_chars = ((col_w - 48) as f64 / 8.5).max(8.0) as usize;
    for (i, run) in curves.iter().enumerate() {
        let (row, col) = (1 + i / columns, i % columns);
        if row >= max_rows {
            break;
        }
        let (x, y) = (left + col as i32 * col_w, row_y(row));
        let color = COLORS[i % COLORS.len()];
        area.draw(&PathElement::new(
            vec![(x, y), (x + 24, y)],
            color.stroke_width(3),
        ))?;
        let label = if run.label.chars().count() > max_chars {
            run.label.chars().take(max_chars - 1).collect::<String>() + "…"
        } else {
            run.label.clone()
        };
        area.draw(&Text::new(label, (x + 32, y), font.clone()))?;
    }
    Ok(())
}

fn y_range(metric: Metric, curves: &[RunCurves]) -> (f64, f64) {
    let values: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.splits.values().flatten())
        .filter_map(|p| metric.of(p))
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        return (0.0, 1.0);
    }
    if metric == Metric::Accuracy && lo >= 0.0 && hi <= 1.0 {
        return (0.0, 1.02);
    }
    let lo = lo.min(0.0);
    let span = (hi - lo).max(1e-6);
    (lo, hi + 0.05 * span)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[RunCurves],
    metric: Metric,
    x_max: f64,
    stages: Option<&Vec<(String, f64)>>,
    text: bool,
) -> DrawResult<DB> {
    let (y0, y1) = y_range(metric, curves);
    let x1 = x_max * 1.03;
    let mut builder = ChartBuilder::on(area);
    builder.margin(14);
    if text {
        builder
            .caption(metric.title(), ("sans-serif", 24))
            .x_label_area_size(44)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0.0..x1, y0..y1)?;
    if text {
        let x_fmt = |x: &f64| format!("{}", (x * 10.0).round() / 10.0);
        chart
            .configure_mesh()
            .x_desc("optimizer step (counted across stages)")
            .y_desc(metric.title())
            .x_label_formatter(&x_fmt)
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
    } else {
        chart.plotting_area().draw(&Rectangle::new(
            [(0.0, y0), (x1, y1)],
            BLACK.mix(0.6).stroke_width(1),
        ))?;
    }

    if let Some(stages) = stages {
        let grey = BLACK.mix(0.35).stroke_width(1);
        for (name, x) in stages.iter() {
            if *x > 0.0 {
                chart.draw_series(DashedLineSeries::new(vec![(*x, y0), (*x, y1)], 4, 4, grey))?;
            }
            if text {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((*x, y1))
                        + Text::new(name.clone(), (5, 4), ("sans-serif", 14).into_font()),
                ))?;
            }
        }
    }

    for (i, run) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = |split: &str| -> Vec<(f64, f64)> {
            run.splits
                .get(split)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| metric.of(p).map(|y| (p.x, y)))
                        .collect()
                })
                .unwrap_or_default()
        };
        chart.draw_series(LineSeries::new(points("train"), color.stroke_width(2)))?;
        chart.draw_series(DashedLineSeries::new(
            points("validation"),
            8,
            5,
            color.stroke_width(2),
        ))?;
        // A mark at each validation: a one-epoch run has a single one, which no line shows.
        chart.draw_series(
            points("validation")
                .into_iter()
                .map(|c| Circle::new(c, 4, color.stroke_width(2))),
        )?;
        chart.draw_series(
            points("test")
                .into_iter()
                .map(|c| Circle::new(c, 5, color.filled())),
        )?;
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::load::load_runs;
    use crate::compare::table::build_table;
    use crate::compare::test_fixtures::fixture;

    fn parse(text: &str) -> Vec<MetricRow> {
        csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .map(Result::unwrap)
            .collect()
    }

    /// A file written before the step columns: steps count on across stages all the same.
    #[test]
    fn global_x_spans_stages_and_mid_epoch_evaluations() {
        let rows = parse(
            "stage,epoch,step,split,loss,accuracy,lr\n\
            features,1,4,train,1.38,0.30,1e-3\n\
            features,1,4,validation,1.38,0.25,1e-3\n\
            finetune,1,2,validation,1.37,0.33,7.5e-6\n\
            finetune,1,4,train,1.36,0.34,7.5e-6\n\
            finetune,1,4,validation,1.37,0.35,7.5e-6\n\
            finetune,2,8,train,1.30,0.40,7.5e-6\n\
            finetune,2,8,test,1.30,0.41,0e0\n",
        );
        let (xs, stages) = place_rows(&rows);
        assert_eq!(xs, [4.0, 4.0, 6.0, 8.0, 8.0, 12.0, 12.0]);
        assert_eq!(
            stages,
            [("features".to_string(), 0.0), ("finetune".to_string(), 4.0)]
        );
    }

    /// A one-epoch run with step rows draws a train line through them, not its one epoch
    /// row; validation shares their axis.
    #[test]
    fn step_rows_draw_the_train_line() {
        let rows = parse(
            "stage,epoch,step,split,loss,accuracy,lr,global_step,samples\n\
            train,1,2,train_step,1.30,0.40,1e-3,2,64\n\
            train,1,3,validation,1.25,0.45,1e-3,3,96\n\
            train,1,4,train_step,1.10,0.55,1e-3,4,128\n\
            train,1,5,train_step,0.90,0.65,1e-3,5,150\n\
            train,1,5,train,1.12,0.53,1e-3,5,150\n\
            train,1,5,validation,0.95,0.60,1e-3,5,150\n\
            train,1,5,test,0.97,0.59,0e0,5,150\n",
        );
        let (xs, _) = place_rows(&rows);
        let splits = split_points(&rows, &xs);
        let keys: Vec<&str> = splits.keys().map(String::as_str).collect();
        assert_eq!(keys, ["test", "train", "validation"]);
        let train: Vec<(f64, Option<f64>)> =
            (splits["train"].iter()).map(|p| (p.x, p.loss)).collect();
        assert_eq!(
            train,
            [(2.0, Some(1.30)), (4.0, Some(1.10)), (5.0, Some(0.90))]
        );
        let validation: Vec<f64> = splits["validation"].iter().map(|p| p.x).collect();
        assert_eq!(validation, [3.0, 5.0]);
    }

    #[test]
    fn legend_keys_are_shortened_unambiguously() {
        let keys = [
            "stages.features.optimizer.learning_rate".to_string(),
            "stages.finetune.optimizer.learning_rate".to_string(),
            "model.block.num_heads".to_string(),
        ];
        let refs: Vec<&String> = keys.iter().collect();
        assert_eq!(
            shortest_suffixes(&refs),
            [
                "features.optimizer.learning_rate",
                "finetune.optimizer.learning_rate",
                "num_heads"
            ]
        );
    }

    fn decode_png(path: &Path) -> (u32, u32, Vec<u8>, usize) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf, info.color_type.samples())
    }

    fn assert_not_blank(path: &Path) {
        let (w, h, pixels, samples) = decode_png(path);
        assert_eq!((w, h), PLOT_SIZE);
        let colors: BTreeSet<&[u8]> = pixels.chunks(samples).collect();
        let non_white = pixels
            .chunks(samples)
            .filter(|p| p[..3].iter().any(|&c| c < 250))
            .count();
        assert!(colors.len() > 50, "only {} distinct colors", colors.len());
        assert!(
            non_white > (w * h / 100) as usize,
            "only {non_white} non-white pixels"
        );
    }

    #[test]
    fn plot_writes_png_and_svg() {
        let (root, paths) = fixture("plot");
        let runs = load_runs(&paths);
        let table = build_table(&runs, Some("test.accuracy")).unwrap();

        let png_path = root.join("curves.png");
        plot(&runs, &table, &png_path).unwrap();
        assert_not_blank(&png_path);

        let svg_path = root.join("curves.svg");
        plot(&runs, &table, &svg_path).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.contains("<svg"));
        assert!(
            svg.contains("num_heads=2, learning_rate=0.0003"),
            "legend label"
        );
        assert!(svg.contains("validation"), "style key is labelled");

        // The fallback must not touch text at all.
        let bare = root.join("bare.png");
        let curves = collect_curves(&runs, &table);
        assert!(draw_file(ImageKind::Png, &bare, PLOT_SIZE, &curves, false).is_ok());
        assert_not_blank(&bare);

        // The embedded font draws the text itself (no fallback), and the text shows: labels,
        // tick numbers and the legend add ink beyond the bare curves.
        let texted = root.join("text.png");
        assert!(draw_file(ImageKind::Png, &texted, PLOT_SIZE, &curves, true).is_ok());
        let ink = |path: &Path| {
            let (_, _, pixels, samples) = decode_png(path);
            pixels
                .chunks(samples)
                .filter(|p| p[..3].iter().all(|&c| c < 100))
                .count()
        };
        assert!(
            ink(&texted) > ink(&bare) + 2000,
            "text adds no dark pixels: {} vs {}",
            ink(&texted),
            ink(&bare)
        );

        let err = plot(&runs, &table, &root.join("curves.jpg")).unwrap_err();
        assert!(err.to_string().contains(".png or .svg"), "{err}");

        // Runs without metrics.csv are skipped; with none left there is nothing to draw.
        std::fs::remove_file(paths[0].join("metrics.csv")).unwrap();
        std::fs::write(paths[1].join("metrics.csv"), "").unwrap();
        plot(&runs, &table, &root.join("two_missing.png")).unwrap();
        std::fs::remove_file(paths[2].join("metrics.csv")).unwrap();
        let err = plot(&runs, &table, &root.join("none.png")).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
