//! What a new user meets in the first hour: closed pipes, data that is not what the spec says,
//! mistakes on the command line, and the verbs that use a trained model (predict from a file,
//! a checkpoint of choice, the newest run of a pipeline, macro-F1).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{json, only_run, pipe, run, scratch, text};

const SPORTS: &str = "pipelines/sports_csv.toml";

/// One quick epoch of the sports pipeline (its CSV has 1,200 rows; 300 are used).
fn quick_sports(runs: &Path) -> Vec<String> {
    vec![
        "--quiet".into(),
        "--set=dataset.limit=300".into(),
        "--set=stages.train.epochs=2".into(),
        "--set=stages.train.early_stopping={ monitor = \"validation.macro_f1\", patience = 3 }"
            .into(),
        format!("--runs-dir={}", runs.display()),
    ]
}

/// Trains the quick sports run into `runs`: its (new) run folder.
fn trained_sports(runs: &Path) -> PathBuf {
    let before = run_folders(runs);
    let out = pipe()
        .args(["run", SPORTS])
        .args(quick_sports(runs))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let mut new: Vec<PathBuf> = (run_folders(runs).into_iter())
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.pop().unwrap()
}

fn run_folders(runs: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(runs.join("sports_csv"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// `bash -c SCRIPT` with the pipe binary as `$PIPE`, from the repository root, with pipefail:
/// its exit status is the first failing command's (pipe's, before `head`).
fn shell(script: &str) -> std::process::Output {
    common::isolated(Command::new("bash"))
        .args(["-c", &format!("set -o pipefail; {script}")])
        .env("PIPE", env!("CARGO_BIN_EXE_pipe"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `pipe run … 2>&1 | head -1`: the reader goes away after one line; the run goes on to its
/// end and says so in run.json (it used to abort with 134 and stay `running`).
#[test]
fn a_run_whose_reader_goes_away_still_completes() {
    let scratch = scratch("closed-run");
    let runs = scratch.join("runs");
    let out = shell(&format!(
        "\"$PIPE\" run {SPORTS} --set dataset.limit=300 --set stages.train.epochs=2 --runs-dir {} 2>&1 | head -1",
        runs.display()
    ));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let dir = only_run(&runs, "sports_csv");
    assert_eq!(json(&dir.join("run.json"))["status"], "completed");
    assert!(dir.join("model/model.safetensors").is_file());
}

/// The verbs that use a trained model, on one run: a closed pipe, blank lines, a file in and a
/// file out, the data file's own format, a checkpoint of choice, the newest run, macro-F1.
#[test]
fn a_trained_run_serves_every_verb_as_a_unix_tool() {
    let scratch = scratch("newcomer-verbs");
    let runs = scratch.join("runs");
    let older = trained_sports(&runs);
    let newest = trained_sports(&runs);
    assert_ne!(older, newest);
    let newest_text = newest.to_str().unwrap();

    // The final weights are the last stage's newest checkpoint: one file with two names, not
    // two copies (a pretrained encoder's weights are hundreds of megabytes).
    use std::os::unix::fs::MetadataExt;
    let inode = |p: PathBuf| std::fs::metadata(&p).unwrap().ino();
    assert_eq!(
        inode(newest.join("model/model.safetensors")),
        inode(newest.join("checkpoints/train-last.safetensors"))
    );

    // `pipe predict RUN - | head -1` on more lines than one write holds: a quiet exit 0.
    let out = shell(&format!(
        "printf 'The team won the final in extra time\\n%.0s' $(seq 5000) | \"$PIPE\" predict {newest_text} - | head -1"
    ));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert_eq!(stdout.lines().count(), 1);
    assert!(stderr.is_empty(), "{stderr}");

    // Blank input lines keep their place: one output line per input line.
    let mut child = pipe()
        .args(["predict", newest_text, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    (child.stdin.take().unwrap())
        .write_all(b"The striker scored twice\n\n   \nStocks fell sharply\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[1].is_empty() && lines[2].is_empty(), "{lines:?}");
    assert!(lines[0].starts_with("sports\t") || lines[0].starts_with("other\t"));

    // A folder of runs means its newest run, and says which.
    let out = run(&[
        "predict",
        runs.join("sports_csv").to_str().unwrap(),
        "Stocks fell",
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("using {newest_text}")), "{stderr}");

    // A JSONL file evaluates as JSONL although the pipeline reads CSV; macro-F1 is reported.
    let out = run(&[
        "eval",
        newest_text,
        "--data",
        "data/examples/sports_test.jsonl",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["report"]["rows"], 400, "{report}");
    let f1s: Vec<f64> = (report["report"]["per_class"].as_array().unwrap().iter())
        .map(|c| c["f1"].as_f64().unwrap())
        .collect();
    let macro_f1 = report["report"]["macro_f1"].as_f64().unwrap();
    assert!((macro_f1 - f1s.iter().sum::<f64>() / f1s.len() as f64).abs() < 1e-12);
    assert_eq!(report["checkpoint"], "final");
    // Macro-F1 is a validation metric too, and an early-stopping monitor.
    let record = json(&newest.join("run.json"));
    let f1 = record["metrics"]["validation.macro_f1"].as_f64();
    assert!(f1.is_some_and(|f| (0.0..=1.0).contains(&f)), "{record}");

    // The best checkpoint by the stage's monitor, recorded as such.
    let out = run(&[
        "eval",
        newest_text,
        "--data",
        "data/examples/sports_test.jsonl",
        "--checkpoint",
        "best",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(json(&newest.join("eval.json"))["checkpoint"], "best");

    // Batch prediction from a file into a CSV: a row per input row, in order.
    let preds = scratch.join("preds.csv");
    let out = run(&[
        "predict",
        newest_text,
        "--checkpoint",
        "last",
        "--data",
        "data/examples/sports_test.jsonl",
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut reader = csv::Reader::from_path(&preds).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["label", "other", "sports", "text"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 400);
    let first_text =
        std::fs::read_to_string(common::root().join("data/examples/sports_test.jsonl")).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(first_text.lines().next().unwrap()).unwrap();
    assert_eq!(&rows[0][3], first["text"].as_str().unwrap());
    for row in &rows {
        let p: f64 = row[1].parse::<f64>().unwrap() + row[2].parse::<f64>().unwrap();
        assert!((p - 1.0).abs() < 1e-4, "{row:?}");
        assert!(["other", "sports"].contains(&&row[0]), "{row:?}");
    }

    // A completed run keeps no resume point (its weights and optimizer moments).
    let names: Vec<String> = std::fs::read_dir(newest.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("resume") || n == "resume.json"),
        "{names:?}"
    );
}

/// Mistakes that `pipe check` and the verbs must name before any work: each exits 2 with its
/// place, and none leaves a run folder behind.
#[test]
fn mistakes_are_named_where_they_were_made() {
    let scratch = scratch("newcomer-mistakes");
    let runs = scratch.join("runs");
    let check = |sets: &[&str]| {
        let out = pipe().args(["check", SPORTS]).args(sets).output().unwrap();
        let (_, stderr) = text(&out);
        (out.status.code(), stderr)
    };
    // Listed labels and a text column the CSV does not have: found at check time.
    let (code, stderr) = check(&[
        "--set=dataset.text=[\"title\"]",
        "--set=dataset.labels=[\"other\", \"sports\"]",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("sports_train.csv:1: no column \"title\" in header"),
        "{stderr}"
    );
    // A bad --set value is blamed on the --set, not on the file's line.
    let (code, stderr) = check(&["--set=stages.train.optimizer.learning_rate=-0.001"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("--set stages.train.optimizer.learning_rate=-0.001: error:"),
        "{stderr}"
    );
    // Every unknown key of a layer, not only the first.
    let (code, stderr) = check(&["--set=model.head.unitz=3", "--set=model.head.actvation=1"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("`unitz`") && stderr.contains("`actvation`"),
        "{stderr}"
    );
    // A near miss of a spec key in the environment is refused as --set refuses it.
    let out = pipe()
        .args(["check", SPORTS])
        .env("PIPE_SEEED", "3")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environment PIPE_SEEED=3") && stderr.contains("`seed`"),
        "{stderr}"
    );
    // No classes given and no `units` on the last layer: one unit per class.
    let spec = scratch.join("no_units.toml");
    let text_spec = std::fs::read_to_string(common::root().join(SPORTS)).unwrap();
    assert!(text_spec.contains("units = 2\n"));
    std::fs::write(&spec, text_spec.replace("units = 2\n", "")).unwrap();
    let out = run(&["summary", spec.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let head = stdout.lines().find(|l| l.contains("head (dense)")).unwrap();
    assert!(head.contains("(None, 2)"), "{stdout}");
    // A sweep of zero trials, and a comparison of a folder that is not there.
    let out = run(&["sweep", SPORTS, "--grid", "seed=1,2", "--trials", "0"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = run(&["compare", scratch.join("nothing-here").to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with("error: ") && stderr.contains("nothing-here: no such run folder"),
        "{stderr}"
    );
    // A plot into a folder that is not there: named, before any work.
    let plot = scratch.join("nowhere/curves.png");
    let out = run(&[
        "compare",
        scratch.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("there is no folder") && stderr.contains("nowhere"),
        "{stderr}"
    );
    // `--device cuda` in a build without CUDA: refused before a run folder exists.
    if !cfg!(feature = "cuda") {
        let out = pipe()
            .args(["run", SPORTS, "--device", "cuda"])
            .arg(format!("--runs-dir={}", runs.display()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        assert!(!runs.exists(), "a refused run made {}", runs.display());
    }
    // `pipe schema --out -` prints the schema instead of writing a file named `-`.
    let out = run(&["schema", "--out", "-"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"$schema\""));
    assert!(!common::root().join("-").exists());
}

/// A validation fraction that leaves no training rows fails, naming the key, instead of
/// "completing" with a loss of 0.
#[test]
fn a_validation_split_that_leaves_nothing_to_train_on_fails() {
    let scratch = scratch("newcomer-validation");
    let out = pipe()
        .args(["run", SPORTS, "--quiet", "--set=dataset.limit=150"])
        .arg("--set=dataset.validation=0.999")
        .arg(format!("--runs-dir={}", scratch.join("runs").display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`dataset.validation = 0.999` of 150 rows leaves no rows to train on"),
        "{stderr}"
    );
}

/// `--random` draws what the key holds: fractions for a learning rate whatever the bounds'
/// spelling, whole numbers for epochs.
#[test]
fn random_ranges_draw_by_the_type_of_their_key() {
    let scratch = scratch("newcomer-random");
    let out = run(&[
        "sweep",
        SPORTS,
        "--random",
        "stages.train.optimizer.learning_rate=1..2",
        "--random",
        "stages.train.epochs=1.5..4",
        "--trials",
        "6",
        "--emit",
        "slurm",
        "--runs-dir",
        scratch.join("runs").to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let values = |key: &str| -> Vec<String> {
        stdout
            .split(&format!("{key}="))
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_digit() || ".-e".contains(*c))
                    .collect()
            })
            .collect()
    };
    let lrs = values("learning_rate");
    assert_eq!(lrs.len(), 6, "{stdout}");
    assert!(
        lrs.iter()
            .all(|v| { v.parse::<f64>().is_ok_and(|x| (1.0..=2.0).contains(&x)) }),
        "{lrs:?}"
    );
    assert!(
        lrs.iter().any(|v| v.parse::<f64>().unwrap().fract() != 0.0),
        "{lrs:?}"
    );
    let epochs = values("stages.train.epochs");
    assert_eq!(epochs.len(), 6, "{stdout}");
    assert!(
        epochs.iter().all(|v| ["2", "3", "4"].contains(&v.as_str())),
        "{epochs:?}"
    );
}

#[test]
fn the_same_mistake_exits_the_same_in_every_verb() {
    let scratch = scratch("newcomer-exit-codes");
    let missing = scratch.join("no-such-run");
    let missing = missing.to_str().unwrap();
    let out_dir = scratch.join("out");
    // (`pipe runs` of a folder not made yet says "no runs under …": before the first run,
    // that is no mistake.)
    let verbs: [&[&str]; 6] = [
        &["eval", missing, "--data", "data/examples/sports_test.jsonl"],
        &["predict", missing, "-"],
        &["attention", missing, "a text"],
        &[
            "export",
            missing,
            "--format",
            "hf",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &["compare", missing],
        &["run", "--resume", missing],
    ];
    for args in verbs {
        let out = pipe().args(args).stdin(Stdio::null()).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("no-such-run: no such"),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    assert!(
        !out_dir.exists(),
        "nothing is written for a refused command"
    );
}
