//! `pipe run` end to end on real AG News rows: the run folder, determinism, eval, predict,
//! interruption and a broken data file.

use crate::common;

use std::time::Duration;

use common::{
    AG_NEWS_LABELS, Scratch, ag_news_rows, assert_report_matches_its_confusion,
    eval_first_test_rows, json, metrics_rows, metrics_rows_so_far, only_run, pipe, predict_json,
    quick, run, scratch, tensors, text, wait_until,
};

const SPEC: &str = "pipelines/agnews_transformer.toml";

/// The scratch runs dir (removed when dropped) and the run folder in it.
fn run_quick(name: &str, rows: usize, extra: &[&str]) -> (Scratch, std::path::PathBuf) {
    let runs = scratch(name);
    let mut args: Vec<String> = vec!["run".into(), SPEC.into(), "--quiet".into()];
    args.extend(quick(&runs, rows));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = pipe().args(&args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let run = only_run(&runs, "agnews_transformer");
    assert_prints_its_results(&stdout, &run);
    (runs, run)
}

/// `pipe run --quiet` prints `run FOLDER Completed in …`, then the results table whose test row
/// holds run.json's test loss and accuracy.
fn assert_prints_its_results(stdout: &str, run: &std::path::Path) {
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("run {} Completed in ", run.display())),
        "{stdout}"
    );
    let metrics = &json(&run.join("run.json"))["metrics"];
    let want = vec![
        "test".to_string(),
        format!("{:.4}", metrics["test.loss"].as_f64().unwrap()),
        format!("{:.4}", metrics["test.accuracy"].as_f64().unwrap()),
    ];
    let test_rows: Vec<Vec<String>> = (stdout.lines())
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|w| w == "test"))
        .collect();
    assert_eq!(test_rows, vec![want], "{stdout}");
}

#[test]
fn run_folder_is_complete_and_deterministic_and_serves_eval_and_predict() {
    let (runs_a, a) = run_quick("runa", 300, &["--set=stages.train.epochs=2"]);
    let (_runs_b, b) = run_quick("runb", 300, &["--set=stages.train.epochs=2"]);

    for f in [
        "pipeline.toml",
        "run.json",
        "metrics.csv",
        "timing.csv",
        "summary.txt",
        "log.txt",
        "vectorizer/tokenizer.json",
        "vectorizer/vocab.txt",
        "checkpoints/train-last.safetensors",
        "checkpoints/train-best.safetensors",
        "model/model.safetensors",
    ] {
        assert!(a.join(f).is_file(), "missing {f} in {}", a.display());
    }
    let record = json(&a.join("run.json"));
    assert_eq!(record["status"], "completed");
    assert_eq!(record["seed"], 42);
    assert_eq!(
        record["params"]["total"],
        20000 * 32 + 64 * 32 + 10656 + 660 + 84
    );
    assert_eq!(record["rows"]["train"], 300);
    assert_eq!(record["stages"][0]["epochs_completed"], 2);
    assert_eq!(record["burn_version"], "0.21.0");
    assert!(
        record["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "dataset.limit=300")
    );
    // The test accuracy is that of the final model on the first 300 test rows: `pipe eval` and
    // `pipe predict` on those rows (other code paths: the saved model, reloaded) agree exactly,
    // and so does metrics.csv's test row.
    let acc = record["metrics"]["test.accuracy"].as_f64().unwrap();
    let loss = record["metrics"]["test.loss"].as_f64().unwrap();
    assert_eq!(record["rows"]["test"], 300);
    let right = (acc * 300.0).round();
    assert!((acc - right / 300.0).abs() < 1e-12, "{acc} is not k/300");
    let evaluated = eval_first_test_rows(&a, 300, &runs_a);
    assert_eq!(evaluated["report"]["rows"], 300);
    assert_eq!(evaluated["report"]["accuracy"].as_f64().unwrap(), acc);
    let test_row = metrics_rows(&a).pop().unwrap();
    assert_eq!(test_row["split"], "test");
    assert_eq!(test_row["accuracy"], format!("{acc:.6}"));
    assert_eq!(test_row["loss"], format!("{loss:.6}"));
    let texts: Vec<String> = (ag_news_rows("test", 300).iter())
        .map(|r| format!("{} {}", r.title, r.description))
        .collect();
    let predicted = predict_json(&a, &texts);
    let hits = (predicted.iter().zip(ag_news_rows("test", 300)))
        .filter(|(p, r)| p["label"] == AG_NEWS_LABELS[r.class_index - 1])
        .count();
    assert_eq!(
        hits as f64, right,
        "pipe predict's accuracy on the test rows"
    );
    assert!(
        std::fs::read_to_string(a.join("summary.txt"))
            .unwrap()
            .contains("Total params")
    );
    assert!(
        std::fs::read_to_string(a.join("log.txt"))
            .unwrap()
            .contains("run ended")
    );

    // metrics.csv: fixed header, one row per event, identical across runs with one seed.
    let ma = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    let mb = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    assert!(
        ma.starts_with("stage,epoch,step,split,loss,accuracy,lr,global_step,samples\n"),
        "{ma}"
    );
    // A train and a validation row per epoch, the test row; and 300 rows / 32 = 10 steps an
    // epoch, each with its train_step row (at most 20 an epoch: one every step).
    let steps = ma.lines().filter(|l| l.contains(",train_step,")).count();
    assert_eq!(
        (ma.lines().count() - steps, steps),
        (1 + 2 * 2 + 1, 20),
        "{ma}"
    );
    assert_eq!(ma, mb, "same spec and seed must give identical metrics.csv");
    let (wa, wb) = (
        tensors(&a.join("model/model.safetensors")),
        tensors(&b.join("model/model.safetensors")),
    );
    assert_eq!(wa.len(), 22);
    assert!(wa == wb, "same seed must give bit-identical weights");

    // The resolved spec repeats the run.
    let again = scratch("runagain");
    let out = run(&[
        "run",
        a.join("pipeline.toml").to_str().unwrap(),
        "--quiet",
        &format!("--runs-dir={}", again.display()),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let c = only_run(&again, "agnews_transformer");
    assert_eq!(ma, std::fs::read_to_string(c.join("metrics.csv")).unwrap());

    // eval: accuracy, per-class table, confusion matrix, eval.json.
    let out = run(&[
        "eval",
        a.to_str().unwrap(),
        "--data",
        "data/ag_news/test.csv",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "Sci/Tech",
        "confusion matrix",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let eval = json(&a.join("eval.json"));
    assert_eq!(eval["report"]["rows"], 7600);
    let confusion: u64 = eval["report"]["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion, 7600);
    assert_report_matches_its_confusion(&eval["report"]);
    // Each class's support is its number of rows in the file, whatever the model predicts.
    let mut counts = [0u64; 4];
    for r in ag_news_rows("test", 7600) {
        counts[r.class_index - 1] += 1;
    }
    let supports: Vec<u64> = (eval["report"]["per_class"].as_array().unwrap().iter())
        .map(|c| c["support"].as_u64().unwrap())
        .collect();
    assert_eq!(supports, counts);

    // predict: one line per text, from arguments and from stdin.
    let out = run(&[
        "predict",
        a.to_str().unwrap(),
        "Stocks fell sharply after the central bank raised rates",
        "The team won the final",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        let label = line.split('\t').next().unwrap();
        assert!(
            ["World", "Sports", "Business", "Sci/Tech"].contains(&label),
            "{line}"
        );
        let probabilities: Vec<(&str, f64)> = (line.split('\t').nth(1).unwrap().split(' '))
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k, v.parse::<f64>().unwrap()))
            .collect();
        let names: Vec<&str> = probabilities.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, AG_NEWS_LABELS, "{line}");
        let total: f64 = probabilities.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-3, "{line}");
        let most = (probabilities.iter())
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(
            most.0, label,
            "the label is the most probable class: {line}"
        );
    }
    let mut child = pipe()
        .args(["predict", a.to_str().unwrap(), "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one text\nanother text\n\nthird\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One line out per line in: the blank one answers with no label.
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let lines = common::json_lines(&stdout);
    assert_eq!(lines[0]["text"], "one text");
    assert_eq!(lines[2]["label"], serde_json::Value::Null, "{stdout}");
    assert_eq!(lines[3]["text"], "third");
}

#[test]
fn sigint_finishes_the_step_checkpoints_and_marks_interrupted() {
    let runs = scratch("sigint");
    let mut args: Vec<String> = vec!["run".into(), SPEC.into(), "--quiet".into()];
    args.extend(quick(&runs, 2000));
    args.push("--set=stages.train.epochs=100".into());
    let mut child = pipe().args(&args).spawn().unwrap();
    // Interrupt once training is under way: the first epoch is logged (the Ctrl-C handler is
    // set before metrics.csv is created), and 99 epochs are left.
    let folder = || {
        std::fs::read_dir(runs.join("agnews_transformer"))
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
    };
    wait_until(
        "the first epoch's rows in metrics.csv",
        Duration::from_secs(120),
        || folder().is_some_and(|f| metrics_rows_so_far(&f) >= 1),
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    let dir = only_run(&runs, "agnews_transformer");
    let record = json(&dir.join("run.json"));
    assert_eq!(record["status"], "interrupted");
    assert!(record["ended_at"].is_string());
    assert!(dir.join("checkpoints/train-last.safetensors").is_file());
    // Stopped after the first epoch and long before the hundredth, at a resume point that
    // says where (2,000 rows / 32 = 63 steps an epoch).
    let steps = record["stages"][0]["steps"].as_u64().unwrap();
    assert!((63..63 * 100).contains(&steps), "{record}");
    let point = json(&dir.join("checkpoints/resume.json"));
    assert_eq!(point["step"].as_u64(), Some(steps), "{point}");
}

#[test]
fn broken_data_row_fails_with_file_and_line_and_marks_run_failed() {
    let dir = scratch("broken");
    let csv = dir.join("train.csv");
    let good = std::fs::read_to_string(common::root().join("data/ag_news/train.csv")).unwrap();
    // Past the first rows, which the check before a run reads (a bad row among those is
    // refused before any run folder exists): the run finds it, and fails truthfully.
    let mut lines: Vec<&str> = good.lines().take(300).collect();
    lines[259] = "\"3\",\"only two fields\"";
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let runs = dir.join("runs");
    let out = run(&[
        "run",
        SPEC,
        "--quiet",
        &format!("--set=dataset.train=\"{}\"", csv.display()),
        &format!("--runs-dir={}", runs.display()),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!("{}:260:", csv.display());
    assert!(stderr.contains(&want), "want {want} in {stderr}");
    let record = json(&only_run(&runs, "agnews_transformer").join("run.json"));
    assert_eq!(record["status"], "failed");
    assert!(
        record["error"].as_str().unwrap().contains(&want),
        "{record}"
    );
}

/// Without --quiet a finished run names its folder and prints eval / predict / compare lines
/// that work as printed.
#[test]
fn finished_run_prints_its_folder_and_what_to_try_next() {
    let runs = scratch("next");
    let mut args: Vec<String> = vec!["run".into(), SPEC.into()];
    args.extend(quick(&runs, 64));
    let out = pipe().args(&args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let dir = only_run(&runs, "agnews_transformer");
    assert!(
        stderr.contains(&format!("run folder: {}", dir.display())),
        "{stderr}"
    );
    let next: Vec<&str> = stderr
        .lines()
        .skip_while(|l| *l != "next:")
        .skip(1)
        .collect();
    assert_eq!(next.len(), 3, "{stderr}");
    for (line, verb) in next.iter().zip(["eval", "predict", "compare"]) {
        // `<program> <verb> <args…>  # comment`: run it with this test's binary.
        let command = line.split("  #").next().unwrap().trim();
        let words: Vec<String> = if verb == "predict" {
            let (head, text) = command.split_once(" \"").unwrap();
            let mut w: Vec<String> = head.split_whitespace().map(String::from).collect();
            w.push(text.trim_end_matches('"').to_string());
            w
        } else {
            command.split_whitespace().map(String::from).collect()
        };
        assert_eq!(words[1], verb, "{line}");
        let out = pipe().args(&words[1..]).output().unwrap();
        assert!(out.status.success(), "{line}: {:?}", text(&out));
    }
}

/// `pipe runs DIR`: every run folder under DIR, newest first, with its status, age and
/// headline metric (test accuracy, else validation, else train), each as its run.json says.
#[test]
fn runs_lists_each_run_with_its_status_age_and_headline_metric() {
    let dir = scratch("runs-list");
    let runs = dir.join("runs");
    let empty = run(&["runs", runs.to_str().unwrap()]);
    assert!(empty.status.success());
    assert_eq!(
        text(&empty).0,
        format!("no runs under {}\n", runs.display())
    );

    // A completed model-A run (a test split), then a paused sports_csv run (validation rows
    // only), then a run that fails on a broken train file, then a folder whose run.json is cut.
    let completed = common::trained(
        std::path::Path::new(SPEC),
        &["--set=dataset.limit=64"],
        &runs,
    );
    let out = pipe()
        .args(["run", "pipelines/sports_csv.toml", "--quiet"])
        .args(["--set=dataset.limit=100", "--set=stages.train.epochs=2"])
        .arg("--pause-after-epochs=1")
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let paused = only_run(&runs, "sports_csv");
    let broken = dir.join("broken.csv");
    let good = std::fs::read_to_string(common::root().join("data/ag_news/train.csv")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(250).collect();
    lines.push("\"3\",\"only two fields\"");
    std::fs::write(&broken, lines.join("\n") + "\n").unwrap();
    let out = run(&[
        "run",
        "pipelines/agnews_cnn.toml",
        "--quiet",
        &format!("--set=dataset.train=\"{}\"", broken.display()),
        &format!("--runs-dir={}", runs.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let failed = only_run(&runs, "agnews_cnn");
    let cut = runs.join("other/cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("run.json"), "{\"status\": \"compl").unwrap();

    let out = run(&["runs", runs.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["run", "status", "age", "metric"], "{stdout}");
    let shown = |p: &std::path::Path| p.strip_prefix(&runs).unwrap().display().to_string();
    let metric = |p: &std::path::Path, key: &str| {
        let v = json(&p.join("run.json"))["metrics"][key].as_f64().unwrap();
        format!("{v:.4}")
    };
    let want: Vec<(String, &str, Vec<String>)> = vec![
        (shown(&failed), "failed", vec![]),
        (
            shown(&paused),
            "paused",
            vec![
                "validation.accuracy".into(),
                metric(&paused, "validation.accuracy"),
            ],
        ),
        (
            shown(&completed),
            "completed",
            vec!["test.accuracy".into(), metric(&completed, "test.accuracy")],
        ),
    ];
    assert_eq!(lines.len(), 1 + want.len() + 1, "{stdout}");
    for (line, (name, status, metric)) in lines[1..].iter().zip(&want) {
        assert_eq!((line[0], line[1]), (name.as_str(), *status), "{stdout}");
        let age: u64 = line[2].strip_suffix('s').unwrap().parse().unwrap();
        assert!(age < 120, "{stdout}");
        assert_eq!(line[3..], metric[..], "{stdout}");
    }
    assert_eq!(
        lines.last().unwrap(),
        &["other/cut", "?", "?", "(run.json", "unreadable)"],
        "{stdout}"
    );
}
