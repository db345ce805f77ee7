//! TensorBoard event files: a run (here a paused and resumed one) leaves one event file whose
//! scalars are metrics.csv's rows, record by record, with valid checksums.

use crate::common;

use std::path::Path;

use pipe::run::tensorboard::{event_files, read_scalars};

#[test]
fn a_resumed_run_has_one_event_file_holding_exactly_its_metrics_rows() {
    let scratch = common::scratch("tensorboard");
    let runs = scratch.join("runs");
    let run = common::paused_then_resumed(Path::new("pipelines/sports_csv.toml"), &[], &runs);
    let files = event_files(&run);
    assert_eq!(files.len(), 1, "{files:?}");
    let events = read_scalars(&files[0]).unwrap();
    let rows = common::metrics_rows(&run);
    // The file-version event first, then one event per row: none twice after the resume.
    assert!(events[0].1.is_empty());
    assert_eq!(events.len() - 1, rows.len());
    for ((step, scalars), row) in events[1..].iter().zip(&rows) {
        assert_eq!(step.to_string(), row["step"], "{row:?}");
        let split = &row["split"];
        let value = |tag: &str| {
            let (_, v) = scalars
                .iter()
                .find(|(t, _)| t == tag)
                .unwrap_or_else(|| panic!("{tag}"));
            f64::from(*v)
        };
        for (tag, column) in [("loss", "loss"), ("accuracy", "accuracy")] {
            let csv: f64 = row[column].parse().unwrap();
            let got = value(&format!("{split}/{tag}"));
            assert!(
                (got - csv).abs() <= 1e-6 + 1e-6 * csv.abs(),
                "{split}/{tag}: {got} vs {csv}"
            );
        }
        if split == "train" || split == "train_step" {
            let lr: f64 = row["lr"].parse().unwrap();
            assert!((value(&format!("{split}/lr")) - lr).abs() <= 1e-6 * lr);
            assert!(value(&format!("{split}/samples_per_s")) > 0.0);
        }
    }
    // The step rows (30 steps an epoch: a row every 2) are there, at their own steps.
    let step_rows = rows.iter().filter(|r| r["split"] == "train_step").count();
    assert_eq!(step_rows, 5 * 15, "{rows:?}");
}
