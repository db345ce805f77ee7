//! `pipe sweep` with --parallel 2 end to end, then `pipe compare` on its three run folders.

use crate::common;

/// The one folder `pipe sweep` made under `dir`.
fn only_child(dir: &std::path::Path) -> std::path::PathBuf {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");
    children.pop().unwrap()
}

use common::{json, run, scratch, text};

#[test]
fn grid_sweep_in_parallel_then_compare_table_csv_json_and_plot() {
    let runs = scratch("sweep");
    let out = run(&[
        "sweep",
        "pipelines/agnews_transformer.toml",
        "--grid",
        "stages.train.optimizer.learning_rate=1e-3,3e-3,1e-2",
        "--parallel",
        "2",
        "--set=dataset.limit=300",
        "--set=vectorizer.output_sequence_length=32",
        "--set=stages.train.batch_size=32",
        "--set=stages.train.epochs=2",
        &format!("--runs-dir={}", runs.display()),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let sweep_dir = only_child(&runs.join("agnews_transformer"));
    assert!(
        sweep_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("sweep-")
    );
    let record = json(&sweep_dir.join("sweep.json"));
    let trials = record["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    let mut folders = Vec::new();
    for t in trials {
        assert_eq!(t["status"], "completed", "{t}");
        let folder = std::path::PathBuf::from(t["run"].as_str().unwrap());
        assert_eq!(json(&folder.join("run.json"))["trial"], t["index"]);
        folders.push(folder);
    }
    // Distinct folders even though the trials started within the same second.
    folders.sort();
    folders.dedup();
    assert_eq!(folders.len(), 3);
    // The final table shows the swept key and the metrics, not the keys all trials share.
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains("stages.train.optimizer.learning_rate"),
        "{stdout}"
    );
    assert!(header.contains("test.accuracy"), "{stdout}");
    assert!(!header.contains("dataset.limit"), "{stdout}");
    // Each row names its trial, and the rows rank by test accuracy, best first.
    assert!(header.starts_with("trial"), "{stdout}");
    let column = |name: &str| header.split_whitespace().position(|c| c == name).unwrap();
    let (trial_col, acc_col) = (column("trial"), column("test.accuracy"));
    let rows: Vec<Vec<&str>> = (stdout.lines().skip(1))
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.len() > acc_col)
        .collect();
    let mut seen: Vec<&str> = rows.iter().map(|r| r[trial_col]).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"], "{stdout}");
    let accuracies: Vec<f64> = rows.iter().map(|r| r[acc_col].parse().unwrap()).collect();
    assert!(accuracies.windows(2).all(|w| w[0] >= w[1]), "{stdout}");

    let dir = sweep_dir.to_str().unwrap();
    let out = run(&["compare", dir, "--sort", "test.accuracy"]);
    let (table, _) = text(&out);
    assert!(out.status.success());
    assert_eq!(
        table.lines().filter(|l| l.contains("completed")).count(),
        3,
        "{table}"
    );

    let out = run(&["compare", dir, "--format", "csv"]);
    let (csv, _) = text(&out);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert!(
        reader
            .headers()
            .unwrap()
            .iter()
            .any(|h| h == "stages.train.optimizer.learning_rate")
    );
    assert_eq!(reader.records().count(), 3);

    let out = run(&["compare", dir, "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["runs"].as_array().unwrap().len(), 3);

    // A broken folder is listed with its reason, not fatal.
    let broken = runs.join("not-a-run");
    std::fs::create_dir_all(&broken).unwrap();
    let out = run(&["compare", dir, broken.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("unreadable"), "{:?}", text(&out));

    let png = runs.join("curves.png");
    let out = run(&["compare", dir, "--plot", png.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixels = &buf[..info.buffer_size()];
    let non_white = pixels
        .chunks(3)
        .filter(|p| p.iter().any(|&c| c < 200))
        .count();
    assert!(info.width > 400 && info.height > 200);
    assert!(non_white > pixels.len() / 3 / 100, "the plot is blank");

    // A trial that does not type-check stops the sweep before anything runs.
    let out = run(&[
        "sweep",
        "pipelines/agnews_transformer.toml",
        "--grid",
        "model.block.num_heads=2,many",
        &format!("--runs-dir={}", runs.join("bad").display()),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("nothing was run"), "{:?}", text(&out));
    assert!(!runs.join("bad").exists());

    // The same trials as a Slurm array.
    let out = run(&[
        "sweep",
        "pipelines/agnews_transformer.toml",
        "--grid",
        "seed=1,2",
        "--emit",
        "slurm",
        &format!("--runs-dir={}", runs.join("slurm").display()),
    ]);
    let (script, _) = text(&out);
    assert!(
        script.starts_with("#!/bin/bash\n#SBATCH --job-name=pipe-sweep\n#SBATCH --array=0-1"),
        "{script}"
    );
    assert!(script.contains("--trial $SLURM_ARRAY_TASK_ID"));
    // The jobs run where the sweep was emitted and write under its runs dir, as absolute paths.
    let root = std::fs::canonicalize(common::root()).unwrap();
    assert!(
        script.contains(&format!("#SBATCH --chdir={}\n", root.display())),
        "{script}"
    );
    let slurm_runs = std::path::absolute(runs.join("slurm")).unwrap();
    assert!(
        script.contains(&format!(
            "--runs-dir '{}' --into '{}",
            slurm_runs.display(),
            slurm_runs.display()
        )),
        "{script}"
    );
}

#[test]
fn ctrl_c_on_a_sweep_interrupts_its_trials_cleanly() {
    let runs = scratch("sweepint");
    let mut child = common::pipe()
        .args([
            "sweep",
            "pipelines/agnews_transformer.toml",
            "--grid",
            "seed=1,2,3",
            "--parallel",
            "2",
            "--set=dataset.limit=2000",
            "--set=vectorizer.output_sequence_length=64",
            "--set=stages.train.batch_size=32",
            "--set=stages.train.epochs=100",
            &format!("--runs-dir={}", runs.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once both running trials are training: each has logged its first epoch.
    let logged_an_epoch = || -> usize {
        let Some(sweep) = std::fs::read_dir(runs.join("agnews_transformer"))
            .ok()
            .and_then(|mut d| d.next())
        else {
            return 0;
        };
        (std::fs::read_dir(sweep.unwrap().path()).unwrap().flatten())
            .filter(|e| common::metrics_rows_so_far(&e.path()) >= 1)
            .count()
    };
    common::wait_until(
        "both running trials' first epoch",
        std::time::Duration::from_secs(180),
        || logged_an_epoch() == 2,
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let sweep_dir = only_child(&runs.join("agnews_transformer"));
    let record = json(&sweep_dir.join("sweep.json"));
    let statuses: Vec<&str> = record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["interrupted", "interrupted", "skipped"]);
    for t in record["trials"].as_array().unwrap().iter().take(2) {
        let run = std::path::PathBuf::from(t["run"].as_str().unwrap());
        assert_eq!(json(&run.join("run.json"))["status"], "interrupted");
        assert!(
            run.join("checkpoints/resume.json").is_file(),
            "an interrupted trial can be resumed"
        );
    }
}

/// `(trial index → (status, run folder))` of a sweep.json.
fn trials_of(sweep_dir: &std::path::Path) -> Vec<(String, std::path::PathBuf, serde_json::Value)> {
    let record = json(&sweep_dir.join("sweep.json"));
    (record["trials"].as_array().unwrap().iter())
        .map(|t| {
            let run = std::path::PathBuf::from(t["run"].as_str().unwrap());
            (t["status"].as_str().unwrap().to_string(), run, t.clone())
        })
        .collect()
}

/// The epochs of the `train` rows of a run's metrics.csv, in order.
fn train_epochs(run: &std::path::Path) -> Vec<u64> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (split, epoch) = (col("split"), col("epoch"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[split] == "train")
        .map(|r| r[epoch].parse().unwrap())
        .collect()
}

#[test]
fn asha_prunes_trials_trains_fewer_epochs_and_keeps_the_best() {
    let runs = scratch("asha");
    let sweep = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "pipelines/sports_csv.toml",
            "--random",
            "stages.train.optimizer.learning_rate=1e-5..3e-2:log",
            "--trials",
            "9",
        ];
        args.extend_from_slice(extra);
        let dir = runs.join(name);
        let runs_dir = format!("--runs-dir={}", dir.display());
        args.push(&runs_dir);
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        (only_child(&dir.join("sports_csv")), stdout, stderr)
    };
    let (full, _, _) = sweep("full", &["--set=stages.train.epochs=3", "--parallel=2"]);
    let (pruned, table, stderr) = sweep(
        "pruned",
        &[
            "--prune=asha",
            "--metric=validation.loss",
            "--min-epochs=1",
            "--reduction=3",
            "--max-epochs=3",
        ],
    );
    let full_trials = trials_of(&full);
    let pruned_trials = trials_of(&pruned);
    let record = json(&pruned.join("sweep.json"));
    let prune = &record["prune"];
    assert_eq!(prune["method"], "asha");
    assert_eq!(prune["rungs"], serde_json::json!([1, 3]));

    // Fewer epochs than the same trials unpruned (9 × 3), and as many as the run folders say.
    let epochs_trained = prune["epochs_trained"].as_u64().unwrap();
    assert_eq!(prune["epochs_unpruned"], 27);
    assert!(epochs_trained < 27, "{prune}");
    let counted: u64 = (pruned_trials.iter())
        .map(|(_, run, _)| train_epochs(run).len() as u64)
        .sum();
    assert_eq!(counted, epochs_trained, "{stderr}");
    assert!(stderr.contains("epochs trained in all"), "{stderr}");

    let statuses: Vec<&str> = pruned_trials.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(
        statuses.iter().all(|s| *s == "pruned" || *s == "completed"),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&"pruned") && statuses.contains(&"completed"),
        "{statuses:?}"
    );
    let validation_loss = |run: &std::path::Path| {
        json(&run.join("run.json"))["metrics"]["validation.loss"]
            .as_f64()
            .unwrap()
    };
    for (k, (status, run, trial)) in pruned_trials.iter().enumerate() {
        let epochs = train_epochs(run);
        assert_eq!(json(&run.join("run.json"))["status"], status.as_str());
        if status == "pruned" {
            assert_eq!(epochs, vec![1], "a pruned trial stopped at its rung");
            assert!(
                run.join("checkpoints/resume.json").is_file(),
                "it can be resumed"
            );
        } else {
            // Promoted with --resume: no epoch trained twice, and the same end as unpruned.
            assert_eq!(epochs, vec![1, 2, 3], "trial {k}");
            assert_eq!(trial["rungs"].as_array().unwrap().len(), 2, "{trial}");
            let (_, unpruned, _) = &full_trials[k];
            let (a, b) = (validation_loss(run), validation_loss(unpruned));
            assert!(
                (a - b).abs() <= 1e-9 * b.abs(),
                "trial {k}: {a} vs {b} unpruned"
            );
        }
    }
    // The best trial of the unpruned sweep was not pruned.
    let best = (0..full_trials.len())
        .min_by(|&a, &b| {
            validation_loss(&full_trials[a].1).total_cmp(&validation_loss(&full_trials[b].1))
        })
        .unwrap();
    assert_eq!(
        pruned_trials[best].0, "completed",
        "best unpruned trial {best}"
    );
    let decisions = prune["decisions"].as_array().unwrap();
    let pruned_count = statuses.iter().filter(|s| **s == "pruned").count();
    assert_eq!(
        decisions
            .iter()
            .filter(|d| d["decision"] == "pruned")
            .count(),
        pruned_count
    );
    assert!(
        table.contains("pruned"),
        "the final table lists pruned trials:\n{table}"
    );
    let out = run(&["compare", pruned.to_str().unwrap()]);
    let (compared, _) = text(&out);
    assert_eq!(
        compared.lines().filter(|l| l.contains("pruned")).count(),
        pruned_count,
        "{compared}"
    );

    // A Slurm array cannot prune.
    let out = run(&[
        "sweep",
        "pipelines/sports_csv.toml",
        "--grid",
        "seed=1,2",
        "--prune",
        "asha",
        "--emit",
        "slurm",
        &format!("--runs-dir={}", runs.join("slurm").display()),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.starts_with("--prune: error:"),
        "{:?}",
        text(&out)
    );
    assert!(!runs.join("slurm").exists());
}

/// A sweep folder's trials: `(overrides as path → value, run folder)` in trial order, each
/// completed.
fn completed_trials(
    sweep_dir: &std::path::Path,
) -> Vec<(
    std::collections::BTreeMap<String, String>,
    std::path::PathBuf,
)> {
    trials_of(sweep_dir)
        .into_iter()
        .map(|(status, run, trial)| {
            assert_eq!(status, "completed", "{trial}");
            let overrides = (trial["overrides"].as_array().unwrap().iter())
                .map(|o| {
                    let (k, v) = o.as_str().unwrap().split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            (overrides, run)
        })
        .collect()
}

/// The resolved pipeline.toml of a run folder.
fn resolved(run: &std::path::Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(run.join("pipeline.toml")).unwrap()).unwrap()
}

/// `--random` end to end: each trial's sampled values are inside their ranges (an integer
/// range gives integers, a `:log` range spreads evenly over the decades), reach the trial's
/// resolved spec and its training (the batch size sets the step count), and the search seed
/// makes the same trials again.
#[test]
fn random_sweep_samples_in_range_and_each_trial_trains_with_its_values() {
    let runs = scratch("random-sweep");
    let sweep = |dir: &str, extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "pipelines/sports_csv.toml",
            "--random",
            "stages.train.optimizer.learning_rate=1e-4..1e-2:log",
            "--random",
            "stages.train.batch_size=8..32",
            "--set=dataset.limit=100",
            "--set=stages.train.epochs=1",
        ];
        args.extend_from_slice(extra);
        let runs_dir = format!("--runs-dir={}", runs.join(dir).display());
        args.push(&runs_dir);
        let out = run(&args);
        assert!(out.status.success(), "{:?}", text(&out));
        only_child(&runs.join(dir).join("sports_csv"))
    };
    let swept = sweep("run", &["--trials", "3", "--seed", "7"]);
    let trials = completed_trials(&swept);
    assert_eq!(trials.len(), 3);
    for (values, run) in &trials {
        let keys: Vec<&String> = values.keys().collect();
        assert_eq!(
            keys,
            [
                "stages.train.batch_size",
                "stages.train.optimizer.learning_rate"
            ]
        );
        let batch: u64 = values["stages.train.batch_size"].parse().unwrap();
        let lr: f64 = values["stages.train.optimizer.learning_rate"]
            .parse()
            .unwrap();
        assert!((8..=32).contains(&batch), "{values:?}");
        assert!((1e-4..=1e-2).contains(&lr), "{values:?}");
        let spec = resolved(run);
        let stage = &spec["stages"][0];
        assert_eq!(stage["batch_size"].as_integer(), Some(batch as i64));
        assert_eq!(stage["optimizer"]["learning_rate"].as_float(), Some(lr));
        // 100 rows less the 20 % validation: 80 train rows in batches of the sampled size.
        let record = json(&run.join("run.json"));
        assert_eq!(
            record["stages"][0]["steps"],
            80u64.div_ceil(batch),
            "{values:?}"
        );
    }

    // The same search seed makes the same trials; another makes others. Written as a Slurm
    // array, nothing trains.
    let planned = |seed: &str, trials: &str, dir: &str| -> Vec<Vec<String>> {
        let folder = sweep(
            dir,
            &["--trials", trials, "--seed", seed, "--emit", "slurm"],
        );
        (json(&folder.join("sweep.json"))["trials"]
            .as_array()
            .unwrap()
            .iter())
        .map(|t| serde_json::from_value(t["overrides"].clone()).unwrap())
        .collect()
    };
    let ran: Vec<Vec<String>> = trials
        .iter()
        .map(|(v, _)| v.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .collect();
    assert_eq!(planned("7", "3", "again"), ran);
    assert_ne!(planned("8", "3", "other"), ran);

    // 400 draws: half the log range's draws lie in its lower decade (a plain uniform draw
    // would put 9 % there), and the integer range reaches both its ends.
    let many = planned("7", "400", "many");
    let value = |t: &Vec<String>, k: usize| t[k].split_once('=').unwrap().1.to_string();
    let lower_decade = many
        .iter()
        .filter(|t| value(t, 1).parse::<f64>().unwrap() < 1e-3)
        .count();
    assert!(
        (150..=250).contains(&lower_decade),
        "{lower_decade} of 400 below 1e-3"
    );
    let batches: Vec<i64> = many.iter().map(|t| value(t, 0).parse().unwrap()).collect();
    assert_eq!(batches.iter().min(), Some(&8));
    assert_eq!(batches.iter().max(), Some(&32));
}

/// A `[sweep]` table in the spec: its grid times its random samples are the trials, run
/// `parallel` at a time with its seed; `--trials` on the command line wins over the table's;
/// a bad range in it is an error at its line, before anything is created.
#[test]
fn a_sweep_table_in_the_spec_defines_the_trials() {
    let dir = scratch("sweep-table");
    let base = std::fs::read_to_string(common::root().join("pipelines/sports_csv.toml")).unwrap();
    let table = "\n[sweep]\ngrid = { \"stages.train.epochs\" = [1, 2] }\nrandom = { \"stages.train.optimizer.learning_rate\" = \"1e-3..1e-2:log\" }\ntrials = 2\nparallel = 2\nseed = 3\n";
    let spec = dir.join("swept.toml");
    std::fs::write(
        &spec,
        base.replace(
            "data/examples",
            &common::root().join("data/examples").display().to_string(),
        ) + table,
    )
    .unwrap();
    let runs = dir.join("runs");
    let out = run(&[
        "sweep",
        spec.to_str().unwrap(),
        "--set=dataset.limit=100",
        &format!("--runs-dir={}", runs.display()),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("(4 trials, 2 at a time)"), "{stderr}");
    let swept = only_child(&runs.join("sports_csv"));
    assert_eq!(json(&swept.join("sweep.json"))["parallel"], 2);
    let trials = completed_trials(&swept);
    let epochs: Vec<&str> = trials
        .iter()
        .map(|(v, _)| v["stages.train.epochs"].as_str())
        .collect();
    assert_eq!(epochs, ["1", "1", "2", "2"]);
    let mut rates = Vec::new();
    for (values, run) in &trials {
        let lr: f64 = values["stages.train.optimizer.learning_rate"]
            .parse()
            .unwrap();
        assert!((1e-3..=1e-2).contains(&lr), "{values:?}");
        rates.push(lr);
        let record = json(&run.join("run.json"));
        let want: u64 = values["stages.train.epochs"].parse().unwrap();
        assert_eq!(record["stages"][0]["epochs_completed"], want);
        assert_eq!(
            resolved(run)["stages"][0]["optimizer"]["learning_rate"].as_float(),
            Some(lr)
        );
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    assert_eq!(rates.len(), 4, "each trial draws its own rate");

    // `--trials 1` overrides the table's 2: one sample per grid value.
    let out = run(&[
        "sweep",
        spec.to_str().unwrap(),
        "--trials",
        "1",
        "--emit",
        "slurm",
        &format!("--runs-dir={}", dir.join("one").display()),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("#SBATCH --array=0-1\n"),
        "{:?}",
        text(&out)
    );

    // A bad range names its place in the file.
    std::fs::write(
        &spec,
        std::fs::read_to_string(&spec)
            .unwrap()
            .replace("1e-3..1e-2:log", "1e-2..1e-3:log"),
    )
    .unwrap();
    let bad = dir.join("bad");
    let out = run(&[
        "sweep",
        spec.to_str().unwrap(),
        &format!("--runs-dir={}", bad.display()),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = std::fs::read_to_string(&spec)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("random = "))
        .unwrap()
        + 1;
    assert!(
        stderr.starts_with(&format!("{}:{line}:", spec.display()))
            && stderr.contains(
                "error: `sweep.random.stages.train.optimizer.learning_rate`: empty range `1e-2..1e-3:log`"
            ),
        "{stderr}"
    );
    assert!(!bad.exists(), "nothing is created");
}

/// A sweep emitted for Slurm learns how its trials ended from their run folders: here trial 0
/// runs as its array task would, trial 1 never does.
#[test]
fn sweep_status_reconciles_an_emitted_sweep_with_its_run_folders() {
    let runs = scratch("sweepstatus");
    let out = run(&[
        "sweep",
        "pipelines/sports_csv.toml",
        "--grid",
        "seed=1,2",
        "--set=stages.train.epochs=1",
        "--emit",
        "slurm",
        &format!("--runs-dir={}", runs.display()),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let sweep_dir = std::fs::read_dir(runs.join("sports_csv"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("sweep.json").is_file())
        .unwrap();
    let dir = sweep_dir.to_str().unwrap();
    let runs_arg = format!("--runs-dir={}", runs.display());
    let task = run(&[
        "run",
        "pipelines/sports_csv.toml",
        "--set",
        "stages.train.epochs=1",
        "--set",
        "seed=1",
        "--trial",
        "0",
        &runs_arg,
        "--into",
        dir,
        "--quiet",
    ]);
    assert!(task.status.success(), "{:?}", text(&task));
    let out = run(&["sweep", "--status", dir]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("trial   0  completed") && lines[0].ends_with("seed=1"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("trial   1  emitted"), "{stdout}");
    assert!(
        stderr.contains("2 trials: 1 completed, 1 emitted"),
        "{stderr}"
    );
    assert!(stderr.contains("best so far: trial 0 (seed=1)"), "{stderr}");
    let record = json(&sweep_dir.join("sweep.json"));
    assert_eq!(record["trials"][0]["status"], "completed");
    assert_eq!(record["trials"][1]["status"], "emitted");
    // pipe compare of the sweep folder: the run, and the trial without one with its state.
    let out = run(&["compare", dir, "--format", "csv"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(rows[1][1], "completed", "{stdout}");
    assert_eq!(&rows[2][..2], ["trial 1", "emitted"], "{stdout}");
    assert!(!stderr.contains("unreadable"), "{stderr}");
    // Not a sweep folder: one line, exit 2.
    let out = run(&["sweep", "--status", runs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("not a sweep folder"),
        "{:?}",
        text(&out)
    );
}
