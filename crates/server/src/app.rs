//! The served models: the state every handler reads. Each model has its own engine thread;
//! handlers talk to it only through its `EngineHandle` and per-request streams.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rill_engine::Engine;

use crate::engine_slot::{EngineSlot, Reload};
use rill_model::chat_template::ChatTemplate;
use rill_model::grammar::Grammars;

use crate::reasoning::ReasoningMarkers;
use rill_model::tokenizer::Tokenizer;

use crate::load::{source_bytes, LoadSettings, StartedModel};

/// Default bound on a model's waiting queue.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// One loaded model behind its engine thread.
pub struct ServedModel {
    pub name: String,
    /// Which version of `name` this is (`DEFAULT_VERSION` when loaded without one).
    pub version: String,
    /// How this version's requests went (for rollback rules).
    pub monitor: Arc<crate::registry::monitor::VersionMonitor>,
    /// Where its requests' usage is counted (the registry's ledger once it is served).
    pub usage: Arc<crate::registry::usage::UsageLedger>,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub max_model_len: usize,
    pub vocab_size: usize,
    pub created: u64,
    /// Waiting requests beyond which new ones get 503 + Retry-After.
    pub max_queue: usize,
    /// Requests submitted that have not produced their first event: counted at submit, so a
    /// burst cannot slip past `max_queue` between engine steps.
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
    pub info: ModelInfo,
    /// The engine thread (asleep after `keep_alive` idle, woken by the next request); dropping
    /// the model stops it and frees its memory.
    pub engine: EngineSlot,
    /// The grammar compiler for constrained outputs, built on the first request that needs one.
    grammars: OnceLock<Result<Arc<Grammars>, String>>,
    /// `<think>`/`</think>` where the model thinks in such spans (its output is split into
    /// `reasoning_content` and `content`).
    pub reasoning: Option<ReasoningMarkers>,
}

/// What the admin API reports about a loaded model.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub path: std::path::PathBuf,
    pub file_bytes: u64,
    pub kv_cache_tokens: usize,
    pub kv_cache_bytes: usize,
}

impl ServedModel {
    /// Loads `path` as `settings` say and starts its engine thread; with `room`, a KV pool that
    /// does not fit may evict idle models of that registry (see `Registry::make_room`).
    pub fn load(name: &str, path: &std::path::Path, settings: &LoadSettings, max_queue: usize, room: Option<std::sync::Weak<crate::registry::Registry>>) -> Result<ServedModel, String> {
        let reload = Reload { name: name.to_string(), path: path.to_path_buf(), settings: settings.clone(), room };
        let StartedModel { engine, tokenizer, chat_template, max_model_len, kv_cache_tokens, kv_cache_bytes } = reload.start()?;
        let info = ModelInfo { path: path.to_path_buf(), file_bytes: source_bytes(&settings.model_source(path)), kv_cache_tokens, kv_cache_bytes };
        if kv_cache_tokens == 0 {
            return Err("the KV cache would hold no tokens: give it more memory (kv_cache_tokens or kv_cache_bytes)".into());
        }
        warm_up(&engine, &tokenizer)?;
        // A request longer than the KV pool can hold could never run: advertise (and check
        // requests against) what the pool holds when it is less than the model's context.
        let max_model_len = max_model_len.min(kv_cache_tokens);
        let mut model = ServedModel::with_queue(name.to_string(), engine, tokenizer, chat_template, max_model_len, max_queue);
        model.info = info;
        model.engine.reload = Some(reload);
        Ok(model)
    }
}

impl ServedModel {
    pub fn new(name: String, engine: Engine, tokenizer: Tokenizer, chat_template: Option<ChatTemplate>, max_model_len: usize) -> ServedModel {
        Self::with_queue(name, engine, tokenizer, chat_template, max_model_len, DEFAULT_MAX_QUEUE)
    }

    pub fn with_queue(name: String, engine: Engine, tokenizer: Tokenizer, chat_template: Option<ChatTemplate>, max_model_len: usize, max_queue: usize) -> ServedModel {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let vocab_size = tokenizer.vocab_size();
        let reasoning = ReasoningMarkers::of(|t| tokenizer.token_id(t).is_some());
        ServedModel {
            name,
            version: crate::registry::DEFAULT_VERSION.to_string(),
            monitor: Arc::default(),
            usage: Arc::default(),
            tokenizer: Arc::new(tokenizer),
            chat_template,
            max_model_len,
            vocab_size,
            created,
            max_queue,
            queued: Arc::default(),
            info: ModelInfo::default(),
            engine: EngineSlot::new(engine),
            grammars: OnceLock::new(),
            reasoning,
        }
    }

    /// This model as version `version` of its name.
    pub fn versioned(mut self, version: &str) -> ServedModel {
        self.version = version.to_string();
        self
    }

    /// Idle for `keep_alive`, the engine sleeps until the next request (models loaded from a path).
    pub fn with_keep_alive(mut self, keep_alive: Option<std::time::Duration>) -> ServedModel {
        self.engine.keep_alive = keep_alive;
        self
    }

    /// A pinned model is never evicted to make room for another.
    pub fn pinned(mut self, pinned: bool) -> ServedModel {
        self.engine.pinned = pinned;
        self
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The model's grammar compiler (its vocabulary as llguidance's token trie), made once.
    pub fn grammars(&self) -> Result<Arc<Grammars>, String> {
        self.grammars.get_or_init(|| Grammars::new(self.tokenizer.clone()).map(Arc::new).map_err(|e| e.to_string())).clone()
    }
}

/// One short request through the whole path (engine thread, forward pass, sampler) before the
/// model is announced: a model that cannot answer it is not ready.
fn warm_up(engine: &Engine, tokenizer: &Tokenizer) -> Result<(), String> {
    let prompt = tokenizer.encode("Hello", true).map_err(|e| e.to_string())?;
    let params = rill_engine::SamplingParams { temperature: 0.0, max_tokens: Some(1), ..Default::default() };
    let mut stream = engine.handle().submit(rill_engine::GenerateRequest { prompt, params, priority: 0, tenant: None }).map_err(|e| e.to_string())?;
    loop {
        match stream.blocking_recv() {
            Some(rill_engine::StreamEvent::Token { .. }) => {}
            Some(rill_engine::StreamEvent::Finished { .. }) => return Ok(()),
            Some(rill_engine::StreamEvent::Failed(e)) => return Err(format!("warm-up failed: {e}")),
            None => return Err("warm-up: the engine stopped".into()),
        }
    }
}

#[derive(Clone, Default)]
pub struct AppState {
    /// Set when the server begins shutting down: `/ready` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The loaded models by name and version, their aliases and traffic splits.
    pub models: Arc<crate::registry::Registry>,
    /// Renders `/metrics`; `None` when this process installed no Prometheus recorder.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Responses kept for `GET /v1/responses/{id}` and `previous_response_id`.
    pub responses: Arc<crate::responses::store::ResponseStore>,
    /// API keys (none: the API is open); shared with the admin listener.
    pub keys: crate::auth::KeyStore,
    /// `/metrics` needs a key like the API (else it is open like the probes).
    pub metrics_require_key: bool,
    /// `/v1/files` and `/v1/batches` (`None`: the Batch API is off, as in tests that need no disk).
    pub batches: Option<crate::batch::SharedBatchApi>,
    /// Every request's deadline unless it asks for a shorter one.
    pub request_timeout: Option<std::time::Duration>,
}

impl AppState {
    /// Serves `model` (as its name's first version, or an extra version without traffic).
    pub fn add(&self, model: ServedModel) -> Result<Arc<ServedModel>, String> {
        self.models.insert(model)
    }

    /// The model a request names (see [`crate::registry::Registry::route`]).
    pub fn model(&self, name: Option<&str>) -> Option<Arc<ServedModel>> {
        self.models.route(name)
    }
}
