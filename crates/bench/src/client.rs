//! HTTP against any OpenAI-compatible server: the model list, token counting (rill's and
//! llama.cpp's `POST /tokenize`), and one timed generation request (streamed over SSE or not).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_stream::StreamExt;

use super::sse::{choice_text, error_message, parse_event, truncate, SseParser, StreamEvent, Usage};
use super::stats::{RequestResult, Timing};
use super::Endpoint;

/// Error bodies are read up to this many bytes.
const MAX_ERROR_BODY: usize = 64 << 10;

#[derive(Clone)]
pub struct BenchClient {
    http: reqwest::Client,
    /// `…/v1`, without a trailing slash.
    base: String,
    api_key: Option<String>,
}

/// What a generation request sends.
pub struct RequestSpec<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub prompt: &'a str,
    pub max_tokens: usize,
    pub stream: bool,
    /// Hold the output to a JSON schema (`response_format`, chat only).
    pub json_schema: bool,
}

impl BenchClient {
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<BenchClient, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", root_cause(&e)))?;
        Ok(BenchClient { http, base: base_url.trim_end_matches('/').to_string(), api_key })
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// The first model `GET /v1/models` lists.
    pub async fn first_model(&self) -> Result<String, String> {
        let url = format!("{}/models", self.base);
        let resp = self.with_auth(self.http.get(&url)).timeout(Duration::from_secs(30)).send().await.map_err(|e| format!("GET {url}: {}", root_cause(&e)))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("GET {url}: {}", root_cause(&e)))?;
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        body["data"][0]["id"].as_str().map(str::to_string).ok_or_else(|| format!("GET {url}: no model listed"))
    }

    /// The number of tokens `text` is, by the server's `POST /tokenize` beside `/v1` (the body
    /// carries both rill's `prompt` and llama.cpp's `content`); `None` when the server has no
    /// such route or answers something else.
    pub async fn count_tokens(&self, model: &str, text: &str) -> Option<usize> {
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        let url = format!("{root}/tokenize");
        let body = json!({"model": model, "prompt": text, "content": text, "add_special": true});
        let resp = self.with_auth(self.http.post(&url)).json(&body).timeout(Duration::from_secs(30)).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: Value = resp.json().await.ok()?;
        let n = v.get("tokens").and_then(Value::as_array)?.len();
        (n > 0 || text.is_empty()).then_some(n)
    }

    /// Sends one generation request and times it. Never panics: every failure is a reason.
    pub async fn generate(&self, spec: &RequestSpec<'_>, known_prompt_tokens: Option<u64>) -> RequestResult {
        let (path, mut body) = match spec.endpoint {
            Endpoint::Completions => ("completions", json!({"prompt": spec.prompt})),
            Endpoint::Chat => ("chat/completions", json!({"messages": [{"role": "user", "content": spec.prompt}]})),
        };
        body["model"] = json!(spec.model);
        body["max_tokens"] = json!(spec.max_tokens);
        body["temperature"] = json!(0);
        body["ignore_eos"] = json!(true);
        body["stream"] = json!(spec.stream);
        if spec.json_schema {
            // More items than `max_tokens` can hold: the grammar masks every token of the output.
            let schema = json!({"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 1000});
            body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}});
        }
        if spec.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let url = format!("{}/{path}", self.base);
        let start = Instant::now();
        let resp = self.with_auth(self.http.post(&url)).json(&body).send().await.map_err(|e| request_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(http_error(status, resp).await);
        }
        let mut timing = if spec.stream { read_stream(resp, start).await? } else { read_whole(resp, start).await? };
        if timing.prompt_tokens.is_none() {
            timing.prompt_tokens = known_prompt_tokens;
        }
        Ok(timing)
    }
}

async fn read_stream(resp: reqwest::Response, start: Instant) -> RequestResult {
    let mut parser = SseParser::default();
    let mut payloads = Vec::new();
    let mut body = resp.bytes_stream();
    let mut timing = Timing::default();
    let mut last_text: Option<Instant> = None;
    let mut chunks_with_text = 0u64;
    let mut usage: Option<Usage> = None;
    let mut done = false;
    let mut ended = false;
    while !done {
        match body.next().await {
            Some(Ok(bytes)) => parser.push(&bytes, &mut payloads)?,
            Some(Err(e)) => return Err(format!("stream broken: {}", root_cause(&e))),
            None => {
                parser.finish(&mut payloads);
                ended = true;
            }
        }
        let now = Instant::now();
        for payload in payloads.drain(..) {
            match parse_event(&payload) {
                StreamEvent::Done => done = true,
                StreamEvent::Error(msg) => return Err(format!("error event: {msg}")),
                StreamEvent::Chunk { has_text, usage: u } => {
                    if has_text {
                        chunks_with_text += 1;
                        match last_text {
                            None => timing.ttft = Some(now - start),
                            Some(prev) => timing.itl.push(now - prev),
                        }
                        last_text = Some(now);
                    }
                    usage = u.or(usage);
                }
            }
        }
        if ended && !done {
            return Err("stream ended without [DONE]".into());
        }
    }
    timing.e2e = start.elapsed();
    finish_counts(&mut timing, usage, chunks_with_text);
    Ok(timing)
}

async fn read_whole(resp: reqwest::Response, start: Instant) -> RequestResult {
    let v: Value = resp.json().await.map_err(|e| format!("bad response body: {}", root_cause(&e)))?;
    let mut timing = Timing { e2e: start.elapsed(), ..Timing::default() };
    if let Some(err) = v.get("error") {
        return Err(format!("error body: {}", error_message(err)));
    }
    let texts = v.get("choices").and_then(Value::as_array).map(|c| c.iter().filter(|c| !choice_text(c).is_empty()).count()).unwrap_or(0);
    finish_counts(&mut timing, Usage::from_json(&v), texts as u64);
    Ok(timing)
}

fn finish_counts(timing: &mut Timing, usage: Option<Usage>, chunks_with_text: u64) {
    let usage = usage.unwrap_or_default();
    timing.prompt_tokens = usage.prompt_tokens;
    timing.usage_reported = usage.completion_tokens.is_some();
    timing.completion_tokens = usage.completion_tokens.unwrap_or(chunks_with_text);
}

async fn http_error(status: reqwest::StatusCode, resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(bytes)) = stream.next().await {
        body.extend_from_slice(&bytes);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let msg = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v.get("error").map(error_message).unwrap_or_else(|| truncate(text.trim(), 160)),
        Err(_) => truncate(text.trim(), 160),
    };
    if msg.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {msg}", status.as_u16())
    }
}

fn request_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        format!("request failed: {}", root_cause(e))
    }
}

/// The innermost error's message: reqwest's own text names the URL and little else.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    truncate(&cur.to_string(), 160)
}
