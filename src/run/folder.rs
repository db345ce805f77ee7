//! `runs/<pipeline>/<UTC yyyymmdd-hhmmss>-<id>/` and the paths inside it.

use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;

/// A run's `started_at` from its run.json (RFC 3339 in UTC, so text order is time order);
/// empty when unreadable.
fn started_at(run: &RunDir) -> String {
    super::RunRecord::load(&run.run_json())
        .map(|r| r.started_at)
        .unwrap_or_default()
}

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
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such run folder", path.display()),
            ));
        }
        if !run.run_json().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not a run folder (it has no run.json)",
                    path.display()
                ),
            ));
        }
        Ok(run)
    }

    /// A run folder, or, for a folder of runs (`runs/<pipeline>`, a sweep folder), the newest
    /// run in it that `usable` accepts (`wanted` says what it looks for, for the error);
    /// `Ok((run, true))` when it was picked that way.
    /// Newest by run.json's `started_at` (names hold the start second only), then by name.
    pub fn open_or_newest(
        path: &Path,
        usable: impl Fn(&RunDir) -> bool,
        wanted: &str,
    ) -> io::Result<(RunDir, bool)> {
        if path.join("run.json").is_file() || !path.is_dir() {
            return Self::open(path).map(|run| (run, false));
        }
        let mut runs: Vec<RunDir> = std::fs::read_dir(path)?
            .filter_map(|entry| entry.ok())
            .map(|entry| RunDir { path: entry.path() })
            .filter(|run| run.run_json().is_file())
            .collect();
        runs.sort_by_cached_key(|run| (started_at(run), run.name()));
        let found = runs.len();
        match runs.into_iter().rev().find(|run| usable(run)) {
            Some(run) => Ok((run, true)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                match found {
                    0 => format!(
                        "{} holds no run folders (none has a run.json)",
                        path.display()
                    ),
                    n => format!(
                        "{} holds {n} run folder(s), none with {wanted}",
                        path.display()
                    ),
                },
            )),
        }
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
    /// A pretrained layer's config.json as the run used it (`pretrained/<layer>/config.json`),
    /// so that the run predicts, evaluates and exports without the model's source folder.
    pub fn pretrained_dir(&self, layer: &str) -> PathBuf {
        self.path.join("pretrained").join(layer)
    }
    pub fn eval_json(&self) -> PathBuf {
        self.path.join("eval.json")
    }
}
