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
    /// `cpu`, `cuda`, `cuda:N` as the script was told (`--device`); lines without it are CPU.
    #[serde(default)]
    pub device: Option<String>,
}

impl PeerResult {
    pub fn on_gpu(&self) -> bool {
        self.device
            .as_deref()
            .is_some_and(|d| d.starts_with("cuda"))
    }
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

/// The peers' figures for a model and phase with the frameworks' default threading, measured
/// on the same kind of device (a GPU figure beside a CPU one says nothing).
pub fn matching<'a>(
    peers: &'a [PeerResult],
    model: &str,
    phase: &str,
    on_gpu: bool,
) -> Vec<&'a PeerResult> {
    peers
        .iter()
        .filter(|p| {
            p.model == model
                && p.phase == phase
                && p.threads == serde_json::json!("default")
                && p.on_gpu() == on_gpu
        })
        .collect()
}

/// One peer script to run for a pipe model (`a` or `bert`).
pub struct PeerScript {
    pub file: &'static str,
    pub model: &'static str,
}

/// The scripts that measure the same workloads as pipe's cases. On a GPU only PyTorch's: the
/// Keras scripts take no `--device`, and the GPU machines have no Keras.
pub fn scripts_for(model: &str, on_gpu: bool) -> &'static [PeerScript] {
    match model {
        "a" if on_gpu => &[PeerScript {
            file: "torch_model_a.py",
            model: "a",
        }],
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

/// How one peer script is run: its step counts, and `--device` for the PyTorch scripts on a GPU.
pub struct PeerRun<'a> {
    pub steps: usize,
    pub warmup: usize,
    /// `cuda` or `cuda:N`; `None` on CPU (the scripts' default, and all the Keras ones take).
    pub gpu: Option<&'a str>,
    /// `--autocast bf16` for the PyTorch scripts (`pipe bench --precision bf16-mixed`).
    pub autocast: bool,
    /// `pipe bench --checkpoint`: the BERT case runs scripts/torch_family_bench.py on this
    /// folder instead of the peers' BERT of MiniLM's shape.
    pub checkpoint: Option<&'a Path>,
}

/// The repo's PyTorch script for any checkpoint folder (`pipe bench --checkpoint`).
const FAMILY_SCRIPT: &str = "scripts/torch_family_bench.py";

/// Runs one peer script and returns its JSON lines (default threading), each with the
/// process's cores busy. The frameworks' caches go to `scratch`, which the caller removes.
pub fn run(
    python: &Path,
    dir: &Path,
    script: &PeerScript,
    how: &PeerRun,
    scratch: &Path,
) -> Result<Vec<PeerResult>> {
    let checkpoint = how.checkpoint.filter(|_| script.model == "bert");
    let path = match checkpoint {
        Some(_) => PathBuf::from(FAMILY_SCRIPT),
        None => dir.join(script.file),
    };
    if !path.is_file() {
        let flag = match checkpoint {
            Some(_) => "--checkpoint (run from the repository root)",
            None => "--peers-dir",
        };
        bail!("{flag}: {} not found", path.display());
    }
    let mut cmd = Command::new(python);
    cmd.arg(&path)
        .args([
            "--steps",
            &how.steps.to_string(),
            "--warmup",
            &how.warmup.to_string(),
        ])
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .env("KERAS_HOME", scratch.join("keras"))
        .env("HF_HOME", scratch.join("hf"))
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("MPLCONFIGDIR", scratch.join("mpl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(gpu) = how.gpu {
        cmd.args(["--device", gpu]);
    }
    if let Some(folder) = checkpoint {
        cmd.arg("--checkpoint")
            .arg(folder)
            .arg("--peers-dir")
            .arg(dir);
    }
    if how.autocast && script.file.starts_with("torch") {
        cmd.args(["--autocast", "bf16"]);
    }
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
        bail!("{} failed ({}): {last}", path.display(), output.status);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(framework: &str, device: Option<&str>) -> PeerResult {
        let mut json = serde_json::json!({
            "framework": framework, "model": "B", "phase": "train", "threads": "default",
            "samples_per_s": 10.0,
        });
        if let Some(d) = device {
            json["device"] = d.into();
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn figures_are_matched_on_the_same_kind_of_device() {
        let peers = [
            line("pytorch", None),
            line("keras", Some("cpu")),
            line("pytorch", Some("cuda")),
        ];
        let names = |on_gpu| -> Vec<(String, Option<String>)> {
            matching(&peers, "B", "train", on_gpu)
                .iter()
                .map(|p| (p.framework.clone(), p.device.clone()))
                .collect()
        };
        assert_eq!(
            names(false),
            [
                ("pytorch".into(), None),
                ("keras".into(), Some("cpu".into()))
            ]
        );
        assert_eq!(names(true), [("pytorch".into(), Some("cuda".into()))]);
        assert_eq!(scripts_for("a", true).len(), 1);
        assert_eq!(scripts_for("a", false).len(), 2);
    }
}
