//! The text tables pipe prints (summary, compare, runs, eval, run results, bench), drawn by
//! comfy-table so column widths and alignment are computed in one place.

use comfy_table::{
    CellAlignment, ContentArrangement, ContentLineStyle, LineStyle, Table, TableStyle,
};

/// How a column's cells (and its header) line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers, so their digits line up.
    Right,
}

/// Keras' `model.summary()` box: heavy lines around the header, light ones below.
const KERAS: TableStyle = TableStyle::new()
    .top_border(LineStyle::new('┏', '━', '┳', '┓'))
    .header_lines(ContentLineStyle::new('┃', '┃', '┃'))
    .header_separator(LineStyle::new('┡', '━', '╇', '┩'))
    .content_lines(ContentLineStyle::new('│', '│', '│'))
    .row_separator(LineStyle::new('├', '─', '┼', '┤'))
    .bottom_border(LineStyle::new('└', '─', '┴', '┘'));

/// Columns two spaces apart under a header line, nothing drawn: easy to read, grep and cut.
pub fn plain(columns: &[(&str, Align)], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = build(comfy_table::presets::NOTHING, columns, rows);
    let last = columns.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    finish(&table)
}

/// The Keras summary box, one cell of padding each side.
pub fn keras(columns: &[(&str, Align)], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    finish(&build(KERAS, columns, rows))
}

fn build(
    style: TableStyle,
    columns: &[(&str, Align)],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Table {
    let mut table = Table::new();
    // Never wrapped to a terminal's width: the tables also go into files (summary.txt).
    table
        .load_style(style)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns.iter().map(|(name, _)| *name).collect::<Vec<_>>());
    for row in rows {
        table.add_row(row);
    }
    for (column, (_, align)) in table.column_iter_mut().zip(columns) {
        column.set_cell_alignment(match align {
            Align::Left => CellAlignment::Left,
            Align::Right => CellAlignment::Right,
        });
    }
    table
}

/// Lines without trailing blanks, and a final newline so the table can be printed as is.
fn finish(table: &Table) -> String {
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_columns_are_two_spaces_apart_and_numbers_right_aligned() {
        let text = plain(
            &[("run", Align::Left), ("accuracy", Align::Right)],
            [
                vec!["a".to_string(), "0.5".to_string()],
                vec!["longer".to_string(), "0.25".to_string()],
            ],
        );
        assert_eq!(
            text,
            "run     accuracy\na            0.5\nlonger      0.25\n"
        );
    }

    #[test]
    fn keras_box_has_heavy_header_and_light_rows() {
        let text = keras(
            &[("Layer (type)", Align::Left), ("Param #", Align::Right)],
            [
                vec!["dense (Dense)".to_string(), "84".to_string()],
                vec!["d2 (Dense)".to_string(), "660".to_string()],
            ],
        );
        let want = "\
┏━━━━━━━━━━━━━━━┳━━━━━━━━━┓
┃ Layer (type)  ┃ Param # ┃
┡━━━━━━━━━━━━━━━╇━━━━━━━━━┩
│ dense (Dense) │      84 │
├───────────────┼─────────┤
│ d2 (Dense)    │     660 │
└───────────────┴─────────┘
";
        assert_eq!(text, want);
    }
}
