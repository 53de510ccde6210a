//! The HTTP server on a real loopback listener: SSE framing, streaming equals non-streaming,
//! usage, stop strings across token boundaries, `n`, logprobs, errors, metrics, a full queue and
//! a client disconnect freeing its KV blocks — on the fake executor (`fake.rs`), whose output
//! is known in advance. One test runs a chat through the real default model and its template.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_server::app::{AppState, DEFAULT_MAX_QUEUE};
use rill_server::routes::router;
use serde_json::{json, Value};

use crate::fake::{self, script_text, SCRIPT};
use crate::http::{chunks, recorder, serve_default_model, Server};

const MODEL: &str = "fake";

/// The server with the fake model (and the process's metrics recorder).
fn start_fake(max_queue: usize, step_delay: Duration) -> (Server, AppState) {
    let state = AppState { metrics: Some(recorder()), ..AppState::default() };
    state.add(fake::served_model(MODEL, max_queue, step_delay)).unwrap();
    (Server::start(router(state.clone())), state)
}

fn start() -> Server {
    start_fake(DEFAULT_MAX_QUEUE, Duration::ZERO).0
}

/// The text of each choice of a streamed completion, by index.
fn streamed_texts(cs: &[Value], n: usize) -> Vec<String> {
    let mut texts = vec![String::new(); n];
    for c in cs.iter().filter_map(|c| c["choices"].get(0)) {
        texts[c["index"].as_u64().unwrap() as usize].push_str(c["text"].as_str().unwrap());
    }
    texts
}

#[test]
fn completions_stream_equals_non_stream_with_usage() {
    let s = start();
    let body = json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 16, "temperature": 0});
    let (status, full) = s.post("/v1/completions", body.clone());
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["object"], "text_completion");
    assert_eq!(full["choices"][0]["text"], script_text(16, 0));
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    // One token per byte, plus BOS.
    assert_eq!(full["usage"], json!({"prompt_tokens": 25, "completion_tokens": 16, "total_tokens": 41, "prompt_tokens_details": {"cached_tokens": 0}}));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let cs = chunks(&s.stream("/v1/completions", streamed));
    assert_eq!(streamed_texts(&cs, 1), [script_text(16, 0)]);
    assert!(cs.iter().all(|c| c["object"] == "text_completion" && c["id"] == cs[0]["id"]));
    let last = cs.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0, "the usage chunk has no choices");
    assert_eq!(last["usage"]["completion_tokens"], 16);
    assert_eq!(cs[cs.len() - 2]["choices"][0]["finish_reason"], "length");
    assert!(cs[..cs.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    // Without include_usage no chunk carries usage.
    let mut plain = body;
    plain["stream"] = json!(true);
    assert!(chunks(&s.stream("/v1/completions", plain)).iter().all(|c| c.get("usage").is_none()));
}

#[test]
fn chat_renders_the_template_and_streams_the_role_first() {
    let s = start();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8});
    let (status, full) = s.post("/v1/chat/completions", body.clone());
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["choices"][0]["message"], json!({"role": "assistant", "content": script_text(8, 0)}));
    // `<user>hi\n<assistant>`, one token per byte, no BOS (the template writes its own).
    assert_eq!(full["usage"]["prompt_tokens"], 20);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let cs = chunks(&s.stream("/v1/chat/completions", streamed));
    assert_eq!(cs[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let joined: String = cs.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, script_text(8, 0));
    assert!(cs.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(cs.last().unwrap()["choices"][0], json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}));
}

#[test]
fn stop_strings_match_across_tokens_and_are_not_returned() {
    let s = start();
    let cases = [
        (json!(".\n"), "Paris is the capital of France"),
        // The earliest match wins, whichever stop string it is.
        (json!(["Seine", ".\n"]), "Paris is the capital of France"),
        (json!(["France.\nIt"]), "Paris is the capital of "),
        (json!("s the"), "Paris i"),
    ];
    for (stop, expected) in cases {
        let body = json!({"model": MODEL, "prompt": "Where?", "max_tokens": 40, "stop": stop});
        let (_, out) = s.post("/v1/completions", body.clone());
        assert_eq!((out["choices"][0]["text"].as_str(), out["choices"][0]["finish_reason"].as_str()), (Some(expected), Some("stop")), "{stop}");
        let mut streamed = body;
        streamed["stream"] = json!(true);
        assert_eq!(streamed_texts(&chunks(&s.stream("/v1/completions", streamed)), 1), [expected], "{stop}");
    }
    // End-of-sequence is a stop too, and is not part of the text.
    let (_, out) = s.post("/v1/completions", json!({"model": MODEL, "prompt": "Where?", "max_tokens": 100}));
    assert_eq!((out["choices"][0]["text"].as_str(), out["choices"][0]["finish_reason"].as_str()), (Some(SCRIPT), Some("stop")));
    assert_eq!(out["usage"]["completion_tokens"], SCRIPT.len() + 1, "the EOS token is counted");
}

#[test]
fn n_choices_are_seeded_streamed_by_index_and_counted_in_usage() {
    let s = start();
    let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 6, "n": 3, "seed": 11, "ignore_eos": true});
    let expected: Vec<String> = (0..3).map(|i| script_text(6, fake::sampled_offset(rill_engine::choice_seed(11, i)))).collect();
    let (status, full) = s.post("/v1/completions", body.clone());
    assert_eq!(status, 200, "{full}");
    let texts: Vec<&str> = full["choices"].as_array().unwrap().iter().enumerate().map(|(i, c)| {
        assert_eq!((c["index"].as_u64(), c["finish_reason"].as_str()), (Some(i as u64), Some("length")));
        c["text"].as_str().unwrap()
    }).collect();
    assert_eq!(texts, expected);
    assert_eq!(full["usage"]["completion_tokens"], 18);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    assert_eq!(streamed_texts(&chunks(&s.stream("/v1/completions", streamed)), 3), expected);
}

#[test]
fn logprobs_have_one_entry_per_token_in_both_shapes() {
    let s = start();
    let (_, out) = s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4, "logprobs": 2}));
    let lp = &out["choices"][0]["logprobs"];
    assert_eq!(out["choices"][0]["text"], "Pari", "{out}");
    assert_eq!(lp["tokens"], json!(["P", "a", "r", "i"]));
    assert_eq!(lp["token_logprobs"], json!([-0.5, -0.5, -0.5, -0.5]));
    assert_eq!(lp["text_offset"], json!([0, 1, 2, 3]));
    assert_eq!(lp["top_logprobs"][0], json!({"P": -0.5, "Q": -1.5}));
    let (_, out) = s.post("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "logprobs": true, "top_logprobs": 1}));
    let content = &out["choices"][0]["logprobs"]["content"];
    assert_eq!(content[0], json!({"token": "P", "logprob": -0.5, "bytes": [80], "top_logprobs": [{"token": "P", "logprob": -0.5, "bytes": [80]}]}));
    assert_eq!(content.as_array().unwrap().len(), 2);
}

#[test]
fn echo_repeats_the_prompt_before_the_completion() {
    let s = start();
    let (_, out) = s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4, "echo": true}));
    assert_eq!(out["choices"][0]["text"], "<s>HiPari", "BOS included: {out}");
    let cs = chunks(&s.stream("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4, "echo": true, "stream": true})));
    assert_eq!(streamed_texts(&cs, 1), ["<s>HiPari"]);
    assert_eq!(cs[0]["choices"][0]["text"], "<s>Hi", "the prompt comes first, in a chunk of its own");
}

#[test]
fn models_and_tokenize_answer_for_the_served_model() {
    let s = start();
    let (status, models) = s.get("/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!((models["data"][0]["id"].as_str(), models["data"][0]["max_model_len"].as_u64()), (Some(MODEL), Some(fake::MAX_MODEL_LEN as u64)));
    assert_eq!(s.get("/v1/models/nope").0, 404);
    let (status, out) = s.post("/tokenize", json!({"prompt": "hi"}));
    assert_eq!((status, &out["tokens"]), (200, &json!([256, 104, 105])));
    let (_, out) = s.post("/detokenize", json!({"tokens": [104, 105]}));
    assert_eq!(out["prompt"], "hi");
}

#[test]
fn errors_are_openai_shaped_with_the_right_status() {
    let s = start();
    let cases = [
        ("{not json", 400, None),
        (r#"{"model":"fake","prompt":"hi","max_tokens":"many"}"#, 400, Some("max_tokens")),
        (r#"{"model":"nope","prompt":"hi"}"#, 404, Some("model")),
        (r#"{"model":"fake","prompt":""}"#, 400, Some("prompt")),
        (r#"{"model":"fake","prompt":"hi","max_tokens":100000}"#, 400, Some("prompt")),
        (r#"{"model":"fake","prompt":"hi","top_p":7}"#, 400, Some("top_p")),
        (r#"{"model":"fake","prompt":"hi","n":100000}"#, 400, Some("n")),
    ];
    for (body, status, param) in cases {
        let (got, err) = s.post_raw("/v1/completions", body.to_string());
        assert_eq!(got, status, "{body}: {err}");
        assert!(err["error"]["message"].is_string() && err["error"]["type"].is_string(), "{err}");
        if let Some(p) = param {
            assert_eq!(err["error"]["param"], p, "{body}");
        }
    }
    let many_stops: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    let big_bias: serde_json::Map<String, Value> = (0..301).map(|i| (i.to_string(), json!(1.0))).collect();
    let chat_cases = [
        (json!({"model": MODEL, "messages": []}), "messages"),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stop": many_stops}), "stop"),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logit_bias": big_bias}), "logit_bias"),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 50, "logprobs": true}), "top_logprobs"),
    ];
    for (body, param) in chat_cases {
        let (status, err) = s.post("/v1/chat/completions", body);
        assert_eq!((status, err["error"]["param"].as_str()), (400, Some(param)), "{err}");
    }
    assert_eq!(s.get("/v1/completions").0, 405);
    let (status, err) = s.post("/v1/completions", json!({"model": MODEL, "prompt": "x".repeat(5 << 20)}));
    assert_eq!((status, err["error"].is_object()), (413, true));
    let (status, _) = s.post("/v1/nowhere", json!({}));
    assert_eq!(status, 404);
    // After all that, the server still serves.
    assert_eq!(s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2})).0, 200);
}

#[test]
fn a_disconnected_stream_frees_its_kv_blocks() {
    // 2000 tokens at a millisecond a step take seconds: the request is still running when the
    // client leaves.
    let (s, state) = start_fake(DEFAULT_MAX_QUEUE, Duration::from_millis(1));
    let model = state.model(Some(MODEL)).unwrap();
    let handle = model.engine.handle().unwrap();
    let stats = handle.stats();
    s.runtime.block_on(async {
        let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 2000, "stream": true, "ignore_eos": true});
        let resp = reqwest::Client::new().post(format!("{}/v1/completions", s.base)).json(&body).send().await.unwrap();
        let mut bytes = resp.bytes_stream();
        use tokio_stream::StreamExt;
        let _first = bytes.next().await.unwrap().unwrap();
        // Stats are published at the end of each engine step, just after its tokens are sent, so
        // the first chunk can arrive a moment before the request shows as running.
        let started = Instant::now();
        while stats.kv_blocks_used.load(Ordering::Relaxed) == 0 && stats.running.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed() < Duration::from_secs(1), "the streaming request never showed as running");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(bytes);
    });
    let started = Instant::now();
    while stats.running.load(Ordering::Relaxed) > 0 || stats.kv_blocks_used.load(Ordering::Relaxed) > 0 {
        assert!(started.elapsed() < Duration::from_secs(1), "the request kept running after the client left");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A deadline (the `timeout` field, the `x-request-timeout` header, the server's default) ends a
/// request that runs past it: 408 `timeout`, or in a stream an error event then `[DONE]`, and its
/// KV blocks are free again.
#[test]
fn a_deadline_ends_the_request_and_frees_its_kv_blocks() {
    let (s, state) = start_fake(DEFAULT_MAX_QUEUE, Duration::from_millis(5));
    let model = state.model(Some(MODEL)).unwrap();
    let handle = model.engine.handle().unwrap();
    let stats = handle.stats();
    let long = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": true, "timeout": 0.3});
    let started = Instant::now();
    let (status, err) = s.post("/v1/completions", long.clone());
    assert_eq!((status, err["error"]["code"].as_str()), (408, Some("timeout")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "the deadline did not cut the request: {:?}", started.elapsed());
    let mut streamed = long.clone();
    streamed["stream"] = json!(true);
    let events = s.stream("/v1/completions", streamed);
    let last = chunks(&events).pop().unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{last}");
    // The header works the same, on chat too.
    s.runtime.block_on(async {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2000, "ignore_eos": true});
        let resp = reqwest::Client::new().post(format!("{}/v1/chat/completions", s.base)).header("x-request-timeout", "0.2").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 408);
        let bad = reqwest::Client::new().post(format!("{}/v1/chat/completions", s.base)).header("x-request-timeout", "soon").json(&body).send().await.unwrap();
        assert_eq!(bad.status(), 400);
    });
    let started = Instant::now();
    while stats.running.load(Ordering::Relaxed) > 0 || stats.kv_blocks_used.load(Ordering::Relaxed) > 0 {
        assert!(started.elapsed() < Duration::from_secs(1), "requests past their deadline kept their KV blocks");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn metrics_export_request_and_engine_series() {
    let s = start();
    assert_eq!(s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 3})).0, 200);
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    for series in [
        "vllm:num_requests_waiting{model_name=\"fake\"}",
        "vllm:num_requests_running{model_name=\"fake\"}",
        "vllm:kv_cache_usage_perc{model_name=\"fake\"}",
        "rill_requests_total{model=\"fake\",outcome=\"length\"}",
        "rill_request_ttft_seconds_bucket{model=\"fake\"",
        "rill_request_e2e_seconds_count{model=\"fake\"}",
        "rill_generation_tokens_total{model=\"fake\"}",
        "rill_engine_step_seconds_bucket{model=\"fake\"",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let (s, _) = start_fake(0, Duration::ZERO);
    s.runtime.block_on(async {
        let resp = reqwest::Client::new().post(format!("{}/v1/completions", s.base)).json(&json!({"model": MODEL, "prompt": "Hi"})).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["message"].is_string());
    });
}

/// A burst arriving between engine steps is held to `max_queue` (the places are counted at
/// submit): of 64 simultaneous requests to a slow model with room for 8, most are turned away
/// with 503, and every one answered either way.
#[test]
fn a_burst_is_held_to_max_queue() {
    let (s, _) = start_fake(8, Duration::from_millis(50));
    let statuses: Vec<u16> = s.runtime.block_on(async {
        let client = reqwest::Client::new();
        let sends = (0..64).map(|_| {
            let req = client.post(format!("{}/v1/completions", s.base)).json(&json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}));
            async move { req.send().await.unwrap().status().as_u16() }
        });
        futures_util_join_all(sends).await
    });
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    let busy = statuses.iter().filter(|&&c| c == 503).count();
    assert_eq!(ok + busy, 64, "{statuses:?}");
    assert!(ok <= 8 + 8, "at most the queue (8) plus what started meanwhile got in: {ok} of 64");
    assert!(busy >= 40, "{busy} of 64 were turned away");
}

/// `join_all` without a futures dependency: each on its own task.
async fn futures_util_join_all<F: std::future::Future<Output = u16> + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The real model through its own chat template: streamed text equals the answer.
#[test]
fn real_model_chat_stream_starts_with_the_role_and_equals_non_stream() {
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(8192), capacity: StepCapacity { max_tokens: 256, max_seqs: 16 }, ..LoadOptions::default() };
    let s = serve_default_model("smollm2", &opts);
    let body = json!({"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of Japan?"}], "max_tokens": 24, "temperature": 0});
    let (status, full) = s.post("/v1/chat/completions", body.clone());
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["object"], "chat.completion");
    let content = full["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(!content.is_empty());
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let cs = chunks(&s.stream("/v1/chat/completions", streamed));
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = cs.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, content);
}
