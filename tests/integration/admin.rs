//! The admin API loads every kind of model source `rill serve` does (a dummy config, a Hugging
//! Face directory, a GGUF file), serves it on the API listener once ready, and unloads it.

use std::path::Path;
use std::time::{Duration, Instant};

use rill_backend::DType;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_server::admin::AdminState;
use rill_server::app::AppState;
use rill_server::LoadSettings;
use serde_json::{json, Value};

use crate::hf_models::exported;
use crate::http::Server;

pub struct Admin {
    pub server: Server,
    pub app: AppState,
    /// Base URL of the admin listener (the server's `base` is the API's).
    pub admin: String,
}

/// The API and the admin API over one set of models; the admin API resolves paths under `root`.
pub fn start(root: &Path) -> Admin {
    let app = AppState::default();
    let options = LoadOptions { kv_budget: KvBudget::Tokens(2048), ..LoadOptions::default() };
    let admin = AdminState {
        app: app.clone(),
        states: Default::default(),
        models_root: root.to_path_buf(),
        defaults: LoadSettings { threads: 2, options, ..LoadSettings::default() },
        max_queue: rill_server::app::DEFAULT_MAX_QUEUE,
        keep_alive: None,
        drain_timeout: Duration::from_secs(5),
        loopback: true,
    };
    let server = Server::start(rill_server::routes::router(app.clone()));
    server.runtime.spawn(app.models.clone().housekeeping());
    let admin = server.serve(rill_server::admin::router(admin));
    Admin { server, admin, app }
}

impl Admin {
    pub fn state_of(&self, name: &str) -> Option<Value> {
        self.version_of(name, "default")
    }

    pub fn version_of(&self, name: &str, version: &str) -> Option<Value> {
        let (status, body) = self.server.get(&format!("{}/admin/models", self.admin));
        assert_eq!(status, 200, "{body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        list["data"].as_array().unwrap().iter().find(|m| m["name"] == name && m["version"] == version).cloned()
    }

    /// Loads and waits until the model is ready (or fails the test with its error).
    pub fn load(&self, body: Value) {
        let name = body["name"].as_str().unwrap().to_string();
        let version = body["version"].as_str().unwrap_or("default").to_string();
        let (status, reply) = self.server.post(&format!("{}/admin/models", self.admin), body);
        assert_eq!(status, 202, "{reply}");
        let started = Instant::now();
        loop {
            let m = self.version_of(&name, &version).expect("a loading model is listed");
            match m["state"].as_str().unwrap() {
                "ready" => return,
                "loading" => assert!(started.elapsed() < Duration::from_secs(120), "{name} is still loading"),
                _ => panic!("{name} did not load: {m}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn unload(&self, name: &str) {
        let (status, reply) = self.server.delete(&format!("{}/admin/models/{name}", self.admin));
        assert_eq!(status, 202, "{reply}");
        let started = Instant::now();
        while self.state_of(name).is_some() {
            assert!(started.elapsed() < Duration::from_secs(10), "{name} was never unloaded");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn complete(&self, model: &str, prompt: &str, max_tokens: usize) -> (u16, Value) {
        self.server.post("/v1/completions", json!({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true}))
    }
}

#[test]
fn a_dummy_config_loads_serves_and_unloads() {
    let admin = start(&rill::testing::repo_root().join("configs/models"));
    admin.load(json!({"name": "tiny", "path": "tiny-llama.json", "load_format": "dummy", "dummy_dtype": "q8_0", "dummy_seed": 7}));
    let m = admin.state_of("tiny").unwrap();
    assert_eq!(m["kv_cache_tokens"], 2048, "{m}");
    let (status, out) = admin.complete("tiny", "Hello", 5);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["usage"]["completion_tokens"], 5);
    admin.unload("tiny");
    assert_eq!(admin.complete("tiny", "Hello", 1).0, 404);
}

/// A KV pool smaller than the model's context bounds what is advertised and accepted (a request
/// that could never fit is a 400 up front, not an error mid-stream); an empty pool is refused.
#[test]
fn the_kv_pool_bounds_the_context_and_an_empty_pool_is_refused() {
    let admin = start(&rill::testing::repo_root().join("configs/models"));
    admin.load(json!({"name": "small", "path": "tiny-llama.json", "load_format": "dummy", "dummy_dtype": "q8_0", "kv_cache_tokens": 256}));
    let (status, models) = admin.server.get("/v1/models");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    let small = models["data"].as_array().unwrap().iter().find(|m| m["id"] == "small").unwrap().clone();
    let advertised = small["max_model_len"].as_u64().unwrap();
    assert!(advertised <= 256, "{small}");
    let (status, err) = admin.complete("small", "Hello", 300);
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{err}");

    let (status, reply) = admin.server.post(&format!("{}/admin/models", admin.admin), json!({"name": "empty", "path": "tiny-llama.json", "load_format": "dummy", "kv_cache_tokens": 0}));
    assert_eq!((status, reply["error"]["param"].as_str()), (400, Some("kv_cache_tokens")), "{reply}");
    assert!(admin.state_of("empty").is_none());
}

#[test]
fn sources_that_do_not_match_their_format_are_refused_up_front() {
    let admin = start(&rill::testing::repo_root().join("configs/models"));
    let url = format!("{}/admin/models", admin.admin);
    for (body, param) in [
        // Without a format, a file is read as GGUF: a config is not one.
        (json!({"name": "a", "path": "tiny-llama.json"}), "path"),
        (json!({"name": "a", "path": "tiny-llama.json", "load_format": "onnx"}), "load_format"),
        (json!({"name": "a", "path": "tiny-llama.json", "load_format": "dummy", "dummy_dtype": "q2_q"}), "dummy_dtype"),
        (json!({"name": "a", "path": "tiny-llama.json", "load_format": "hf"}), "path"),
        (json!({"name": "a", "path": ".", "load_format": "hf"}), "path"),
    ] {
        let (status, err) = admin.server.post(&url, body.clone());
        assert_eq!((status, err["error"]["param"].as_str()), (400, Some(param)), "{body}: {err}");
    }
    assert!(admin.state_of("a").is_none());
}

#[test]
fn a_hugging_face_directory_loads_and_answers_like_the_gguf() {
    let dir = exported(DType::F32, 1);
    let admin = start(dir.parent().unwrap());
    let name = dir.file_name().unwrap().to_str().unwrap();
    admin.load(json!({"name": "hf", "path": name}));
    let (status, out) = admin.complete("hf", "The capital of France is", 4);
    assert_eq!(status, 200, "{out}");
    assert!(out["choices"][0]["text"].as_str().unwrap().starts_with(" Paris"), "{out}");
    admin.unload("hf");
}

/// A KV pool larger than the free memory is refused with a sentence saying so, instead of being
/// reserved and found out under load.
#[test]
fn a_kv_pool_that_does_not_fit_in_memory_is_refused() {
    let admin = start(&rill::testing::repo_root().join("models"));
    let url = format!("{}/admin/models", admin.admin);
    // 8,192 tokens of context × 4,096 sequences: hundreds of GB of KV for this model.
    let (status, reply) = admin.server.post(&url, json!({"name": "huge", "path": "SmolLM2-135M-Instruct.Q4_1.gguf", "kv_cache_tokens": 1_000_000_000_000u64, "max_num_seqs": 4096}));
    assert_eq!(status, 202, "{reply}");
    let started = Instant::now();
    let failed = loop {
        let m = admin.state_of("huge").unwrap();
        if m["state"] != "loading" {
            break m;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("MiB of cpu memory are free"), "{error}");
    assert_eq!(admin.complete("huge", "Hi", 1).0, 404);
}

/// With eviction allowed, a load whose KV pool does not fit puts the least recently used idle,
/// unpinned model to sleep first (it answers again on its next request); a pinned one stays.
/// Here the pool could never fit, so the load still fails after evicting what it may.
#[test]
fn eviction_frees_unpinned_idle_models_before_a_load_gives_up() {
    let admin = start(&rill::testing::repo_root().join("models"));
    admin.app.models.allow_eviction.store(true, std::sync::atomic::Ordering::Relaxed);
    admin.load(json!({"name": "idle", "path": "SmolLM2-135M-Instruct.Q4_1.gguf"}));
    admin.load(json!({"name": "kept", "path": "SmolLM2-135M-Instruct.Q4_1.gguf", "pinned": true}));
    let url = format!("{}/admin/models", admin.admin);
    let (status, reply) = admin.server.post(&url, json!({"name": "huge", "path": "SmolLM2-135M-Instruct.Q4_1.gguf", "kv_cache_tokens": 1_000_000_000_000u64, "max_num_seqs": 4096}));
    assert_eq!(status, 202, "{reply}");
    let started = Instant::now();
    while admin.state_of("huge").unwrap()["state"] == "loading" {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(admin.state_of("huge").unwrap()["state"], "failed");
    assert_eq!(admin.state_of("idle").unwrap()["state"], "unloaded", "the unpinned idle model was evicted");
    assert_eq!(admin.state_of("kept").unwrap()["state"], "ready", "a pinned model is never evicted");
    let (status, out) = admin.complete("idle", "Hello", 2);
    assert_eq!(status, 200, "{out}");
    assert_eq!(admin.state_of("idle").unwrap()["state"], "ready");
}
