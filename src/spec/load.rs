//! Loading a spec: the file, then `PIPE_*` environment variables, then `--set` overrides, each
//! layer winning over the previous. Spans of the file are kept so that every error, including
//! those found later while resolving the graph, names file:line:col.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::Spec;
use crate::error::{Diagnostics, Location, suggest, with_suggestion};

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "seed",
    "dataset",
    "vectorizer",
    "model",
    "stages",
    "runtime",
    "sweep",
];

/// Byte spans of every key and value of the spec file, and which paths came from overrides.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    pub file: String,
    text: String,
    spans: HashMap<String, (Range<usize>, Range<usize>)>,
    overrides: Vec<(String, String)>,
}

impl SourceMap {
    fn position(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location::File {
            file: self.file.clone(),
            line,
            col,
        }
    }

    fn overridden(&self, path: &str) -> Option<Location> {
        self.overrides
            .iter()
            .rev()
            .find(|(p, _)| {
                path == p
                    || path.starts_with(&format!("{p}."))
                    || path.starts_with(&format!("{p}["))
            })
            .map(|(_, o)| Location::Override(o.clone()))
    }

    fn lookup(&self, path: &str) -> Option<&(Range<usize>, Range<usize>)> {
        let mut p = path.to_string();
        loop {
            if let Some(s) = self.spans.get(&p) {
                return Some(s);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }

    /// Where the key at `path` (or its closest existing parent) is written.
    pub fn key(&self, path: &str) -> Location {
        if let Some(o) = self.overridden(path) {
            return o;
        }
        match self.lookup(path) {
            Some((k, _)) => self.position(k.start),
            None => self.position(0),
        }
    }

    /// Where the value at `path` (or its closest existing parent) is written.
    pub fn value(&self, path: &str) -> Location {
        if let Some(o) = self.overridden(path) {
            return o;
        }
        match self.lookup(path) {
            Some((_, v)) => self.position(v.start),
            None => self.position(0),
        }
    }
}

/// A spec as loaded: typed, plus the merged TOML it came from and its source map.
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    pub spec: Spec,
    /// The merged document (file + overrides), before defaults are filled in.
    pub merged: toml::Table,
    pub source: SourceMap,
    /// The overrides as given, `path=value`, environment first.
    pub overrides: Vec<String>,
    /// Problems in stages that could be skipped while still building the rest of the spec, so
    /// that resolving can report its own problems alongside them. Empty from [`load_spec`].
    pub errors: Diagnostics,
    /// The run folder's `vectorizer/` when this is a run's pipeline.toml: a pretrained
    /// tokenizer's vocabulary is read from there, as the run used it.
    pub vectorizer_dir: Option<std::path::PathBuf>,
    /// The classes read from the train file when the spec omits `dataset.labels` (they are
    /// then also in `spec.dataset.labels`), with their row counts.
    pub inferred_labels: Option<Vec<crate::spec::dataset::LabelCount>>,
    /// Folders that resolving created: the data cache (and the runs dir above it) when a new
    /// run parsed its data into them. A run refused before its folder exists removes them, so
    /// that it leaves nothing behind.
    pub created_dirs: Vec<std::path::PathBuf>,
}

/// Loads a spec, failing on any problem.
pub fn load_spec(path: &Path, sets: &[String]) -> Result<LoadedSpec, Diagnostics> {
    let mut loaded = load_spec_partial(path, sets)?;
    if loaded.errors.is_empty() {
        Ok(loaded)
    } else {
        Err(std::mem::take(&mut loaded.errors))
    }
}

/// Loads a spec for a new run (the environment's `PIPE_*` keys, then `sets`), keeping what
/// could be read when some stages are invalid (see [`LoadedSpec::errors`]).
pub fn load_spec_partial(path: &Path, sets: &[String]) -> Result<LoadedSpec, Diagnostics> {
    load_spec_with(path, &OverrideLayers::new_run(sets))
}

/// The overrides a spec is loaded with, lowest first: the environment, `--set`, then flags.
/// A run folder's pipeline.toml is loaded with none ([`OverrideLayers::default`]): it already
/// holds every override of its run, and new ones would change what the run was.
#[derive(Clone, Debug, Default)]
pub struct OverrideLayers {
    /// `path=value` from `PIPE_*` variables.
    pub env: Vec<String>,
    /// `path=value` from `--set`.
    pub sets: Vec<String>,
    /// `(flag, path, text)`: `--runs-dir D` sets `runtime.runs_dir` to the string D as given,
    /// never parsed as TOML, so `C:\new` stays `C:\new`. Errors name the flag.
    pub flags: Vec<(String, String, String)>,
}

impl OverrideLayers {
    /// A new run's overrides: the environment's `PIPE_*` spec keys, then `sets`.
    pub fn new_run(sets: &[String]) -> Self {
        OverrideLayers {
            env: env_overrides(),
            sets: sets.to_vec(),
            flags: Vec::new(),
        }
    }
}

/// Loads a spec file with these overrides, keeping what could be read (see [`LoadedSpec::errors`]).
pub fn load_spec_with(path: &Path, layers: &OverrideLayers) -> Result<LoadedSpec, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(Location::None, format!("cannot read spec {file}: {e}"));
        d
    })?;
    load_text(&file, &text, layers)
}

pub fn load_spec_str(
    file: &str,
    text: &str,
    sets: &[String],
    env: &[String],
) -> Result<LoadedSpec, Diagnostics> {
    let mut loaded = load_spec_str_partial(file, text, sets, env)?;
    if loaded.errors.is_empty() {
        Ok(loaded)
    } else {
        Err(std::mem::take(&mut loaded.errors))
    }
}

/// `PIPE_` variables that configure pipe itself, its tests and scripts, not a spec key.
const OWN_VARIABLES: &[&str] = &[
    "model_path",
    "offline",
    "test_panic_at_step",
    "require_models",
    "shared_dir",
    "peers_python",
    "fuzz_scale",
    "fuzz_seed",
    "bin",
    "dist_profile",
    "amx",
    "slurm_poll_ms",
];

/// `PIPE_SEED=7`, `PIPE_STAGES__TRAIN__EPOCHS=3`: figment's environment provider does the
/// prefix stripping and `__` nesting; pipe turns them into the same dotted paths as `--set`.
fn env_overrides() -> Vec<String> {
    let env = figment::providers::Env::prefixed("PIPE_").split("__");
    let mut out: Vec<String> = env
        .iter()
        .filter(|(k, _)| {
            let first = k.as_str().split('.').next().unwrap_or_default();
            // A spec key, or a near miss of one (`PIPE_SEEED`): that one is reported, as a
            // `--set seeed=` would be. Anything else may belong to another program.
            !OWN_VARIABLES.contains(&k.as_str())
                && (TOP_LEVEL_KEYS.contains(&first)
                    || suggest(first, TOP_LEVEL_KEYS.iter().copied()).is_some())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.sort();
    out
}

pub fn load_spec_str_partial(
    file: &str,
    text: &str,
    sets: &[String],
    env: &[String],
) -> Result<LoadedSpec, Diagnostics> {
    let layers = OverrideLayers {
        env: env.to_vec(),
        sets: sets.to_vec(),
        flags: Vec::new(),
    };
    load_text(file, text, &layers)
}

fn load_text(file: &str, text: &str, layers: &OverrideLayers) -> Result<LoadedSpec, Diagnostics> {
    let mut source = SourceMap {
        file: file.to_string(),
        text: text.to_string(),
        ..Default::default()
    };
    let mut diags = Diagnostics::default();
    let mut doc: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let loc = e
                .span()
                .map(|s| source.position(s.start))
                .unwrap_or(Location::None);
            diags.push(loc, e.message().trim().to_string());
            return Err(diags);
        }
    };
    if let Ok(spanned) = toml::de::DeTable::parse(text) {
        index_table(spanned.get_ref(), "", &mut source.spans);
    }

    let mut overrides = Vec::new();
    for (shown, set, value) in override_list(layers) {
        let applied = value
            .ok_or_else(|| format!("expected key=value, got `{set}`"))
            .and_then(|(path, value)| apply_override(&mut doc, &path, value));
        match applied {
            Ok(canonical) => {
                source.overrides.push((canonical, shown));
                overrides.push(set);
            }
            Err(msg) => diags.push(Location::Override(shown), msg),
        }
    }

    let spec = extract(&doc, &source, &mut diags);
    match spec {
        Some(spec) => Ok(LoadedSpec {
            spec,
            merged: doc,
            source,
            overrides,
            errors: diags,
            vectorizer_dir: None,
            inferred_labels: None,
            created_dirs: Vec::new(),
        }),
        None => Err(diags),
    }
}

fn index_table(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    out: &mut HashMap<String, (Range<usize>, Range<usize>)>,
) {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        out.insert(path.clone(), (k.span(), v.span()));
        index_value(v.get_ref(), &path, out);
    }
}

fn index_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    out: &mut HashMap<String, (Range<usize>, Range<usize>)>,
) {
    match value {
        toml::de::DeValue::Table(t) => index_table(t, path, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.insert(p.clone(), (item.span(), item.span()));
                index_value(item.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Names of array-of-table entries as `--set` addresses them: the `name` key, else the
/// automatic name (layers: Keras-style `dense`, `dense_1`; stages: `train`, `stage_2`).
pub fn entry_names(array_path: &str, items: &[toml::Value]) -> Vec<String> {
    let explicit = |v: &toml::Value| v.get("name").and_then(|n| n.as_str()).map(str::to_string);
    match array_path {
        "model.layers" => {
            let kinds: Vec<(Option<String>, String)> = items
                .iter()
                .map(|v| {
                    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("layer");
                    (explicit(v), kind.to_string())
                })
                .collect();
            super::model::auto_names(&kinds)
        }
        _ => items
            .iter()
            .enumerate()
            .map(|(i, v)| explicit(v).unwrap_or_else(|| super::stage::default_stage_name(i)))
            .collect(),
    }
}

/// Each override as (how errors name it, `path=value` as run.json records it, the path and
/// value to apply, `None` when it is not `key=value`), lowest layer first.
type ParsedOverride = (String, String, Option<(String, toml::Value)>);

fn override_list(layers: &OverrideLayers) -> Vec<ParsedOverride> {
    let parse = |set: &str| {
        set.split_once('=')
            .map(|(path, raw)| (path.trim().to_string(), parse_value(raw.trim())))
    };
    let env = layers.env.iter().map(|set| {
        let (key, value) = set.split_once('=').unwrap_or((set, ""));
        let shown = format!(
            "environment PIPE_{}={value}",
            key.to_uppercase().replace('.', "__")
        );
        (shown, set.clone(), parse(set))
    });
    let sets = layers
        .sets
        .iter()
        .map(|set| (format!("--set {set}"), set.clone(), parse(set)));
    let flags = layers.flags.iter().map(|(flag, path, text)| {
        let value = toml::Value::String(text.clone());
        (
            format!("{flag} {text}"),
            format!("{path}={value}"),
            Some((path.clone(), value)),
        )
    });
    env.chain(sets).chain(flags).collect()
}

/// Sets `a.b.c` to `value`, creating missing tables; returns the canonical path (`stages[0].epochs`).
fn apply_override(doc: &mut toml::Table, path: &str, value: toml::Value) -> Result<String, String> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("bad key path `{path}`"));
    }
    if !TOP_LEVEL_KEYS.contains(&segments[0]) {
        let hint = suggest(segments[0], TOP_LEVEL_KEYS.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(format!("unknown key `{}`{hint}", segments[0]));
    }
    let mut canonical = String::new();
    let mut table = doc;
    let mut i = 0;
    while i < segments.len() {
        let seg = segments[i];
        let last = i + 1 == segments.len();
        let here = join(&canonical, seg);
        // `model.<layer>` and `stages.<stage>` address entries of arrays of tables by name.
        let array_key = match (canonical.as_str(), seg) {
            ("model", _) if seg != "layers" => Some("layers"),
            ("", "stages") => Some("stages"),
            _ => None,
        };
        if let Some(array_key) = array_key {
            let (array_path, name_index) = if array_key == "stages" {
                ("stages".to_string(), i + 1)
            } else {
                ("model.layers".to_string(), i)
            };
            let Some(name) = segments.get(name_index) else {
                return Err(format!("`{path}` needs a stage name and a key"));
            };
            let items = table
                .get_mut(array_key)
                .and_then(|v| v.as_array_mut())
                .ok_or_else(|| format!("no `{array_path}` in the spec for `{path}`"))?;
            let names = entry_names(&array_path, items);
            let idx = match names.iter().position(|n| n == name) {
                Some(idx) => idx,
                None => match name.parse::<usize>() {
                    Ok(n) if n < items.len() => n,
                    _ => {
                        let hint = suggest(name, names.iter().map(|s| s.as_str()))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        return Err(format!(
                            "no entry named `{name}` in `{array_path}` (names: {}){hint}",
                            names.join(", ")
                        ));
                    }
                },
            };
            canonical = format!("{array_path}[{idx}]");
            let Some(rest) = segments.get(name_index + 1..).filter(|r| !r.is_empty()) else {
                return Err(format!("`{path}` names an entry but no key inside it"));
            };
            let entry = items[idx]
                .as_table_mut()
                .ok_or_else(|| format!("`{canonical}` is not a table"))?;
            return set_in(entry, rest, value, canonical);
        }
        if last {
            table.insert(seg.to_string(), value);
            return Ok(here);
        }
        let next = table
            .entry(seg.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = next
            .as_table_mut()
            .ok_or_else(|| format!("`{here}` is not a table, cannot set `{path}`"))?;
        canonical = here;
        i += 1;
    }
    Ok(canonical)
}

fn set_in(
    mut table: &mut toml::Table,
    rest: &[&str],
    value: toml::Value,
    mut canonical: String,
) -> Result<String, String> {
    for (i, seg) in rest.iter().enumerate() {
        canonical = join(&canonical, seg);
        if i + 1 == rest.len() {
            table.insert(seg.to_string(), value);
            return Ok(canonical);
        }
        table = table
            .entry(seg.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{canonical}` is not a table"))?;
    }
    Ok(canonical)
}

/// A TOML value (`4`, `1e-3`, `true`, `[1, 2]`, `"x"`), or the raw text as a string.
pub fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// One step of a path into a TOML value.
enum Step {
    Key(String),
    Index(usize),
}

/// Removes key `field` from the table at `steps` inside `value` (or from the table holding the
/// last step, when the path already ends at the field); whether there was one to remove.
fn remove_key(value: &mut toml::Value, steps: &[Step], field: &str) -> bool {
    let mut at = value;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        if last && matches!(step, Step::Key(k) if k == field) {
            break;
        }
        let next = match (step, at) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Step::Index(n), toml::Value::Array(a)) => a.get_mut(*n),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    at.as_table_mut().is_some_and(|t| t.remove(field).is_some())
}

/// Deserializes `value` as `T`, recording an error located at the offending key if it fails.
/// Every unknown key is reported, not only the first serde meets: each is recorded, taken out
/// and the value read again, until it reads or fails for another reason.
pub fn deserialize_at<T: DeserializeOwned>(
    mut value: toml::Value,
    base: &str,
    source: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut reported = false;
    loop {
        let (steps, field) = match deserialize_once(value.clone(), base, source, reported, diags) {
            Ok(v) => return (!reported).then_some(v),
            Err(Some(unknown)) => unknown,
            Err(None) => return None,
        };
        reported = true;
        if !remove_key(&mut value, &steps, &field) {
            return None;
        }
    }
}

/// One attempt of [`deserialize_at`]: the value, or the error recorded and, when it was an
/// unknown key, where that key is.
/// `retry`: an unknown key was taken out before; a key now missing is most likely that one,
/// misspelt, and already reported with its suggestion.
fn deserialize_once<T: DeserializeOwned>(
    value: toml::Value,
    base: &str,
    source: &SourceMap,
    retry: bool,
    diags: &mut Diagnostics,
) -> Result<T, Option<(Vec<Step>, String)>> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut path = base.to_string();
            let mut steps = Vec::new();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => {
                        path.push_str(&format!("[{index}]"));
                        steps.push(Step::Index(*index));
                    }
                    serde_path_to_error::Segment::Map { key } => {
                        path = join(&path, key);
                        steps.push(Step::Key(key.clone()));
                    }
                    _ => {}
                }
            }
            let message = e.into_inner().message().to_string();
            if retry && message.starts_with("missing field") {
                return Err(None);
            }
            let unknown_field = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string);
            let loc = if let Some(field) = unknown_field.as_deref() {
                // The path already ends at the unknown key; show its table, point at the key.
                let key_path = if path.ends_with(&format!(".{field}")) || path == field {
                    path.clone()
                } else {
                    join(&path, field)
                };
                path = key_path
                    .strip_suffix(field)
                    .map(|p| p.trim_end_matches('.').to_string())
                    .unwrap_or_default();
                source.key(&key_path)
            } else if message.starts_with("missing field") {
                source.key(&path)
            } else {
                source.value(&path)
            };
            let shown = if path.is_empty() {
                with_suggestion(&message)
            } else {
                format!("`{path}`: {}", with_suggestion(&message))
            };
            diags.push(loc, shown);
            Err(unknown_field.map(|field| (steps, field)))
        }
    }
}

/// Section by section, so that errors in several sections are all reported.
fn extract(doc: &toml::Table, source: &SourceMap, diags: &mut Diagnostics) -> Option<Spec> {
    for key in doc.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            let hint = suggest(key, TOP_LEVEL_KEYS.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            diags.push(
                source.key(key),
                format!("unknown top-level key `{key}`{hint}"),
            );
        }
    }
    let mut part = |key: &str| -> Option<toml::Value> {
        match doc.get(key) {
            Some(v) => Some(v.clone()),
            None if matches!(key, "name" | "dataset" | "vectorizer" | "model") => {
                diags.push(
                    Location::File {
                        file: source.file.clone(),
                        line: 1,
                        col: 1,
                    },
                    format!("missing required key `{key}`"),
                );
                None
            }
            None => None,
        }
    };
    let name = part("name");
    let dataset = part("dataset");
    let vectorizer = part("vectorizer");
    let model = part("model");
    let description = doc.get("description").cloned();
    let seed = doc.get("seed").cloned();
    let stages = doc.get("stages").cloned();
    let runtime = doc.get("runtime").cloned();

    let name: Option<String> = name.and_then(|v| deserialize_at(v, "name", source, diags));
    let description: Option<Option<String>> = match description {
        Some(v) => deserialize_at(v, "description", source, diags).map(Some),
        None => Some(None),
    };
    let seed: Option<u64> = match seed {
        Some(v) => deserialize_at(v, "seed", source, diags),
        None => Some(super::default_seed()),
    };
    let dataset = dataset.and_then(|v| deserialize_at(v, "dataset", source, diags));
    let vectorizer = vectorizer.and_then(|v| deserialize_at(v, "vectorizer", source, diags));
    let model: Option<super::ModelSpec> = model.and_then(|v| extract_model(v, source, diags));
    let stages: Option<Vec<super::StageSpec>> = match stages {
        None => Some(Vec::new()),
        Some(toml::Value::Array(items)) => {
            // A broken stage is left out so that the model and data can still be checked.
            Some(
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| deserialize_at(v, &format!("stages[{i}]"), source, diags))
                    .collect(),
            )
        }
        Some(_) => {
            diags.push(
                source.value("stages"),
                "`stages` must be an array of tables ([[stages]])",
            );
            None
        }
    };
    let runtime = match runtime {
        Some(v) => deserialize_at(v, "runtime", source, diags),
        None => Some(Default::default()),
    };
    let sweep = match doc.get("sweep").cloned() {
        Some(v) => deserialize_at(v, "sweep", source, diags).map(Some),
        None => Some(None),
    };
    Some(Spec {
        name: name?,
        description: description?,
        seed: seed?,
        dataset: dataset?,
        vectorizer: vectorizer?,
        model: model?,
        stages: stages?,
        runtime: runtime?,
        sweep: sweep?,
    })
}

fn extract_model(
    value: toml::Value,
    source: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<super::ModelSpec> {
    let toml::Value::Table(mut table) = value else {
        diags.push(source.value("model"), "`model` must be a table");
        return None;
    };
    let layers = table.remove("layers");
    for key in table.keys() {
        diags.push(
            source.key(&format!("model.{key}")),
            format!("unknown key `model.{key}`: the model has only `layers`"),
        );
    }
    let Some(toml::Value::Array(items)) = layers else {
        diags.push(
            source.key("model"),
            "`model.layers` must be an array of tables ([[model.layers]])",
        );
        return None;
    };
    let parsed: Vec<Option<super::LayerSpec>> = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| deserialize_at(v, &format!("model.layers[{i}]"), source, diags))
        .collect();
    Some(super::ModelSpec {
        layers: parsed.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"name = "t"
[dataset]
train = "a.csv"
labels = ["x", "y"]
[vectorizer]
type = "text_vectorization"
[[model.layers]]
type = "embedding"
output_dim = 8
[[model.layers]]
name = "head"
type = "dense"
units = 2
[[stages]]
epocs = 2
optimizer = { type = "adam" }
"#;

    #[test]
    fn unknown_stage_key_is_located_and_suggested() {
        let err = load_spec_str("p.toml", SPEC, &[], &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("p.toml:15:1: error: `stages[0]`: unknown field `epocs`"),
            "{text}"
        );
        assert!(text.contains("did you mean `epochs`?"), "{text}");
    }

    #[test]
    fn overrides_address_layers_and_stages_by_name() {
        let fixed = SPEC.replace("epocs", "epochs");
        let sets = vec![
            "model.head.units=4".to_string(),
            "stages.train.epochs=3".to_string(),
            "model.embedding.output_dim=16".to_string(),
            "seed=7".to_string(),
        ];
        let loaded = load_spec_str("p.toml", &fixed, &sets, &[]).unwrap();
        assert_eq!(loaded.spec.seed, 7);
        assert_eq!(loaded.spec.stages[0].epochs, 3);
        assert_eq!(
            loaded.spec.model.layers[1].params["units"].as_integer(),
            Some(4)
        );
        assert_eq!(
            loaded.spec.model.layers[0].params["output_dim"].as_integer(),
            Some(16)
        );
    }

    #[test]
    fn environment_overrides_sit_below_set() {
        let fixed = SPEC.replace("epocs", "epochs");
        let env = vec!["seed=9".to_string(), "stages.train.epochs=5".to_string()];
        let loaded =
            load_spec_str("p.toml", &fixed, &["stages.train.epochs=3".into()], &env).unwrap();
        assert_eq!(loaded.spec.seed, 9);
        assert_eq!(loaded.spec.stages[0].epochs, 3);
        let err = load_spec_str("p.toml", &fixed, &[], &["seed=x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("environment PIPE_SEED=x: error:"), "{err}");
    }

    #[test]
    fn bad_override_names_the_override() {
        let fixed = SPEC.replace("epocs", "epochs");
        let err = load_spec_str("p.toml", &fixed, &["stages.train.epochs=many".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--set stages.train.epochs=many: error:"),
            "{err}"
        );
        let err = load_spec_str("p.toml", &fixed, &["model.hed.units=1".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `head`?"), "{err}");
    }

    #[test]
    fn flag_values_are_strings() {
        let fixed = SPEC.replace("epocs", "epochs");
        let flag = |path: &str, text: &str| OverrideLayers {
            flags: vec![("--runs-dir".into(), path.into(), text.into())],
            ..Default::default()
        };
        let loaded = load_text("p.toml", &fixed, &flag("runtime.runs_dir", r"C:\new")).unwrap();
        assert_eq!(loaded.spec.runtime.runs_dir, r"C:\new");
        let back: toml::Table = toml::from_str(&loaded.overrides[0].replace('=', " = ")).unwrap();
        assert_eq!(back["runtime"]["runs_dir"].as_str(), Some(r"C:\new"));
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let bad = SPEC.replace("epocs = 2", "epochs = \"two\"");
        let err = load_spec_str("p.toml", &bad, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:15:10: error: `stages[0].epochs`"),
            "{err}"
        );
    }

    #[test]
    fn all_errors_are_reported() {
        let bad = SPEC
            .replace("labels = [", "labls = [")
            .replace("epocs = 2", "epochs = -1");
        let err = load_spec_str("p.toml", &bad, &[], &[]).unwrap_err();
        assert!(err.0.len() >= 2, "{err}");
    }

    #[test]
    fn every_unknown_key_of_a_table_is_reported() {
        let bad = SPEC.replace("epocs = 2", "epocs = 2\nbatch_sise = 8\nshufle = true");
        let err = load_spec_str("p.toml", &bad, &[], &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml:15:1: error:") && text.contains("`epocs`"),
            "{text}"
        );
        assert!(
            text.contains("p.toml:16:1: error:") && text.contains("`batch_sise`"),
            "{text}"
        );
        assert!(
            text.contains("p.toml:17:1: error:") && text.contains("`shufle`"),
            "{text}"
        );
        assert_eq!(err.0.len(), 3, "{text}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = load_spec_str("p.toml", "name = \"t\"\nseed = = 3\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:2:"), "{err}");
    }
}
