//! The committed schema is current, every pipeline names it and validates against it, and
//! every pipeline checks; the lesson's model A shows the lesson's parameter counts.

use crate::common;

use common::{root, run, shared_model, text};

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

#[test]
fn every_pipeline_checks() {
    for p in pipelines() {
        // A BERT pipeline checks against its model's config.json, found in ../shared/models.
        let spec = std::fs::read_to_string(&p).unwrap();
        let needs = ["all-MiniLM-L6-v2", "bert-base-uncased"];
        if needs
            .iter()
            .any(|m| spec.contains(m) && shared_model(m, &p.display().to_string()).is_none())
        {
            continue;
        }
        let out = run(&["check", p.to_str().unwrap()]);
        let (_, err) = text(&out);
        // BERT pipelines whose weights are not present locally still check (shapes need only config.json).
        assert!(out.status.success(), "{}: {err}", p.display());
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
