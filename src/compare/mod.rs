//! `pipe compare RUN...`: put run folders side by side. The table shows only the resolved-spec
//! keys that differ between the runs (everything else is noise when asking "what changed?") next
//! to their final metrics; the plot overlays their learning curves from metrics.csv.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::text_table::{self, Align};

mod attention_map;
mod confusion;
pub use attention_map::{attention_size, plot_attention};
pub use confusion::{confusion_size, plot_confusion};

/// What `pipe compare` needs from one run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub path: PathBuf,
    /// The folder name (`20261127-073623-9cdb3e`).
    pub name: String,
    pub pipeline: String,
    pub status: String,
    pub duration_s: Option<f64>,
    /// The resolved spec, flattened by [`flatten`].
    pub config: BTreeMap<String, String>,
    /// run.json `metrics`, plus `best.<stage>.<key>` from each stage's best epoch. A metric that
    /// run.json stores as `null` (serde_json's spelling of NaN) is `f64::NAN`, so a diverged run
    /// still shows up as such instead of hiding the column.
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Clone, Debug)]
pub enum Loaded {
    Ok(RunSummary),
    Unreadable { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
struct RunJson {
    status: String,
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    metrics: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    stages: Vec<StageJson>,
}

#[derive(Deserialize)]
struct StageJson {
    name: String,
    #[serde(default)]
    best: BTreeMap<String, Option<f64>>,
}

/// Loads every folder; one bad folder must not hide the others (a run that is still being
/// created, or a stray path from a shell glob), so failures become [`Loaded::Unreadable`].
pub fn load_runs(paths: &[PathBuf]) -> Vec<Loaded> {
    paths
        .iter()
        .map(|p| match load_run(p) {
            Ok(run) => Loaded::Ok(run),
            Err(reason) => Loaded::Unreadable {
                path: p.clone(),
                reason,
            },
        })
        .collect()
}

fn load_run(path: &Path) -> Result<RunSummary, String> {
    if !path.is_dir() {
        return Err(if path.exists() {
            "not a directory".into()
        } else {
            "no such directory".into()
        });
    }
    let run: RunJson = serde_json::from_str(&read_file(path, "run.json")?)
        .map_err(|e| format!("run.json: {e}"))?;
    let text = read_file(path, "pipeline.toml")?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("pipeline.toml: {}", toml_error(&text, &e)))?;

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        // `pipe compare .` from inside a run folder has no file name to show.
        .or_else(|| {
            path.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| path.display().to_string());
    let pipeline = run
        .pipeline
        .clone()
        .or_else(|| doc.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_default();

    let mut metrics: BTreeMap<String, f64> = run
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), v.unwrap_or(f64::NAN)))
        .collect();
    for stage in &run.stages {
        for (k, v) in &stage.best {
            metrics.insert(format!("best.{}.{k}", stage.name), v.unwrap_or(f64::NAN));
        }
    }
    Ok(RunSummary {
        path: path.to_path_buf(),
        name,
        pipeline,
        status: run.status,
        duration_s: run.duration_s,
        config: flatten(&doc),
        metrics,
    })
}

fn read_file(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no {file}"),
        _ => format!("{file}: {e}"),
    })
}

/// toml's own Display spans several lines with a source excerpt; the unreadable list wants one.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Flatten a TOML document into dotted keys. Arrays of tables whose entries have a `name` key
/// are addressed by that name (`model.block.num_heads`, `stages.train.optimizer.learning_rate`);
/// entries without a name use Keras-style auto names for model.layers (`type`, then `type_1`,
/// `type_2` per type, skipping names taken explicitly) and `train`, `stage_2`, ... for stages
/// (index 0 → "train", index i → "stage_{i+1}"); other arrays become a JSON-ish string value
/// like `["a", "b"]`. Values: strings unquoted, numbers as TOML prints them.
///
/// The addresses are the ones `pipe run --set` accepts, so a key seen here can be pasted into
/// an override.
pub fn flatten(doc: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten_table("", doc, &mut out);
    out
}

fn flatten_table(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        flatten_value(&join(prefix, k), v, out);
    }
}

fn flatten_value(path: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => flatten_table(path, t, out),
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|v| v.is_table()) => {
            // `--set` drops the `layers` segment (`model.head.units`) but keeps `stages`.
            let parent = if path == "model.layers" {
                "model"
            } else {
                path
            };
            for (name, item) in entry_names(path, items).iter().zip(items) {
                let entry = join(parent, name);
                for (k, v) in item.as_table().into_iter().flatten() {
                    // The entry's address already carries its name.
                    if k == "name" && v.is_str() {
                        continue;
                    }
                    flatten_value(&join(&entry, k), v, out);
                }
            }
        }
        toml::Value::String(s) => {
            out.insert(path.to_string(), s.clone());
        }
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The same names `--set` addresses, so a key printed here can be pasted into an override.
fn entry_names(array_path: &str, items: &[toml::Value]) -> Vec<String> {
    crate::spec::load::entry_names(array_path, items)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    /// Cells as plain strings at full precision (`-` where a run lacks the key); [`render`]
    /// rounds numbers for the human-facing formats only.
    pub rows: Vec<Vec<String>>,
    pub unreadable: Vec<(PathBuf, String)>,
}

const FIXED_COLUMNS: [&str; 3] = ["run", "status", "duration_s"];
const MISSING: &str = "-";

/// Columns: run, status, duration_s, then the config keys whose values differ between the loaded
/// runs (a key missing in some run counts as differing, shown as "-"), then metric columns (the
/// union of metric keys, sorted, `test.*` first then `validation.*` then `train.*` then `best.*`).
/// Rows sorted by `sort` (a column name, e.g. "test.accuracy"; numeric-aware, descending for
/// accuracy-like keys and ascending for keys containing "loss"; default: run name ascending).
/// Unknown sort key → Err naming the available columns.
pub fn build_table(runs: &[Loaded], sort: Option<&str>) -> anyhow::Result<Table> {
    let mut ok = Vec::new();
    let mut unreadable = Vec::new();
    for run in runs {
        match run {
            Loaded::Ok(r) => ok.push(r),
            Loaded::Unreadable { path, reason } => unreadable.push((path.clone(), reason.clone())),
        }
    }

    let config_keys = differing_keys(&ok);
    let mut metric_keys: Vec<&String> = ok
        .iter()
        .flat_map(|r| r.metrics.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| !config_keys.contains(k) && !FIXED_COLUMNS.contains(&k.as_str()))
        .collect();
    metric_keys.sort_by_key(|k| (metric_group(k), k.as_str()));

    let mut columns: Vec<String> = FIXED_COLUMNS.iter().map(|c| c.to_string()).collect();
    columns.extend(config_keys.iter().cloned());
    columns.extend(metric_keys.iter().map(|k| k.to_string()));

    let mut rows: Vec<Vec<String>> = ok
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.status.clone(),
                r.duration_s.map_or(MISSING.to_string(), format_number),
            ];
            row.extend(
                config_keys
                    .iter()
                    .map(|k| r.config.get(k).cloned().unwrap_or(MISSING.to_string())),
            );
            row.extend(metric_keys.iter().map(|k| {
                r.metrics
                    .get(*k)
                    .map_or(MISSING.to_string(), |v| format_number(*v))
            }));
            row
        })
        .collect();

    match sort {
        Some(key) => {
            let idx = columns.iter().position(|c| c == key).ok_or_else(|| {
                anyhow!(
                    "unknown sort column `{key}`; available: {}",
                    columns.join(", ")
                )
            })?;
            let descending = higher_is_better(key);
            rows.sort_by(|a, b| {
                compare_cells(&a[idx], &b[idx], descending).then_with(|| a[0].cmp(&b[0]))
            });
        }
        // Run folders are named by start time, so this is also chronological.
        None => rows.sort_by(|a, b| a[0].cmp(&b[0])),
    }
    Ok(Table {
        columns,
        rows,
        unreadable,
    })
}

fn differing_keys(runs: &[&RunSummary]) -> Vec<String> {
    let all: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    all.into_iter()
        .filter(|k| {
            let first = runs[0].config.get(*k);
            runs.iter().any(|r| r.config.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// Headline numbers first: test is what the run is judged by, train is mostly a sanity check.
fn metric_group(key: &str) -> u8 {
    match key.split('.').next() {
        Some("test") => 0,
        Some("validation") => 1,
        Some("train") => 2,
        Some("best") => 3,
        _ => 4,
    }
}

/// Config keys come from the spec, whose top-level sections never use these names, so a column's
/// name alone tells whether it holds a metric.
fn is_metric_column(column: &str) -> bool {
    metric_group(column) < 4
}

fn is_numeric_column(column: &str) -> bool {
    column == "duration_s" || is_metric_column(column)
}

fn higher_is_better(column: &str) -> bool {
    const LOWER_IS_BETTER: [&str; 5] = ["loss", "error", "perplexity", "mse", "mae"];
    is_metric_column(column) && !LOWER_IS_BETTER.iter().any(|w| column.contains(w))
}

fn format_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

fn parse_number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// Missing values sort last whichever the direction, so the best run is always on top.
fn compare_cells(a: &str, b: &str, descending: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let missing = |c: &str| c == MISSING || c.is_empty() || c == "NaN";
    match (missing(a), missing(b)) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let ord = match (parse_number(a), parse_number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    };
    if descending { ord.reverse() } else { ord }
}

/// `pipe compare --format`: clap lists these choices and rejects anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    Csv,
    /// A Markdown pipe table.
    #[value(name = "md", alias = "markdown")]
    Markdown,
    Json,
}

/// Table: aligned columns for a terminal, numbers with 4 decimals, unreadable runs listed after
/// the table. Markdown: a pipe table, same rounding. Csv and Json keep full precision because
/// they feed other tools; Csv has no room for the unreadable list (print `table.unreadable` to
/// stderr), Json carries it as `{"runs": [...], "unreadable": [...]}`.
pub fn render(table: &Table, format: Format) -> String {
    match format {
        Format::Table => render_text(table),
        Format::Csv => render_csv(table),
        Format::Markdown => render_markdown(table),
        Format::Json => render_json(table),
    }
}

fn rounded_rows(table: &Table) -> Vec<Vec<String>> {
    table
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&table.columns)
                .map(|(cell, col)| match parse_number(cell) {
                    Some(v) if is_numeric_column(col) && v.is_finite() => format!("{v:.4}"),
                    _ => cell.clone(),
                })
                .collect()
        })
        .collect()
}

fn render_text(table: &Table) -> String {
    let columns: Vec<(&str, Align)> = table
        .columns
        .iter()
        .map(|c| {
            let align = if is_numeric_column(c) {
                Align::Right
            } else {
                Align::Left
            };
            (c.as_str(), align)
        })
        .collect();
    let rows = rounded_rows(table);
    let empty = rows.is_empty();
    let mut out = text_table::plain(&columns, rows);
    if empty {
        out.push_str("(no readable runs)\n");
    }
    for (path, reason) in &table.unreadable {
        let _ = writeln!(out, "unreadable: {}: {reason}", path.display());
    }
    out
}

fn render_csv(table: &Table) -> String {
    // Writing into a Vec cannot fail, and every cell is a UTF-8 String.
    let mut w = csv::Writer::from_writer(Vec::new());
    for record in std::iter::once(&table.columns).chain(&table.rows) {
        w.write_record(record).expect("CSV into memory");
    }
    let bytes = w.into_inner().expect("CSV into memory");
    String::from_utf8(bytes).expect("CSV of strings is UTF-8")
}

fn render_markdown(table: &Table) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    out.push_str(&row(table.columns.iter().map(|c| escape(c)).collect()));
    out.push_str(&row(table
        .columns
        .iter()
        .map(|c| if is_numeric_column(c) { "---:" } else { "---" }.to_string())
        .collect()));
    for r in rounded_rows(table) {
        out.push_str(&row(r.iter().map(|c| escape(c)).collect()));
    }
    if !table.unreadable.is_empty() {
        out.push('\n');
        for (path, reason) in &table.unreadable {
            let _ = writeln!(
                out,
                "- unreadable: `{}`: {}",
                path.display(),
                escape(reason)
            );
        }
    }
    out
}

/// One run's row as a JSON object whose keys keep the table's column order. serde_json's
/// `Map` sorts its keys unless the `preserve_order` feature is on, and that feature would be
/// unified into every crate of the build that uses serde_json (burn, cubecl, schemars:
/// a full rebuild, and a reordered schemas/pipeline.schema.json); serde's own map
/// serialisation keeps the order without it.
struct JsonRow<'a> {
    columns: &'a [String],
    cells: &'a [String],
}

impl serde::Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (column, cell) in self.columns.iter().zip(self.cells) {
            map.serialize_entry(column, &json_cell(column, cell))?;
        }
        map.end()
    }
}

/// A cell as JSON: numbers as numbers (non-finite ones, and missing cells, as null, which is
/// what JSON readers can take), everything else as a string.
fn json_cell(column: &str, cell: &str) -> serde_json::Value {
    if cell == MISSING {
        serde_json::Value::Null
    } else if is_numeric_column(column) {
        parse_number(cell)
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    } else {
        serde_json::Value::String(cell.to_string())
    }
}

/// `{"runs": [...], "unreadable": [{"path", "reason"}]}`, pretty-printed.
fn render_json(table: &Table) -> String {
    #[derive(serde::Serialize)]
    struct Unreadable {
        path: String,
        reason: String,
    }
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        runs: Vec<JsonRow<'a>>,
        unreadable: Vec<Unreadable>,
    }
    let doc = Doc {
        runs: table
            .rows
            .iter()
            .map(|cells| JsonRow {
                columns: &table.columns,
                cells,
            })
            .collect(),
        unreadable: table
            .unreadable
            .iter()
            .map(|(path, reason)| Unreadable {
                path: path.display().to_string(),
                reason: reason.clone(),
            })
            .collect(),
    };
    // Strings, finite numbers and nulls under string keys always serialise.
    let mut text = serde_json::to_string_pretty(&doc).expect("JSON of strings and numbers");
    text.push('\n');
    text
}

/// Pixel size of [`plot`]'s output (the SVG uses the same user units).
pub const PLOT_SIZE: (u32, u32) = (1400, 640);

/// Learning curves from metrics.csv of each readable run: two panels (loss, accuracy) vs. a
/// global x = cumulative epoch across stages, one line per run and per split (train solid,
/// validation dashed, test a dot), legend labelled by the differing config keys
/// (`k=v, k2=v2`, keys shortened to their shortest unambiguous dotted suffix, or the run name if
/// nothing differs). Output format from the extension: .png or .svg; anything else → Err. Runs
/// whose metrics.csv is missing/empty are skipped (not fatal); none to draw at all is an error.
pub fn plot(runs: &[Loaded], table: &Table, path: &Path) -> anyhow::Result<()> {
    plot_with_size(runs, table, path, PLOT_SIZE)
}

#[derive(Clone, Copy)]
pub enum ImageKind {
    Png,
    Svg,
}

impl ImageKind {
    /// The format a plot's file name asks for; anything but .png / .svg is an error.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(ImageKind::Png),
            Some("svg") => Ok(ImageKind::Svg),
            _ => bail!(
                "cannot plot to {}: the file name must end in .png or .svg",
                path.display()
            ),
        }
    }
}

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
    .map_err(|e| match e {
        PlotError::Font(m) | PlotError::Other(m) => {
            anyhow!("cannot draw {}: {m}", path.display())
        }
    })
}

#[derive(Debug, Deserialize)]
struct MetricRow {
    stage: String,
    epoch: usize,
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

/// Places each row on one x axis spanning all stages: stage k starts where stage k-1's last
/// epoch ended, and a validation row logged mid-epoch (`validate_every`) lands at the fraction
/// of the epoch's optimizer steps done by then. Steps in metrics.csv count from the start of
/// their stage, and each epoch's train row carries the step count at its end.
fn place_rows(rows: &[MetricRow]) -> (Vec<f64>, Vec<(String, f64)>) {
    let mut order: Vec<&str> = Vec::new();
    let mut max_epoch: HashMap<&str, usize> = HashMap::new();
    let mut epoch_end: HashMap<(&str, usize), usize> = HashMap::new();
    for r in rows {
        if !order.contains(&r.stage.as_str()) {
            order.push(&r.stage);
        }
        let m = max_epoch.entry(&r.stage).or_insert(0);
        *m = (*m).max(r.epoch);
        if r.split == "train" {
            epoch_end.insert((&r.stage, r.epoch), r.step);
        }
    }
    let mut offsets: HashMap<&str, f64> = HashMap::new();
    let mut stages = Vec::new();
    let mut start = 0.0;
    for s in &order {
        offsets.insert(s, start);
        stages.push((s.to_string(), start));
        start += max_epoch[s] as f64;
    }
    let xs = rows
        .iter()
        .map(|r| {
            let offset = offsets[r.stage.as_str()];
            if r.epoch == 0 {
                return offset;
            }
            let end = epoch_end.get(&(r.stage.as_str(), r.epoch)).copied();
            let begin = if r.epoch == 1 {
                Some(0)
            } else {
                epoch_end.get(&(r.stage.as_str(), r.epoch - 1)).copied()
            };
            match (begin, end) {
                (Some(b), Some(e)) if e > b && r.step < e => {
                    let frac = r.step.saturating_sub(b) as f64 / (e - b) as f64;
                    offset + (r.epoch - 1) as f64 + frac
                }
                _ => offset + r.epoch as f64,
            }
        })
        .collect();
    (xs, stages)
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
            let mut splits: BTreeMap<String, Vec<Point>> = BTreeMap::new();
            for (r, x) in rows.iter().zip(xs) {
                splits.entry(r.split.clone()).or_default().push(Point {
                    x,
                    loss: r.loss,
                    accuracy: r.accuracy,
                });
            }
            Some(RunCurves {
                label,
                splits,
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

pub(crate) enum PlotError {
    Font(String),
    Other(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        // plotters does not re-export `DrawingErrorKind`, so its Display is the only handle on
        // the font case ("backend error: Font loading error: ...").
        let message = e.to_string();
        if message.contains("Font loading error") {
            PlotError::Font(message)
        } else {
            PlotError::Other(message)
        }
    }
}

/// DejaVu Sans (assets/fonts; Bitstream Vera licence, see DejaVuSans-LICENSE.txt), the face
/// fontconfig resolved `sans-serif` to when plots used system fonts. Embedded so that `pipe`
/// links no font libraries and draws the same text on any machine.
const PLOT_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Makes [`PLOT_FONT`] the `sans-serif` family that the plots ask for (plotters' ab_glyph path
/// knows only registered fonts), once per process.
pub(crate) fn register_plot_font() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // The embedded font always parses (a test draws text with it); were it not to, text
        // would fail with plotters' font error and the plot would fall back to curves alone.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, PLOT_FONT);
    });
}

fn draw_file(
    kind: ImageKind,
    path: &Path,
    size: (u32, u32),
    curves: &[RunCurves],
    text: bool,
) -> Result<(), PlotError> {
    register_plot_font();
    match kind {
        ImageKind::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(&root, curves, text)?;
            root.present()?;
        }
        ImageKind::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(&root, curves, text)?;
            root.present()?;
        }
    }
    Ok(())
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
        let x_fmt = |x: &f64| format!("{}", (x * 100.0).round() / 100.0);
        chart
            .configure_mesh()
            .x_desc("epoch (cumulative across stages)")
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

    /// A fresh directory per test, so tests running in parallel never share files.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pipe-compare-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(lr: &str, heads: u32) -> String {
        format!(
            r#"# Resolved by pipe
name = "toy"
seed = 0

[dataset]
format = "ag_news_csv"
text = ["title", "description"]

[[model.layers]]
name = "embed"
type = "token_and_position_embedding"
embed_dim = 32

[[model.layers]]
name = "block"
type = "transformer_block"
num_heads = {heads}
dropout = 0.1

[[model.layers]]
type = "global_average_pooling_1d"

[[model.layers]]
type = "dense"
units = 20

[[model.layers]]
type = "dropout"
rate = 0.1

[[model.layers]]
type = "dense"
units = 4

[[stages]]
epochs = 3
metrics = ["accuracy"]

[stages.optimizer]
type = "adam"
learning_rate = {lr}
epsilon = 0.0000001
"#
        )
    }

    /// `quality` shifts every accuracy up and loss down, so runs rank predictably.
    fn write_run(root: &Path, name: &str, lr: &str, heads: u32, quality: f64) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pipeline.toml"), spec(lr, heads)).unwrap();
        let mut csv = String::from("stage,epoch,step,split,loss,accuracy,lr\n");
        for epoch in 1..=3 {
            let e = epoch as f64;
            let acc = (0.4 + 0.1 * e + quality).min(1.0);
            let loss = 1.4 - 0.3 * e - quality;
            if epoch == 2 {
                // A mid-epoch evaluation from `validate_every`.
                let _ = writeln!(
                    csv,
                    "train,2,15,validation,{:.6},{:.6},1e-3",
                    loss + 0.1,
                    acc - 0.05
                );
            }
            let _ = writeln!(
                csv,
                "train,{epoch},{},train,{loss:.6},{acc:.6},1e-3",
                epoch * 10
            );
            let _ = writeln!(
                csv,
                "train,{epoch},{},validation,{:.6},{:.6},1e-3",
                epoch * 10,
                loss + 0.05,
                acc - 0.02
            );
        }
        let test_acc = 0.68 + quality;
        let test_loss = 0.55 - quality;
        let _ = writeln!(csv, "train,3,30,test,{test_loss:.6},{test_acc:.6},0e0");
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        let run = serde_json::json!({
            "status": "completed",
            "pipeline": "toy",
            "run": name,
            "started_at": "2026-11-27T07:36:23+00:00",
            "ended_at": "2026-11-27T07:37:23+00:00",
            "duration_s": 60.0 + quality * 100.0,
            "seed": 0,
            "device": "cpu",
            "stages": [{
                "name": "train", "epochs_completed": 3, "steps": 30, "seconds": 50.0,
                "last": {"train.loss": 0.5 - quality, "validation.accuracy": 0.68 + quality},
                "best": {"validation.accuracy": 0.68 + quality},
                "best_epoch": 3
            }],
            "metrics": {
                "test.accuracy": test_acc,
                "test.loss": test_loss,
                "train.accuracy": 0.7 + quality,
                "train.loss": 0.5 - quality,
                "validation.accuracy": 0.68 + quality,
                "validation.loss": 0.55 - quality
            }
        });
        std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
        dir
    }

    /// run_a: lr 1e-3, 2 heads; run_b: lr 3e-4, 2 heads (best); run_c: lr 1e-3, 4 heads;
    /// broken: a folder whose run never wrote run.json.
    fn fixture(name: &str) -> (PathBuf, Vec<PathBuf>) {
        let root = scratch(name);
        let a = write_run(&root, "run_a", "0.001", 2, 0.12);
        let b = write_run(&root, "run_b", "0.0003", 2, 0.18);
        let c = write_run(&root, "run_c", "0.001", 4, 0.15);
        let broken = root.join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("pipeline.toml"), spec("0.001", 2)).unwrap();
        (root, vec![a, b, c, broken])
    }

    #[test]
    fn flatten_addresses_entries_by_name_and_auto_name() {
        let doc: toml::Table = spec("0.001", 2).parse().unwrap();
        let flat = flatten(&doc);
        assert_eq!(flat["name"], "toy");
        assert_eq!(flat["seed"], "0");
        assert_eq!(flat["model.block.num_heads"], "2");
        assert_eq!(flat["model.block.type"], "transformer_block");
        assert_eq!(
            flat["model.global_average_pooling_1d.type"],
            "global_average_pooling_1d"
        );
        assert_eq!(flat["model.dense.units"], "20");
        assert_eq!(flat["model.dropout.rate"], "0.1");
        assert_eq!(flat["model.dense_1.units"], "4");
        assert_eq!(flat["stages.train.optimizer.learning_rate"], "0.001");
        assert_eq!(flat["stages.train.optimizer.epsilon"], "0.0000001");
        assert_eq!(flat["stages.train.metrics"], r#"["accuracy"]"#);
        assert_eq!(flat["dataset.text"], r#"["title", "description"]"#);
        assert!(
            !flat.contains_key("model.block.name"),
            "name is in the address"
        );

        // Explicit names are reserved before auto-naming; unnamed stages count by position.
        let doc: toml::Table = r#"
            [[model.layers]]
            type = "dense"
            [[model.layers]]
            name = "dense_1"
            type = "dropout"
            [[model.layers]]
            type = "dense"
            [[stages]]
            epochs = 1
            [[stages]]
            name = "finetune"
            epochs = 2
            [[stages]]
            epochs = 3
        "#
        .parse()
        .unwrap();
        let flat = flatten(&doc);
        assert_eq!(flat["model.dense.type"], "dense");
        assert_eq!(flat["model.dense_1.type"], "dropout");
        assert_eq!(flat["model.dense_2.type"], "dense");
        assert_eq!(flat["stages.train.epochs"], "1");
        assert_eq!(flat["stages.finetune.epochs"], "2");
        assert_eq!(flat["stages.stage_3.epochs"], "3");
    }

    #[test]
    fn table_shows_differing_keys_and_metrics() {
        let (root, paths) = fixture("table");
        let runs = load_runs(&paths);
        let table = build_table(&runs, None).unwrap();
        assert_eq!(
            table.columns,
            [
                "run",
                "status",
                "duration_s",
                "model.block.num_heads",
                "stages.train.optimizer.learning_rate",
                "test.accuracy",
                "test.loss",
                "validation.accuracy",
                "validation.loss",
                "train.accuracy",
                "train.loss",
                "best.train.validation.accuracy",
            ]
        );
        let names: Vec<&str> = table.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, ["run_a", "run_b", "run_c"]);
        assert_eq!(table.rows[1][3], "2");
        assert_eq!(table.rows[1][4], "0.0003");

        assert_eq!(table.unreadable.len(), 1);
        assert_eq!(table.unreadable[0].0, paths[3]);
        assert_eq!(table.unreadable[0].1, "no run.json");
        let text = render(&table, Format::Table);
        assert!(
            text.contains(&format!("unreadable: {}: no run.json", paths[3].display())),
            "{text}"
        );
        assert!(text.contains("0.8600"), "4 decimals: {text}");
        assert!(
            text.contains(" 0.0003 "),
            "config values are not rounded: {text}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn sorting_follows_metric_direction() {
        let (root, paths) = fixture("sort");
        let runs = load_runs(&paths);
        let order = |key: &str| -> Vec<String> {
            let t = build_table(&runs, Some(key)).unwrap();
            t.rows.iter().map(|r| r[0].clone()).collect()
        };
        assert_eq!(order("test.accuracy"), ["run_b", "run_c", "run_a"]);
        assert_eq!(order("test.loss"), ["run_b", "run_c", "run_a"]);
        assert_eq!(order("duration_s"), ["run_a", "run_c", "run_b"]);
        assert_eq!(
            order("stages.train.optimizer.learning_rate"),
            ["run_b", "run_a", "run_c"]
        );
        let err = build_table(&runs, Some("test.f1")).unwrap_err().to_string();
        assert!(
            err.contains("test.f1") && err.contains("test.accuracy"),
            "{err}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn machine_formats_parse() {
        let (root, paths) = fixture("formats");
        let runs = load_runs(&paths);
        let table = build_table(&runs, Some("test.accuracy")).unwrap();

        let csv_text = render(&table, Format::Csv);
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, table.columns);
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(&records[0][0], "run_b");
        let acc: f64 = records[0][5].parse().unwrap();
        assert!((acc - 0.86).abs() < 1e-12, "CSV keeps full precision");

        let json: serde_json::Value = serde_json::from_str(&render(&table, Format::Json)).unwrap();
        let rows = json["runs"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["run"], "run_b");
        assert_eq!(rows[0]["status"], "completed");
        assert_eq!(rows[0]["stages.train.optimizer.learning_rate"], "0.0003");
        assert!((rows[0]["test.accuracy"].as_f64().unwrap() - 0.86).abs() < 1e-12);
        let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            table.columns.iter().collect::<Vec<_>>(),
            "column order"
        );
        let unreadable = json["unreadable"].as_array().unwrap();
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0]["reason"], "no run.json");

        let md = render(&table, Format::Markdown);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].starts_with("| run | status | duration_s |"),
            "{md}"
        );
        assert!(lines[1].starts_with("| --- | --- | ---: |"), "{md}");
        let cells = |l: &str| l.trim_matches('|').split(" | ").count();
        for l in &lines[..5] {
            assert_eq!(cells(l), table.columns.len(), "{l}");
        }
        assert!(md.contains("no run.json"));

        // An empty selection still gives valid JSON.
        let empty = build_table(&[], None).unwrap();
        let json: serde_json::Value = serde_json::from_str(&render(&empty, Format::Json)).unwrap();
        assert_eq!(json["runs"].as_array().unwrap().len(), 0);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unreadable_reasons() {
        let root = scratch("unreadable");
        let bad_json = root.join("bad_json");
        std::fs::create_dir_all(&bad_json).unwrap();
        std::fs::write(bad_json.join("run.json"), "{\"status\": ").unwrap();
        let bad_toml = root.join("bad_toml");
        std::fs::create_dir_all(&bad_toml).unwrap();
        std::fs::write(bad_toml.join("run.json"), r#"{"status": "failed"}"#).unwrap();
        std::fs::write(bad_toml.join("pipeline.toml"), "name = \"x\"\nseed = = 1\n").unwrap();
        let no_spec = root.join("no_spec");
        std::fs::create_dir_all(&no_spec).unwrap();
        std::fs::write(no_spec.join("run.json"), r#"{"status": "running"}"#).unwrap();
        let missing = root.join("missing");

        let loaded = load_runs(&[bad_json, bad_toml, no_spec, missing]);
        let reasons: Vec<String> = loaded
            .iter()
            .map(|l| match l {
                Loaded::Unreadable { reason, .. } => reason.clone(),
                Loaded::Ok(r) => panic!("{} should be unreadable", r.name),
            })
            .collect();
        assert!(reasons[0].starts_with("run.json: "), "{}", reasons[0]);
        assert!(
            reasons[1].starts_with("pipeline.toml: line 2"),
            "{}",
            reasons[1]
        );
        assert!(!reasons[1].contains('\n'), "{}", reasons[1]);
        assert_eq!(reasons[2], "no pipeline.toml");
        assert_eq!(reasons[3], "no such directory");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn global_x_spans_stages_and_mid_epoch_evaluations() {
        let text = "stage,epoch,step,split,loss,accuracy,lr\n\
            features,1,4,train,1.38,0.30,1e-3\n\
            features,1,4,validation,1.38,0.25,1e-3\n\
            finetune,1,2,validation,1.37,0.33,7.5e-6\n\
            finetune,1,4,train,1.36,0.34,7.5e-6\n\
            finetune,1,4,validation,1.37,0.35,7.5e-6\n\
            finetune,2,8,train,1.30,0.40,7.5e-6\n\
            finetune,2,8,test,1.30,0.41,0e0\n";
        let rows: Vec<MetricRow> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .map(Result::unwrap)
            .collect();
        let (xs, stages) = place_rows(&rows);
        assert_eq!(xs, [1.0, 1.0, 1.5, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(
            stages,
            [("features".to_string(), 0.0), ("finetune".to_string(), 1.0)]
        );
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
