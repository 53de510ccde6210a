//! Routers served on loopback listeners for the HTTP tests, and a small blocking client.

use rill_model::loader::LoadOptions;
use rill_model::runner::ModelRunner;
use rill_server::app::{AppState, ServedModel, DEFAULT_MAX_QUEUE};
use rill_server::routes::router;
use serde_json::Value;

use crate::common;

pub struct Server {
    /// `http://127.0.0.1:PORT` of the first router.
    pub base: String,
    pub runtime: tokio::runtime::Runtime,
}

/// One Prometheus recorder for the whole test binary (it is process-wide).
pub fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| rill_server::prometheus::metrics_recorder().unwrap()).clone()
}

/// The default model, named `name`, served alone with engine options `opts`.
pub fn serve_default_model(name: &str, opts: &LoadOptions) -> Server {
    let model = common::default_model_with(opts);
    let max_len = model.transformer.config().context_length;
    let engine = ModelRunner::new(model.transformer, model.tokenizer.eos_token_ids().to_vec()).start(name);
    let state = AppState::default();
    state.add(ServedModel::with_queue(name.into(), engine, model.tokenizer, model.chat_template, max_len, DEFAULT_MAX_QUEUE)).unwrap();
    Server::start(router(state))
}

impl Server {
    /// Serves `app` on a free port, on a runtime of its own.
    pub fn start(app: axum::Router) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut server = Server { base: String::new(), runtime };
        server.base = server.serve(app);
        server
    }

    /// Serves another router on another free port of the same runtime; returns its base URL.
    pub fn serve(&self, app: axum::Router) -> String {
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        self.runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string())
    }

    /// `url` is a path on the first router or a full URL.
    pub fn post_raw(&self, url: &str, body: String) -> (u16, Value) {
        let url = self.url(url);
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }

    pub fn get(&self, url: &str) -> (u16, String) {
        let url = self.url(url);
        self.runtime.block_on(async {
            let resp = reqwest::get(url).await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    pub fn delete(&self, url: &str) -> (u16, Value) {
        let url = self.url(url);
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().delete(url).send().await.unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }

    /// `method` on `url` with an optional JSON body: status, headers and the JSON answer.
    pub fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = self.url(url);
        self.runtime.block_on(async {
            let mut req = reqwest::Client::new().request(method, url);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.unwrap();
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            let text = resp.text().await.unwrap();
            (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    /// The `data:` payloads of an SSE response, checking the framing on the way.
    pub fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let url = self.url(path);
        self.runtime.block_on(async {
            let resp = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
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

    fn url(&self, url: &str) -> String {
        if url.starts_with("http://") { url.to_string() } else { format!("{}{url}", self.base) }
    }
}

/// The JSON chunks of a stream (without the final `[DONE]`).
pub fn chunks(events: &[String]) -> Vec<Value> {
    events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect()
}
