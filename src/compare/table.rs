//! The comparison table: which columns to show (the config keys that differ, then the metrics),
//! one row of full-precision cells per readable run, sorted by the column asked for; and what a
//! column's name says about its cells (metric or config, numeric, which direction is better).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::anyhow;

use super::load::{Loaded, RunSummary};

/// What `pipe compare` prints: one row per readable run, and the runs it could not read.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    /// Cells as plain strings at full precision (`-` where a run lacks the key);
    /// [`render`](fn@super::render) rounds numbers for the human-facing formats only.
    pub rows: Vec<Vec<String>>,
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The columns every table starts with, whatever the runs hold.
pub(super) const FIXED_COLUMNS: [&str; 3] = ["run", "status", "duration_s"];
/// The cell of a key that a run lacks.
pub(super) const MISSING: &str = "-";

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
        .map(|r| row_of(r, &config_keys, &metric_keys))
        .collect();
    sort_rows(&mut rows, &columns, sort)?;
    Ok(Table {
        columns,
        rows,
        unreadable,
    })
}

impl Table {
    /// A row for a sweep's trial that has no run folder yet (emitted, pending, skipped, or
    /// failed before it began): `trial N` as its name, its status, and the values of its
    /// overrides in the columns of their keys.
    pub fn push_trial_without_run(&mut self, index: usize, status: &str, overrides: &[String]) {
        let row = (self.columns.iter().enumerate())
            .map(|(i, column)| match i {
                0 => format!("trial {index}"),
                1 => status.to_string(),
                _ => (overrides.iter())
                    .find_map(|o| o.strip_prefix(column.as_str())?.strip_prefix('='))
                    .unwrap_or(MISSING)
                    .to_string(),
            })
            .collect();
        self.rows.push(row);
    }
}

/// One run's cells, in column order: the fixed columns, then `config_keys`, then `metric_keys`.
fn row_of(run: &RunSummary, config_keys: &[String], metric_keys: &[&String]) -> Vec<String> {
    let mut row = vec![
        run.name.clone(),
        run.status.clone(),
        run.duration_s.map_or(MISSING.to_string(), format_number),
    ];
    row.extend(
        config_keys
            .iter()
            .map(|k| run.config.get(k).cloned().unwrap_or(MISSING.to_string())),
    );
    row.extend(metric_keys.iter().map(|k| {
        run.metrics
            .get(*k)
            .map_or(MISSING.to_string(), |v| format_number(*v))
    }));
    row
}

/// Sorts by the column named `sort`, best first, ties by run name; without one, by run name.
fn sort_rows(
    rows: &mut [Vec<String>],
    columns: &[String],
    sort: Option<&str>,
) -> anyhow::Result<()> {
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
    Ok(())
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
pub(super) fn is_metric_column(column: &str) -> bool {
    metric_group(column) < 4
}

pub(super) fn is_numeric_column(column: &str) -> bool {
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

pub(super) fn parse_number(cell: &str) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::load::load_runs;
    use crate::compare::render::{Format, render};
    use crate::compare::test_fixtures::fixture;

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
}
