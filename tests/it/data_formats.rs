//! Your own data end to end: the same AG News rows as a header CSV and as JSON Lines train,
//! test and evaluate exactly as they do in AG News' own CSV, and a bad row in either format is
//! reported at its physical line.

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    AgNewsRow, ag_news_rows, json, only_run, pipe, scratch, tensors, text, write_header_csv,
    write_jsonl,
};

const SPEC: &str = "pipelines/agnews_transformer.toml";

/// `rows` in AG News' own headerless CSV (`"class_index","title","description"`).
fn write_ag_news(path: &Path, rows: &[AgNewsRow]) {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .quote_style(csv::QuoteStyle::Always)
        .from_path(path)
        .unwrap();
    for r in rows {
        let class = r.class_index.to_string();
        w.write_record([class.as_str(), &r.title, &r.description])
            .unwrap();
    }
    w.flush().unwrap();
}

/// Model A for two quick epochs on `train` and `test` in `format`: the run folder.
fn trained_on(format: &str, train: &Path, test: &Path, runs: &Path) -> PathBuf {
    let out = pipe()
        .args(["run", SPEC, "--quiet"])
        .arg(format!("--set=dataset.format=\"{format}\""))
        .arg(format!("--set=dataset.train=\"{}\"", train.display()))
        .arg(format!("--set=dataset.test=\"{}\"", test.display()))
        .args([
            "--set=vectorizer.output_sequence_length=48",
            "--set=stages.train.batch_size=32",
            "--set=stages.train.epochs=2",
        ])
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{format}: {:?}", text(&out));
    only_run(runs, "agnews_transformer")
}

/// `pipe eval RUN --data FILE [--format F] --json`: the report.
fn eval(run: &Path, data: &Path, format: Option<&str>) -> serde_json::Value {
    let mut cmd = pipe();
    cmd.args(["eval", run.to_str().unwrap(), "--json", "--data"])
        .arg(data);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    printed["report"].clone()
}

#[test]
fn csv_and_jsonl_rows_train_and_evaluate_exactly_as_the_same_ag_news_rows() {
    let dir = scratch("formats");
    let (train, test) = (ag_news_rows("train", 240), ag_news_rows("test", 120));
    let files = |ext: &str| {
        (
            dir.join(format!("train.{ext}")),
            dir.join(format!("test.{ext}")),
        )
    };
    let (ag_train, ag_test) = files("ag.csv");
    write_ag_news(&ag_train, &train);
    write_ag_news(&ag_test, &test);
    // Header CSV with the labels as class names; JSON Lines with them as class indices.
    let (csv_train, csv_test) = files("csv");
    write_header_csv(&csv_train, &train);
    write_header_csv(&csv_test, &test);
    let (jsonl_train, jsonl_test) = files("jsonl");
    write_jsonl(&jsonl_train, &train);
    write_jsonl(&jsonl_test, &test);

    let reference = trained_on("ag_news_csv", &ag_train, &ag_test, &dir.join("ag"));
    let record = json(&reference.join("run.json"));
    assert_eq!(record["rows"]["train"], 240);
    assert_eq!(record["rows"]["test"], 120);
    let metrics = std::fs::read_to_string(reference.join("metrics.csv")).unwrap();
    let weights = tensors(&reference.join("model/model.safetensors"));
    for (format, train, test) in [
        ("csv", &csv_train, &csv_test),
        ("jsonl", &jsonl_train, &jsonl_test),
    ] {
        let run = trained_on(format, train, test, &dir.join(format));
        let record = json(&run.join("run.json"));
        assert_eq!(record["rows"]["train"], 240, "{format}");
        assert_eq!(record["rows"]["test"], 120, "{format}");
        assert_eq!(
            std::fs::read_to_string(run.join("metrics.csv")).unwrap(),
            metrics,
            "{format}: the same rows must train the same"
        );
        assert!(
            tensors(&run.join("model/model.safetensors")) == weights,
            "{format}: the same rows must end at the same weights"
        );
    }

    // eval reads the test rows in any format (the run's own, or --format) to the same report,
    // whose accuracy is the run's test accuracy.
    let want = eval(&reference, &ag_test, None);
    let accuracy = record_accuracy(&reference);
    assert_eq!(want["rows"], 120);
    assert_eq!(want["accuracy"].as_f64().unwrap(), accuracy);
    common::assert_report_matches_its_confusion(&want);
    for (data, format) in [(&csv_test, "csv"), (&jsonl_test, "jsonl")] {
        assert_eq!(eval(&reference, data, Some(format)), want, "{format}");
    }
    let csv_run = only_run(&dir.join("csv"), "agnews_transformer");
    assert_eq!(eval(&csv_run, &csv_test, None), want);
    assert_eq!(eval(&csv_run, &ag_test, Some("ag_news_csv")), want);
}

fn record_accuracy(run: &Path) -> f64 {
    json(&run.join("run.json"))["metrics"]["test.accuracy"]
        .as_f64()
        .unwrap()
}

/// A bad row is reported at the physical line where it starts (a quoted field that spans
/// lines above it counts its lines), in the header CSV and in JSON Lines alike, and the run
/// fails saying so.
#[test]
fn a_bad_csv_or_jsonl_row_is_named_by_its_physical_line() {
    let dir = scratch("formats-bad");
    let mut rows = ag_news_rows("train", 12);
    // Row 3 (file line 4, after the header) spans two lines.
    rows[2].description = format!("{}\nsecond line", rows[2].description);
    let csv_file = dir.join("train.csv");
    write_header_csv(&csv_file, &rows);
    // Data row 8 gets a label that is no class: file line 1 (header) + 8 + 1 (row 3's break).
    let text_csv = std::fs::read_to_string(&csv_file).unwrap();
    let mut lines: Vec<String> = text_csv.lines().map(String::from).collect();
    let bad = 1 + 8 + 1;
    let comma = lines[bad - 1].find(',').unwrap();
    lines[bad - 1] = format!("Politics{}", &lines[bad - 1][comma..]);
    std::fs::write(&csv_file, lines.join("\n") + "\n").unwrap();

    let jsonl_file = dir.join("train.jsonl");
    write_jsonl(&jsonl_file, &rows[..6]);
    let mut lines: Vec<String> = std::fs::read_to_string(&jsonl_file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(3, String::new()); // blank lines are skipped but counted
    lines[4] = lines[4].replacen("\"label\":", "\"label\" ", 1);
    std::fs::write(&jsonl_file, lines.join("\n") + "\n").unwrap();

    // The test rows (good) in each format.
    let (csv_test, jsonl_test) = (dir.join("test.csv"), dir.join("test.jsonl"));
    write_header_csv(&csv_test, &rows);
    write_jsonl(&jsonl_test, &rows);
    for (format, file, test, line, problem) in [
        (
            "csv",
            &csv_file,
            &csv_test,
            bad,
            "label \"Politics\" is not one of World, Sports, Business, Sci/Tech",
        ),
        ("jsonl", &jsonl_file, &jsonl_test, 5, "invalid JSON: "),
    ] {
        let runs = dir.join(format!("runs-{format}"));
        let out = pipe()
            .args(["run", SPEC, "--quiet"])
            .arg(format!("--set=dataset.format=\"{format}\""))
            .arg(format!("--set=dataset.train=\"{}\"", file.display()))
            .arg(format!("--set=dataset.test=\"{}\"", test.display()))
            .arg(format!("--runs-dir={}", runs.display()))
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        let want = format!("{}:{line}: {problem}", file.display());
        assert!(stderr.contains(&want), "{format}: want {want} in {stderr}");
        // Among the first rows, which the check before a run reads: no run folder is made.
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(
            !runs.exists(),
            "{format}: a refused run made {}",
            runs.display()
        );
    }
}
