//! `runs/<pipeline>/<UTC yyyymmdd-hhmmss>-<id>/` and the paths inside it.

use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;

#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a fresh run folder. `create_dir` fails when the name exists, so two processes
    /// starting in the same second (same timestamp) cannot share a folder: the loser draws a new id.
    pub fn create(runs_dir: &Path, pipeline: &str) -> io::Result<RunDir> {
        Self::create_in(&runs_dir.join(pipeline))
    }

    /// A fresh run folder directly inside `parent` (sweeps group their trials this way).
    pub fn create_in(parent: &Path) -> io::Result<RunDir> {
        std::fs::create_dir_all(parent)?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        for _ in 0..100 {
            let id: u32 = rand::rng().random();
            let path = parent.join(format!("{stamp}-{:06x}", id & 0xff_ffff));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let run = RunDir { path };
                    std::fs::create_dir_all(run.checkpoints())?;
                    std::fs::create_dir_all(run.model_dir())?;
                    std::fs::create_dir_all(run.vectorizer_dir())?;
                    return Ok(run);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("could not find a free run folder name"))
    }

    pub fn open(path: &Path) -> io::Result<RunDir> {
        let run = RunDir {
            path: path.to_path_buf(),
        };
        if !run.run_json().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a run folder (no run.json)", path.display()),
            ));
        }
        Ok(run)
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    pub fn pipeline(&self) -> PathBuf {
        self.path.join("pipeline.toml")
    }
    pub fn run_json(&self) -> PathBuf {
        self.path.join("run.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }
    pub fn timing(&self) -> PathBuf {
        self.path.join("timing.csv")
    }
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.txt")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log.txt")
    }
    pub fn vectorizer_dir(&self) -> PathBuf {
        self.path.join("vectorizer")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }
    pub fn checkpoint(&self, stage: &str, which: &str) -> PathBuf {
        self.checkpoints()
            .join(format!("{stage}-{which}.safetensors"))
    }
    pub fn model_dir(&self) -> PathBuf {
        self.path.join("model")
    }
    pub fn model_weights(&self) -> PathBuf {
        self.model_dir().join("model.safetensors")
    }
    pub fn eval_json(&self) -> PathBuf {
        self.path.join("eval.json")
    }
}
