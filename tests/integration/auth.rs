//! API keys on both listeners, over raw HTTP (so paths reach the server exactly as written): the
//! auth matrix, path tricks that must not get around the check, the admin API's own scope and
//! its loopback Host rule, and Anthropic-shaped errors on `/v1/messages`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rill_server::admin::AdminState;
use rill_server::app::{AppState, DEFAULT_MAX_QUEUE};
use rill_server::auth::{KeyStore, Keys};
use rill_server::load::LoadSettings;
use rill_server::routes::router;

use crate::fake;
use crate::http::Server;

const FILE_KEYS: &str = r#"
[[keys]]
name = "ops"
key = "sk-both"
scopes = ["inference", "admin"]
"#;

/// Status and body of `method path` with these extra header lines.
fn raw(base: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn start() -> (Server, String) {
    let keys = Keys::from_flags(&["sk-user".into()], &["sk-admin".into()]);
    let keys = keys.merged(Keys::parse(FILE_KEYS).unwrap());
    let app = AppState { keys: KeyStore::new(keys), ..AppState::default() };
    app.add(fake::served_model("fake", DEFAULT_MAX_QUEUE, Duration::ZERO)).unwrap();
    let admin = AdminState {
        app: app.clone(),
        states: Default::default(),
        models_root: std::env::temp_dir(),
        defaults: LoadSettings::default(),
        max_queue: DEFAULT_MAX_QUEUE,
        keep_alive: None,
        drain_timeout: Duration::from_secs(1),
        loopback: true,
    };
    let server = Server::start(router(app));
    let admin = server.serve(rill_server::admin::router(admin));
    (server, admin)
}

#[test]
fn inference_routes_need_an_inference_key() {
    let (server, _) = start();
    let b = server.base.as_str();
    assert_eq!(raw(b, "GET", "/v1/models", &[]).0, 401);
    assert_eq!(raw(b, "GET", "/v1/models", &["Authorization: Bearer sk-wrong"]).0, 401);
    assert_eq!(raw(b, "GET", "/v1/models", &["Authorization: Bearer sk-user"]).0, 200);
    assert_eq!(raw(b, "GET", "/v1/models", &["x-api-key: sk-user"]).0, 200);
    assert_eq!(raw(b, "GET", "/v1/models", &["Authorization: Bearer sk-both"]).0, 200);
    let (status, body) = raw(b, "GET", "/v1/models", &["Authorization: Bearer sk-admin"]);
    assert_eq!(status, 403, "an admin-only key is not an inference key: {body}");
    let (status, body) = raw(b, "GET", "/v1/models", &[]);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, err["error"]["code"].as_str()), (401, Some("invalid_api_key")), "{body}");
    assert!(!body.contains("sk-"), "no key in errors: {body}");
    // Probes and metrics stay open.
    for open in ["/health", "/ready", "/metrics"] {
        assert_ne!(raw(b, "GET", open, &[]).0, 401, "{open}");
    }
    // Anthropic's endpoint answers in Anthropic's shape.
    let (status, body) = raw(b, "POST", "/v1/messages", &["content-type: application/json"]);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, err["type"].as_str()), (401, Some("error")), "{body}");
}

#[test]
fn path_tricks_never_get_around_the_key() {
    let (server, admin) = start();
    let tricks = [
        "//v1/models",
        "/v1/./models",
        "/V1/models",
        "/v1/%6Dodels",
        "/v1/models/",
        "/health/../v1/models",
        "/health/..%2fv1/models",
        "/health%2f..%2fv1/models",
        "/./v1/models",
        "/v1/models?x=/health",
        "/health;/../v1/models",
    ];
    for path in tricks {
        let (status, body) = raw(&server.base, "GET", path, &[]);
        assert_eq!(status, 401, "{path} answered {status}: {body}");
    }
    for path in ["/admin/models", "//admin/models", "/ADMIN/models", "/admin/models/"] {
        assert_eq!(raw(&admin, "GET", path, &[]).0, 401, "admin {path}");
    }
}

#[test]
fn the_admin_api_has_its_own_scope_and_answers_only_localhost() {
    let (server, admin) = start();
    assert_eq!(raw(&admin, "GET", "/admin/models", &[]).0, 401);
    assert_eq!(raw(&admin, "GET", "/admin/models", &["Authorization: Bearer sk-user"]).0, 403);
    assert_eq!(raw(&admin, "GET", "/admin/models", &["Authorization: Bearer sk-admin"]).0, 200);
    assert_eq!(raw(&admin, "GET", "/admin/models", &["Authorization: Bearer sk-both"]).0, 200);
    // DNS rebinding: a page on evil.example pointed at 127.0.0.1 sends its own Host.
    let rebound = raw(&admin, "GET", "/admin/models", &["Host: evil.example:8081", "Authorization: Bearer sk-admin"]);
    assert_eq!(rebound.0, 403, "{}", rebound.1);
    assert_eq!(raw(&admin, "GET", "/admin/models", &["Host: localhost:8081", "Authorization: Bearer sk-admin"]).0, 200);
    // The main port never answers admin routes, whatever the key.
    assert_eq!(raw(&server.base, "GET", "/admin/models", &["Authorization: Bearer sk-both"]).0, 404);
}

#[test]
fn keys_reload_in_place() {
    let store = KeyStore::new(Keys::from_flags(&["sk-old".into()], &[]));
    let app = AppState { keys: store.clone(), ..AppState::default() };
    app.add(fake::served_model("fake", DEFAULT_MAX_QUEUE, Duration::ZERO)).unwrap();
    let server = Server::start(router(app));
    assert_eq!(raw(&server.base, "GET", "/v1/models", &["Authorization: Bearer sk-old"]).0, 200);
    store.replace(Keys::from_flags(&["sk-new".into()], &[]));
    assert_eq!(raw(&server.base, "GET", "/v1/models", &["Authorization: Bearer sk-old"]).0, 401);
    assert_eq!(raw(&server.base, "GET", "/v1/models", &["Authorization: Bearer sk-new"]).0, 200);
}

/// A key limited to 2 requests a minute gets 200, 200, then 429 `rate_limit_exceeded` with a
/// `Retry-After`; one limited to one request at a time is refused while its stream runs; usage
/// is counted per key.
#[test]
fn per_key_limits_answer_429_with_retry_after() {
    let file = r#"
        [[keys]]
        name = "metered"
        key = "sk-metered"
        requests_per_minute = 2

        [[keys]]
        name = "single"
        key = "sk-single"
        max_concurrent = 1
    "#;
    let app = AppState { keys: KeyStore::new(Keys::parse(file).unwrap()), metrics: Some(crate::http::recorder()), ..AppState::default() };
    app.add(fake::served_model("fake", DEFAULT_MAX_QUEUE, Duration::from_millis(2))).unwrap();
    let server = Server::start(router(app));
    let post = |key: &str| {
        server.runtime.block_on(async {
            let body = serde_json::json!({"model": "fake", "prompt": "Hi", "max_tokens": 3});
            let resp = reqwest::Client::new().post(format!("{}/v1/completions", server.base)).bearer_auth(key).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()), resp.text().await.unwrap())
        })
    };
    let statuses: Vec<u16> = (0..3).map(|_| post("sk-metered").0).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let (_, retry_after, body) = post("sk-metered");
    assert!(body.contains("rate_limit_exceeded"), "{body}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");

    // While one stream of the single-place key runs, a second request of it is refused.
    server.runtime.block_on(async {
        let body = serde_json::json!({"model": "fake", "prompt": "Hi", "max_tokens": 500, "stream": true, "ignore_eos": true});
        let resp = reqwest::Client::new().post(format!("{}/v1/completions", server.base)).bearer_auth("sk-single").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let second = reqwest::Client::new().post(format!("{}/v1/completions", server.base)).bearer_auth("sk-single").json(&body).send().await.unwrap();
        assert_eq!(second.status(), 429);
        drop(resp);
    });
    let (_, metrics) = server.get("/metrics");
    assert!(metrics.contains("rill_key_tokens_total{key=\"metered\",kind=\"completion\"}"), "{metrics}");
    assert!(metrics.contains("rill_key_rate_limited_total{key=\"metered\"}"));
}

/// Keys share the engine: a light key's request sent after a heavy key's burst of 48 (three times
/// what runs at once) is admitted at the next free place instead of behind the whole burst, so it
/// ends before most of the burst has.
#[test]
fn a_light_key_is_not_queued_behind_a_heavy_keys_burst() {
    let file = "[[keys]]\nname = \"heavy\"\nkey = \"sk-heavy\"\n\n[[keys]]\nname = \"light\"\nkey = \"sk-light\"\n";
    let app = AppState { keys: KeyStore::new(Keys::parse(file).unwrap()), ..AppState::default() };
    app.add(fake::served_model("fake", DEFAULT_MAX_QUEUE, Duration::from_millis(2))).unwrap();
    let server = Server::start(router(app));
    let base = server.base.clone();
    let finished_before_light = server.runtime.block_on(async move {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let send = |key: &'static str, max_tokens: usize| {
            let body = serde_json::json!({"model": "fake", "prompt": "Hi", "max_tokens": max_tokens, "ignore_eos": true});
            client.post(format!("{base}/v1/completions")).bearer_auth(key).json(&body).send()
        };
        let mut heavy = Vec::new();
        for _ in 0..48 {
            let (req, done) = (send("sk-heavy", 40), done.clone());
            heavy.push(tokio::spawn(async move {
                assert_eq!(req.await.unwrap().status(), 200);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(send("sk-light", 2).await.unwrap().status(), 200);
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        for h in heavy {
            h.await.unwrap();
        }
        finished
    });
    eprintln!("heavy requests finished before the light one: {finished_before_light} of 48");
    // First come, first served it would wait for at least 32 of them.
    assert!(finished_before_light < 32, "{finished_before_light} of the heavy key's 48 requests ended before the light key's one");
}
