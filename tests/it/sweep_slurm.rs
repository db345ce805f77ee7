//! `pipe sweep --scheduler slurm`: ASHA with Slurm running the trials. Against a stand-in
//! scheduler (tests/fixtures/fake_slurm: sbatch, squeue and scontrol in bash) it must decide
//! exactly as the local ASHA does, also when its controller is killed and `--resume`d; against
//! a real Slurm (../shared/slurm/local_cluster.sh), where one answers, a pruned sweep and an
//! emitted job array run end to end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use common::{json, pipe, scratch, text};

/// A pruned sweep of sports_csv: 6 trials (unless `--trials` follows), rungs at 1 and 3
/// epochs, one process at a time (so that the order of events, and with it every decision, is
/// fixed).
const SWEEP: &[&str] = &[
    "sweep",
    "pipelines/sports_csv.toml",
    "--random",
    "stages.train.optimizer.learning_rate=1e-5..3e-2:log",
    "--prune=asha",
    "--metric=validation.loss",
    "--min-epochs=1",
    "--reduction=3",
    "--max-epochs=3",
];

/// `pipe` with the stand-in Slurm first on PATH, its job states in `state`.
fn with_stand_in(state: &Path) -> Command {
    std::fs::create_dir_all(state).unwrap();
    let fake = common::fixtures().join("fake_slurm");
    let path = std::env::join_paths(
        std::iter::once(fake).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut cmd = pipe();
    cmd.env("PATH", path)
        .env("FAKE_SLURM_DIR", state)
        .env("PIPE_SLURM_POLL_MS", "50");
    cmd
}

/// The one sweep folder under `runs/sports_csv`.
fn sweep_dir(runs: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs.join("sports_csv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sweep.json").is_file())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Each ASHA decision as (trial, epochs, decision, rank, of, value), and each trial's status.
type Decisions = Vec<(u64, u64, String, u64, u64, f64)>;
fn decisions(dir: &Path) -> (Decisions, Vec<String>) {
    let record = json(&dir.join("sweep.json"));
    let decided = (record["prune"]["decisions"].as_array().unwrap().iter())
        .map(|d| {
            (
                d["trial"].as_u64().unwrap(),
                d["epochs"].as_u64().unwrap(),
                d["decision"].as_str().unwrap().to_string(),
                d["rank"].as_u64().unwrap(),
                d["of"].as_u64().unwrap(),
                d["value"].as_f64().unwrap(),
            )
        })
        .collect();
    (decided, statuses(dir))
}

/// Each trial's status, from sweep.json.
fn statuses(dir: &Path) -> Vec<String> {
    (json(&dir.join("sweep.json"))["trials"]
        .as_array()
        .unwrap()
        .iter())
    .map(|t| t["status"].as_str().unwrap().to_string())
    .collect()
}

fn local_sweep(scratch: &Path) -> (Decisions, Vec<String>) {
    let runs = scratch.join("local");
    let out = pipe()
        .args(SWEEP)
        .arg("--trials=6")
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    decisions(&sweep_dir(&runs))
}

#[test]
fn asha_on_slurm_decides_as_the_local_asha_and_resumes_after_its_controller_dies() {
    let scratch = scratch("sweep-slurm-stand-in");
    let local = local_sweep(&scratch);
    assert!(local.1.contains(&"pruned".to_string()), "{local:?}");
    assert!(local.1.contains(&"completed".to_string()), "{local:?}");

    // The same sweep with every process a (stand-in) Slurm job: the same decisions.
    let runs = scratch.join("slurm");
    let out = with_stand_in(&scratch.join("jobs"))
        .args(SWEEP)
        .args([
            "--trials=6",
            "--scheduler=slurm",
            "--slurm-option=--time=10",
        ])
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trial 0: Slurm job 1000"), "{stderr}");
    let dir = sweep_dir(&runs);
    assert_eq!(decisions(&dir), local);
    let record = json(&dir.join("sweep.json"));
    assert_eq!(record["scheduler"], "slurm");
    assert_eq!(record["slurm_options"], serde_json::json!(["--time=10"]));
    // A promoted trial's latest process is its --resume job.
    let promoted = (record["trials"].as_array().unwrap().iter())
        .find(|t| t["status"] == "completed")
        .unwrap();
    assert!(promoted["job"].as_str().unwrap().parse::<u64>().unwrap() > 1000);

    // Killed while its third trial runs, then resumed: the same decisions again. The stand-in
    // forgets ended jobs at once, so the trial that ended while no controller watched is
    // learned from its run.json.
    let runs = scratch.join("killed");
    let state = scratch.join("jobs-killed");
    let mut controller = with_stand_in(&state)
        .env("FAKE_SLURM_FORGET", "1")
        .args(SWEEP)
        .args(["--trials=6", "--scheduler=slurm"])
        .arg(format!("--runs-dir={}", runs.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&state).unwrap().count() < 3 {
        assert!(Instant::now() < deadline, "no third job within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    controller.kill().unwrap();
    controller.wait().unwrap();
    let dir = sweep_dir(&runs);
    let before = json(&dir.join("sweep.json"));
    let pending = (before["trials"].as_array().unwrap().iter())
        .filter(|t| t["status"] == "pending")
        .count();
    assert!(pending >= 3, "killed before its fourth trial: {before}");
    let out = with_stand_in(&state)
        .env("FAKE_SLURM_FORGET", "1")
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed"), "{stderr}");
    assert_eq!(decisions(&dir), local);

    // A local sweep's trials die with it: --resume says so instead.
    let local_dir = sweep_dir(&scratch.join("local"));
    let out = pipe()
        .args(["sweep", "--resume"])
        .arg(&local_dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--status"), "{stderr}");
}

/// Whether a real Slurm answers here; else one line saying so (a failure where
/// `PIPE_REQUIRE_SLURM` is set, as in CI).
fn real_slurm() -> bool {
    let up = Command::new("sinfo")
        .arg("--noheader")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        assert!(
            std::env::var_os("PIPE_REQUIRE_SLURM").is_none(),
            "PIPE_REQUIRE_SLURM is set but `sinfo` does not answer (start \
             ../shared/slurm/local_cluster.sh)"
        );
        eprintln!("skipped: no Slurm answers here (../shared/slurm/local_cluster.sh starts one)");
    }
    up
}

/// Waits until Slurm has no job named `name` left, for at most `limit`.
fn wait_for_jobs(name: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let out = Command::new("squeue")
            .args(["--noheader", "--format=%i", &format!("--name={name}")])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs {name} still queued");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_pruned_sweep_and_a_job_array_run_on_a_real_slurm() {
    if !real_slurm() {
        return;
    }
    let scratch = scratch("sweep-real-slurm");
    // Everything Slurm runs reads and writes absolute paths under the scratch folder.
    let runs = scratch.join("pruned");
    let out = pipe()
        .args(SWEEP)
        .args(["--trials=3", "--scheduler=slurm", "--parallel=2"])
        .arg(format!("--runs-dir={}", runs.display()))
        .env("PIPE_SLURM_POLL_MS", "300")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let dir = sweep_dir(&runs);
    let (decided, states) = decisions(&dir);
    assert_eq!(states.len(), 3);
    assert!(
        states.iter().all(|s| s == "completed" || s == "pruned"),
        "{states:?}"
    );
    assert_eq!(decided.len(), 3, "one decision per trial at the first rung");
    for t in json(&dir.join("sweep.json"))["trials"].as_array().unwrap() {
        let run = PathBuf::from(t["run"].as_str().unwrap());
        assert_eq!(json(&run.join("run.json"))["status"], t["status"]);
    }

    // An emitted job array, submitted by hand; --status then knows how every trial ended.
    let runs = scratch.join("array");
    let out = pipe()
        .args([
            "sweep",
            "pipelines/sports_csv.toml",
            "--grid",
            "seed=1,2",
            "--emit",
            "slurm",
        ])
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    let (script, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let script_file = scratch.join("sweep.sbatch");
    let name = format!("pipe-test-array-{}", std::process::id());
    std::fs::write(&script_file, script.replace("pipe-sweep", &name)).unwrap();
    let output = scratch.join("slurm-%A_%a.out");
    let submitted = Command::new("sbatch")
        .arg(format!("--output={}", output.display()))
        .arg(&script_file)
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{:?}", text(&submitted));
    wait_for_jobs(&name, Duration::from_secs(300));
    let dir = sweep_dir(&runs);
    let out = pipe()
        .args(["sweep", "--status"])
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches("completed").count(), 2, "{stdout}\n{stderr}");
    assert_eq!(statuses(&dir), ["completed", "completed"]);
}
