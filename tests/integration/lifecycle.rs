//! Model lifecycle through the HTTP APIs, on the default model loaded twice as two versions:
//! a weighted split, pinned versions, aliases, and a canary rolled back by its rules.

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{start, Admin};

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn two_versions() -> Admin {
    let admin = start(&rill::testing::repo_root().join("models"));
    admin.load(json!({"name": "smol", "version": "v1", "path": GGUF}));
    admin.load(json!({"name": "smol", "version": "v2", "path": GGUF}));
    admin
}

impl Admin {
    /// A one-token completion: the version header and the body's `model`.
    fn routed(&self, model: &str) -> (String, String) {
        let (status, headers, body) = self.server.call(Method::POST, "/v1/completions", Some(json!({"model": model, "prompt": "Hi", "max_tokens": 1})));
        assert_eq!(status, 200, "{body}");
        (headers["x-rill-model-version"].to_str().unwrap().to_string(), body["model"].as_str().unwrap().to_string())
    }

    fn admin_call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.server.call(method, &format!("{}{path}", self.admin), body);
        (status, body)
    }
}

#[test]
fn a_split_routes_by_weight_and_pins_and_aliases_route_where_they_say() {
    let admin = two_versions();
    // A second version takes no traffic until a split gives it some.
    assert!((0..20).all(|_| admin.routed("smol").0 == "v1"));

    let (status, reply) = admin.admin_call(Method::PUT, "/admin/models/smol/traffic", Some(json!({"weights": {"v1": 80, "v2": 20}})));
    assert_eq!(status, 200, "{reply}");
    let n = 300;
    let v2 = (0..n).filter(|_| admin.routed("smol") == ("v2".into(), "smol".into())).count();
    // Binomial(300, 0.2): mean 60, standard deviation 6.9; 35..=85 is beyond 3.6 of them.
    assert!((35..=85).contains(&v2), "{v2} of {n} requests went to v2");

    assert_eq!(admin.routed("smol@v2"), ("v2".into(), "smol@v2".into()));
    assert_eq!(admin.routed("smol@v1"), ("v1".into(), "smol@v1".into()));
    let (status, reply) = admin.admin_call(Method::PUT, "/admin/aliases/prod", Some(json!({"target": "smol@v2"})));
    assert_eq!(status, 200, "{reply}");
    assert!((0..10).all(|_| admin.routed("prod") == ("v2".into(), "prod".into())));
    let (_, models) = admin.server.get("/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["prod", "smol"]);

    // Streams carry the header too.
    let (status, headers, _) = admin.server.call(Method::POST, "/v1/chat/completions", Some(json!({"model": "smol@v2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": true})));
    assert_eq!((status, headers["x-rill-model-version"].to_str().unwrap()), (200, "v2"));

    // Bad splits and aliases are 400s in OpenAI's shape; unknown names 404.
    for body in [json!({"weights": {"v3": 10}}), json!({"weights": {"v1": 0}}), json!({"weights": {"v1": 1}, "rollback": {"max_error_rate": -1}})] {
        let (status, err) = admin.admin_call(Method::PUT, "/admin/models/smol/traffic", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["error"]["message"].is_string(), "{err}");
    }
    assert_eq!(admin.admin_call(Method::PUT, "/admin/models/nope/traffic", Some(json!({"weights": {"v1": 1}}))).0, 404);
    assert_eq!(admin.admin_call(Method::PUT, "/admin/aliases/smol", Some(json!({"target": "smol@v1"}))).0, 400, "an alias may not shadow a name");
    assert_eq!(admin.admin_call(Method::PUT, "/admin/aliases/x", Some(json!({"target": "smol@v9"}))).0, 400);
    assert_eq!(admin.admin_call(Method::DELETE, "/admin/aliases/prod", None).0, 200);
    assert_eq!(admin.server.call(Method::POST, "/v1/completions", Some(json!({"model": "prod", "prompt": "Hi", "max_tokens": 1}))).0, 404);

    // Unloading one version leaves the other serving the name.
    let (status, reply) = admin.admin_call(Method::DELETE, "/admin/models/smol@v1", None);
    assert_eq!(status, 202, "{reply}");
    while admin.version_of("smol", "v1").is_some() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!((0..10).all(|_| admin.routed("smol").0 == "v2"));
}

#[test]
fn a_canary_that_crosses_its_rule_is_rolled_back_and_the_rollback_is_recorded() {
    let admin = two_versions();
    // No first token arrives in 0 ms: v2 cannot meet this rule.
    let rules = json!({"min_requests": 5, "window": 10, "max_ttft_p95_ms": 0});
    let (status, reply) = admin.admin_call(Method::PUT, "/admin/models/smol/traffic", Some(json!({"weights": {"v1": 50, "v2": 50}, "baseline": "v1", "rollback": rules})));
    assert_eq!(status, 200, "{reply}");
    let mut served_by_v2 = 0;
    for _ in 0..200 {
        served_by_v2 += (admin.routed("smol").0 == "v2") as usize;
        let (_, described) = admin.admin_call(Method::GET, "/admin/models/smol", None);
        if !described["rollbacks"].as_array().unwrap().is_empty() {
            break;
        }
    }
    assert!(served_by_v2 >= 5, "v2 served {served_by_v2} requests");
    let (status, described) = admin.admin_call(Method::GET, "/admin/models/smol", None);
    assert_eq!(status, 200);
    let rollback = &described["rollbacks"][0];
    assert_eq!((rollback["version"].as_str(), rollback["baseline"].as_str(), rollback["rule"].as_str()), (Some("v2"), Some("v1"), Some("max_ttft_p95_ms")), "{described}");
    assert!(rollback["observed"].as_f64().unwrap() > 0.0 && rollback["at"].as_u64().unwrap() > 0, "{rollback}");
    assert_eq!(described["traffic"]["weights"], json!({"v1": 100}), "{described}");
    // The bad version stays loaded for inspection, and pinned requests still reach it.
    assert_eq!(described["versions"]["v2"]["state"], "ready", "{described}");
    assert!((0..20).all(|_| admin.routed("smol").0 == "v1"));
    assert_eq!(admin.routed("smol@v2").0, "v2");
}

/// Two identical versions under a logprob rule: both compute logprobs (clients that did not ask
/// see none), their means agree, and nothing is rolled back.
#[test]
fn identical_versions_pass_a_logprob_rule_without_clients_seeing_logprobs() {
    let admin = two_versions();
    let rules = json!({"min_requests": 4, "window": 50, "max_logprob_drop": 0.5});
    let (status, reply) = admin.admin_call(Method::PUT, "/admin/models/smol/traffic", Some(json!({"weights": {"v1": 50, "v2": 50}, "rollback": rules})));
    assert_eq!(status, 200, "{reply}");
    for _ in 0..24 {
        let (status, out) = admin.server.post("/v1/completions", json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}));
        assert_eq!(status, 200, "{out}");
        assert!(out["choices"][0]["logprobs"].is_null(), "{out}");
    }
    let (_, described) = admin.admin_call(Method::GET, "/admin/models/smol", None);
    assert_eq!(described["rollbacks"], json!([]), "{described}");
    let mean = |v: &str| described["versions"][v]["window"]["mean_logprob"].as_f64().unwrap_or_else(|| panic!("{described}"));
    // The same prompt, greedy, on the same weights: the same tokens with the same logprobs.
    assert!(mean("v1") < 0.0 && (mean("v1") - mean("v2")).abs() < 1e-3, "{described}");
}

/// `/admin/usage` adds up to the `usage` of the responses, and a stream the client dropped counts
/// what was generated before it left.
#[test]
fn usage_sums_match_the_responses_and_count_dropped_streams() {
    let admin = two_versions();
    let mut expected = (0u64, 0u64);
    for (model, prompt) in [("smol", "Hello"), ("smol@v2", "The capital of France is"), ("smol@v2", "Once")] {
        let (status, out) = admin.server.post("/v1/completions", json!({"model": model, "prompt": prompt, "max_tokens": 5}));
        assert_eq!(status, 200, "{out}");
        expected.0 += out["usage"]["prompt_tokens"].as_u64().unwrap();
        expected.1 += out["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let events = admin.server.stream("/v1/chat/completions", json!({"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}}));
    let usage = crate::http::chunks(&events).last().unwrap()["usage"].clone();
    expected.0 += usage["prompt_tokens"].as_u64().unwrap();
    expected.1 += usage["completion_tokens"].as_u64().unwrap();
    // A long stream dropped after its first bytes.
    admin.server.runtime.block_on(async {
        let url = format!("{}/v1/completions", admin.server.base);
        let body = json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "stream": true});
        let mut resp = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
        for _ in 0..3 {
            resp.chunk().await.unwrap();
        }
    });
    let usage_of = |query: &str| {
        let (status, body) = admin.admin_call(Method::GET, &format!("/admin/usage{query}"), None);
        assert_eq!(status, 200, "{body}");
        body
    };
    let started = std::time::Instant::now();
    while usage_of("?model=smol")["total"]["requests"] != 5 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{}", usage_of(""));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let total = &usage_of("?model=smol")["total"];
    let dropped_prompt = 4; // "Once upon a time"
    assert_eq!(total["prompt_tokens"].as_u64().unwrap(), expected.0 + dropped_prompt, "{total}");
    let dropped_completion = total["completion_tokens"].as_u64().unwrap() - expected.1;
    assert!((1..400).contains(&dropped_completion), "the dropped stream counted {dropped_completion} tokens");
    let rows = usage_of("?key=anonymous");
    let v2 = rows["data"].as_array().unwrap().iter().find(|r| r["version"] == "v2").unwrap();
    assert_eq!(v2["requests"], 2, "{rows}");
    assert_eq!(usage_of("?model=other")["data"], json!([]));
}

/// After `keep_alive` without requests the engine sleeps (weights and KV pool freed, the model
/// still listed); the next request loads it again, waits meanwhile, and succeeds.
#[test]
fn an_idle_model_unloads_and_comes_back_on_demand() {
    let admin = start(&rill::testing::repo_root().join("models"));
    admin.load(json!({"name": "sleepy", "path": GGUF, "keep_alive": 1}));
    let (status, first) = admin.server.post("/v1/completions", json!({"model": "sleepy", "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}));
    assert_eq!(status, 200, "{first}");
    let started = std::time::Instant::now();
    while admin.state_of("sleepy").unwrap()["state"] != "unloaded" {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{}", admin.state_of("sleepy").unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "unloaded before its keep_alive");
    let (_, models) = admin.server.get("/v1/models");
    assert!(models.contains("\"sleepy\""), "an unloaded model stays listed: {models}");
    let (_, described) = admin.admin_call(Method::GET, "/admin/models/sleepy", None);
    assert_eq!(described["versions"]["default"]["state"], "unloaded", "{described}");
    // Three requests at once while it sleeps: one load, all answered, the same text as before.
    let answers: Vec<(u16, Value)> = admin.server.runtime.block_on(async {
        let url = format!("{}/v1/completions", admin.server.base);
        let body = json!({"model": "sleepy", "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0});
        let sends: Vec<_> = (0..3)
            .map(|_| {
                let (url, body) = (url.clone(), body.clone());
                tokio::spawn(async move {
                    let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
                    (r.status().as_u16(), r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut out = Vec::new();
        for send in sends {
            out.push(send.await.unwrap());
        }
        out
    });
    for (status, out) in &answers {
        assert_eq!(*status, 200, "{out}");
        assert_eq!(out["choices"][0]["text"], first["choices"][0]["text"]);
    }
    assert_eq!(admin.state_of("sleepy").unwrap()["state"], "ready");
}

/// Drift: requests like the reference keep the index near 0; longer prompts and outputs move it
/// past 0.25, in the admin API and in `/metrics`.
#[test]
fn drift_shows_when_requests_stop_looking_like_the_reference() {
    let metrics = crate::http::recorder();
    let admin = start(&rill::testing::repo_root().join("models"));
    admin.load(json!({"name": "drifty", "path": GGUF}));
    let short = ["Hi", "Hello there", "Good morning", "Hey"];
    let send = |prompt: &str, max_tokens: u32| {
        let (status, out) = admin.server.post("/v1/completions", json!({"model": "drifty", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}));
        assert_eq!(status, 200, "{out}");
    };
    for i in 0..40 {
        send(short[i % 4], 2);
    }
    let (status, pinned) = admin.admin_call(Method::POST, "/admin/models/drifty/drift/reference", Some(json!({})));
    assert_eq!((status, &pinned["reference_requests"]["default"]), (200, &json!(40)), "{pinned}");
    for i in 0..40 {
        send(short[i % 4], 2);
    }
    let psi = |feature: &str| {
        let (status, drift) = admin.admin_call(Method::GET, "/admin/models/drifty/drift", None);
        assert_eq!(status, 200, "{drift}");
        drift["versions"]["default"]["features"][feature]["psi"].as_f64().unwrap_or_else(|| panic!("{drift}"))
    };
    assert!(psi("prompt_tokens") < 0.01 && psi("completion_tokens") < 0.01 && psi("finish_reason") < 0.01);
    let long = "Write a long and detailed story about a lighthouse keeper who finds a message in a bottle on a stormy night";
    for _ in 0..60 {
        send(long, 12);
    }
    assert!(psi("prompt_tokens") > 0.25, "{}", psi("prompt_tokens"));
    assert!(psi("completion_tokens") > 0.25, "{}", psi("completion_tokens"));
    let started = std::time::Instant::now();
    while !metrics.render().lines().any(|l| l.starts_with("rill_drift_psi{") && l.contains("model=\"drifty\"") && l.contains("feature=\"prompt_tokens\"")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no rill_drift_psi for drifty");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(admin.admin_call(Method::GET, "/admin/models/nope/drift", None).0, 404);
}
