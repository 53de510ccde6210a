//! The HTTP server on a real loopback listener with the default model: SSE framing, streaming
//! equals non-streaming, usage, stop strings across token boundaries, errors, and a client
//! disconnect freeing its KV blocks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_model::runner::ModelRunner;
use rill_server::app::{AppState, ServedModel};
use rill_server::routes::router;
use serde_json::{json, Value};

use crate::common;

const MODEL: &str = "smollm2";

struct Server {
    base: String,
    state: AppState,
    runtime: tokio::runtime::Runtime,
}

/// One Prometheus recorder for the whole test binary (it is process-wide).
fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| rill_server::prometheus::metrics_recorder().unwrap()).clone()
}

fn start() -> Server {
    start_with_queue(rill_server::app::DEFAULT_MAX_QUEUE)
}

fn start_with_queue(max_queue: usize) -> Server {
    let metrics = recorder();
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(8192), capacity: StepCapacity { max_tokens: 256, max_seqs: 16 }, ..LoadOptions::default() };
    let model = common::default_model_with(&opts);
    let max_len = model.transformer.config().context_length;
    let engine = ModelRunner::new(model.transformer, model.tokenizer.eos_token_ids().to_vec()).start(MODEL);
    let state = AppState { metrics: Some(metrics), ..AppState::default() };
    state.add(ServedModel::with_queue(MODEL.into(), engine, model.tokenizer, model.chat_template, max_len, max_queue));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, state, runtime }
}

impl Server {
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }

    fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body).send().await.unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }

    /// The `data:` payloads of an SSE response, checking the framing on the way.
    fn stream(&self, path: &str, body: Value) -> Vec<String> {
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
            let text = resp.text().await.unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "stream must end with [DONE]: {text:?}");
            text.split("\n\n")
                .filter(|e| !e.is_empty() && !e.starts_with(':'))
                .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("bad SSE event {e:?}")).to_string())
                .collect()
        })
    }
}

fn chunks(events: &[String]) -> Vec<Value> {
    events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect()
}

#[test]
fn completions_stream_equals_non_stream_with_usage() {
    let s = start();
    let body = json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 16, "temperature": 0});
    let (status, full) = s.post("/v1/completions", body.clone());
    assert_eq!(status, 200, "{full}");
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(full["usage"]["prompt_tokens"], 5);
    assert_eq!(full["usage"]["total_tokens"].as_u64(), Some(5 + full["usage"]["completion_tokens"].as_u64().unwrap()));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let cs = chunks(&s.stream("/v1/completions", streamed));
    let joined: String = cs.iter().filter_map(|c| c["choices"].get(0)).map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(joined, text);
    let last = cs.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0, "the usage chunk has no choices");
    assert_eq!(last["usage"], full["usage"]);
    assert!(cs.iter().any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"] == full["choices"][0]["finish_reason"])));
}

#[test]
fn chat_stream_starts_with_the_role_and_equals_non_stream() {
    let s = start();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "What is the capital of Japan?"}], "max_tokens": 24, "temperature": 0});
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
    assert!(cs.iter().all(|c| c["object"] == "chat.completion.chunk"));
}

#[test]
fn stop_strings_match_across_tokens_and_are_not_returned() {
    let s = start();
    let base = json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 16, "temperature": 0});
    let full = s.post("/v1/completions", base.clone()).1["choices"][0]["text"].as_str().unwrap().to_string();
    // A stop string spanning a token boundary: the last character of one token and the first
    // of the next.
    let at = full.find(".\n").expect("the greedy continuation has a sentence end");
    let mut with_stop = base;
    with_stop["stop"] = json!([".\n"]);
    let (_, out) = s.post("/v1/completions", with_stop.clone());
    assert_eq!(out["choices"][0]["text"], full[..at]);
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    with_stop["stream"] = json!(true);
    let joined: String = chunks(&s.stream("/v1/completions", with_stop)).iter().filter_map(|c| c["choices"].get(0)).map(|c| c["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(joined, full[..at]);
}

#[test]
fn errors_are_openai_shaped_with_the_right_status() {
    let s = start();
    let cases = [
        ("{not json", 400, None),
        (r#"{"model":"smollm2","prompt":"hi","max_tokens":"many"}"#, 400, Some("max_tokens")),
        (r#"{"model":"nope","prompt":"hi"}"#, 404, Some("model")),
        (r#"{"model":"smollm2","prompt":""}"#, 400, Some("prompt")),
        (r#"{"model":"smollm2","prompt":"hi","max_tokens":100000}"#, 400, Some("prompt")),
        (r#"{"model":"smollm2","prompt":"hi","top_p":7}"#, 400, Some("top_p")),
        (r#"{"model":"smollm2","prompt":"hi","n":100000}"#, 400, Some("n")),
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
    let status = s.runtime.block_on(async { reqwest::get(format!("{}/v1/completions", s.base)).await.unwrap().status().as_u16() });
    assert_eq!(status, 405);
    let (status, err) = s.post("/v1/completions", json!({"model": MODEL, "prompt": "x".repeat(5 << 20)}));
    assert_eq!((status, err["error"].is_object()), (413, true));
    let (status, _) = s.post("/v1/nowhere", json!({}));
    assert_eq!(status, 404);
    // After all that, the server still serves.
    assert_eq!(s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2})).0, 200);
}

#[test]
fn a_disconnected_stream_frees_its_kv_blocks() {
    let s = start();
    let model = s.state.model(Some(MODEL)).unwrap();
    let stats = model.handle.stats();
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

#[test]
fn metrics_export_request_and_engine_series() {
    let s = start();
    assert_eq!(s.post("/v1/completions", json!({"model": MODEL, "prompt": "Hi", "max_tokens": 3})).0, 200);
    let text = s.runtime.block_on(async { reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap() });
    for series in [
        "vllm:num_requests_waiting{model_name=\"smollm2\"}",
        "vllm:num_requests_running{model_name=\"smollm2\"}",
        "vllm:kv_cache_usage_perc{model_name=\"smollm2\"}",
        "rill_requests_total{model=\"smollm2\",outcome=\"length\"}",
        "rill_request_ttft_seconds_bucket{model=\"smollm2\"",
        "rill_request_e2e_seconds_count{model=\"smollm2\"}",
        "rill_generation_tokens_total{model=\"smollm2\"}",
        "rill_engine_step_seconds_bucket{model=\"smollm2\"",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let s = start_with_queue(0);
    s.runtime.block_on(async {
        let resp = reqwest::Client::new().post(format!("{}/v1/completions", s.base)).json(&json!({"model": MODEL, "prompt": "Hi"})).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["message"].is_string());
    });
}
