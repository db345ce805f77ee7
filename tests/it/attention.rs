//! `pipe attention` on trained run folders: the weights it prints are attention rows (each
//! sums to 1 with what went to padding), padding is never shown, and the heat-map decodes.

use crate::common;

use common::{run, scratch, text};

fn attention_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["attention", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run(&all);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Every row of `weights` plus its padding share sums to 1.
fn assert_rows_sum_to_one(weights: &serde_json::Value, padding: &serde_json::Value) {
    for (row, pad) in weights
        .as_array()
        .unwrap()
        .iter()
        .zip(padding.as_array().unwrap())
    {
        let sum: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .sum();
        let total = sum + pad.as_f64().unwrap();
        assert!((total - 1.0).abs() < 1e-5, "row sums to {total}");
    }
}

#[test]
fn a_masked_block_shows_the_real_tokens_and_rows_that_sum_to_one() {
    let runs = scratch("attmasked");
    let dir = common::trained(
        std::path::Path::new("pipelines/sports_csv.toml"),
        &["--set=stages.train.epochs=1"],
        &runs,
    );
    let text_in = "The striker scored twice in the final";
    let all = attention_json(&dir, &[text_in]);
    assert_eq!(all["layer"], "block");
    assert_eq!(all["head"], "all");
    assert_eq!(all["heads"], 2);
    let tokens: Vec<&str> = (all["tokens"].as_array().unwrap().iter())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        text_in.to_lowercase().split(' ').collect::<Vec<_>>()
    );
    let label = all["label"].as_str().unwrap();
    assert!(["other", "sports"].contains(&label), "{label}");
    let heads = all["weights"].as_array().unwrap();
    assert_eq!(heads.len(), 2);
    for (h, pad) in heads.iter().zip(all["padding_weight"].as_array().unwrap()) {
        assert_eq!(h.as_array().unwrap().len(), tokens.len());
        assert_rows_sum_to_one(h, pad);
        // Masked: nothing goes to padding (there is none here, the batch is one row).
        assert!(
            pad.as_array()
                .unwrap()
                .iter()
                .all(|p| p.as_f64().unwrap() < 1e-6)
        );
    }
    let one = attention_json(&dir, &[text_in, "--head", "1"]);
    assert_eq!(one["weights"], heads[1]);
    let mean = attention_json(&dir, &[text_in, "--head", "mean"]);
    let (w0, w1, m) = (&heads[0][2][3], &heads[1][2][3], &mean["weights"][2][3]);
    let expected = (w0.as_f64().unwrap() + w1.as_f64().unwrap()) / 2.0;
    assert!((m.as_f64().unwrap() - expected).abs() < 1e-6);

    // The terminal: a title line, then each token and the three it attends to most.
    let out = run(&["attention", dir.to_str().unwrap(), text_in]);
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("block, mean of 2 heads: predicted "),
        "{stdout}"
    );
    assert_eq!(lines.len(), 1 + tokens.len(), "{stdout}");
    assert!(
        lines[1..].iter().all(|l| l.matches('→').count() == 1),
        "{stdout}"
    );

    let png = runs.join("map.png");
    let out = run(&[
        "attention",
        dir.to_str().unwrap(),
        text_in,
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(
        (info.width, info.height),
        pipe::compare::attention_size(tokens.len())
    );

    for (args, starts) in [
        (vec!["--layer", "head"], "--layer head: error:"),
        (vec!["--head", "2"], "--head 2: error: `block` has 2 heads"),
        (vec!["--out", "map.jpg"], "--out: error:"),
    ] {
        let mut all = vec!["attention", dir.to_str().unwrap(), text_in];
        all.extend(args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).1.starts_with(starts), "{:?}", text(&out));
    }
}

#[test]
fn an_unmasked_block_reports_what_went_to_padding() {
    let runs = scratch("attunmasked");
    let sets = common::quick(&runs, 300);
    let sets: Vec<&str> = sets[..3].iter().map(String::as_str).collect();
    let dir = common::trained(
        std::path::Path::new("pipelines/agnews_transformer.toml"),
        &sets,
        &runs,
    );
    let map = attention_json(&dir, &["Stocks fell sharply", "--head", "0"]);
    assert_eq!(
        map["tokens"],
        serde_json::json!(["stocks", "fell", "sharply"])
    );
    assert_rows_sum_to_one(&map["weights"], &map["padding_weight"]);
    // 61 of the 64 positions are padding, and this model attends to them.
    let padding = map["padding_weight"].as_array().unwrap();
    assert!(
        padding.iter().all(|p| p.as_f64().unwrap() > 0.5),
        "{padding:?}"
    );
    let out = run(&["attention", dir.to_str().unwrap(), "Stocks fell sharply"]);
    assert!(
        text(&out).0.contains("this layer is not masked"),
        "{:?}",
        text(&out)
    );
}
