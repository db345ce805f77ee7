//! Locating pretrained models: a folder path, or a hub id looked up in `PIPE_MODEL_PATH`
//! folders, the project's local model stores, the Hugging Face cache
//! (`$HF_HOME/hub/models--org--name/snapshots/<rev>/`), and finally downloaded from the hub
//! when online. A miss is one error that lists every place searched.

pub mod checkpoint;
pub mod encoder_config;

use std::path::{Path, PathBuf};

pub use encoder_config::{
    EncoderConfig, Family, PoolerActivation, RelativeAttention, SUPPORTED_MODEL_TYPES,
};

/// Folders searched after `PIPE_MODEL_PATH`: a `models/` folder beside the pipelines, and the
/// workspace's shared model store.
pub const DEFAULT_MODEL_DIRS: &[&str] = &["models", "../shared/models"];

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PIPE_MODEL_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.extend(DEFAULT_MODEL_DIRS.iter().map(PathBuf::from));
    dirs
}

static STAY_OFFLINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, no model lookup in this process downloads, whatever the environment says: for
/// code sharing a process with others (tests, embedders) that must not reach the network and
/// must not change the environment the others read. Process-wide, so lookups made on worker
/// threads stay offline too.
pub fn stay_offline() {
    STAY_OFFLINE.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn offline() -> bool {
    STAY_OFFLINE.load(std::sync::atomic::Ordering::Relaxed)
        || ["HF_HUB_OFFLINE", "PIPE_OFFLINE"]
            .iter()
            .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0"))
}

fn describe(dir: &Path, files: &[&str]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for f in files {
        if !unique.contains(f) {
            unique.push(f);
        }
    }
    let files = &unique[..];
    if !dir.is_dir() {
        return format!("{} (absent)", dir.display());
    }
    let (have, missing): (Vec<&str>, Vec<&str>) = files.iter().partition(|f| dir.join(f).is_file());
    if have.is_empty() {
        format!("{} (none of the files)", dir.display())
    } else {
        format!(
            "{} (has {}; no {})",
            dir.display(),
            have.join(", "),
            missing.join(", ")
        )
    }
}

/// The folder holding one of the alternative file sets of `from` (e.g. `tokenizer.json` or
/// `vocab.txt`). `want` lists alternatives, each a set of files that must all be present.
pub fn locate_any(from: &str, want: &[&[&str]]) -> Result<PathBuf, String> {
    locate_in(from, want, !offline())
}

/// [`locate_any`], with the hub tried only when `online`.
fn locate_in(from: &str, want: &[&[&str]], online: bool) -> Result<PathBuf, String> {
    let all: Vec<&str> = want.iter().flat_map(|w| w.iter().copied()).collect();
    let complete = |dir: &Path| {
        want.iter()
            .any(|set| set.iter().all(|f| dir.join(f).is_file()))
    };
    let mut looked = Vec::new();

    let direct = PathBuf::from(from);
    if direct.is_dir() {
        if complete(&direct) {
            return Ok(direct);
        }
        looked.push(describe(&direct, &all));
    } else if from.starts_with('.') || from.starts_with('/') || from.contains('\\') {
        looked.push(format!("{} (absent)", direct.display()));
    }
    // A path is that folder alone: the model stores and the hub hold ids, not paths.
    if from.starts_with('.') || from.starts_with('/') || from.contains('\\') {
        return Err(format!(
            "model `{from}`: could not find {}; looked in: {}",
            want.iter()
                .map(|s| s.join(" + "))
                .collect::<Vec<_>>()
                .join(" or "),
            looked.join("; ")
        ));
    }

    let base = from.rsplit('/').next().unwrap_or(from);
    for dir in search_dirs() {
        let mut candidates = vec![dir.join(from)];
        if base != from {
            candidates.push(dir.join(base));
        }
        for c in candidates {
            if c.is_dir() && complete(&c) {
                return Ok(c);
            }
            looked.push(describe(&c, &all));
        }
    }

    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(from.to_string());
    for set in want {
        let found: Vec<Option<PathBuf>> = set.iter().map(|f| repo.get(f)).collect();
        if let Some(Some(first)) = found.first()
            && found.iter().all(Option::is_some)
        {
            return Ok(first.parent().map(Path::to_path_buf).unwrap_or_default());
        }
    }
    let cache_dir = cache
        .path()
        .join(format!("models--{}", from.replace('/', "--")));
    looked.push(describe(&cache_dir, &all));

    if online {
        match download(from, want) {
            Ok(dir) => return Ok(dir),
            Err(e) => looked.push(format!("the Hugging Face hub ({e})")),
        }
    } else {
        looked.push("the Hugging Face hub (not tried: offline)".into());
    }
    Err(format!(
        "model `{from}`: could not find {}; looked in: {}",
        want.iter()
            .map(|s| s.join(" + "))
            .collect::<Vec<_>>()
            .join(" or "),
        looked.join("; ")
    ))
}

pub fn locate(from: &str, files: &[&str]) -> Result<PathBuf, String> {
    locate_any(from, &[files])
}

/// Downloads the first file set that the hub has into the Hugging Face cache.
fn download(from: &str, want: &[&[&str]]) -> Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::from_env())
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(from.to_string());
    let mut last = String::new();
    for set in want {
        let mut dir = None;
        let mut ok = true;
        for f in set.iter() {
            match repo.get(f) {
                Ok(p) => dir = p.parent().map(Path::to_path_buf),
                Err(e) => {
                    last = format!("{f}: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if ok && let Some(d) = dir {
            return Ok(d);
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_path_is_used_as_is_and_a_miss_lists_places() {
        // Removed when dropped, also when an assertion fails.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let from = dir.to_str().unwrap();
        assert_eq!(locate(from, &["config.json"]).unwrap(), dir);
        // Offline through the parameter, not PIPE_OFFLINE: the variable would stay set for every
        // other test in this process, and setting it while their threads run is unsound where
        // C code reads the environment (why `set_var` is unsafe).
        let err = locate_in(from, &[&["config.json", "model.safetensors"]], false).unwrap_err();
        assert!(
            err.contains("has config.json; no model.safetensors"),
            "{err}"
        );
        // A path names that folder alone: no model store or hub is searched for it.
        assert!(err.ends_with("no model.safetensors)"), "{err}");
        assert_eq!(err.matches("looked in").count(), 1, "{err}");
    }
}
