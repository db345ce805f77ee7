//! `runtime.precision` end to end, on burn-flex (CPU) so that it runs without a GPU: one
//! backend type serves f32, bf16 and f16 (the dtype rides on each tensor, set per device), so
//! these runs take the same code paths as `--device cuda` with a half precision. Checked: the
//! same first steps as f32 from the same starting weights, weights loaded from f32 files
//! (--init-weights, a pretrained BERT, eval of a half-precision run) in the device's dtype,
//! masked attention without NaN, exact resume, and f16's Adam-epsilon check.

mod common;

use std::path::Path;

use common::{json, only_run, pipe, scratch, text};

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

/// The dtypes of a safetensors file's tensors.
fn dtypes(path: &Path) -> std::collections::BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header.as_object().unwrap().iter())
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap().to_string())
        .collect()
}

fn run_model_a(precision: &str, init: &Path, extra: &[&str], runs: &Path) -> std::process::Output {
    pipe()
        .args(["run", "pipelines/agnews_transformer.toml", "--quiet"])
        .args(FIRST_STEPS)
        .arg(format!("--set=runtime.precision=\"{precision}\""))
        .arg(format!("--init-weights={}", init.display()))
        .args(extra)
        .arg(format!("--runs-dir={}", runs.display()))
        .current_dir(common::root())
        .output()
        .unwrap()
}

#[test]
fn half_precisions_follow_f32_from_the_same_weights_and_their_runs_evaluate_in_f32() {
    let dir = scratch("precision");
    let init = dir.join("init.safetensors");
    let save = format!("--save-init={}", init.display());
    let f32_runs = dir.join("f32");
    // The f32 reference writes the starting weights (f32) that the half runs load.
    let out = pipe()
        .args(["run", "pipelines/agnews_transformer.toml", "--quiet", &save])
        .args(FIRST_STEPS)
        .arg(format!("--runs-dir={}", f32_runs.display()))
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let reference = train_losses(&only_run(&f32_runs, "agnews_transformer"));
    assert_eq!(reference.len(), 3);

    // bf16 keeps 8 significant bits. f16 keeps 11, but without loss scaling Adam's v underflows
    // for gradients below 2.4e-4 and those steps differ from f32's (4 % at step 2 on 1,024
    // rows): a bound that catches NaN, mixed dtypes and wrong weights.
    for (precision, dtype, tolerance) in [("bf16", "BF16", 2e-2), ("f16", "F16", 5e-2)] {
        let runs = dir.join(precision);
        let out = run_model_a(precision, &init, &[], &runs);
        assert!(out.status.success(), "{precision}: {:?}", text(&out));
        let run = only_run(&runs, "agnews_transformer");
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
        assert_eq!(dtypes(&weights), [dtype.to_string()].into());
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
}

#[test]
fn f16_refuses_an_adam_epsilon_below_its_normal_range() {
    let out = pipe()
        .args(["check", "pipelines/agnews_transformer.toml"])
        .arg("--set=runtime.precision=\"f16\"")
        .current_dir(common::root())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("agnews_transformer.toml:61:")
            && stderr.contains("`epsilon` 1e-7 is below float16's smallest normal number"),
        "{stderr}"
    );
    // bf16 has f32's exponent range: Keras' default is fine there.
    let out = pipe()
        .args(["check", "pipelines/agnews_transformer.toml"])
        .arg("--set=runtime.precision=\"bf16\"")
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn a_bf16_bert_loads_its_f32_weights_masks_padding_and_resumes_exactly() {
    let dir = scratch("precisionbert");
    let tiny = common::fixtures().join("tiny_bert");
    let args = |runs: &Path| {
        vec![
            "run".to_string(),
            "pipelines/bert_finetune.toml".into(),
            "--quiet".into(),
            format!("--set=vectorizer.from=\"{}\"", tiny.display()),
            format!("--set=model.bert.from=\"{}\"", tiny.display()),
            "--set=vectorizer.max_length=64".into(),
            "--set=dataset.limit=96".into(),
            "--set=runtime.feature_cache=false".into(),
            "--set=runtime.precision=\"bf16\"".into(),
            format!("--runs-dir={}", runs.display()),
        ]
    };
    let straight = dir.join("straight");
    let out = pipe()
        .args(args(&straight))
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let straight = only_run(&straight, "bert_finetune");
    // Padded keys got f32::MIN, which is −∞ in bf16: 0·(−∞) made every loss NaN.
    let losses = train_losses(&straight);
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    // Loaded from tiny_bert's f32 file, computed and saved in bf16.
    assert_eq!(
        dtypes(&straight.join("model/model.safetensors")),
        ["BF16".to_string()].into()
    );

    // Paused after the first stage's epoch and resumed: the same end, bit for bit.
    let paused = dir.join("paused");
    let out = pipe()
        .args(args(&paused))
        .arg("--pause-after-epochs=1")
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let resumed = only_run(&paused, "bert_finetune");
    let out = pipe()
        .args(["run", "--quiet", "--resume", resumed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    common::assert_same_end(&straight, &resumed);
}
