//! Running a batch: validate its input, then send each line that has no result yet through the
//! API router (as the batch's owner, at batch priority, a few at a time, and only while no
//! interactive request waits for the model), appending each result to the output or error file
//! as it arrives. The same function resumes a batch after a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};

use super::files::{Appender, FileObject};
use super::{BatchApi, BatchLine, StoredBatch};
use crate::app::AppState;

/// One input line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub custom_id: String,
    pub body: Value,
}

/// Largest response body a line may produce.
const MAX_LINE_RESPONSE_BYTES: usize = 16 << 20;
/// How often a line waiting for interactive traffic to clear looks again.
const YIELD_POLL: Duration = Duration::from_millis(20);

/// The lines of a batch's input, or the errors that make it invalid (OpenAI's `errors.data`).
pub fn parse_input(input: &[u8], endpoint: &str) -> Result<Vec<Line>, Vec<Value>> {
    let text = String::from_utf8_lossy(input);
    let (mut lines, mut errors, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
    for (i, raw) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line = i + 1;
        let mut error = |code: &str, message: String| errors.push(json!({"code": code, "message": message, "param": null, "line": line}));
        let Ok(v) = serde_json::from_str::<Value>(raw) else {
            error("invalid_json_line", format!("line {line} is not JSON"));
            continue;
        };
        let Some(custom_id) = v["custom_id"].as_str() else {
            error("missing_custom_id", format!("line {line} has no string custom_id"));
            continue;
        };
        if v["method"] != "POST" {
            error("invalid_method", format!("line {line}: method must be POST"));
        } else if v["url"] != endpoint {
            error("mismatched_url", format!("line {line}: url must be the batch's endpoint {endpoint}"));
        } else if !v["body"].is_object() {
            error("invalid_body", format!("line {line}: body must be an object"));
        } else if !seen.insert(custom_id.to_string()) {
            error("duplicate_custom_id", format!("line {line}: custom_id {custom_id:?} appears twice"));
        } else {
            lines.push(Line { custom_id: custom_id.to_string(), body: v["body"].clone() });
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "the input file has no requests", "param": null, "line": null}));
    }
    if errors.is_empty() { Ok(lines) } else { Err(errors) }
}

/// Starts (or resumes) batch `id` on the server's runtime.
pub fn start(state: AppState, api: Arc<BatchApi>, id: String) {
    tokio::spawn(async move {
        if let Err(e) = run(&state, &api, &id).await {
            tracing::error!(batch = %id, error = %e, "batch failed");
            let now = crate::openai::unix_time();
            api.update(&id, |s| {
                s.batch.status = "failed".into();
                s.batch.failed_at = Some(now);
                s.batch.errors = Some(json!({"object": "list", "data": [{"code": "server_error", "message": e, "param": null, "line": null}]}));
            });
        }
    });
}

async fn run(state: &AppState, api: &Arc<BatchApi>, id: &str) -> Result<(), String> {
    let stored = api.get(id).ok_or("the batch is gone")?;
    let endpoint = stored.batch.endpoint.clone();
    let input = api.files.content(&stored.batch.input_file_id, stored.owner.as_deref()).ok_or("the input file is gone")?;
    let lines = match parse_input(&input, &endpoint) {
        Ok(lines) => lines,
        Err(errors) => {
            let now = crate::openai::unix_time();
            api.update(id, |s| {
                s.batch.status = "failed".into();
                s.batch.failed_at = Some(now);
                s.batch.errors = Some(json!({"object": "list", "data": errors}));
            });
            return Ok(());
        }
    };
    // What a previous run wrote stays; its custom_ids are done.
    let io = |e: std::io::Error| e.to_string();
    let (output, written) = Appender::open(&api.files.path(&stored.output_file)).map_err(io)?;
    let (errors, failed) = Appender::open(&api.files.path(&stored.error_file)).map_err(io)?;
    let done: HashSet<String> = written.iter().chain(&failed).filter_map(|l| serde_json::from_str::<Value>(l).ok()?["custom_id"].as_str().map(str::to_string)).collect();
    let now = crate::openai::unix_time();
    let total = lines.len() as u64;
    let (completed, failed_count) = (written.len() as u64, failed.len() as u64);
    api.update(id, |s| {
        if s.batch.status == "validating" {
            s.batch.status = "in_progress".into();
            s.batch.in_progress_at = Some(now);
        }
        s.batch.request_counts = super::RequestCounts { total, completed, failed: failed_count };
    });
    let router = api.router().ok_or("the API router is not ready")?;
    let sinks = Arc::new(Mutex::new((output, errors)));
    let permits = Arc::new(Semaphore::new(api.concurrency));
    let mut running = Vec::new();
    for line in lines.into_iter().filter(|l| !done.contains(&l.custom_id)) {
        if api.get(id).is_none_or(|s| s.batch.status == "cancelling") {
            break;
        }
        let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        yield_to_interactive(state, line.body["model"].as_str()).await;
        let (router, sinks, api, id, endpoint, owner) = (router.clone(), sinks.clone(), api.clone(), id.to_string(), endpoint.clone(), stored.owner.clone());
        running.push(tokio::spawn(async move {
            let (status, body) = run_line(router, &endpoint, &line, owner).await;
            let result = json!({
                "id": crate::routes::generation::item_id("batch_req"),
                "custom_id": line.custom_id,
                "response": {"status_code": status, "request_id": crate::routes::generation::item_id("req"), "body": body},
                "error": null,
            });
            let ok = status < 400;
            let mut sinks = sinks.lock().await;
            let sink = if ok { &mut sinks.0 } else { &mut sinks.1 };
            if let Err(e) = sink.append(&result.to_string()) {
                tracing::error!(batch = %id, error = %e, "cannot write a batch result");
                return;
            }
            drop(sinks);
            api.update(&id, |s| if ok { s.batch.request_counts.completed += 1 } else { s.batch.request_counts.failed += 1 });
            drop(permit);
        }));
    }
    for task in running {
        let _ = task.await;
    }
    finish(api, id)
}

/// Announces the output and error files and ends the batch (`cancelled` if it was cancelled).
fn finish(api: &BatchApi, id: &str) -> Result<(), String> {
    let stored = api.get(id).ok_or("the batch is gone")?;
    let now = crate::openai::unix_time();
    api.update(id, |s| {
        s.batch.finalizing_at.get_or_insert(now);
        if s.batch.status != "cancelling" {
            s.batch.status = "finalizing".into();
        }
    });
    let announce = |file_id: &str, name: &str| -> Result<Option<String>, String> {
        let bytes = std::fs::metadata(api.files.path(file_id)).map_or(0, |m| m.len());
        if bytes == 0 {
            return Ok(None);
        }
        let file = FileObject { id: file_id.to_string(), object: "file".into(), bytes, created_at: now, filename: format!("{id}_{name}.jsonl"), purpose: "batch_output".into(), status: "processed".into() };
        api.files.save(&file, stored.owner.as_deref()).map_err(|e| e.to_string())?;
        Ok(Some(file.id))
    };
    let output = announce(&stored.output_file, "output")?;
    let errors = announce(&stored.error_file, "error")?;
    api.update(id, |s| {
        s.batch.output_file_id = output;
        s.batch.error_file_id = errors;
        if s.batch.status == "cancelling" {
            s.batch.status = "cancelled".into();
            s.batch.cancelled_at = Some(now);
        } else {
            s.batch.status = "completed".into();
            s.batch.completed_at = Some(now);
        }
    });
    tracing::info!(batch = %id, "batch ended");
    Ok(())
}

/// Waits while an interactive request is queued for `model`: batch lines soak up idle capacity
/// and never hold a live request back (the engine also admits them after interactive ones).
async fn yield_to_interactive(state: &AppState, model: Option<&str>) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Some(m) = state.models.route(model) {
        let waiting = m.engine.handle().map_or(0, |h| h.stats().waiting.load(Relaxed));
        if waiting == 0 && m.queued.load(Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(YIELD_POLL).await;
    }
}

/// One line through the router, as its owner and at batch priority: its status and JSON body.
async fn run_line(mut router: axum::Router, endpoint: &str, line: &Line, owner: Option<String>) -> (u16, Value) {
    use tower_service::Service;
    let mut body = line.body.clone();
    if let Some(b) = body.as_object_mut() {
        b.remove("stream");
    }
    let mut req = axum::http::Request::builder().method("POST").uri(endpoint).header("content-type", "application/json").body(Body::from(body.to_string())).expect("a valid request");
    req.extensions_mut().insert(BatchLine { owner });
    let resp = match std::future::poll_fn(|cx| Service::<axum::extract::Request>::poll_ready(&mut router, cx)).await {
        Ok(()) => router.call(req).await,
        Err(e) => match e {},
    };
    let Ok(resp) = resp;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_LINE_RESPONSE_BYTES).await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// A new batch over `input_file_id`, with its result files named.
pub fn new_batch(api: &BatchApi, input_file_id: &str, endpoint: &str, completion_window: &str, metadata: Option<Value>, owner: Option<String>) -> StoredBatch {
    let now = crate::openai::unix_time();
    let output = api.files.reserve("output", "batch_output");
    let errors = api.files.reserve("errors", "batch_output");
    StoredBatch {
        batch: super::Batch {
            id: crate::routes::generation::item_id("batch"),
            object: "batch".into(),
            endpoint: endpoint.into(),
            errors: None,
            input_file_id: input_file_id.into(),
            completion_window: completion_window.into(),
            status: "validating".into(),
            output_file_id: None,
            error_file_id: None,
            created_at: now,
            in_progress_at: None,
            expires_at: Some(now + 24 * 3600),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            request_counts: Default::default(),
            metadata,
        },
        owner,
        output_file: output.id,
        error_file: errors.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_are_checked_before_anything_runs() {
        let ok = br#"{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "x"}}
{"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "y"}}
"#;
        let lines = parse_input(ok, "/v1/completions").unwrap();
        assert_eq!(lines.iter().map(|l| l.custom_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let bad = br#"{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
not json
{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}
{"custom_id": "c", "method": "GET", "url": "/v1/completions", "body": {}}
{"custom_id": "d", "method": "POST", "url": "/v1/chat/completions", "body": {}}
{"method": "POST", "url": "/v1/completions", "body": {}}
"#;
        let errors = parse_input(bad, "/v1/completions").unwrap_err();
        let codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["invalid_json_line", "duplicate_custom_id", "invalid_method", "mismatched_url", "missing_custom_id"]);
        assert_eq!(errors[1]["line"], 3);
        assert_eq!(parse_input(b"\n\n", "/v1/completions").unwrap_err()[0]["code"], "empty_file");
    }
}
