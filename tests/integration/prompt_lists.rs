//! `/v1/completions` with a list of prompts: `n` choices per prompt, numbered prompt by prompt
//! (choice `p·n + i`), each what that prompt gets alone; streamed the same; usage summed.

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use serde_json::{json, Value};

use crate::http::{chunks, serve_default_model};

#[test]
fn a_prompt_list_answers_each_prompt_in_order() {
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(8192), capacity: StepCapacity { max_tokens: 256, max_seqs: 16 }, ..LoadOptions::default() };
    let server = serve_default_model("smol", &opts);
    let prompts = ["The capital of France is", "Once upon a time"];
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| server.post("/v1/completions", json!({ "prompt": p, "max_tokens": 8, "temperature": 0 })).1)
        .collect();
    let (status, resp) = server.post("/v1/completions", json!({ "prompt": prompts, "n": 2, "max_tokens": 8, "temperature": 0 }));
    assert_eq!(status, 200, "{resp}");
    let choices = resp["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (k, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], k);
        assert_eq!(c["text"], alone[k / 2]["choices"][0]["text"], "choice {k}");
    }
    let prompt_tokens: u64 = alone.iter().map(|r| r["usage"]["prompt_tokens"].as_u64().unwrap()).sum();
    assert_eq!(resp["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(resp["usage"]["completion_tokens"], 4 * 8);
    // Streamed: the deltas per index reassemble to the same texts.
    let mut texts = vec![String::new(); 4];
    let body = json!({ "prompt": prompts, "n": 2, "max_tokens": 8, "temperature": 0, "stream": true });
    for chunk in chunks(&server.stream("/v1/completions", body)) {
        for c in chunk["choices"].as_array().unwrap() {
            texts[c["index"].as_u64().unwrap() as usize].push_str(c["text"].as_str().unwrap());
        }
    }
    for (k, t) in texts.iter().enumerate() {
        assert_eq!(t, alone[k / 2]["choices"][0]["text"].as_str().unwrap(), "streamed choice {k}");
    }
}
