//! Run folders on disk for the compare tests: a small resolved spec, metrics.csv and run.json
//! per run, written to a fresh temporary directory per test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A fresh directory per test, so tests running in parallel never share files.
pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipe-compare-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(super) fn spec(lr: &str, heads: u32) -> String {
    format!(
        r#"# Resolved by pipe
name = "toy"
seed = 0

[dataset]
format = "ag_news_csv"
text = ["title", "description"]

[[model.layers]]
name = "embed"
type = "token_and_position_embedding"
embed_dim = 32

[[model.layers]]
name = "block"
type = "transformer_block"
num_heads = {heads}
dropout = 0.1

[[model.layers]]
type = "global_average_pooling_1d"

[[model.layers]]
type = "dense"
units = 20

[[model.layers]]
type = "dropout"
rate = 0.1

[[model.layers]]
type = "dense"
units = 4

[[stages]]
epochs = 3
metrics = ["accuracy"]

[stages.optimizer]
type = "adam"
learning_rate = {lr}
epsilon = 0.0000001
"#
    )
}

/// `quality` shifts every accuracy up and loss down, so runs rank predictably.
fn write_run(root: &Path, name: &str, lr: &str, heads: u32, quality: f64) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pipeline.toml"), spec(lr, heads)).unwrap();
    let mut csv = String::from("stage,epoch,step,split,loss,accuracy,lr\n");
    for epoch in 1..=3 {
        let e = epoch as f64;
        let acc = (0.4 + 0.1 * e + quality).min(1.0);
        let loss = 1.4 - 0.3 * e - quality;
        if epoch == 2 {
            // A mid-epoch evaluation from `validate_every`.
            let _ = writeln!(
                csv,
                "train,2,15,validation,{:.6},{:.6},1e-3",
                loss + 0.1,
                acc - 0.05
            );
        }
        let _ = writeln!(
            csv,
            "train,{epoch},{},train,{loss:.6},{acc:.6},1e-3",
            epoch * 10
        );
        let _ = writeln!(
            csv,
            "train,{epoch},{},validation,{:.6},{:.6},1e-3",
            epoch * 10,
            loss + 0.05,
            acc - 0.02
        );
    }
    let test_acc = 0.68 + quality;
    let test_loss = 0.55 - quality;
    let _ = writeln!(csv, "train,3,30,test,{test_loss:.6},{test_acc:.6},0e0");
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    let run = serde_json::json!({
        "status": "completed",
        "pipeline": "toy",
        "run": name,
        "started_at": "2026-11-27T07:36:23+00:00",
        "ended_at": "2026-11-27T07:37:23+00:00",
        "duration_s": 60.0 + quality * 100.0,
        "seed": 0,
        "device": "cpu",
        "stages": [{
            "name": "train", "epochs_completed": 3, "steps": 30, "seconds": 50.0,
            "last": {"train.loss": 0.5 - quality, "validation.accuracy": 0.68 + quality},
            "best": {"validation.accuracy": 0.68 + quality},
            "best_epoch": 3
        }],
        "metrics": {
            "test.accuracy": test_acc,
            "test.loss": test_loss,
            "train.accuracy": 0.7 + quality,
            "train.loss": 0.5 - quality,
            "validation.accuracy": 0.68 + quality,
            "validation.loss": 0.55 - quality
        }
    });
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    dir
}

/// run_a: lr 1e-3, 2 heads; run_b: lr 3e-4, 2 heads (best); run_c: lr 1e-3, 4 heads;
/// broken: a folder whose run never wrote run.json.
pub(super) fn fixture(name: &str) -> (PathBuf, Vec<PathBuf>) {
    let root = scratch(name);
    let a = write_run(&root, "run_a", "0.001", 2, 0.12);
    let b = write_run(&root, "run_b", "0.0003", 2, 0.18);
    let c = write_run(&root, "run_c", "0.001", 4, 0.15);
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("pipeline.toml"), spec("0.001", 2)).unwrap();
    (root, vec![a, b, c, broken])
}
