//! Structured outputs on the default model over HTTP: `response_format` `json_schema` and
//! `json_object` hold every choice (sampled, streamed or not) to the schema; a schema llguidance
//! cannot compile is a 400 naming `response_format`.

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use serde_json::{json, Value};

use crate::http::{chunks, serve_default_model};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": { "type": "string", "maxLength": 20 },
            "population": { "type": "integer", "minimum": 0 },
            "coastal": { "type": "boolean" }
        },
        "required": ["city", "population", "coastal"],
        "additionalProperties": false
    })
}

fn valid(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    let Some(o) = v.as_object() else { return false };
    o.len() == 3
        && o["city"].as_str().is_some_and(|c| c.chars().count() <= 20)
        && o["population"].as_i64().is_some_and(|p| p >= 0)
        && o["coastal"].is_boolean()
}

#[test]
fn json_schema_outputs_always_validate_and_bad_schemas_are_400() {
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(8192), capacity: StepCapacity { max_tokens: 256, max_seqs: 16 }, ..LoadOptions::default() };
    let server = serve_default_model("smol", &opts);
    let format = json!({ "type": "json_schema", "json_schema": { "name": "city", "schema": schema(), "strict": true } });
    let body = |stream: bool| {
        json!({
            "messages": [{ "role": "user", "content": "Describe Lisbon as JSON." }],
            "response_format": format, "n": 4, "temperature": 1.0, "seed": 7, "max_tokens": 120, "stream": stream
        })
    };
    let (status, resp) = server.post("/v1/chat/completions", body(false));
    assert_eq!(status, 200, "{resp}");
    for c in resp["choices"].as_array().unwrap() {
        let text = c["message"]["content"].as_str().unwrap();
        assert!(valid(text), "choice {}: {text:?}", c["index"]);
        assert_eq!(c["finish_reason"], "stop", "{text:?}");
    }
    // Streamed: the deltas of each choice reassemble to a valid object.
    let mut texts = vec![String::new(); 4];
    for chunk in chunks(&server.stream("/v1/chat/completions", body(true))) {
        for c in chunk["choices"].as_array().unwrap() {
            if let Some(t) = c["delta"]["content"].as_str() {
                texts[c["index"].as_u64().unwrap() as usize].push_str(t);
            }
        }
    }
    for t in &texts {
        assert!(valid(t), "streamed: {t:?}");
    }
    // Any JSON object.
    let (status, resp) = server.post("/v1/chat/completions", json!({
        "messages": [{ "role": "user", "content": "Reply with a JSON object with one key, \"answer\", whose value is a short greeting." }],
        "response_format": { "type": "json_object" }, "max_tokens": 200, "temperature": 0
    }));
    assert_eq!(status, 200, "{resp}");
    let text = resp["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(resp["choices"][0]["finish_reason"], "stop", "{text:?}");
    assert!(serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()), "{text:?}");
    // A schema it cannot compile.
    let bad = json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": { "type": "object", "properties": { "a": { "type": "frobnicate" } } } } });
    let (status, resp) = server.post("/v1/chat/completions", json!({ "messages": [{ "role": "user", "content": "Hi" }], "response_format": bad }));
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["param"], "response_format", "{resp}");
}
