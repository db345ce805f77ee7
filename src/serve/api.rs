//! The JSON the server reads and writes: pipe's own `POST /v1/predict`, and `POST /predict` in
//! the shape of Hugging Face's text-embeddings-inference (TEI), so that its clients work
//! unchanged. Errors are one-line JSON objects in TEI's shape, `{"error", "error_type"}`.

use serde_json::{Value, json};

/// A request refused, with its HTTP status.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn body(&self) -> String {
        json!({"error": self.message, "error_type": self.kind}).to_string()
    }
}

/// Which shape a request came in, and so which shape its answer takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// `POST /v1/predict {"texts": [...]}`.
    Pipe,
    /// `POST /predict {"inputs": "..."}`: one list of scores.
    TeiOne,
    /// `POST /predict {"inputs": ["...", ...]}`: a list of score lists.
    TeiMany,
}

/// The texts of a request body, checked: JSON, the field its shape needs, strings that are not
/// blank, at most `max_texts` of them.
pub fn parse(body: &[u8], tei: bool, max_texts: usize) -> Result<(Shape, Vec<String>), ApiError> {
    let bad = |m: String| ApiError::new(400, "Validation", m);
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let m = match std::str::from_utf8(body) {
            Err(_) => "the body is not UTF-8".to_string(),
            Ok(_) => format!("the body is not JSON: {e}"),
        };
        bad(m)
    })?;
    let field = if tei { "inputs" } else { "texts" };
    let Some(given) = value.as_object().and_then(|o| o.get(field)) else {
        return Err(bad(format!(
            "expected a JSON object with a field {field:?}"
        )));
    };
    let (shape, items) = match (tei, given) {
        (true, Value::String(s)) => (Shape::TeiOne, vec![Value::String(s.clone())]),
        (true, Value::Array(items)) => (Shape::TeiMany, items.clone()),
        (false, Value::Array(items)) => (Shape::Pipe, items.clone()),
        _ => {
            let what = if tei {
                "a string or a list of strings"
            } else {
                "a list of strings"
            };
            return Err(bad(format!("{field:?} must be {what}")));
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(
            422,
            "Validation",
            format!("{field:?} is empty"),
        ));
    }
    if items.len() > max_texts {
        let m = format!(
            "{} texts in one request; at most {max_texts} (--max-texts)",
            items.len()
        );
        return Err(ApiError::new(422, "Validation", m));
    }
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if s.trim().is_empty() => {
                let m = format!("{field}[{i}] is blank: there is nothing to classify");
                return Err(ApiError::new(422, "Validation", m));
            }
            Value::String(s) => texts.push(s),
            other => {
                let kind = match other {
                    Value::Array(_) => "a list (text pairs are not supported)",
                    Value::Object(_) => "an object",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(bad(format!("{field}[{i}] must be a string, found {kind}")));
            }
        }
    }
    Ok((shape, texts))
}

/// The answer to a request of `shape`: for each text its label and class probabilities, the
/// same objects `pipe predict --json` prints, or TEI's `[{"label", "score"}]` highest first.
pub fn answer(shape: Shape, labels: &[String], texts: &[String], probs: &[Vec<f32>]) -> Value {
    let tei_scores = |p: &[f32]| {
        let mut scored: Vec<(usize, f32)> = p.iter().copied().enumerate().collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let list: Vec<Value> = (scored.iter())
            .map(|&(c, s)| json!({"label": labels[c], "score": s}))
            .collect();
        Value::Array(list)
    };
    match shape {
        Shape::Pipe => {
            let predictions: Vec<Value> = (texts.iter().zip(probs))
                .map(|(text, p)| prediction(labels, text, p))
                .collect();
            json!({"predictions": predictions})
        }
        Shape::TeiOne => tei_scores(&probs[0]),
        Shape::TeiMany => Value::Array(probs.iter().map(|p| tei_scores(p)).collect()),
    }
}

/// One text's prediction as `pipe predict --json` prints it.
pub fn prediction(labels: &[String], text: &str, p: &[f32]) -> Value {
    let best = crate::train::metrics::argmax(p);
    let map: serde_json::Map<String, Value> = (labels.iter().zip(p))
        .map(|(l, v)| (l.clone(), json!(v)))
        .collect();
    json!({"text": text, "label": labels[best], "probabilities": map})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_and_each_refusal_is_named() {
        let ok = parse(br#"{"texts": ["a", "b c"]}"#, false, 8).unwrap();
        assert_eq!(ok, (Shape::Pipe, vec!["a".to_string(), "b c".to_string()]));
        assert_eq!(
            parse(br#"{"inputs": "x"}"#, true, 8).unwrap().0,
            Shape::TeiOne
        );
        assert_eq!(
            parse(br#"{"inputs": ["x"], "truncate": true}"#, true, 8)
                .unwrap()
                .0,
            Shape::TeiMany
        );
        let cases: [(&[u8], bool, u16, &str); 9] = [
            (b"{\"texts\": [\"a\"", false, 400, "not JSON"),
            (b"{\"texts\": [\"\xff\"]}", false, 400, "not UTF-8"),
            (
                br#"["a"]"#,
                false,
                400,
                "a JSON object with a field \"texts\"",
            ),
            (br#"{"inputs": ["a"]}"#, false, 400, "field \"texts\""),
            (
                br#"{"texts": "a"}"#,
                false,
                400,
                "must be a list of strings",
            ),
            (br#"{"texts": []}"#, false, 422, "is empty"),
            (
                br#"{"texts": ["a", 3]}"#,
                false,
                400,
                "texts[1] must be a string, found a number",
            ),
            (br#"{"texts": ["a", " "]}"#, false, 422, "texts[1] is blank"),
            (
                br#"{"inputs": [["a", "b"]]}"#,
                true,
                400,
                "text pairs are not supported",
            ),
        ];
        for (body, tei, status, says) in cases {
            let e = parse(body, tei, 8).unwrap_err();
            assert_eq!(e.status, status, "{e:?}");
            assert!(e.message.contains(says), "{e:?}");
            assert!(!e.body().contains('\n'));
        }
        let many = format!("{{\"texts\": [{}]}}", ["\"a\""; 9].join(","));
        assert_eq!(parse(many.as_bytes(), false, 8).unwrap_err().status, 422);
    }

    #[test]
    fn answers_take_the_shape_asked_for() {
        let labels = ["neg".to_string(), "pos".to_string()];
        let texts = ["good".to_string(), "bad".to_string()];
        let probs = [vec![0.25, 0.75], vec![0.9, 0.1]];
        let pipe = answer(Shape::Pipe, &labels, &texts, &probs);
        assert_eq!(pipe["predictions"][0]["label"], "pos");
        assert_eq!(
            pipe["predictions"][1]["probabilities"]["neg"],
            json!(0.9f32)
        );
        let one = answer(Shape::TeiOne, &labels, &texts[..1], &probs[..1]);
        assert_eq!(
            one,
            json!([{"label": "pos", "score": 0.75}, {"label": "neg", "score": 0.25}])
        );
        let many = answer(Shape::TeiMany, &labels, &texts, &probs);
        assert_eq!(many[1][0]["label"], "neg");
    }
}
