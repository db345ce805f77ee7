//! `pipe run` end to end on real AG News rows: the run folder, determinism, eval, predict,
//! interruption and a broken data file.

use crate::common;

use std::time::{Duration, Instant};

use common::{Scratch, json, only_run, pipe, quick, run, scratch, tensors, text};

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
    assert!(stdout.contains("test"), "{stdout}");
    let run = only_run(&runs, "agnews_transformer");
    (runs, run)
}

#[test]
fn run_folder_is_complete_and_deterministic_and_serves_eval_and_predict() {
    let (_runs_a, a) = run_quick("runa", 300, &["--set=stages.train.epochs=2"]);
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
    let acc = record["metrics"]["test.accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
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
        ma.starts_with("stage,epoch,step,split,loss,accuracy,lr\n"),
        "{ma}"
    );
    assert_eq!(ma.lines().count(), 1 + 2 * 2 + 1, "{ma}");
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
        let total: f64 = line
            .split('\t')
            .nth(1)
            .unwrap()
            .split(' ')
            .map(|kv| kv.split('=').nth(1).unwrap().parse::<f64>().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-3, "{line}");
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
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], "one text");
}

#[test]
fn sigint_finishes_the_step_checkpoints_and_marks_interrupted() {
    let runs = scratch("sigint");
    let mut args: Vec<String> = vec!["run".into(), SPEC.into(), "--quiet".into()];
    args.extend(quick(&runs, 2000));
    args.push("--set=stages.train.epochs=100".into());
    let mut child = pipe().args(&args).spawn().unwrap();
    // Wait until training is under way (metrics.csv exists), then interrupt.
    let start = Instant::now();
    loop {
        let started = std::fs::read_dir(runs.join("agnews_transformer"))
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("metrics.csv").is_file())
            .unwrap_or(false);
        if started {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
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
}

#[test]
fn broken_data_row_fails_with_file_and_line_and_marks_run_failed() {
    let dir = scratch("broken");
    let csv = dir.join("train.csv");
    let good = std::fs::read_to_string(common::root().join("data/ag_news/train.csv")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(50).collect();
    lines[4] = "\"3\",\"only two fields\"";
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
    let want = format!("{}:5:", csv.display());
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
