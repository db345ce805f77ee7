//! `schemas/pipeline.schema.json`, generated from the spec types so it cannot drift.
//! Layer tables are described per type (`oneOf` keyed on `type`) from the layer registry.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::Spec;
use crate::layers::LayerConfig;

pub fn pipeline_schema() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let root = generator.root_schema_for::<Spec>();
    let mut root: Value = serde_json::to_value(root).expect("schema serializes");
    let layer_schemas = LayerConfig::schemas(&mut generator);
    let defs = generator.take_definitions(true);
    let mut variants = Vec::new();
    for (name, schema) in layer_schemas {
        let mut schema: Value = serde_json::to_value(schema).expect("schema serializes");
        // Resolve `$ref` to the definition so the common keys can be added next to its own.
        if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
            let key = r.rsplit('/').next().unwrap_or_default().to_string();
            if let Some(def) = defs.get(&key) {
                schema = def.clone();
            }
        }
        let obj = schema.as_object_mut().expect("layer schema is an object");
        let props = obj
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties");
        props.insert("type".into(), json!({ "const": name }));
        props.insert(
            "name".into(),
            json!({ "type": "string", "description": "Unique layer name" }),
        );
        props.insert(
            "input".into(),
            json!({ "type": "string", "description": "An earlier layer or `layer.output`" }),
        );
        props.insert(
            "inputs".into(),
            json!({ "type": "array", "items": { "type": "string" } }),
        );
        props.insert("trainable".into(), json!({ "type": "boolean" }));
        let required = obj.entry("required").or_insert_with(|| json!([]));
        required
            .as_array_mut()
            .expect("required")
            .push(json!("type"));
        obj.insert("title".into(), json!(name));
        obj.insert("additionalProperties".into(), json!(false));
        variants.push(schema);
    }
    let root_obj = root.as_object_mut().expect("root object");
    let definitions = root_obj
        .entry("definitions")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("definitions");
    for (k, v) in defs {
        definitions.entry(k).or_insert(v);
    }
    definitions.insert("LayerSpec".into(), json!({ "oneOf": variants }));
    root
}

pub fn pipeline_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&pipeline_schema()).expect("schema serializes");
    text.push('\n');
    text
}
