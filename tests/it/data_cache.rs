//! The encoded cache (src/data/cache.rs): a run on the repo's data gives the metrics it gave
//! before the cache existed, whether the rows were encoded afresh, read from the cache or read
//! without it; a damaged cache file is rebuilt; `pipe cache` lists and clears.

use crate::common;

use std::path::{Path, PathBuf};

use common::{pipe, scratch, text};

/// metrics.csv of each case as the binary before the encoded cache wrote it (commit b44b1ca):
/// a regression here means the data path changed what a run trains on.
const CASES: [(&str, &[&str], &str); 3] = [
    (
        "pipelines/agnews_transformer_masked.toml",
        &["--set=stages.train.epochs=1"],
        "tests/fixtures/metrics/agnews_transformer_masked.epochs1.csv",
    ),
    (
        "pipelines/sports_csv.toml",
        &[],
        "tests/fixtures/metrics/sports_csv.csv",
    ),
    (
        "pipelines/agnews_cnn_wordpiece.toml",
        &["--set=stages.train.epochs=1", "--set=dataset.limit=3000"],
        "tests/fixtures/metrics/agnews_cnn_wordpiece.limit3000.csv",
    ),
];

/// What the fixtures hold of a run's metrics.csv (they were written before the `train_step`
/// rows and the columns after `lr`): its epoch, validation and test rows, in their first
/// seven columns. The step rows are compared whole, between runs.
fn as_in_fixtures(metrics: &str) -> String {
    let kept: Vec<String> = (metrics.lines())
        .filter(|l| l.split(',').nth(3) != Some("train_step"))
        .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
        .collect();
    kept.join("\n") + "\n"
}

fn metrics(run: &Path) -> String {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap()
}

/// Runs `spec` into `runs` under the name `name`: its run folder.
fn run_into(runs: &Path, spec: &str, sets: &[&str], name: &str) -> PathBuf {
    let out = pipe()
        .args(["run", spec, "--quiet"])
        .args(sets)
        .arg(format!("--set=name={name}"))
        .arg(format!("--runs-dir={}", runs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{spec}: {:?}", text(&out));
    common::only_run(runs, name)
}

fn cache_files(runs: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(runs.join(".data-cache")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = (read.flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rows"))
        .collect();
    files.sort();
    files
}

#[test]
fn metrics_are_those_of_the_runs_before_the_encoded_cache() {
    let scratch = scratch("data-cache-metrics");
    let runs = scratch.join("runs");
    for (i, (spec, sets, expected)) in CASES.iter().enumerate() {
        let expected = std::fs::read_to_string(common::root().join(expected)).unwrap();
        let fresh = run_into(&runs, spec, sets, &format!("fresh{i}"));
        assert_eq!(
            as_in_fixtures(&metrics(&fresh)),
            expected,
            "{spec}: encoded afresh"
        );
        assert!(metrics(&fresh).contains(",train_step,"), "{spec}");
        let log = std::fs::read_to_string(fresh.join("log.txt")).unwrap();
        assert!(!log.contains("encoded rows from the cache"), "{log}");
        // Each file was parsed once, while the spec was checked; the run's own passes read
        // that parse.
        assert!(log.contains("parsed rows from the cache"), "{log}");
        let cached = run_into(&runs, spec, sets, &format!("cached{i}"));
        assert_eq!(metrics(&cached), metrics(&fresh), "{spec}: from the cache");
        let log = std::fs::read_to_string(cached.join("log.txt")).unwrap();
        assert!(log.contains("encoded rows from the cache"), "{log}");
    }
    // Without the cache: nothing is written there, and the figures are the same.
    let (spec, sets, expected) = CASES[1];
    let bare = scratch.join("bare");
    let mut with_off = sets.to_vec();
    with_off.push("--set=runtime.data_cache=false");
    let run = run_into(&bare, spec, &with_off, "off");
    let expected = std::fs::read_to_string(common::root().join(expected)).unwrap();
    assert_eq!(as_in_fixtures(&metrics(&run)), expected);
    let cached = common::only_run(&runs, "cached1");
    assert_eq!(metrics(&run), metrics(&cached));
    assert!(cache_files(&bare).is_empty());
    assert!(!bare.join(".data-cache").exists());
    // One parse per data file and options: the three cases read five.
    let parsed = std::fs::read_dir(runs.join(".data-cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "texts"))
        .count();
    assert_eq!(parsed, 5);
}

#[test]
fn a_damaged_cache_file_is_rebuilt_and_pipe_cache_lists_and_clears() {
    let scratch = scratch("data-cache-damaged");
    let runs = scratch.join("runs");
    let (spec, sets, expected) = CASES[1];
    let expected = std::fs::read_to_string(common::root().join(expected)).unwrap();
    let first = metrics(&run_into(&runs, spec, sets, "first"));
    assert_eq!(as_in_fixtures(&first), expected);
    let files = cache_files(&runs);
    assert_eq!(files.len(), 1, "one train file: {files:?}");
    let whole = std::fs::read(&files[0]).unwrap();

    // A flipped bit in the rows, a truncated file, a file of another format version.
    let mut flipped = whole.clone();
    let at = whole.len() / 2;
    flipped[at] ^= 0x10;
    let mut other_version = whole.clone();
    other_version[8] = 99;
    let damaged = [flipped, whole[..whole.len() / 3].to_vec(), other_version];
    for (i, bytes) in damaged.into_iter().enumerate() {
        std::fs::write(&files[0], bytes).unwrap();
        let run = run_into(&runs, spec, sets, &format!("damaged{i}"));
        assert_eq!(metrics(&run), first, "case {i}");
        let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
        assert!(
            log.contains("damaged or of another version: rebuilt"),
            "{log}"
        );
        assert_eq!(std::fs::read(&files[0]).unwrap(), whole, "rebuilt whole");
    }

    let out = pipe()
        .args(["cache", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("encoded rows"), "{stdout}");
    assert!(
        stdout.contains("data/examples/sports_train.csv"),
        "{stdout}"
    );
    assert!(stdout.contains("1200"), "the row count: {stdout}");
    let out = pipe()
        .args(["cache", "--clear", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(cache_files(&runs).is_empty());
    assert!(
        std::fs::read_dir(runs.join(".data-cache"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// A train file compressed with gzip or zstd (by the programs of those names) trains exactly
/// as the plain file; a stream cut short is one line naming the file and how far in it was.
#[test]
fn compressed_data_files_train_as_the_plain_ones() {
    let scratch = scratch("data-compressed");
    let runs = scratch.join("runs");
    let (spec, sets, expected) = CASES[1];
    let expected = std::fs::read_to_string(common::root().join(expected)).unwrap();
    let plain = common::root().join("data/examples/sports_train.csv");
    let mut tried = 0;
    for (program, extension) in [("gzip", "gz"), ("zstd", "zst")] {
        let packed = scratch.join(format!("sports_train.csv.{extension}"));
        let made = std::process::Command::new(program)
            .args(["-c", plain.to_str().unwrap()])
            .output();
        let Some(made) = made.ok().filter(|m| m.status.success()) else {
            eprintln!("skipped: no `{program}` program to compress with");
            continue;
        };
        std::fs::write(&packed, &made.stdout).unwrap();
        let mut with_file = sets.to_vec();
        let train = format!("--set=dataset.train={}", packed.display());
        with_file.push(&train);
        let run = run_into(&runs, spec, &with_file, &format!("packed-{extension}"));
        assert_eq!(as_in_fixtures(&metrics(&run)), expected, "{program}");

        // Cut short, as an interrupted download leaves it. (Damage inside a gzip member can
        // decode to rows that fail to parse before the member's CRC is reached: then the row
        // is what is named; never is a damaged stream read as if whole.)
        let cut = &made.stdout[..made.stdout.len() * 2 / 3];
        std::fs::write(&packed, cut).unwrap();
        let out = pipe()
            .args(["run", spec, "--quiet", &train])
            .arg(format!("--runs-dir={}", runs.display()))
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("sports_train.csv.{extension}")),
            "{stderr}"
        );
        assert!(stderr.contains("compressed bytes"), "{stderr}");
        tried += 1;
    }
    assert!(tried > 0, "neither gzip nor zstd could be run");
}

/// Two runs that build the same cache files at once both complete with the same figures, and
/// leave whole files; `pipe eval` of a file encodes it once and maps it after.
#[test]
fn concurrent_builders_and_eval_share_the_cache() {
    let scratch = scratch("data-cache-concurrent");
    let runs = scratch.join("runs");
    let (spec, sets, expected) = CASES[1];
    let expected = std::fs::read_to_string(common::root().join(expected)).unwrap();
    let mut logged = Vec::new();
    let children: Vec<_> = (0..2)
        .map(|i| {
            pipe()
                .args(["run", spec, "--quiet"])
                .args(sets)
                .arg(format!("--set=name=together{i}"))
                .arg(format!("--runs-dir={}", runs.display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = common::only_run(&runs, &format!("together{i}"));
        assert_eq!(as_in_fixtures(&metrics(&run)), expected, "run {i}");
        logged.push(metrics(&run));
    }
    assert_eq!(logged[0], logged[1], "the step rows too");
    let files = cache_files(&runs);
    assert_eq!(files.len(), 1, "{files:?}");

    // The run's pipeline.toml names the runs dir it ran in (the --runs-dir given), so eval
    // finds the encoded cache there.
    let run = common::only_run(&runs, "together0");
    let eval = |expect_files: usize| {
        let out = pipe()
            .args([
                "eval",
                run.to_str().unwrap(),
                "--data",
                "data/examples/sports_test.jsonl",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        assert_eq!(cache_files(&runs).len(), expect_files);
        common::json(&run.join("eval.json"))["report"].clone()
    };
    let first = eval(2);
    assert_eq!(
        eval(2),
        first,
        "the second eval maps the rows the first encoded"
    );
}

/// The same 300 rows as a CSV, as a Parquet file written by pyarrow and as a folder written by
/// `datasets`' save_to_disk (its label a ClassLabel: class indices with names) train to the
/// same metrics; a missing column or one of the wrong type is one line naming file and column.
/// (tests/fixtures/columnar is written by scripts/make_columnar_fixtures.py.)
#[test]
fn parquet_files_and_save_to_disk_folders_train_as_the_csv_does() {
    let scratch = scratch("data-columnar");
    let runs = scratch.join("runs");
    let spec = "pipelines/sports_csv.toml";
    let cases = [
        ("csv", "data/examples/sports_train.csv"),
        ("parquet", "tests/fixtures/columnar/sports_train.parquet"),
        ("arrow", "tests/fixtures/columnar/sports_train_saved"),
    ];
    let mut logged = Vec::new();
    for (format, train) in cases {
        let sets = [
            format!("--set=dataset.format={format}"),
            format!("--set=dataset.train={train}"),
            "--set=dataset.limit=300".to_string(),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let run = run_into(&runs, spec, &sets, format);
        logged.push(metrics(&run));
        let record = common::json(&run.join("run.json"));
        assert_eq!(
            record["labels"],
            serde_json::json!(["other", "sports"]),
            "{format}"
        );
    }
    assert_eq!(logged[1], logged[0], "parquet");
    assert_eq!(logged[2], logged[0], "save_to_disk");

    let refused = |format: &str, train: &str, set: &str, wanted: &str| {
        let out = pipe()
            .args(["check", spec])
            .arg(format!("--set=dataset.format={format}"))
            .arg(format!("--set=dataset.train={train}"))
            .arg(set)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wanted), "{stderr}");
    };
    let (parquet, saved) = (cases[1].1, cases[2].1);
    refused(
        "parquet",
        parquet,
        "--set=dataset.label=nope",
        "sports_train.parquet: no column \"nope\" (columns: text, topic)",
    );
    refused(
        "arrow",
        saved,
        "--set=dataset.text=[\"topic\"]",
        "sports_train_saved: column \"topic\" holds Int64, not text",
    );
    refused(
        "parquet",
        "data/examples/sports_train.csv",
        "--set=seed=1",
        "sports_train.csv: not a readable Parquet file",
    );
}
