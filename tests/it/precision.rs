//! `runtime.precision` end to end, on burn-flex (CPU) so that it runs without a GPU: one
//! backend type serves f32, bf16 and f16 (the dtype rides on each tensor, set per device), so
//! these runs take the same code paths as `--device cuda` with a half precision. Checked: the
//! same first steps as f32 from the same starting weights, weights loaded from f32 files
//! (--init-weights, a pretrained BERT, eval of a half-precision run) in the device's dtype,
//! masked attention without NaN, exact resume, and f16's Adam-epsilon check.

use crate::common;

use std::path::Path;

use common::{json, pipe, scratch, text};

/// Model A from the lesson, 3 single-batch steps without dropout: the first steps of a run.
const FIRST_STEPS: [&str; 7] = [
    "--set=dataset.limit=256",
    "--set=stages.train.steps_per_epoch=1",
    "--set=stages.train.epochs=3",
    "--set=model.block.dropout=0.0",
    "--set=model.dropout.rate=0.0",
    "--set=model.dropout_1.rate=0.0",
    // Keras' 1e-7 underflows in f16 (see the f16 test); the same for every precision here.
    "--set=stages.train.optimizer.epsilon=1e-4",
];

fn train_losses(run: &Path) -> Vec<f64> {
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    (metrics.lines().skip(1))
        .filter(|row| row.split(',').nth(3) == Some("train"))
        .map(|row| row.split(',').nth(4).unwrap().parse().unwrap())
        .collect()
}

/// Model A's first steps in `precision` from the starting weights `init`: the run folder.
fn model_a_first_steps(precision: &str, init: &str, runs: &Path) -> std::path::PathBuf {
    let precision = format!("--set=runtime.precision=\"{precision}\"");
    let mut sets = FIRST_STEPS.to_vec();
    sets.extend([precision.as_str(), init]);
    common::trained(Path::new("pipelines/agnews_transformer.toml"), &sets, runs)
}

#[test]
fn half_precisions_follow_f32_from_the_same_weights_and_their_runs_evaluate_in_f32() {
    let dir = scratch("precision");
    let init = dir.join("init.safetensors");
    // The f32 reference writes the starting weights (f32) that the half runs load.
    let save = format!("--save-init={}", init.display());
    let reference = train_losses(&model_a_first_steps("f32", &save, &dir.join("f32")));
    assert_eq!(reference.len(), 3);

    let load = format!("--init-weights={}", init.display());
    // bf16 keeps 8 significant bits. f16 keeps 11, but without loss scaling Adam's v underflows
    // for gradients below 2.4e-4 and those steps differ from f32's (4 % at step 2 on 1,024
    // rows): a bound that catches NaN, mixed dtypes and wrong weights.
    for (precision, dtype, tolerance) in [("bf16", "BF16", 2e-2), ("f16", "F16", 5e-2)] {
        let run = model_a_first_steps(precision, &load, &dir.join(precision));
        let losses = train_losses(&run);
        // Close to f32, yet not f32's own numbers.
        for (a, b) in reference.iter().zip(&losses) {
            assert!(
                (a - b).abs() <= tolerance * a,
                "{precision}: {losses:?} vs f32 {reference:?}"
            );
        }
        assert_ne!(losses, reference, "{precision} computed in f32");
        // The weights it saved are in its dtype; eval (f32 on the CPU) loads them all the same.
        let weights = run.join("model/model.safetensors");
        assert_eq!(common::tensor_dtypes(&weights), [dtype.to_string()].into());
        let eval = common::eval_first_test_rows(&run, 256, &dir);
        let tested = json(&run.join("run.json"))["metrics"]["test.accuracy"]
            .as_f64()
            .unwrap();
        let evaluated = eval["report"]["accuracy"].as_f64().unwrap();
        assert!(
            (tested - evaluated).abs() <= 0.05,
            "{tested} vs {evaluated}"
        );
    }
    // bf16-mixed from the same weights: model A's projections (32 wide, over 65,536 rows) and
    // its attention on AMX tiles where the CPU has them, f32 weights; close to f32.
    let mixed = train_losses(&model_a_first_steps(
        "bf16-mixed",
        &load,
        &dir.join("mixed"),
    ));
    for (a, b) in reference.iter().zip(&mixed) {
        assert!((a - b).abs() <= 2e-2 * a, "{mixed:?} vs f32 {reference:?}");
    }
    if pipe::fused::amx::available() {
        assert_ne!(mixed, reference, "bf16-mixed computed in f32");
    }
}

#[test]
fn f16_refuses_an_adam_epsilon_below_its_normal_range() {
    let check = |precision: &str| {
        pipe()
            .args(["check", "pipelines/agnews_transformer.toml"])
            .arg(format!("--set=runtime.precision=\"{precision}\""))
            .output()
            .unwrap()
    };
    let out = check("f16");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("agnews_transformer.toml:61:")
            && stderr.contains("`epsilon` 1e-7 is below float16's smallest normal number"),
        "{stderr}"
    );
    // bf16 has f32's exponent range: Keras' default is fine there.
    let out = check("bf16");
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn a_bf16_bert_loads_its_f32_weights_masks_padding_and_resumes_exactly() {
    let dir = scratch("precisionbert");
    let tiny = common::fixtures().join("tiny_bert");
    let tiny = tiny.display();
    let (vectorizer, bert) = (
        format!("--set=vectorizer.from=\"{tiny}\""),
        format!("--set=model.bert.from=\"{tiny}\""),
    );
    let sets = [
        vectorizer.as_str(),
        bert.as_str(),
        "--set=vectorizer.max_length=64",
        "--set=dataset.limit=96",
        "--set=runtime.feature_cache=false",
        "--set=runtime.precision=\"bf16\"",
    ];
    let spec = Path::new("pipelines/bert_finetune.toml");
    let straight = common::trained(spec, &sets, &dir.join("straight"));
    // Padded keys got f32::MIN, which is −∞ in bf16: 0·(−∞) made every loss NaN.
    let losses = train_losses(&straight);
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    // Loaded from tiny_bert's f32 file, computed and saved in bf16.
    assert_eq!(
        common::tensor_dtypes(&straight.join("model/model.safetensors")),
        ["BF16".to_string()].into()
    );

    // Paused after the first stage's epoch and resumed: the same end, bit for bit.
    let resumed = common::paused_then_resumed(spec, &sets, &dir.join("paused"));
    common::assert_same_end(&straight, &resumed);
}

/// The epoch rows of metrics.csv (step rows aside), as text: exact comparisons.
fn epoch_rows(run: &Path) -> Vec<String> {
    (std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines())
    .filter(|row| !row.contains(",train_step,"))
    .map(str::to_string)
    .collect()
}

/// `pipe predict` on 64 test rows of `run`, with `flags` (and PIPE_AMX=`amx`): every class
/// probability of every row.
fn probabilities(run: &Path, flags: &[&str], amx: Option<&str>, dir: &Path) -> Vec<f64> {
    let data = common::test_rows(dir, 64);
    let mut cmd = pipe();
    cmd.arg("predict")
        .arg(run)
        .arg("--json")
        .arg("--data")
        .arg(&data);
    cmd.args(flags);
    if let Some(v) = amx {
        cmd.env("PIPE_AMX", v);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = common::json_lines(&stdout);
    assert_eq!(lines.len(), 64);
    let probs = |l: &serde_json::Value| -> Vec<f64> {
        let map = l["probabilities"].as_object().unwrap().clone();
        map.values().map(|p| p.as_f64().unwrap()).collect()
    };
    lines.iter().flat_map(probs).collect()
}

/// A bf16-mixed run predicts in bf16-mixed by default (the speed it was set up for), in f32
/// with `--precision f32`, and in f32 on a CPU without AMX.
fn predict_runs_in_the_runs_precision(mixed: &Path, dir: &Path) {
    let default = probabilities(mixed, &[], None, dir);
    let f32 = probabilities(mixed, &["--precision=f32"], None, dir);
    assert_eq!(
        default,
        probabilities(mixed, &["--precision", "bf16-mixed"], None, dir)
    );
    for (a, b) in default.iter().zip(&f32) {
        assert!((a - b).abs() <= 1e-2, "bf16-mixed {a} vs f32 {b}");
    }
    if pipe::fused::amx::available() {
        assert_ne!(default, f32, "predict ran the wide layer on AMX");
    }
    assert_eq!(probabilities(mixed, &[], Some("off"), dir), f32);
}

#[test]
fn bf16_mixed_trains_like_f32_repeats_its_bits_and_falls_back_to_f32_without_amx() {
    let dir = scratch("bf16mixed");
    let spec = common::fixtures().join("precision/wide_dense.toml");
    let train = |name: &str, precision: &str, amx: Option<&str>| {
        let runs = dir.join(name);
        let mut cmd = pipe();
        // The flag and the key are one setting: "again" takes the flag.
        let setting = match name {
            "again" => format!("--precision={precision}"),
            _ => format!("--set=runtime.precision=\"{precision}\""),
        };
        cmd.arg("run")
            .arg(&spec)
            .arg("--quiet")
            .arg(setting)
            .arg(format!("--runs-dir={}", runs.display()));
        if let Some(v) = amx {
            cmd.env("PIPE_AMX", v);
        }
        let out = cmd.output().unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        (common::only_run(&runs, "wide_dense"), stderr)
    };
    let (f32_run, _) = train("f32", "f32", None);
    let (mixed, _) = train("mixed", "bf16-mixed", None);
    let (again, _) = train("again", "bf16-mixed", None);
    // The same seed on the same CPU: the same bits.
    assert_eq!(epoch_rows(&mixed), epoch_rows(&again));
    // bf16 operands, f32 sums: close to f32, and (where AMX runs) not the same.
    let (a, b) = (train_losses(&f32_run), train_losses(&mixed));
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 2e-2 * x.abs(),
            "f32 {a:?} vs bf16-mixed {b:?}"
        );
    }
    let said = json(&mixed.join("run.json"))["precision"].clone();
    if pipe::fused::amx::available() {
        assert!(said.as_str().unwrap().contains("AMX tiles"), "{said}");
        assert_ne!(a, b, "the wide layer ran on AMX");
    } else {
        eprintln!("no AMX here: bf16-mixed ran in f32");
    }
    // Without AMX (simulated): one line says so, and the run is f32's, bit for bit.
    let (fallback, stderr) = train("fallback", "bf16-mixed", Some("off"));
    assert_eq!(
        stderr
            .matches("precision bf16-mixed: this CPU has no AMX-BF16")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        json(&fallback.join("run.json"))["precision"]
            .as_str()
            .unwrap()
            .contains("without AMX")
    );
    assert_eq!(epoch_rows(&fallback), epoch_rows(&f32_run));
    predict_runs_in_the_runs_precision(&mixed, &dir);
    // A precision pipe does not know is refused in one line naming the flag.
    let out = pipe()
        .args(["run", "--quiet", "--precision=f64"])
        .arg(&spec)
        .arg(format!("--runs-dir={}", dir.join("bad").display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--precision"), "{stderr}");
    assert!(
        !dir.join("bad").exists(),
        "nothing written for a refused run"
    );
}
