//! Reading run folders into [`RunSummary`]: run.json for status, duration and metrics, the
//! resolved pipeline.toml for the config, flattened into the dotted keys `--set` accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What `pipe compare` needs from one run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub path: PathBuf,
    /// The folder name (`20261127-073623-9cdb3e`).
    pub name: String,
    pub pipeline: String,
    pub status: String,
    pub duration_s: Option<f64>,
    /// The resolved spec, flattened by [`flatten`].
    pub config: BTreeMap<String, String>,
    /// run.json `metrics`, plus `best.<stage>.<key>` from each stage's best epoch. A metric that
    /// run.json stores as `null` (serde_json's spelling of NaN) is `f64::NAN`, so a diverged run
    /// still shows up as such instead of hiding the column.
    pub metrics: BTreeMap<String, f64>,
}

/// One folder given to `pipe compare`, read or with the reason it could not be.
#[derive(Clone, Debug)]
pub enum Loaded {
    Ok(RunSummary),
    Unreadable { path: PathBuf, reason: String },
}

/// The parts of run.json that compare reads; the rest is ignored.
#[derive(Deserialize)]
struct RunJson {
    status: String,
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    metrics: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    stages: Vec<StageJson>,
}

#[derive(Deserialize)]
struct StageJson {
    name: String,
    #[serde(default)]
    best: BTreeMap<String, Option<f64>>,
}

/// Loads every folder; one bad folder must not hide the others (a run that is still being
/// created, or a stray path from a shell glob), so failures become [`Loaded::Unreadable`].
pub fn load_runs(paths: &[PathBuf]) -> Vec<Loaded> {
    paths
        .iter()
        .map(|p| match load_run(p) {
            Ok(run) => Loaded::Ok(run),
            Err(reason) => Loaded::Unreadable {
                path: p.clone(),
                reason,
            },
        })
        .collect()
}

fn load_run(path: &Path) -> Result<RunSummary, String> {
    if !path.is_dir() {
        return Err(if path.exists() {
            "not a directory".into()
        } else {
            "no such directory".into()
        });
    }
    let run: RunJson = serde_json::from_str(&read_file(path, "run.json")?)
        .map_err(|e| format!("run.json: {e}"))?;
    let text = read_file(path, "pipeline.toml")?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("pipeline.toml: {}", toml_error(&text, &e)))?;

    let pipeline = run
        .pipeline
        .clone()
        .or_else(|| doc.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_default();
    let metrics = summary_metrics(&run);
    Ok(RunSummary {
        path: path.to_path_buf(),
        name: folder_name(path),
        pipeline,
        status: run.status,
        duration_s: run.duration_s,
        config: flatten(&doc),
        metrics,
    })
}

/// The run's name as the table shows it: the folder's own name.
fn folder_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        // `pipe compare .` from inside a run folder has no file name to show.
        .or_else(|| {
            path.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| path.display().to_string())
}

/// run.json's final metrics plus each stage's best epoch as `best.<stage>.<key>`, nulls as NaN.
fn summary_metrics(run: &RunJson) -> BTreeMap<String, f64> {
    let mut metrics: BTreeMap<String, f64> = run
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), v.unwrap_or(f64::NAN)))
        .collect();
    for stage in &run.stages {
        for (k, v) in &stage.best {
            metrics.insert(format!("best.{}.{k}", stage.name), v.unwrap_or(f64::NAN));
        }
    }
    metrics
}

fn read_file(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no {file}"),
        _ => format!("{file}: {e}"),
    })
}

/// toml's own Display spans several lines with a source excerpt; the unreadable list wants one.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Flatten a TOML document into dotted keys. Arrays of tables whose entries have a `name` key
/// are addressed by that name (`model.block.num_heads`, `stages.train.optimizer.learning_rate`);
/// entries without a name use Keras-style auto names for model.layers (`type`, then `type_1`,
/// `type_2` per type, skipping names taken explicitly) and `train`, `stage_2`, ... for stages
/// (index 0 → "train", index i → "stage_{i+1}"); other arrays become a JSON-ish string value
/// like `["a", "b"]`. Values: strings unquoted, numbers as TOML prints them.
///
/// The addresses are the ones `pipe run --set` accepts, so a key seen here can be pasted into
/// an override.
pub fn flatten(doc: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten_table("", doc, &mut out);
    out
}

fn flatten_table(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        flatten_value(&join(prefix, k), v, out);
    }
}

fn flatten_value(path: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => flatten_table(path, t, out),
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|v| v.is_table()) => {
            // `--set` drops the `layers` segment (`model.head.units`) but keeps `stages`.
            let parent = if path == "model.layers" {
                "model"
            } else {
                path
            };
            for (name, item) in entry_names(path, items).iter().zip(items) {
                let entry = join(parent, name);
                for (k, v) in item.as_table().into_iter().flatten() {
                    // The entry's address already carries its name.
                    if k == "name" && v.is_str() {
                        continue;
                    }
                    flatten_value(&join(&entry, k), v, out);
                }
            }
        }
        toml::Value::String(s) => {
            out.insert(path.to_string(), s.clone());
        }
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The same names `--set` addresses, so a key printed here can be pasted into an override.
fn entry_names(array_path: &str, items: &[toml::Value]) -> Vec<String> {
    crate::spec::load::entry_names(array_path, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::test_fixtures::{scratch, spec};

    #[test]
    fn flatten_addresses_entries_by_name_and_auto_name() {
        let doc: toml::Table = spec("0.001", 2).parse().unwrap();
        let flat = flatten(&doc);
        assert_eq!(flat["name"], "toy");
        assert_eq!(flat["seed"], "0");
        assert_eq!(flat["model.block.num_heads"], "2");
        assert_eq!(flat["model.block.type"], "transformer_block");
        assert_eq!(
            flat["model.global_average_pooling_1d.type"],
            "global_average_pooling_1d"
        );
        assert_eq!(flat["model.dense.units"], "20");
        assert_eq!(flat["model.dropout.rate"], "0.1");
        assert_eq!(flat["model.dense_1.units"], "4");
        assert_eq!(flat["stages.train.optimizer.learning_rate"], "0.001");
        assert_eq!(flat["stages.train.optimizer.epsilon"], "0.0000001");
        assert_eq!(flat["stages.train.metrics"], r#"["accuracy"]"#);
        assert_eq!(flat["dataset.text"], r#"["title", "description"]"#);
        assert!(
            !flat.contains_key("model.block.name"),
            "name is in the address"
        );

        // Explicit names are reserved before auto-naming; unnamed stages count by position.
        let doc: toml::Table = r#"
            [[model.layers]]
            type = "dense"
            [[model.layers]]
            name = "dense_1"
            type = "dropout"
            [[model.layers]]
            type = "dense"
            [[stages]]
            epochs = 1
            [[stages]]
            name = "finetune"
            epochs = 2
            [[stages]]
            epochs = 3
        "#
        .parse()
        .unwrap();
        let flat = flatten(&doc);
        assert_eq!(flat["model.dense.type"], "dense");
        assert_eq!(flat["model.dense_1.type"], "dropout");
        assert_eq!(flat["model.dense_2.type"], "dense");
        assert_eq!(flat["stages.train.epochs"], "1");
        assert_eq!(flat["stages.finetune.epochs"], "2");
        assert_eq!(flat["stages.stage_3.epochs"], "3");
    }

    #[test]
    fn unreadable_reasons() {
        let root = scratch("unreadable");
        let bad_json = root.join("bad_json");
        std::fs::create_dir_all(&bad_json).unwrap();
        std::fs::write(bad_json.join("run.json"), "{\"status\": ").unwrap();
        let bad_toml = root.join("bad_toml");
        std::fs::create_dir_all(&bad_toml).unwrap();
        std::fs::write(bad_toml.join("run.json"), r#"{"status": "failed"}"#).unwrap();
        std::fs::write(bad_toml.join("pipeline.toml"), "name = \"x\"\nseed = = 1\n").unwrap();
        let no_spec = root.join("no_spec");
        std::fs::create_dir_all(&no_spec).unwrap();
        std::fs::write(no_spec.join("run.json"), r#"{"status": "running"}"#).unwrap();
        let missing = root.join("missing");

        let loaded = load_runs(&[bad_json, bad_toml, no_spec, missing]);
        let reasons: Vec<String> = loaded
            .iter()
            .map(|l| match l {
                Loaded::Unreadable { reason, .. } => reason.clone(),
                Loaded::Ok(r) => panic!("{} should be unreadable", r.name),
            })
            .collect();
        assert!(reasons[0].starts_with("run.json: "), "{}", reasons[0]);
        assert!(
            reasons[1].starts_with("pipeline.toml: line 2"),
            "{}",
            reasons[1]
        );
        assert!(!reasons[1].contains('\n'), "{}", reasons[1]);
        assert_eq!(reasons[2], "no pipeline.toml");
        assert_eq!(reasons[3], "no such directory");
        std::fs::remove_dir_all(root).unwrap();
    }
}
