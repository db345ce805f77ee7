//! The peers: ../shared/peers' PyTorch and Keras scripts, run beside pipe in the same
//! `pipe bench` call (A B A B rounds), or their stored JSON lines when no peers python is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::children_cpu_s;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct PeerResult {
    pub framework: String,
    pub model: String,
    pub phase: String,
    pub threads: serde_json::Value,
    pub samples_per_s: f64,
    #[serde(default)]
    pub batch: usize,
    /// (user + sys) / wall of the whole peer process, imports included (set by [`run`]).
    #[serde(default)]
    pub cores_busy: Option<f64>,
}

pub fn load(path: &Path) -> Vec<PeerResult> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The peers' figures for a model and phase with the frameworks' default threading.
pub fn matching<'a>(peers: &'a [PeerResult], model: &str, phase: &str) -> Vec<&'a PeerResult> {
    peers
        .iter()
        .filter(|p| {
            p.model == model && p.phase == phase && p.threads == serde_json::json!("default")
        })
        .collect()
}

/// One peer script to run for a pipe model (`a` or `bert`).
pub struct PeerScript {
    pub file: &'static str,
    pub model: &'static str,
}

/// The scripts that measure the same workloads as pipe's cases.
pub fn scripts_for(model: &str) -> &'static [PeerScript] {
    match model {
        "a" => &[
            PeerScript {
                file: "torch_model_a.py",
                model: "a",
            },
            PeerScript {
                file: "keras_model_a.py",
                model: "a",
            },
        ],
        _ => &[PeerScript {
            file: "torch_model_b.py",
            model: "bert",
        }],
    }
}

/// The peers python: `--peers-python`, else `PIPE_PEERS_PYTHON`.
pub fn python(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("PIPE_PEERS_PYTHON").map(PathBuf::from))
}

/// Runs one peer script and returns its JSON lines (default threading), each with the
/// process's cores busy. The frameworks' caches go to `scratch`, which the caller removes.
pub fn run(
    python: &Path,
    dir: &Path,
    script: &PeerScript,
    steps: usize,
    warmup: usize,
    scratch: &Path,
) -> Result<Vec<PeerResult>> {
    let path = dir.join(script.file);
    if !path.is_file() {
        bail!("--peers-dir: {} not found", path.display());
    }
    let mut cmd = Command::new(python);
    cmd.arg(&path)
        .args([
            "--steps",
            &steps.to_string(),
            "--warmup",
            &warmup.to_string(),
        ])
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .env("KERAS_HOME", scratch.join("keras"))
        .env("HF_HOME", scratch.join("hf"))
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("MPLCONFIGDIR", scratch.join("mpl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if script.model == "a" {
        // The same real rows pipe's model-A case reads (shapes are fixed at 256 either way).
        cmd.args(["--data", "data/ag_news/train.csv"]);
    }
    let cpu_before = children_cpu_s();
    let started = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("--peers-python {}: cannot start", python.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let busy = (children_cpu_s() - cpu_before) / wall.max(1e-9);
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err.lines().last().unwrap_or("(no message)");
        bail!("{} failed ({}): {last}", script.file, output.status);
    }
    let mut results: Vec<PeerResult> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for r in &mut results {
        r.cores_busy = Some(busy);
    }
    Ok(results)
}
