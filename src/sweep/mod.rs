//! Sweeps: expanding `--grid` / `--random` (or a `[sweep]` table) into trials, each a set of
//! `--set` overrides, and writing them as a Slurm job array.

pub mod asha;
pub mod executor;
pub mod status;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::spec::SweepSpec;

/// One trial: its number and its overrides (`path=value`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub index: usize,
    pub overrides: Vec<String>,
}

/// A `low..high[:log]` range.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
    pub log: bool,
}

/// What a swept key holds, which decides what a range draws: the key's type, never how the
/// bounds are spelled (`learning_rate=-1..1` draws fractions, `epochs=1..4` whole numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyType {
    Integer,
    Float,
}

pub fn parse_range(text: &str) -> Result<Range> {
    let (body, log) = match text.strip_suffix(":log") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let Some((lo, hi)) = body.split_once("..") else {
        bail!("expected low..high or low..high:log, got `{text}`");
    };
    let (lo, hi) = (lo.trim(), hi.trim());
    let low: f64 = lo
        .parse()
        .map_err(|_| anyhow::anyhow!("`{lo}` is not a number in `{text}`"))?;
    let high: f64 = hi
        .parse()
        .map_err(|_| anyhow::anyhow!("`{hi}` is not a number in `{text}`"))?;
    // `random_range` panics on non-finite bounds; NaN also slips past the order check.
    if !(low.is_finite() && high.is_finite()) {
        bail!("the bounds of `{text}` must be finite numbers");
    }
    if low > high {
        bail!("empty range `{text}`: the low bound is above the high one");
    }
    if log && low <= 0.0 {
        bail!("a :log range needs positive bounds, got `{text}`");
    }
    Ok(Range { low, high, log })
}

/// Shortest decimal that keeps 4 significant digits, as TOML accepts it.
fn format_float(x: f64) -> String {
    let s = format!("{x:.4e}");
    let v: f64 = s.parse().unwrap_or(x);
    let plain = format!("{v}");
    if plain.contains('.') || plain.contains('e') {
        plain
    } else {
        format!("{plain}.0")
    }
}

/// One draw from `range` for a key of type `key`: an integer key draws whole numbers in
/// [ceil(low), floor(high)] (log-uniformly with `:log`), a float key any value in the range.
fn draw(range: &Range, key: KeyType, rng: &mut impl Rng) -> String {
    match (key, range.log) {
        (KeyType::Integer, false) => rng
            .random_range(range.low.ceil() as i64..=range.high.floor() as i64)
            .to_string(),
        (KeyType::Integer, true) => {
            let x = rng.random_range(range.low.ln()..=range.high.ln()).exp();
            (x.round() as i64)
                .clamp(range.low.ceil() as i64, range.high.floor() as i64)
                .to_string()
        }
        (KeyType::Float, true) => {
            format_float(rng.random_range(range.low.ln()..=range.high.ln()).exp())
        }
        (KeyType::Float, false) => format_float(rng.random_range(range.low..=range.high)),
    }
}

/// Every grid combination; with random ranges, `trials` samples for each combination.
/// `key_type` says what each swept key holds (see [`KeyType`]).
pub fn expand(
    sweep: &SweepSpec,
    default_seed: u64,
    key_type: &dyn Fn(&str) -> KeyType,
) -> Result<Vec<Trial>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::new()];
    for (path, values) in &sweep.grid {
        if values.is_empty() {
            bail!("--grid {path} has no values");
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(format!("{path}={v}"));
                    c
                })
            })
            .collect();
    }
    let mut ranges: Vec<(String, Range, KeyType)> = Vec::new();
    for (path, text) in &sweep.random {
        let range = parse_range(text)?;
        let key = key_type(path);
        if key == KeyType::Integer && range.low.ceil() > range.high.floor() {
            bail!("`{path}` takes whole numbers, and `{text}` holds none");
        }
        ranges.push((path.clone(), range, key));
    }
    let samples = if ranges.is_empty() {
        1
    } else {
        sweep.trials.unwrap_or(8)
    };
    if sweep.grid.is_empty() && ranges.is_empty() {
        bail!("nothing to sweep: give --grid or --random (or a [sweep] table)");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(sweep.seed.unwrap_or(default_seed));
    let mut trials = Vec::new();
    for combo in combos {
        for _ in 0..samples {
            let mut overrides = combo.clone();
            for (path, range, key) in &ranges {
                overrides.push(format!("{path}={}", draw(range, *key, &mut rng)));
            }
            trials.push(Trial {
                index: trials.len(),
                overrides,
            });
        }
    }
    Ok(trials)
}

/// Parses `path=v1,v2,...` into the grid (values as TOML: `1e-3`, `4`, `"adam"`, `true`).
pub fn parse_grid(arg: &str, grid: &mut BTreeMap<String, Vec<toml::Value>>) -> Result<()> {
    let Some((path, values)) = arg.split_once('=') else {
        bail!("--grid expects path=v1,v2,..., got `{arg}`");
    };
    let parsed: Vec<toml::Value> = values
        .split(',')
        .map(|v| crate::spec::load::parse_value(v.trim()))
        .collect();
    grid.insert(path.trim().to_string(), parsed);
    Ok(())
}

/// `s` quoted for a POSIX shell (the job scripts and `sbatch --wrap` commands).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Where a Slurm sweep's jobs run and write: the folder `pipe sweep` ran in (the spec's
/// relative paths resolve from there), the runs dir (the trials' data and feature caches) and
/// the sweep folder.
pub struct SlurmPlaces<'a> {
    pub workdir: &'a str,
    pub runs_dir: &'a str,
    pub sweep_dir: &'a str,
}

/// A Slurm job array that runs trial k as `pipe run SPEC --set ... --trial k --runs-dir RUNS
/// --into DIR`, in the folder the sweep was emitted from.
pub fn slurm_script(
    pipe: &str,
    spec: &str,
    base_sets: &[String],
    trials: &[Trial],
    places: &SlurmPlaces,
) -> String {
    let mut out = String::new();
    out += "#!/bin/bash\n";
    out += &format!(
        "#SBATCH --job-name=pipe-sweep\n#SBATCH --array=0-{}\n",
        trials.len().saturating_sub(1)
    );
    out += "#SBATCH --output=slurm-%A_%a.out\n";
    out += &format!("#SBATCH --chdir={}\n", places.workdir);
    out += "# One pipe run per array task; each writes its own run folder into the sweep folder.\n";
    out += "set -euo pipefail\n";
    out += "TRIALS=(\n";
    for t in trials {
        let sets: Vec<String> = base_sets
            .iter()
            .chain(&t.overrides)
            .map(|s| format!("--set {}", shell_quote(s)))
            .collect();
        out += &format!("  {}\n", shell_quote(&sets.join(" ")));
    }
    out += ")\n";
    out += &format!(
        "eval \"{} run {} ${{TRIALS[$SLURM_ARRAY_TASK_ID]}} --trial $SLURM_ARRAY_TASK_ID --runs-dir {} --into {} --quiet\"\n",
        pipe,
        shell_quote(spec),
        shell_quote(places.runs_dir),
        shell_quote(places.sweep_dir)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_cartesian_in_order() {
        let mut grid = BTreeMap::new();
        parse_grid("stages.train.optimizer.learning_rate=1e-3,3e-4", &mut grid).unwrap();
        parse_grid("model.block.num_heads=2,4", &mut grid).unwrap();
        let trials = expand(
            &SweepSpec {
                grid,
                ..Default::default()
            },
            0,
            &|_| KeyType::Float,
        )
        .unwrap();
        assert_eq!(trials.len(), 4);
        assert_eq!(
            trials[1].overrides,
            vec![
                "model.block.num_heads=2",
                "stages.train.optimizer.learning_rate=0.0003"
            ]
        );
    }

    #[test]
    fn random_is_seeded_and_in_range() {
        let mut random = BTreeMap::new();
        random.insert("lr".to_string(), "1e-4..1e-2:log".to_string());
        random.insert("heads".to_string(), "1..4".to_string());
        let sweep = SweepSpec {
            random,
            trials: Some(20),
            ..Default::default()
        };
        let types = |p: &str| {
            if p == "heads" {
                KeyType::Integer
            } else {
                KeyType::Float
            }
        };
        let a = expand(&sweep, 7, &types).unwrap();
        assert_eq!(a, expand(&sweep, 7, &types).unwrap());
        assert_ne!(a, expand(&sweep, 8, &types).unwrap());
        for t in &a {
            let heads: i64 = t.overrides[0].split('=').nth(1).unwrap().parse().unwrap();
            let lr: f64 = t.overrides[1].split('=').nth(1).unwrap().parse().unwrap();
            assert!(
                (1..=4).contains(&heads) && (1e-4..=1e-2).contains(&lr),
                "{t:?}"
            );
        }
        assert!(parse_range("5..1").is_err());
        assert!(parse_range("0..1:log").is_err());
    }

    #[test]
    fn the_key_type_decides_what_a_range_draws() {
        let sweep = |key: &str, range: &str| SweepSpec {
            random: BTreeMap::from([(key.to_string(), range.to_string())]),
            trials: Some(50),
            ..Default::default()
        };
        let values = |trials: Vec<Trial>| -> Vec<String> {
            trials
                .iter()
                .map(|t| t.overrides[0].split('=').nth(1).unwrap().to_string())
                .collect()
        };
        // Whole-number bounds on a float key: fractions, spread over the range.
        let lr = values(expand(&sweep("lr", "-1..1"), 3, &|_| KeyType::Float).unwrap());
        let lr: Vec<f64> = lr.iter().map(|v| v.parse().unwrap()).collect();
        assert!(lr.iter().all(|v| (-1.0..=1.0).contains(v)), "{lr:?}");
        assert!(
            lr.iter().filter(|v| v.fract() != 0.0).count() > 45,
            "{lr:?}"
        );
        assert!(lr.iter().any(|&v| v < 0.0) && lr.iter().any(|&v| v > 0.0));
        // Fractional bounds on an integer key: the whole numbers inside, log too.
        let epochs = values(expand(&sweep("e", "0.5..3.5"), 3, &|_| KeyType::Integer).unwrap());
        assert!(
            epochs.iter().all(|v| ["1", "2", "3"].contains(&v.as_str())),
            "{epochs:?}"
        );
        let batch = values(expand(&sweep("b", "16..256:log"), 3, &|_| KeyType::Integer).unwrap());
        for v in &batch {
            let v: i64 = v.parse().expect("a whole number");
            assert!((16..=256).contains(&v), "{v}");
        }
        let none = expand(&sweep("e", "1.2..1.8"), 3, &|_| KeyType::Integer).unwrap_err();
        assert!(none.to_string().contains("holds none"), "{none}");
    }

    #[test]
    fn slurm_array_runs_each_trial() {
        let trials = vec![
            Trial {
                index: 0,
                overrides: vec!["seed=1".into()],
            },
            Trial {
                index: 1,
                overrides: vec!["seed=2".into()],
            },
        ];
        let places = SlurmPlaces {
            workdir: "/home/u/project",
            runs_dir: "/scratch/runs",
            sweep_dir: "/scratch/runs/x/sweep-1",
        };
        let s = slurm_script("pipe", "p.toml", &[], &trials, &places);
        assert!(s.contains("#SBATCH --array=0-1"));
        assert!(s.contains("#SBATCH --chdir=/home/u/project\n"), "{s}");
        assert!(s.contains("--trial $SLURM_ARRAY_TASK_ID"));
        assert!(
            s.contains("--runs-dir '/scratch/runs' --into '/scratch/runs/x/sweep-1'"),
            "{s}"
        );
        assert!(s.contains("'--set '\\''seed=2'\\'''"), "{s}");
    }
}
