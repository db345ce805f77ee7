//! `pipe cache [--runs-dir DIR] [--clear]`: the caches under a runs dir: the encoded cache
//! (each data file's parsed texts and encoded rows, `.data-cache/`) and the frozen-feature cache
//! (`.feature-cache/`), file by file with size and age; `--clear` removes them.

use std::path::PathBuf;

use anyhow::Result;

use crate::data::cache;
use crate::text_table::{self, Align};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe cache\n  pipe cache --clear\n  pipe cache --runs-dir /scratch/pipe-runs"
)]
pub struct CacheArgs {
    /// The runs dir whose caches to show (a pipeline's `runtime.runs_dir`).
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// An encoded cache kept elsewhere (a pipeline's `runtime.data_cache_dir`).
    #[arg(long)]
    pub data_cache_dir: Option<PathBuf>,
    /// Remove every cache file listed.
    #[arg(long)]
    pub clear: bool,
}

pub fn run(args: CacheArgs) -> Result<i32> {
    let data_dir =
        (args.data_cache_dir.clone()).unwrap_or_else(|| cache::default_dir(&args.runs_dir));
    let kind = |e: &cache::Entry| match e.path.extension().and_then(|x| x.to_str()) {
        Some(crate::data::parsed::EXTENSION) => "parsed texts",
        _ if e.path.is_dir() => "vectorizer",
        _ => "encoded rows",
    };
    let mut listed: Vec<(&str, cache::Entry)> = (cache::entries(&data_dir).into_iter())
        .map(|e| (kind(&e), e))
        .collect();
    let feature_dir = args.runs_dir.join(".feature-cache");
    if let Ok(read) = std::fs::read_dir(&feature_dir) {
        for e in read.flatten().filter(|e| e.path().is_file()) {
            let meta = e.metadata().ok();
            listed.push((
                "frozen features",
                cache::Entry {
                    source: None,
                    path: e.path(),
                    bytes: meta.as_ref().map_or(0, |m| m.len()),
                    rows: None,
                    modified: meta.and_then(|m| m.modified().ok()),
                },
            ));
        }
    }
    if listed.is_empty() {
        outln!(
            "no cache files in {} or {}",
            data_dir.display(),
            feature_dir.display()
        );
        return Ok(0);
    }
    let total: u64 = listed.iter().map(|(_, e)| e.bytes).sum();
    if args.clear {
        let mut failed = 0;
        for (_, entry) in &listed {
            let removed = match entry.path.is_dir() {
                true => std::fs::remove_dir_all(&entry.path),
                false => std::fs::remove_file(&entry.path),
            };
            if let Err(e) = removed {
                errln!("error: {}: {e}", entry.path.display());
                failed += 1;
            }
            let _ = std::fs::remove_file(entry.path.with_extension("json"));
        }
        // The small facts beside them (a train file's classes, a test file's check).
        for fact in std::fs::read_dir(&data_dir).into_iter().flatten().flatten() {
            if fact.path().extension().is_some_and(|x| x == "json") {
                let _ = std::fs::remove_file(fact.path());
            }
        }
        outln!(
            "removed {} cache file(s), {}",
            listed.len() - failed,
            size(total)
        );
        return Ok(if failed > 0 { super::EXIT_FAILURE } else { 0 });
    }
    let rows = listed.iter().map(|(kind, e)| {
        let name = e.path.file_name().unwrap_or_default().to_string_lossy();
        vec![
            format!("{}…", &name[..name.len().min(12)]),
            kind.to_string(),
            e.source.clone().unwrap_or_default(),
            e.rows.map_or(String::new(), |r| r.to_string()),
            size(e.bytes),
            e.modified.map_or("?".into(), age),
        ]
    });
    let columns = [
        ("file", Align::Left),
        ("holds", Align::Left),
        ("from", Align::Left),
        ("rows", Align::Right),
        ("size", Align::Right),
        ("age", Align::Right),
    ];
    out!("{}", text_table::plain(&columns, rows));
    outln!(
        "{} file(s), {} in all, in {} and {}; `pipe cache --clear` removes them",
        listed.len(),
        size(total),
        data_dir.display(),
        feature_dir.display()
    );
    Ok(0)
}

fn size(bytes: u64) -> String {
    match bytes {
        0..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

fn age(modified: std::time::SystemTime) -> String {
    super::runs::age_of(modified.elapsed().map_or(0, |d| d.as_secs()))
}
