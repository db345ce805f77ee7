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
    isolated(Command::new(env!("CARGO_BIN_EXE_pipe")))
}

/// `c` run from the repository root, independent of the caller's `PIPE_*` overrides and
/// offline. PIPE_MODEL_PATH only says where models are, so it stays (see `shared_model`).
pub fn isolated(mut c: Command) -> Command {
    c.current_dir(root());
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

/// The first `n` rows of the repository's AG News test split, as a headerless CSV in `dir`
/// (`test-<n>.csv`).
pub fn test_rows(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("test-{n}.csv"));
    let all = std::fs::read_to_string(root().join("data/ag_news/test.csv")).unwrap();
    let rows: Vec<&str> = all.lines().take(n).collect();
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

/// Each line of `stdout` parsed as JSON (`--json` output, one object per line).
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `pipe eval RUN --json` on the first `rows` rows of the repo's AG News test split (written to
/// `scratch`): the rows a run with `dataset.limit = rows` tested on. The printed JSON.
pub fn eval_first_test_rows(run: &Path, rows: usize, scratch: &Path) -> serde_json::Value {
    let file = test_rows(scratch, rows);
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

// Added for "tests that can fail" (#28): waiting on conditions, reading metrics.csv and writing
// the repo's AG News rows in the other data formats.

/// Polls `ready` every 20 ms until it holds; fails, naming `what`, once `deadline` has passed.
/// What a test waits for instead of sleeping a fixed time.
pub fn wait_until(what: &str, deadline: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The data rows of a run's metrics.csv, each as column name → value.
pub fn metrics_rows(run: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (headers.iter().zip(r.iter()))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// How many rows of epoch ends and evaluations a run's metrics.csv has so far (its
/// `train_step` rows, logged within epochs, not counted): at least one once its first epoch
/// has ended; 0 while it does not exist.
pub fn metrics_rows_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .map(|t| {
            (t.lines().skip(1))
                .filter(|l| l.split(',').nth(3) != Some("train_step"))
                .count()
        })
        .unwrap_or(0)
}

/// One AG News row: class_index (1..=4), title, description.
pub struct AgNewsRow {
    pub class_index: usize,
    pub title: String,
    pub description: String,
}

/// The AG News class names, in class-index order (as the pipelines list them).
pub const AG_NEWS_LABELS: [&str; 4] = ["World", "Sports", "Business", "Sci/Tech"];

/// The first `n` rows of `data/ag_news/<split>.csv`, parsed.
pub fn ag_news_rows(split: &str, n: usize) -> Vec<AgNewsRow> {
    let path = root().join(format!("data/ag_news/{split}.csv"));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    reader
        .records()
        .take(n)
        .map(|r| {
            let r = r.unwrap();
            AgNewsRow {
                class_index: r[0].parse().unwrap(),
                title: r[1].to_string(),
                description: r[2].to_string(),
            }
        })
        .collect()
}

/// `rows` as a header CSV (`label,title,description`, the label as its class name).
pub fn write_header_csv(path: &Path, rows: &[AgNewsRow]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["label", "title", "description"]).unwrap();
    for r in rows {
        w.write_record([AG_NEWS_LABELS[r.class_index - 1], &r.title, &r.description])
            .unwrap();
    }
    w.flush().unwrap();
}

/// `rows` as JSON Lines (`{"title", "description", "label"}`, the label as its class index
/// 0..=3).
pub fn write_jsonl(path: &Path, rows: &[AgNewsRow]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "title": r.title,
                "description": r.description,
                "label": r.class_index - 1,
            })
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The f32 values of one tensor's raw little-endian bytes (see [`tensors`]).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `pipe predict RUN - --json` on `texts` (one a line on stdin): one JSON object per text.
pub fn predict_json(run: &Path, texts: &[String]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = pipe()
        .args(["predict", run.to_str().unwrap(), "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = texts.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), texts.len(), "one line per text");
    lines
}

/// An eval report (eval.json's `report`) agrees with its own confusion matrix (rows: truth,
/// columns: predicted), recomputed here: the accuracy is its trace over its sum, each class's
/// support its row sum, precision and recall its diagonal over its column and row sums, and F1
/// their harmonic mean.
pub fn assert_report_matches_its_confusion(report: &serde_json::Value) {
    let confusion: Vec<Vec<f64>> = (report["confusion"].as_array().unwrap().iter())
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let c = confusion.len();
    let total: f64 = confusion.iter().flatten().sum();
    assert_eq!(report["rows"].as_f64().unwrap(), total);
    let trace: f64 = (0..c).map(|k| confusion[k][k]).sum();
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    close(
        report["accuracy"].as_f64().unwrap(),
        trace / total,
        "accuracy",
    );
    let classes = report["per_class"].as_array().unwrap();
    assert_eq!(classes.len(), c);
    for (k, class) in classes.iter().enumerate() {
        let support: f64 = confusion[k].iter().sum();
        let predicted: f64 = (0..c).map(|t| confusion[t][k]).sum();
        let tp = confusion[k][k];
        let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
        let recall = if support > 0.0 { tp / support } else { 0.0 };
        let f1 = if tp > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        assert_eq!(class["support"].as_f64().unwrap(), support, "{class}");
        close(class["precision"].as_f64().unwrap(), precision, "precision");
        close(class["recall"].as_f64().unwrap(), recall, "recall");
        close(class["f1"].as_f64().unwrap(), f1, "f1");
    }
}

/// `texts` as a run batches them: encoded by `vectorizer` and cut into one batch of every row
/// (padded to the longest row or to the length, as the vectorizer pads); (ids, mask).
pub fn batch_of(vectorizer: &pipe::vectorize::Vectorizer, texts: &[&str]) -> (Vec<i32>, Vec<f32>) {
    let split = pipe::data::EncodedSplit::encode(vectorizer, texts, &[]);
    let rows: Vec<usize> = (0..split.len()).collect();
    let (inputs, _) = split.batch::<burn::backend::Flex>(&rows, &Default::default());
    (
        inputs.ids.to_data().to_vec::<i32>().unwrap(),
        inputs.mask.to_data().to_vec::<f32>().unwrap(),
    )
}
