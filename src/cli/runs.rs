//! `pipe runs [DIR]`: every run folder under the runs directory, newest first, with its
//! status, age and headline metric.

use std::path::PathBuf;

use anyhow::Result;

use crate::run::RunRecord;
use crate::text_table::{self, Align};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  pipe runs\n  pipe runs /scratch/pipe-runs")]
pub struct RunsArgs {
    #[arg(default_value = "runs")]
    pub dir: PathBuf,
}

fn age(started: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(started) else {
        return "?".into();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    age_of(s.max(0) as u64)
}

/// `s` seconds as the tables show an age: `42s`, `17m`, `5h`, `3d`.
pub(super) fn age_of(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn run(args: RunsArgs) -> Result<i32> {
    let mut found: Vec<(String, PathBuf, Option<RunRecord>)> = Vec::new();
    let mut stack = vec![(args.dir.clone(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.join("run.json").is_file() {
                let record = RunRecord::load(&p.join("run.json")).ok();
                let started = record
                    .as_ref()
                    .map(|r| r.started_at.clone())
                    .unwrap_or_default();
                found.push((started, p, record));
            } else if p.is_dir() && depth < 3 {
                stack.push((p, depth + 1));
            }
        }
    }
    if found.is_empty() {
        outln!("no runs under {}", args.dir.display());
        return Ok(0);
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    let rows = found.iter().map(|(started, path, record)| {
        let shown = path
            .strip_prefix(&args.dir)
            .unwrap_or(path)
            .display()
            .to_string();
        match record {
            Some(r) => {
                let metric = ["test.accuracy", "validation.accuracy", "train.accuracy"]
                    .iter()
                    .find_map(|k| r.metrics.get(*k).map(|v| format!("{k} {v:.4}")))
                    .unwrap_or_default();
                let status = serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                vec![shown, status, age(started), metric]
            }
            None => vec![
                shown,
                "?".into(),
                "?".into(),
                "(run.json unreadable)".into(),
            ],
        }
    });
    let columns = [
        ("run", Align::Left),
        ("status", Align::Left),
        ("age", Align::Right),
        ("metric", Align::Left),
    ];
    out!("{}", text_table::plain(&columns, rows));
    Ok(0)
}
