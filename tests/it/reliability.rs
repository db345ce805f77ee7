//! How runs end when something goes wrong, and what a run folder's spec is protected from:
//! a panic leaves a failed run.json, `--resume` refuses an edited spec or a corrupt resume
//! point, run-folder commands ignore new overrides, and flags are taken as the strings they are.

use crate::common;

use std::path::{Path, PathBuf};

use common::{json, only_run, pipe, quick, run, scratch, text};

const SPEC: &str = "pipelines/agnews_transformer.toml";

/// A quick model-A run with a resume point every step that panics (the documented test hook
/// PIPE_TEST_PANIC_AT_STEP) at its third step.
fn panicking_run(runs: &Path) -> (std::process::Output, PathBuf) {
    let mut args: Vec<String> = vec!["run".into(), SPEC.into(), "--quiet".into()];
    args.extend(quick(runs, 256));
    args.push("--set=stages.train.checkpoint_every=1".into());
    let out = pipe()
        .args(&args)
        .env("PIPE_TEST_PANIC_AT_STEP", "3")
        .output()
        .unwrap();
    (out, only_run(runs, "agnews_transformer"))
}

#[test]
fn a_panic_mid_stage_fails_the_run_truthfully_and_resume_guards_its_spec() {
    let runs = scratch("panic");
    let (out, dir) = panicking_run(&runs);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("panicked at src/cli/run.rs:"),
        "{stderr}"
    );
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        2,
        "the run folder line and the error: {stderr}"
    );
    let record = json(&dir.join("run.json"));
    assert_eq!(record["status"], "failed");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("asked for a panic at step 3"), "{error}");
    assert!(error.contains("src/cli/run.rs:"), "{error}");
    let listed = run(&["runs", runs.to_str().unwrap()]);
    assert!(text(&listed).0.contains("failed"), "{:?}", text(&listed));

    // An edited spec is refused, naming the key and where it is.
    let pipeline = dir.join("pipeline.toml");
    let original = std::fs::read_to_string(&pipeline).unwrap();
    let edited = original.replacen("epochs = 1", "epochs = 2", 1);
    assert_ne!(edited, original);
    std::fs::write(&pipeline, &edited).unwrap();
    let out = run(&["run", "--resume", dir.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:", pipeline.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("`stages[0].epochs` changed since the resume point"),
        "{stderr}"
    );
    // Comments and formatting are not the spec.
    std::fs::write(&pipeline, format!("# a note\n{original}")).unwrap();

    // A corrupt resume point is refused too.
    let pointer = dir.join("checkpoints/resume.json");
    let good = std::fs::read_to_string(&pointer).unwrap();
    std::fs::write(&pointer, &good[..good.len() / 2]).unwrap();
    let out = run(&["run", "--resume", dir.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("resume.json: error: the resume point is corrupt"),
        "{stderr}"
    );
    let mut state: serde_json::Value = serde_json::from_str(&good).unwrap();
    state["model_file"] = "../../elsewhere.safetensors".into();
    std::fs::write(&pointer, state.to_string()).unwrap();
    let out = run(&["run", "--resume", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    std::fs::write(&pointer, &good).unwrap();

    // Resumed with overrides in the environment: the run continues as it was set up.
    let out = pipe()
        .args(["run", "--resume", dir.to_str().unwrap(), "--quiet"])
        .env("PIPE_STAGES__TRAIN__EPOCHS", "3")
        .env("PIPE_DATASET__LABELS", r#"["a","b","c","d"]"#)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let record = json(&dir.join("run.json"));
    assert_eq!(record["status"], "completed");
    assert_eq!(record["stages"][0]["epochs_completed"], 1);
    assert_eq!(record["overrides"].as_array().unwrap().len(), 5, "{record}");

    // Predict and eval read the run's spec as it is, whatever PIPE_* says.
    let out = pipe()
        .args([
            "predict",
            dir.to_str().unwrap(),
            "--json",
            "Stocks fell on Wall Street",
        ])
        .env("PIPE_DATASET__LABELS", r#"["a","b","c","d"]"#)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let labels: Vec<&String> = line["probabilities"].as_object().unwrap().keys().collect();
    assert_eq!(
        labels,
        ["World", "Sports", "Business", "Sci/Tech"],
        "{stdout}"
    );
    let out = pipe()
        .args([
            "eval",
            dir.to_str().unwrap(),
            "--data",
            "data/ag_news/test.csv",
        ])
        .env("PIPE_DATASET__LABELS", r#"["a","b"]"#)
        .env("PIPE_DATASET__FORMAT", "jsonl")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Sci/Tech"), "{stdout}");
}

#[test]
fn runs_dir_and_device_flags_are_strings_not_toml() {
    let scratch = scratch("flags");
    // A Windows-style path: `\n` in it is a backslash and an n, not a newline.
    let runs = scratch.join(r"C:\new");
    let mut args: Vec<String> = vec!["run".into(), SPEC.into(), "--quiet".into()];
    args.extend(quick(&runs, 64));
    let out = pipe().args(&args).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let dir = only_run(&runs, "agnews_transformer");
    let resolved: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("pipeline.toml")).unwrap()).unwrap();
    assert_eq!(
        resolved["runtime"]["runs_dir"].as_str(),
        Some(runs.to_str().unwrap())
    );

    let out = run(&[
        "run",
        SPEC,
        "--device",
        r#"cu"da"#,
        "--runs-dir",
        scratch.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    // clap parses --device: exit 2, its message naming the flag and the value as given.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(r#"error: invalid value 'cu"da' for '--device <DEVICE>'"#),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_name_that_would_escape_the_runs_dir_stops_before_anything_is_written() {
    let root = scratch("escape");
    let runs = root.join("runs");
    let out = run(&[
        "run",
        SPEC,
        "--set",
        r#"name="../../escape""#,
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(r#"--set name="../../escape": error: `name`"#),
        "{stderr}"
    );
    assert!(!runs.exists());
    assert!(!root.join("escape").exists());
}
