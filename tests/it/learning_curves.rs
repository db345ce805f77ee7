//! Step-level learning curves: `train_step` rows in metrics.csv every `log_every_steps`
//! optimizer steps, which cover each batch once, follow the schedule, share the step axis with
//! validation, survive a pause and resume exactly, and draw a one-epoch run's train line in
//! `pipe compare --plot`.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{json, metrics_rows, scratch, text};

const SPEC: &str = "pipelines/agnews_transformer_masked.toml";

/// 2,000 AG News rows in batches of 128: 16 optimizer steps, the last of 80 rows.
const ONE_EPOCH: [&str; 2] = ["--set=dataset.limit=2000", "--set=stages.train.epochs=1"];

type Row = BTreeMap<String, String>;

fn number(row: &Row, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column}: {row:?}"))
}

fn of_split<'r>(rows: &'r [Row], split: &str) -> Vec<&'r Row> {
    rows.iter().filter(|r| r["split"] == split).collect()
}

#[test]
fn a_one_epoch_run_logs_step_rows_that_cover_every_batch_and_follow_the_schedule() {
    let runs = scratch("step-rows");
    let mut sets = ONE_EPOCH.to_vec();
    sets.extend([
        "--set=stages.train.log_every_steps=3",
        "--set=stages.train.validate_every=5",
        "--set=stages.train.schedule={ type = \"linear\", warmup = 0.25 }",
    ]);
    let run = common::trained(Path::new(SPEC), &sets, &runs);
    let rows = metrics_rows(&run);
    let steps = of_split(&rows, "train_step");
    let epoch = of_split(&rows, "train");
    assert_eq!(epoch.len(), 1, "{rows:?}");

    // Every 3 steps, and at the epoch's last step: the last step row ends where the epoch does.
    let at: Vec<f64> = steps.iter().map(|r| number(r, "step")).collect();
    assert_eq!(at, [3.0, 6.0, 9.0, 12.0, 15.0, 16.0], "{rows:?}");
    assert_eq!(number(epoch[0], "step"), 16.0);
    for r in &rows {
        assert_eq!(r["global_step"], r["step"], "one stage: {r:?}");
    }
    // Samples: 128 a step, the last batch the 80 rows left; all the train rows in the end.
    let samples: Vec<f64> = steps.iter().map(|r| number(r, "samples")).collect();
    assert_eq!(samples, [384.0, 768.0, 1152.0, 1536.0, 1920.0, 2000.0]);
    assert_eq!(json(&run.join("run.json"))["rows"]["train"], 2000);

    // Each window's mean, weighted by its rows, gives the epoch's: every batch is in exactly
    // one step row (up to the six decimals written).
    let mut before = 0.0;
    let (mut loss, mut right) = (0.0, 0.0);
    for r in &steps {
        let n = number(r, "samples") - before;
        before = number(r, "samples");
        loss += n * number(r, "loss");
        right += n * number(r, "accuracy");
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5;
    assert!(close(loss / 2000.0, number(epoch[0], "loss")), "{rows:?}");
    assert!(
        close(right / 2000.0, number(epoch[0], "accuracy")),
        "{rows:?}"
    );
    // The windows are not the epoch's running mean: the first is that of its three steps.
    assert_ne!(steps[0]["loss"], epoch[0]["loss"]);

    // The rate of the step just taken (0-based step - 1): linear warmup over 0.25 × 16 = 4
    // steps, then linear decay to 0 at step 16.
    let linear = |s: f64| {
        let base = 1e-3;
        if s < 4.0 {
            base * s / 4.0
        } else {
            base * (16.0 - s) / 12.0
        }
    };
    for r in &steps {
        let want = linear(number(r, "step") - 1.0);
        let lr = number(r, "lr");
        assert!((lr - want).abs() <= 1e-12, "{r:?}: want {want}");
    }

    // Validation on the same axis: after steps 5, 10, 15 and at the epoch's end.
    let validation: Vec<(f64, f64)> = (of_split(&rows, "validation").iter())
        .map(|r| (number(r, "global_step"), number(r, "samples")))
        .collect();
    assert_eq!(
        validation,
        [(5.0, 640.0), (10.0, 1280.0), (15.0, 1920.0), (16.0, 2000.0)]
    );
    let test = of_split(&rows, "test");
    assert_eq!(
        (number(test[0], "global_step"), number(test[0], "samples")),
        (16.0, 2000.0)
    );
}

/// By default about 20 rows an epoch (here one a step); `pipe compare --plot` of the run
/// draws its train line through them, where the epoch rows alone give one point.
#[test]
fn a_one_epoch_run_plots_its_train_line() {
    let runs = scratch("step-plot");
    let run = common::trained(Path::new(SPEC), &ONE_EPOCH, &runs);
    let rows = metrics_rows(&run);
    assert_eq!(of_split(&rows, "train_step").len(), 16, "{rows:?}");
    let plot = |run: &Path, name: &str| {
        let png = runs.join(name);
        let out = common::run(&[
            "compare",
            run.to_str().unwrap(),
            "--plot",
            png.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
        run_color_pixels(&png)
    };
    let with_steps = plot(&run, "steps.png");

    let off = scratch("step-plot-off");
    let mut sets = ONE_EPOCH.to_vec();
    sets.push("--set=stages.train.log_every_steps=0");
    let bare = common::trained(Path::new(SPEC), &sets, &off);
    let rows = metrics_rows(&bare);
    assert!(of_split(&rows, "train_step").is_empty(), "{rows:?}");
    let without = plot(&bare, "epochs.png");
    // Two panels of a 16-point line, against a validation mark and a test dot.
    assert!(
        with_steps > without + 1000,
        "{with_steps} pixels of the run's color with step rows, {without} without"
    );
}

/// Pixels of the first run's color (matplotlib's tab10 blue) in a PNG.
fn run_color_pixels(path: &Path) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let samples = info.color_type.samples();
    (buf[..info.buffer_size()].chunks(samples))
        .filter(|p| p[..3] == [31, 119, 180])
        .count()
}

/// A paused run resumed logs the same step rows as an unbroken one: none twice, none missing,
/// the epoch's last short window (30 steps, a row every 4) included.
#[test]
fn a_paused_run_resumes_to_the_same_step_rows() {
    let dir = scratch("step-pause");
    let spec = Path::new("pipelines/sports_csv.toml");
    let sets = [
        "--set=stages.train.epochs=2",
        "--set=stages.train.log_every_steps=4",
    ];
    let straight = common::trained(spec, &sets, &dir.join("straight"));
    let resumed = common::paused_then_resumed(spec, &sets, &dir.join("paused"));
    common::assert_same_end(&straight, &resumed);
    let rows = metrics_rows(&resumed);
    let steps: Vec<f64> = (of_split(&rows, "train_step").iter())
        .map(|r| number(r, "global_step"))
        .collect();
    let want: Vec<f64> = (1..=2)
        .flat_map(|e| [4, 8, 12, 16, 20, 24, 28, 30].map(|s| f64::from((e - 1) * 30 + s)))
        .collect();
    assert_eq!(steps, want, "{rows:?}");
}
