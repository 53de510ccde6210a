//! The admin API, on its own listener: list, load and unload models (and their versions) while
//! the server runs, split a name's traffic between versions, and point aliases at them.
//! Loading happens in the background (202, then `ready` or `failed`); unloading stops routing
//! new requests to the model at once, lets in-flight ones finish (bounded by the drain timeout),
//! then drops the model, which joins its engine thread and frees its weights and KV cache.
//! Paths are resolved under the models root only; a path is read as `rill serve --model` reads
//! it (GGUF file, Hugging Face directory, or with `load_format: "dummy"` a config).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json, Router};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use dashmap::DashMap;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use serde_json::{json, Value};

use crate::app::{AppState, ServedModel};
use crate::registry::{valid_name, DEFAULT_VERSION};
use crate::auth::{require_key, AuthPolicy, Scope};
use crate::load::{check_source, LoadSettings};
use crate::openai::error::ApiError;
use crate::openapi::{AdminApi, Document};
use crate::routes::json_body::JsonBody;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
    Unloading,
}

#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    /// Every model version (`name@version`) the admin API knows of, including ones loading,
    /// failed or unloading.
    pub states: Arc<DashMap<String, ModelState>>,
    pub models_root: PathBuf,
    /// Engine options for models loaded through the API (their fields override some).
    pub defaults: LoadSettings,
    pub max_queue: usize,
    /// Idle time before a loaded model sleeps, unless its load says otherwise (`None`: never).
    pub keep_alive: Option<Duration>,
    pub drain_timeout: Duration,
    /// The listener is on a loopback address: only requests for a loopback host name are
    /// answered (against DNS rebinding).
    pub loopback: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct LoadRequest {
    name: String,
    /// Defaults to `default`; a second version of a name takes no traffic until a split gives it some.
    version: Option<String>,
    path: String,
    kv_cache_tokens: Option<usize>,
    max_num_seqs: Option<usize>,
    max_num_batched_tokens: Option<usize>,
    /// `off` or `ngram`, as `--speculation` (default: the server's).
    speculation: Option<String>,
    /// 1 to 16, as `--num-speculative-tokens`.
    num_speculative_tokens: Option<usize>,
    /// `fast` or `ggml`, as `--attention` (default: the server's).
    attention: Option<String>,
    /// `auto` (default), `gguf`, `hf` or `dummy`, as `--load-format`.
    load_format: Option<String>,
    dummy_dtype: Option<String>,
    dummy_seed: Option<u64>,
    /// A Jinja chat template to use instead of the model's own.
    chat_template: Option<String>,
    /// Seconds without requests after which the weights and KV pool are freed until the next
    /// request (default: the server's `--keep-alive`).
    keep_alive: Option<u64>,
    /// Never evicted to make room for another model (with `--allow-eviction`).
    pinned: Option<bool>,
}

/// The admin API, with its OpenAPI document at `/admin/openapi.json` (built from the same route
/// annotations, as the public router's).
pub fn router(state: AdminState) -> Router {
    let policy = AuthPolicy { keys: state.app.keys.clone(), scope: Scope::Admin, open_paths: Vec::new() };
    let (router, doc) = OpenApiRouter::with_openapi(AdminApi::openapi())
        .routes(routes!(list, load))
        .routes(routes!(describe, unload))
        .routes(routes!(set_traffic))
        .routes(routes!(drift))
        .routes(routes!(pin_drift_reference))
        .routes(routes!(list_aliases))
        .routes(routes!(usage))
        .routes(routes!(set_alias, remove_alias))
        .routes(routes!(crate::openapi::admin_document))
        .split_for_parts();
    router
        .fallback(crate::routes::not_found)
        .layer(axum::middleware::from_fn_with_state(policy, require_key))
        .layer(axum::middleware::from_fn_with_state(state.loopback, loopback_host_only))
        .layer(Extension(Document::new(doc)))
        .with_state(state)
}

/// A loopback listener answers only requests addressed to a loopback name: a web page cannot
/// reach it by pointing its own domain at 127.0.0.1 (DNS rebinding).
async fn loopback_host_only(State(loopback): State<bool>, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if loopback && !is_loopback_host(host) {
        return ApiError::new(403, "invalid_request_error", "The admin API answers only requests for localhost.").with_code("forbidden_host").into_response();
    }
    next.run(req).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[utoipa::path(get, path = "/admin/models", operation_id = "listModelVersions", tag = "admin", responses((status = 200, description = "`{\"data\": [...], \"aliases\": {...}}`: every model version with `name`, `version`, `state` \
    (`loading`, `ready`, `unloaded`, `failed`, `unloading`), `error`, and when loaded `path`, `kv_cache_tokens`, `memory_bytes`, `running`, `keep_alive`.", body = Object)))]
async fn list(State(s): State<AdminState>) -> Json<Value> {
    let mut data: Vec<Value> = s
        .states
        .iter()
        .map(|e| {
            let (state, error) = state_name(e.value());
            let (name, version) = crate::registry::split_version(e.key());
            let mut v = json!({"name": name, "version": version, "state": state, "error": error});
            if let Some(m) = version.and_then(|version| s.app.models.get(name, version)) {
                let i = &m.info;
                v["path"] = json!(i.path);
                v["kv_cache_tokens"] = json!(i.kv_cache_tokens);
                v["memory_bytes"] = json!(i.file_bytes + i.kv_cache_bytes as u64);
                v["running"] = json!(m.engine.handle().map_or(0, |h| h.stats().running.load(std::sync::atomic::Ordering::Relaxed)));
                v["keep_alive"] = json!(m.engine.keep_alive.map(|k| k.as_secs_f64()));
                if m.engine.is_asleep() {
                    v["state"] = json!("unloaded");
                }
            }
            v
        })
        .collect();
    data.sort_by(|a, b| (a["name"].as_str(), a["version"].as_str()).cmp(&(b["name"].as_str(), b["version"].as_str())));
    Json(json!({"data": data, "aliases": s.app.models.aliases()}))
}

fn state_name(state: &ModelState) -> (&'static str, Option<&str>) {
    match state {
        ModelState::Loading => ("loading", None),
        ModelState::Ready => ("ready", None),
        ModelState::Failed(m) => ("failed", Some(m)),
        ModelState::Unloading => ("unloading", None),
    }
}

/// `GET /admin/models/{name}`: its versions with their state, weight and latest requests'
/// statistics, the traffic split and rollback rules, and every rollback so far.
#[utoipa::path(get, path = "/admin/models/{name}", operation_id = "describeModel", tag = "admin", params(("name" = String, Path, description = "A model name.")),
    responses((status = 200, description = "`name`, `versions` (each with `state`, `weight`, recent statistics), `traffic` and `rollbacks`.", body = Object)))]
async fn describe(State(s): State<AdminState>, UrlPath(name): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    let mut out = s.app.models.describe(&name).unwrap_or_else(|| json!({"name": name, "versions": {}, "traffic": null, "rollbacks": []}));
    let mut known = false;
    for e in s.states.iter() {
        let (n, Some(version)) = crate::registry::split_version(e.key()) else { continue };
        if n != name {
            continue;
        }
        known = true;
        let (state, error) = state_name(e.value());
        let entry = &mut out["versions"][version];
        if entry.is_null() {
            *entry = json!({"weight": 0});
        }
        let asleep = entry["asleep"] == json!(true);
        entry["state"] = json!(if asleep && state == "ready" { "unloaded" } else { state });
        entry["error"] = json!(error);
    }
    if !known {
        return Err(ApiError::not_found_model(&name));
    }
    Ok(Json(out))
}

/// `PUT /admin/models/{name}/traffic`: `{"weights": {"v1": 90, "v2": 10}, "baseline"?, "rollback"?}`.
#[utoipa::path(put, path = "/admin/models/{name}/traffic", operation_id = "setTraffic", tag = "admin", params(("name" = String, Path, description = "A model name.")), request_body = crate::registry::traffic::TrafficRequest,
    responses((status = 200, description = "`{\"name\", \"traffic\": {\"weights\", \"baseline\", \"rollback\"}}`: the split now in force.", body = Object)))]
async fn set_traffic(State(s): State<AdminState>, UrlPath(name): UrlPath<String>, JsonBody(req): JsonBody<crate::registry::traffic::TrafficRequest>) -> Result<Json<Value>, ApiError> {
    if !s.app.models.has(&name) {
        return Err(ApiError::not_found_model(&name));
    }
    let traffic = s.app.models.set_traffic(&name, req).map_err(|e| ApiError::invalid("weights", e))?;
    tracing::info!(model = %name, weights = ?traffic.weights, baseline = %traffic.baseline, "traffic split");
    Ok(Json(json!({"name": name, "traffic": traffic})))
}

/// `GET /admin/models/{name}/drift`: each version's population stability index per feature
/// (prompt and output length, mean token logprob, finish reason), reference against recent.
#[utoipa::path(get, path = "/admin/models/{name}/drift", operation_id = "getDrift", tag = "admin", params(("name" = String, Path, description = "A model name.")),
    responses((status = 200, description = "Per version, the population stability index of each feature, reference against recent.", body = Object)))]
async fn drift(State(s): State<AdminState>, UrlPath(name): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    s.app.models.drift(&name).map(Json).ok_or_else(|| ApiError::not_found_model(&name))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PinReference {
    /// One version; every version when absent.
    version: Option<String>,
}

/// `POST /admin/models/{name}/drift/reference` (`{"version": "v2"}` for one version): the latest
/// requests become the reference that drift is measured against.
#[utoipa::path(post, path = "/admin/models/{name}/drift/reference", operation_id = "pinDriftReference", tag = "admin", params(("name" = String, Path, description = "A model name.")), request_body = PinReference,
    responses((status = 200, description = "The versions whose reference was reset.", body = Object)))]
async fn pin_drift_reference(State(s): State<AdminState>, UrlPath(name): UrlPath<String>, JsonBody(body): JsonBody<PinReference>) -> Result<Json<Value>, ApiError> {
    s.app.models.pin_drift_reference(&name, body.version.as_deref()).map(Json).ok_or_else(|| ApiError::not_found_model(&name))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageFilter {
    /// Only this API key's name.
    key: Option<String>,
    /// Only this model.
    model: Option<String>,
}

/// `GET /admin/usage?key=…&model=…`: requests and tokens per model, version and key, and the sum.
#[utoipa::path(get, path = "/admin/usage", operation_id = "getUsage", tag = "admin", params(UsageFilter),
    responses((status = 200, description = "`data`: requests and prompt, completion and cached tokens per model, version and key; `total`: their sum.", body = Object)))]
async fn usage(State(s): State<AdminState>, axum::extract::Query(f): axum::extract::Query<UsageFilter>) -> Json<Value> {
    let (rows, total) = s.app.models.usage.query(f.key.as_deref(), f.model.as_deref());
    let data: Vec<Value> = rows.into_iter().map(|(k, t)| json!({"model": k.model, "version": k.version, "key": k.key, "requests": t.requests, "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens, "cached_tokens": t.cached_tokens})).collect();
    Json(json!({"data": data, "total": total}))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    /// `name@version`, or a name (routed by its traffic split).
    target: String,
}

#[utoipa::path(get, path = "/admin/aliases", operation_id = "listAliases", tag = "admin", responses((status = 200, description = "`{\"aliases\": {alias: target}}`.", body = Object)))]
async fn list_aliases(State(s): State<AdminState>) -> Json<Value> {
    Json(json!({"aliases": s.app.models.aliases()}))
}

/// `PUT /admin/aliases/{alias}` `{"target": "chat@v1"}` (or a name, routed by its split).
#[utoipa::path(put, path = "/admin/aliases/{alias}", operation_id = "setAlias", tag = "admin", params(("alias" = String, Path, description = "The alias requests will name.")), request_body = AliasRequest,
    responses((status = 200, description = "`{\"alias\", \"target\"}`.", body = Object)))]
async fn set_alias(State(s): State<AdminState>, UrlPath(alias): UrlPath<String>, JsonBody(req): JsonBody<AliasRequest>) -> Result<Json<Value>, ApiError> {
    s.app.models.set_alias(&alias, &req.target).map_err(|e| ApiError::invalid("target", e))?;
    Ok(Json(json!({"alias": alias, "target": req.target})))
}

#[utoipa::path(delete, path = "/admin/aliases/{alias}", operation_id = "removeAlias", tag = "admin", params(("alias" = String, Path, description = "An alias.")),
    responses((status = 200, description = "`{\"alias\", \"state\": \"removed\"}`.", body = Object)))]
async fn remove_alias(State(s): State<AdminState>, UrlPath(alias): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    if !s.app.models.remove_alias(&alias) {
        return Err(ApiError::not_found(format!("no alias {alias:?}")));
    }
    Ok(Json(json!({"alias": alias, "state": "removed"})))
}

/// `rel` inside `root`: relative, no `..`, and still inside after resolving symlinks. Missing
/// files and paths outside the root give the same answer, so nothing leaks about the disk.
pub fn resolve_under(root: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApiError::invalid("path", "path must be relative to the models root, without '..'"));
    }
    let unavailable = || ApiError::invalid("path", format!("no model {rel:?} under the models root"));
    let root = root.canonicalize().map_err(|_| unavailable())?;
    let full = root.join(p).canonicalize().map_err(|_| unavailable())?;
    if !full.starts_with(&root) || !(full.is_file() || full.is_dir()) {
        return Err(unavailable());
    }
    Ok(full)
}

#[utoipa::path(post, path = "/admin/models", operation_id = "loadModel", tag = "admin", request_body = LoadRequest,
    responses((status = 202, description = "`{\"name\", \"version\", \"state\": \"loading\"}`: poll `GET /admin/models/{name}` until `ready` or `failed`.", body = Object)))]
async fn load(State(s): State<AdminState>, JsonBody(req): JsonBody<LoadRequest>) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !valid_name(&req.name) {
        return Err(ApiError::invalid("name", "name must be 1-128 characters of letters, digits, '.', '_' or '-'"));
    }
    let version = req.version.clone().unwrap_or_else(|| DEFAULT_VERSION.to_string());
    if !valid_name(&version) {
        return Err(ApiError::invalid("version", "version must be 1-128 characters of letters, digits, '.', '_' or '-'"));
    }
    if s.app.models.aliases().contains_key(&req.name) {
        return Err(ApiError::new(409, "invalid_request_error", format!("{:?} is an alias", req.name)).with_param("name"));
    }
    let id = format!("{}@{version}", req.name);
    let path = resolve_under(&s.models_root, &req.path)?;
    let settings = req.settings(&s.defaults)?;
    // The header or config is parsed now, so a malformed model is a 400 with the reader's error.
    check_source(&settings.model_source(&path)).map_err(|e| ApiError::invalid("path", e))?;
    match s.states.entry(id.clone()) {
        dashmap::Entry::Occupied(e) if !matches!(e.get(), ModelState::Failed(_)) => {
            return Err(ApiError::new(409, "invalid_request_error", format!("model {id:?} already exists")).with_param("name"));
        }
        entry => {
            entry.insert(ModelState::Loading);
        }
    }
    if req.keep_alive == Some(0) {
        return Err(ApiError::invalid("keep_alive", "keep_alive must be at least 1 second"));
    }
    let keep_alive = req.keep_alive.map(Duration::from_secs).or(s.keep_alive);
    let pinned = req.pinned.unwrap_or(false);
    let (name, state) = (req.name.clone(), s.clone());
    tokio::task::spawn_blocking(move || match ServedModel::load(&name, &path, &settings, state.max_queue, Some(Arc::downgrade(&state.app.models))).and_then(|m| state.app.add(m.versioned(&version).with_keep_alive(keep_alive).pinned(pinned))) {
        Ok(_) => {
            state.states.insert(id, ModelState::Ready);
        }
        Err(e) => {
            tracing::error!(model = %id, error = %e, "model failed to load");
            state.states.insert(id, ModelState::Failed(e));
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"name": req.name, "version": req.version.as_deref().unwrap_or(DEFAULT_VERSION), "state": "loading"}))))
}

impl LoadRequest {
    /// `defaults` with this request's fields applied on top.
    fn settings(&self, defaults: &LoadSettings) -> Result<LoadSettings, ApiError> {
        let mut s = defaults.clone();
        if let Some(format) = &self.load_format {
            s.load_format = format.parse().map_err(|e: String| ApiError::invalid("load_format", e))?;
        }
        if let Some(dtype) = &self.dummy_dtype {
            s.dummy_dtype = rill_model::dummy::parse_dtype(dtype).map_err(|e| ApiError::invalid("dummy_dtype", e))?;
        }
        s.dummy_seed = self.dummy_seed.unwrap_or(s.dummy_seed);
        if let Some(template) = &self.chat_template {
            s.options.chat_template = Some(template.clone());
        }
        for (param, value) in [("kv_cache_tokens", self.kv_cache_tokens), ("max_num_seqs", self.max_num_seqs), ("max_num_batched_tokens", self.max_num_batched_tokens)] {
            if value == Some(0) {
                return Err(ApiError::invalid(param, format!("{param} must be at least 1")));
            }
        }
        if let Some(tokens) = self.kv_cache_tokens {
            s.options.kv_budget = rill_model::loader::KvBudget::Tokens(tokens);
        }
        let capacity = &mut s.options.capacity;
        capacity.max_seqs = self.max_num_seqs.unwrap_or(capacity.max_seqs);
        capacity.max_tokens = self.max_num_batched_tokens.unwrap_or(capacity.max_tokens);
        let spec = &mut s.options.speculation;
        match self.speculation.as_deref() {
            None => {}
            Some("off") => spec.default_on = false,
            Some("ngram") => spec.default_on = true,
            Some(other) => return Err(ApiError::invalid("speculation", format!("speculation must be \"off\" or \"ngram\", got {other:?}"))),
        }
        match self.num_speculative_tokens {
            None => {}
            Some(n @ 1..=16) => spec.num_tokens = n,
            Some(_) => return Err(ApiError::invalid("num_speculative_tokens", "num_speculative_tokens must be 1 to 16")),
        }
        if let Some(attention) = &self.attention {
            s.options.attention = attention.parse().map_err(|e: String| ApiError::invalid("attention", e))?;
        }
        Ok(s)
    }
}

/// `DELETE /admin/models/{name}` unloads every version of `name`; `{name}@{version}` one.
#[utoipa::path(delete, path = "/admin/models/{name}", operation_id = "unloadModel", tag = "admin", params(("name" = String, Path, description = "`name` (every version) or `name@version`.")),
    responses((status = 202, description = "`{\"name\", \"state\": \"unloading\", \"versions\": [...]}`: in-flight requests finish first.", body = Object)))]
async fn unload(State(s): State<AdminState>, UrlPath(target): UrlPath<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (name, version) = crate::registry::split_version(&target);
    let ids: Vec<String> = s.states.iter().map(|e| e.key().clone()).collect();
    let mut unloading = Vec::new();
    for id in ids {
        let (n, Some(v)) = crate::registry::split_version(&id) else { continue };
        if n != name || version.is_some_and(|wanted| wanted != v) {
            continue;
        }
        match s.app.models.remove(name, v) {
            Some(model) => {
                s.states.insert(id.clone(), ModelState::Unloading);
                tokio::spawn(drain_and_drop(model, id.clone(), s.states.clone(), s.drain_timeout));
                unloading.push(id);
            }
            // A failed load can be cleared too.
            None => {
                if s.states.remove_if(&id, |_, v| matches!(v, ModelState::Failed(_))).is_some() {
                    unloading.push(id);
                }
            }
        }
    }
    if unloading.is_empty() {
        return Err(ApiError::not_found_model(&target));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"name": target, "state": "unloading", "versions": unloading}))))
}

/// Lets a version's in-flight requests finish (up to `timeout`), then drops it, which joins its
/// engine thread and frees its memory.
async fn drain_and_drop(model: Arc<ServedModel>, id: String, states: Arc<DashMap<String, ModelState>>, timeout: Duration) {
    let started = Instant::now();
    // In-flight requests hold their own reference; wait for them to finish.
    while Arc::strong_count(&model) > 1 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if Arc::strong_count(&model) > 1 {
        tracing::warn!(model = %id, "drain timeout: aborting in-flight requests");
        if let Some(handle) = model.engine.handle() {
            handle.abort_all();
        }
    }
    // The last reference (possibly an aborted stream's) joins the engine thread when dropped.
    tokio::task::spawn_blocking(move || drop(model)).await.ok();
    states.remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_only_inside_the_root() {
        let root = std::env::temp_dir().join(format!("rill-admin-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/m.gguf"), b"x").unwrap();
        let outside = root.with_extension("outside");
        std::fs::write(&outside, b"x").unwrap();
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(&outside, root.join("escape.gguf"));
        assert!(resolve_under(&root, "sub/m.gguf").is_ok());
        // A directory may be a Hugging Face model.
        assert!(resolve_under(&root, "sub").is_ok());
        for bad in ["", "/etc/passwd", "../x", "sub/../sub/m.gguf", "./sub/m.gguf", "missing.gguf", "escape.gguf", "."] {
            assert!(resolve_under(&root, bad).is_err(), "{bad:?} must be refused");
        }
        // A missing file and a symlink out of the root look the same to the client.
        let msg = |p: &str| resolve_under(&root, p).unwrap_err().message;
        assert_eq!(msg("missing.gguf").replace("missing.gguf", "X"), msg("escape.gguf").replace("escape.gguf", "X"));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(outside).unwrap();
    }
}
