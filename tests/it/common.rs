//! Helpers for end-to-end tests: run the real `pipe` binary in the repository root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use burn::prelude::*;
use burn::tensor::TensorData;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference outputs the tests compare with (copied from ../shared/fixtures; see
/// tests/fixtures/README.md for where each came from).
pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// The folders `pipe` looks in for a hub id before the Hugging Face cache: each folder of
/// `PIPE_MODEL_PATH`, then `./models` and `../shared/models`.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PIPE_MODEL_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend([root().join("models"), root().join("../shared/models")]);
    dirs
}

/// The folder of model `name` (a hub id such as `FacebookAI/roberta-base`, or its last part)
/// holding config.json, where `pipe` finds it: `<dir>/<name>` or `<dir>/<last part>` in
/// [`model_dirs`]. `None`, with one "skipped: …" line naming `test` and the folders searched,
/// where it is absent; with `required` and `PIPE_REQUIRE_MODELS=1` absence fails the test.
fn local_model(name: &str, test: &str, required: bool) -> Option<PathBuf> {
    let dirs = model_dirs();
    let base = name.rsplit('/').next().unwrap_or(name);
    if let Some(found) = (dirs.iter())
        .flat_map(|d| [d.join(name), d.join(base)])
        .find(|d| d.join("config.json").is_file())
    {
        return Some(found);
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let why = format!("{test} needs {name}, absent from {}", searched.join(", "));
    if required && std::env::var("PIPE_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!("{why} (PIPE_REQUIRE_MODELS=1 turns this skip into a failure)");
    }
    eprintln!("skipped: {why}");
    None
}

/// A pretrained model a fresh clone does not have (all-MiniLM-L6-v2: 90 MB), looked up where
/// `pipe` looks for it: each folder of `PIPE_MODEL_PATH`, `./models`, `../shared/models`.
/// `None`, with a line saying which test is skipped and why, where it is absent; with
/// `PIPE_REQUIRE_MODELS=1` (set by .ci/run, which has ../shared) absence fails the test.
pub fn shared_model(name: &str, test: &str) -> Option<PathBuf> {
    local_model(name, test, true)
}

/// [`shared_model`] for a model that ../shared/models does not hold either (CI has no copy):
/// its absence is a skip even with `PIPE_REQUIRE_MODELS=1`.
pub fn optional_model(name: &str, test: &str) -> Option<PathBuf> {
    local_model(name, test, false)
}

pub fn pipe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
    c.current_dir(root());
    // Keep the tests independent of the caller's environment overrides.
    // PIPE_MODEL_PATH only says where models are, so it stays (see `shared_model`).
    for (k, _) in std::env::vars() {
        if k.starts_with("PIPE_") && k != "PIPE_MODEL_PATH" {
            c.env_remove(k);
        }
    }
    // Tests never download models.
    c.env("PIPE_OFFLINE", "1");
    c
}

pub fn run(args: &[&str]) -> Output {
    pipe().args(args).output().expect("pipe runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fresh, empty scratch folder for one test, removed when the value is dropped (at the end
/// of the test, whether it passed or failed).
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("pipe-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// The single run folder under `runs_dir/<pipeline>/`.
pub fn only_run(runs_dir: &Path, pipeline: &str) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(runs_dir.join(pipeline))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

/// `pipe run SPEC --quiet SETS... --runs-dir RUNS`, which must succeed: the run folder, under
/// `RUNS/<the spec file's stem>/` (the pipelines' names are their file names).
pub fn trained(spec: &Path, sets: &[&str], runs: &Path) -> PathBuf {
    let out = pipe()
        .arg("run")
        .arg(spec)
        .arg("--quiet")
        .args(sets)
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let name = spec.file_stem().unwrap().to_str().unwrap();
    only_run(runs, name)
}

/// [`trained`], paused by `--pause-after-epochs=1` (exit 3) and resumed to its end with `pipe
/// run --resume`, which must succeed: the run folder.
pub fn paused_then_resumed(spec: &Path, sets: &[&str], runs: &Path) -> PathBuf {
    let out = pipe()
        .arg("run")
        .arg(spec)
        .arg("--quiet")
        .args(sets)
        .arg("--pause-after-epochs=1")
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let run = only_run(runs, spec.file_stem().unwrap().to_str().unwrap());
    let out = pipe()
        .args(["run", "--quiet", "--resume", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    run
}

/// Overrides that make the lesson's model A a seconds-long run on real AG News rows.
pub fn quick(runs_dir: &Path, rows: usize) -> Vec<String> {
    vec![
        format!("--set=dataset.limit={rows}"),
        "--set=vectorizer.output_sequence_length=64".into(),
        "--set=stages.train.batch_size=32".into(),
        format!("--runs-dir={}", runs_dir.display()),
    ]
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A safetensors file's bytes, its header's tensor entries (name → dtype, shape, offsets) and
/// where the data starts.
fn safetensors(path: &Path) -> (Vec<u8>, serde_json::Map<String, serde_json::Value>, usize) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut entries = header.as_object().unwrap().clone();
    entries.remove("__metadata__");
    (bytes, entries, 8 + n)
}

/// The dtypes of a safetensors file's tensors.
pub fn tensor_dtypes(path: &Path) -> std::collections::BTreeSet<String> {
    let (_, entries, _) = safetensors(path);
    (entries.values())
        .map(|v| v["dtype"].as_str().unwrap().to_string())
        .collect()
}

/// Tensor name → raw bytes of a safetensors file (its JSON header's key order is not stable).
pub fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let (bytes, entries, start) = safetensors(path);
    entries
        .iter()
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (s, e) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), bytes[start + s..start + e].to_vec())
        })
        .collect()
}

/// The first run folder under `runs/<pipeline>/` once its resume point lies inside stage
/// `stage` (0-based), mid-epoch: where the kill -9 tests kill the run.
pub fn wait_for_resume_point(runs: &Path, pipeline: &str, stage: u64) -> PathBuf {
    wait_for_resume_point_where(runs, pipeline, |state| {
        state["stage"] == stage && state["next_batch"].as_u64().unwrap_or(0) > 0
    })
}

/// The first run folder under `runs/<pipeline>/` once its committed resume point (resume.json)
/// satisfies `ready`; fails after two minutes.
pub fn wait_for_resume_point_where(
    runs: &Path,
    pipeline: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> PathBuf {
    let start = std::time::Instant::now();
    loop {
        let point = std::fs::read_dir(runs.join(pipeline))
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path());
        if let Some(b) = &point
            && let Ok(t) = std::fs::read_to_string(b.join("checkpoints/resume.json"))
            && let Ok(state) = serde_json::from_str::<serde_json::Value>(&t)
            && ready(&state)
        {
            return b.clone();
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no such resume point in {} after 120 s",
            runs.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Kills `child` (SIGKILL) — the caller waited for a resume point in `run` — checks that the
/// run was left `running`, resumes it to the end and returns its run.json.
pub fn kill_then_resume(mut child: Child, run_dir: &Path) -> serde_json::Value {
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        json(&run_dir.join("run.json"))["status"],
        "running",
        "the run must have been killed mid-way"
    );
    let out = run(&["run", "--resume", run_dir.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let record = json(&run_dir.join("run.json"));
    assert_eq!(record["status"], "completed");
    record
}

/// Two runs that ended identically: the same metrics.csv rows and the same final weights.
pub fn assert_same_end(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read_to_string(a.join("metrics.csv")).unwrap(),
        std::fs::read_to_string(b.join("metrics.csv")).unwrap(),
        "metrics.csv must continue without duplicate or missing rows"
    );
    assert!(
        tensors(&a.join("model/model.safetensors")) == tensors(&b.join("model/model.safetensors")),
        "final weights must be identical"
    );
}

/// `pipe eval RUN --json` on the first `rows` rows of the repo's AG News test split (written to
/// `scratch`): the rows a run with `dataset.limit = rows` tested on. The printed JSON.
pub fn eval_first_test_rows(run: &Path, rows: usize, scratch: &Path) -> serde_json::Value {
    let file = scratch.join(format!("test-{rows}.csv"));
    let test = std::fs::read_to_string(root().join("data/ag_news/test.csv")).unwrap();
    let first: Vec<&str> = test.lines().take(rows).collect();
    std::fs::write(&file, first.join("\n") + "\n").unwrap();
    let out = pipe()
        .args(["eval", run.to_str().unwrap(), "--json", "--data"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

// Numbers out of the parity fixtures' JSON (nested lists) and out of tensors.

pub fn flat(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numeric: {other}"),
    }
}

pub fn ints<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 2, Int> {
    let rows = v.as_array().unwrap();
    let (r, c) = (rows.len(), rows[0].as_array().unwrap().len());
    let data: Vec<i32> = flat(v).into_iter().map(|x| x as i32).collect();
    Tensor::from_data(TensorData::new(data, [r, c]), device)
}

pub fn floats2<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 2> {
    let rows = v.as_array().unwrap();
    let (r, c) = (rows.len(), rows[0].as_array().unwrap().len());
    let data: Vec<f32> = flat(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [r, c]), device)
}

pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
