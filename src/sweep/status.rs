//! `pipe sweep --status DIR`: a sweep's record brought up to date from its trials' run folders.
//! A sweep emitted for Slurm (or one whose controller was killed) never hears how its trials
//! ended; each trial's run.json knows, and names its trial, so the sweep folder alone is enough.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// One trial as its run folder tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialState {
    pub index: usize,
    pub overrides: Vec<String>,
    /// emitted | pending | running | completed | failed | interrupted | paused | pruned | skipped
    pub status: String,
    pub run: Option<PathBuf>,
    /// The trial's `validation.accuracy`, else `train.accuracy` (from run.json).
    pub accuracy: Option<f64>,
}

/// Reads `dir/sweep.json`, updates each trial's status and run folder from the run folders in
/// `dir` (the newest one of a trial, when it ran more than once), writes it back, and returns
/// the trials.
pub fn reconcile(dir: &Path) -> Result<Vec<TrialState>> {
    let (record, states) = read_states(dir)?;
    let mut text = serde_json::to_string_pretty(&record)?;
    text.push('\n');
    crate::run::atomic_write(&dir.join("sweep.json"), text.as_bytes())?;
    Ok(states)
}

/// `dir`'s trials as their run folders tell, without writing anything (`pipe compare`).
pub fn trial_states(dir: &Path) -> Result<Vec<TrialState>> {
    read_states(dir).map(|(_, states)| states)
}

/// sweep.json brought up to date from the run folders, and the trials' states.
fn read_states(dir: &Path) -> Result<(Value, Vec<TrialState>)> {
    let file = dir.join("sweep.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: not a sweep folder", dir.display()))?;
    let mut record: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    let runs = trial_runs(dir);
    let trials = (record.get_mut("trials").and_then(Value::as_array_mut))
        .with_context(|| format!("{}: no trials", file.display()))?;
    let mut states = Vec::new();
    for trial in trials.iter_mut() {
        let index = trial["index"].as_u64().unwrap_or(u64::MAX) as usize;
        let mut accuracy = None;
        if let Some((run, status, metrics)) = runs.get(&index) {
            trial["status"] = Value::String(status.clone());
            trial["run"] = Value::String(run.display().to_string());
            accuracy = (metrics
                .get("validation.accuracy")
                .or(metrics.get("train.accuracy")))
            .and_then(Value::as_f64);
        }
        let overrides = (trial["overrides"].as_array().into_iter().flatten())
            .filter_map(|o| o.as_str().map(String::from))
            .collect();
        states.push(TrialState {
            index,
            overrides,
            status: trial["status"].as_str().unwrap_or("unknown").to_string(),
            run: trial["run"].as_str().map(PathBuf::from),
            accuracy,
        });
    }
    Ok((record, states))
}

/// The run folder of trial `trial` in sweep folder `dir` (its newest, were there several).
pub fn trial_run(dir: &Path, trial: usize) -> Option<PathBuf> {
    trial_runs(dir).remove(&trial).map(|(folder, _, _)| folder)
}

/// The run folders in `dir` by trial index: (folder, status, metrics), the newest folder of a
/// trial winning (folder names start with their UTC start time).
fn trial_runs(dir: &Path) -> BTreeMap<usize, (PathBuf, String, serde_json::Map<String, Value>)> {
    let mut folders: Vec<PathBuf> = (std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.join("run.json").is_file())
        .collect();
    folders.sort();
    let mut runs = BTreeMap::new();
    for folder in folders {
        let Some(record) = std::fs::read_to_string(folder.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        let Some(index) = record["trial"].as_u64() else {
            continue;
        };
        let status = record["status"].as_str().unwrap_or("unknown").to_string();
        let metrics = record["metrics"].as_object().cloned().unwrap_or_default();
        runs.insert(index as usize, (folder, status, metrics));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_folders_update_the_record_and_the_newest_run_of_a_trial_wins() {
        let dir = tempfile::tempdir().unwrap();
        let sweep = serde_json::json!({"id": "x", "trials": [
            {"index": 0, "overrides": ["seed=1"], "status": "emitted", "log": "trial-0.log"},
            {"index": 1, "overrides": ["seed=2"], "status": "emitted", "log": "trial-1.log"},
            {"index": 2, "overrides": ["seed=3"], "status": "emitted", "log": "trial-2.log"},
        ]});
        std::fs::write(dir.path().join("sweep.json"), sweep.to_string()).unwrap();
        let run = |name: &str, trial: u64, status: &str, acc: f64| {
            let folder = dir.path().join(name);
            std::fs::create_dir(&folder).unwrap();
            let record = serde_json::json!({"trial": trial, "status": status,
                "metrics": {"validation.accuracy": acc}});
            std::fs::write(folder.join("run.json"), record.to_string()).unwrap();
        };
        run("20261206-100000-aaaaaa", 0, "failed", 0.1);
        run("20261206-110000-bbbbbb", 0, "completed", 0.8);
        run("20261206-100500-cccccc", 1, "running", 0.5);
        let states = reconcile(dir.path()).unwrap();
        let summary: Vec<(&str, Option<f64>)> = states
            .iter()
            .map(|s| (s.status.as_str(), s.accuracy))
            .collect();
        assert_eq!(
            summary,
            [
                ("completed", Some(0.8)),
                ("running", Some(0.5)),
                ("emitted", None)
            ]
        );
        assert!(
            states[0]
                .run
                .as_ref()
                .unwrap()
                .ends_with("20261206-110000-bbbbbb")
        );
        // Written back: the record says the same as the folders now.
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweep.json")).unwrap())
                .unwrap();
        assert_eq!(saved["trials"][0]["status"], "completed");
        assert_eq!(saved["trials"][2]["status"], "emitted");
        assert_eq!(saved["id"], "x");
    }
}
