//! The text forms of a comparison [`Table`]: aligned columns for a terminal, a Markdown pipe
//! table, CSV and JSON, one function per format.

use std::fmt::Write as _;

use super::table::{MISSING, Table, is_numeric_column, parse_number};
use crate::text_table::{self, Align};

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

/// The cells with numbers at 4 decimals, for the formats a person reads.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::load::load_runs;
    use crate::compare::table::build_table;
    use crate::compare::test_fixtures::fixture;

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
}
