//! The command line itself: bad flag values, error line endings, every verb's examples in
//! `--help`, `pipe eval --json` and `[runtime] threads`.

use crate::common;

use common::{json, only_run, pipe, quick, run, scratch, text};

const VERBS: [&str; 10] = [
    "run", "check", "summary", "schema", "eval", "predict", "sweep", "compare", "runs", "bench",
];

#[test]
fn a_bad_format_value_exits_2_with_the_list_of_choices() {
    let out = run(&["compare", "runs", "--format", "xml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("error: invalid value 'xml' for '--format <FORMAT>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: table, csv, md, json]"),
        "{stderr}"
    );

    let out = run(&["eval", "runs/x", "--data", "x.csv", "--format", "tsv"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: ag_news_csv, csv, jsonl, parquet, arrow]"),
        "{stderr}"
    );
}

#[test]
fn other_enumerated_flags_are_checked_by_the_parser() {
    for (args, choices) in [
        (
            &["bench", "--model", "b"][..],
            "[possible values: a, bert, all]",
        ),
        (
            &["sweep", "spec.toml", "--emit", "pbs"][..],
            "[possible values: slurm]",
        ),
    ] {
        let out = run(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(choices), "{args:?}: {stderr}");
    }
    let out = run(&["predict", "runs/x", "text", "--device", "tpu"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown device `tpu` (expected cpu, ndarray, cuda or cuda:N)"),
        "{stderr}"
    );
}

#[test]
fn every_error_line_ends_with_a_newline() {
    let dir = scratch("errnewline");
    let spec = std::fs::read_to_string(common::root().join("pipelines/agnews_transformer.toml"))
        .unwrap()
        .replacen("type = \"dense\"", "type = \"denes\"", 1);
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    let missing = dir.join("no-such-run");
    for args in [
        vec!["check", path.to_str().unwrap()],
        vec!["summary", path.to_str().unwrap()],
        vec!["eval", missing.to_str().unwrap(), "--data", "x.csv"],
        vec!["compare", "--format", "xml", "runs"],
    ] {
        let out = run(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(stderr.ends_with('\n'), "{args:?}: {stderr:?}");
    }
}

#[test]
fn every_verb_has_examples_in_its_help() {
    for verb in VERBS {
        let out = run(&[verb, "--help"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{verb}: {stderr}");
        assert!(
            stdout.contains(&format!("Examples:\n  pipe {verb}")),
            "{verb}: {stdout}"
        );
    }
}

#[test]
fn eval_json_prints_the_report_and_threads_size_the_pool() {
    let runs = scratch("evaljson");
    let mut args: Vec<String> = vec![
        "run".into(),
        "pipelines/agnews_transformer.toml".into(),
        "--quiet".into(),
        "--set=runtime.threads=1".into(),
    ];
    args.extend(quick(&runs, 200));
    let out = pipe().args(&args).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let folder = only_run(&runs, "agnews_transformer");
    // burn-flex and the fused kernels run on rayon's global pool, sized by runtime.threads.
    let log = std::fs::read_to_string(folder.join("log.txt")).unwrap();
    assert!(log.contains("cpu_threads=1"), "{log}");

    let out = run(&[
        "eval",
        folder.to_str().unwrap(),
        "--data",
        "data/ag_news/test.csv",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed, json(&folder.join("eval.json")));
    assert_eq!(printed["report"]["rows"], 7600);
    assert_eq!(printed["data"], "data/ag_news/test.csv");
    assert_eq!(printed["report"]["per_class"].as_array().unwrap().len(), 4);
    // The scores are those of the confusion matrix, whose rows are the file's classes (AG
    // News' test split has 1,900 rows of each).
    common::assert_report_matches_its_confusion(&printed["report"]);
    for row in printed["report"]["confusion"].as_array().unwrap() {
        let support: u64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(support, 1900, "{printed}");
    }

    // `predict --data` streams a file in chunks of 8,192 texts: a row of the second chunk gets
    // what the same text alone gets.
    let predictions = runs.join("predictions.csv");
    let out = run(&[
        "predict",
        folder.to_str().unwrap(),
        "--data",
        "data/ag_news/train.csv",
        "--out",
        predictions.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut rows = csv::Reader::from_path(&predictions).unwrap();
    let header = rows.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 9999);
    let row = &rows[9000];
    let alone = run(&["predict", folder.to_str().unwrap(), &row[5], "--json"]);
    let alone: serde_json::Value = serde_json::from_str(&text(&alone).0).unwrap();
    assert_eq!(alone["label"], row[0]);
    for (c, name) in header.iter().enumerate().skip(1).take(4) {
        let p = alone["probabilities"][name].as_f64().unwrap();
        assert_eq!(format!("{p:.6}"), row[c], "{name}");
    }

    // The confusion matrix as a figure: a PNG of the size for 4 classes, an SVG with the names.
    for name in ["cm.png", "cm.svg"] {
        let plot = runs.join(name);
        let out = run(&[
            "eval",
            folder.to_str().unwrap(),
            "--data",
            "data/ag_news/test.csv",
            "--plot",
            plot.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
        assert!(text(&out).1.contains(&format!("wrote {}", plot.display())));
        if name.ends_with(".png") {
            let decoder =
                png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&plot).unwrap()));
            let info = decoder.read_info().unwrap().info().clone();
            assert_eq!((info.width, info.height), pipe::compare::confusion_size(4));
        } else {
            let svg = std::fs::read_to_string(&plot).unwrap();
            for label in ["World", "Sports", "Business", "Sci/Tech", "predicted class"] {
                assert!(svg.contains(label), "{label} missing from the SVG");
            }
        }
    }
    let out = run(&[
        "eval",
        folder.to_str().unwrap(),
        "--data",
        "data/ag_news/test.csv",
        "--plot",
        "cm.gif",
    ]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert_eq!(
        text(&out).1,
        "--plot: error: cannot plot to cm.gif: the file name must end in .png or .svg\n"
    );
}

/// `pipelines/sports_csv.toml` lists no labels: they come from its train file.
#[test]
fn labels_omitted_are_read_from_the_train_file() {
    let out = run(&["check", "pipelines/sports_csv.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "classes from data/examples/sports_train.csv (`dataset.labels` omitted): other (922 rows), sports (278 rows)"
        ),
        "{stdout}"
    );

    let runs = scratch("inferred-labels");
    let out = pipe()
        .args(["run", "pipelines/sports_csv.toml", "--quiet"])
        .args(quick(&runs, 200))
        .arg("--set=stages.train.epochs=1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let dir = only_run(&runs, "sports_csv");
    let record = json(&dir.join("run.json"));
    assert_eq!(record["labels"], serde_json::json!(["other", "sports"]));
    assert_eq!(record["labels_inferred"], serde_json::json!(true));
    let resolved = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    assert!(
        resolved.contains("labels = [\n    \"other\",\n    \"sports\",\n]")
            || resolved.contains("labels = [\"other\", \"sports\"]"),
        "{resolved}"
    );
}

#[test]
fn a_test_label_the_train_file_lacks_is_a_check_error_naming_its_line() {
    let dir = scratch("unseen-label");
    let train = dir.join("train.csv");
    let test = dir.join("test.csv");
    std::fs::write(&train, "text,topic\na b,x\nc d,y\ne f,x\n").unwrap();
    std::fs::write(&test, "text,topic\na b,x\nc d,z\n").unwrap();
    let spec = std::fs::read_to_string("pipelines/sports_csv.toml")
        .unwrap()
        .replace(
            "data/examples/sports_train.csv",
            &train.display().to_string(),
        )
        .replace(
            "validation = 0.2",
            &format!("test = \"{}\"\nvalidation = \"test\"", test.display()),
        );
    let spec_path = dir.join("unseen.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = run(&["check", spec_path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3: label \"z\" is not one of x, y (the classes come from the train file",
            test.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // One class only: no classifier.
    std::fs::write(&train, "text,topic\na b,x\nc d,x\n").unwrap();
    std::fs::write(&test, "text,topic\na b,x\n").unwrap();
    let out = run(&["check", spec_path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the train file has 1 class(es) (x); a classifier needs at least two"),
        "{stderr}"
    );
}

/// `pipe schema --check` passes on the committed schema and fails, saying what to run, on a
/// stale or missing copy, writing nothing; `pipe schema --out` writes exactly the committed
/// file.
#[test]
fn schema_check_passes_on_the_committed_schema_and_names_a_stale_one() {
    let committed =
        std::fs::read_to_string(common::root().join("schemas/pipeline.schema.json")).unwrap();
    let out = run(&["schema", "--check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "schemas/pipeline.schema.json is current\n");

    let dir = scratch("schema-check");
    let fresh = dir.join("fresh.json");
    let out = run(&["schema", "--out", fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, format!("wrote {}\n", fresh.display()));
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), committed);

    // A copy from before a key was renamed is stale; so is a missing file.
    let stale = dir.join("stale.json");
    let old = committed.replacen("\"clip_norm\"", "\"clipnorm\"", 1);
    assert_ne!(old, committed);
    std::fs::write(&stale, &old).unwrap();
    let missing = dir.join("missing.json");
    for path in [&stale, &missing] {
        let out = run(&["schema", "--check", "--out", path.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert_eq!(stdout, "");
        assert_eq!(
            stderr,
            format!("{} is out of date; run `pipe schema`\n", path.display())
        );
    }
    assert_eq!(
        std::fs::read_to_string(&stale).unwrap(),
        old,
        "--check writes nothing"
    );
    assert!(!missing.exists(), "--check writes nothing");
}
