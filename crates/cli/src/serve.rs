//! `rill serve`: load the models, start one engine thread each, and serve the OpenAI-compatible
//! API and the admin API on loopback listeners by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rill_server::admin::{AdminState, ModelState};
use rill_server::app::{AppState, ServedModel};
use rill_server::auth::{KeyStore, Keys, Scope};
use rill_server::listener::{serve, ServeOptions, Tls};
use rill_server::routes::router;

use crate::config_file::ConfigFile;
use crate::options::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve: `PATH`, `NAME=PATH` or `NAME@VERSION=PATH` (repeatable). The name
    /// defaults to the file name without `.gguf`; a name's first version takes its traffic.
    #[arg(long = "model", required_unless_present = "config")]
    models: Vec<String>,
    /// Read every setting from a TOML file instead of flags (see configs/rill.toml).
    #[arg(long, exclusive = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    engine: ModelArgs,
    /// Name clients use in the `model` field, for a single --model without NAME=.
    #[arg(long)]
    served_model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the admin API (load, list, unload models), on the same host.
    #[arg(long, default_value_t = 8081)]
    admin_port: u16,
    /// Directory under which the admin API resolves model paths.
    #[arg(long, default_value = "models")]
    models_root: PathBuf,
    /// Seconds an unloading model waits for in-flight requests before aborting them.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Waiting requests per model beyond which new ones get 503 with Retry-After.
    #[arg(long, default_value_t = rill_server::app::DEFAULT_MAX_QUEUE)]
    max_queue: usize,
    /// Responses API objects kept in memory (`store`), the oldest evicted first; 0 keeps none.
    #[arg(long, default_value_t = rill_server::responses::store::DEFAULT_CAPACITY)]
    max_stored_responses: usize,
    /// A key clients must send (`Authorization: Bearer KEY`, or `x-api-key`), repeatable; with
    /// none (and no keys file) the API is open.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// TOML `[[keys]]` with `name`, `key` or `key_sha256`, `scopes` (inference, admin); reloaded
    /// on SIGHUP.
    #[arg(long)]
    api_keys_file: Option<PathBuf>,
    /// A key for the admin API (repeatable). Required when --admin-host is not loopback.
    #[arg(long = "admin-api-key")]
    admin_api_keys: Vec<String>,
    /// Address of the admin listener (never the main one).
    #[arg(long, default_value = "127.0.0.1")]
    admin_host: String,
    /// Require a key for /metrics too (it is open by default, like /health and /ready).
    #[arg(long)]
    metrics_require_key: bool,
    /// Seconds every request may take at most (queue, prefill and decode) unless it asks for
    /// less (`timeout` field, `x-request-timeout` header); unset: no default.
    #[arg(long)]
    request_timeout: Option<f64>,
    /// When a model's KV pool does not fit in free memory, put the least recently used idle,
    /// unpinned model to sleep (it loads again on its next request) instead of refusing.
    #[arg(long)]
    allow_eviction: bool,
    /// Where `/v1/files` and `/v1/batches` keep their data (batches resume from here after a
    /// restart).
    #[arg(long, default_value = "rill-data")]
    data_dir: PathBuf,
    /// Largest file `/v1/files` accepts, in bytes.
    #[arg(long, default_value_t = 200 << 20)]
    max_batch_file_bytes: usize,
    /// Lines of one batch running at once (they run after interactive requests).
    #[arg(long, default_value_t = 8)]
    batch_concurrency: usize,
    /// Seconds without requests after which a model's weights and KV pool are freed (it stays
    /// listed, and the next request loads it again). Default: never.
    #[arg(long, value_name = "SECONDS")]
    keep_alive: Option<u64>,
    /// TLS certificate chain (PEM) for both listeners, with --tls-key; reloaded on SIGHUP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (or finish a TLS handshake); idle
    /// keep-alive connections are closed after it too.
    #[arg(long, default_value_t = 30)]
    header_timeout: u64,
    /// Open connections per listener beyond which new ones are closed at once.
    #[arg(long, default_value_t = rill_server::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
}

/// Who may use which listener.
struct Security {
    api_keys: Vec<String>,
    admin_api_keys: Vec<String>,
    api_keys_file: Option<PathBuf>,
    admin_host: String,
    metrics_require_key: bool,
}

impl Security {
    fn keys(&self) -> Result<Keys, String> {
        let keys = Keys::from_flags(&self.api_keys, &self.admin_api_keys);
        match &self.api_keys_file {
            Some(path) => keys.with_file(path),
            None => Ok(keys),
        }
    }
}

/// `NAME=PATH` or `PATH` (named after the file).
fn parse_model_spec(spec: &str) -> (String, PathBuf) {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => (name.to_string(), PathBuf::from(path)),
        _ => {
            let path = PathBuf::from(spec);
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
            (name, path)
        }
    }
}

/// One model to load at start.
struct PlannedModel {
    /// `name` or `name@version`.
    id: String,
    path: PathBuf,
    engine: ModelArgs,
    keep_alive: Option<u64>,
    pinned: bool,
}

/// Everything `serve` needs, from flags or from a config file.
struct Plan {
    models: Vec<PlannedModel>,
    keep_alive: Option<u64>,
    data_dir: PathBuf,
    max_batch_file_bytes: usize,
    batch_concurrency: usize,
    allow_eviction: bool,
    defaults: ModelArgs,
    host: String,
    port: u16,
    admin_port: u16,
    models_root: PathBuf,
    drain_timeout: u64,
    max_queue: usize,
    max_stored_responses: usize,
    security: Security,
    request_timeout: Option<f64>,
    tls: Option<(PathBuf, PathBuf)>,
    header_timeout: u64,
    max_connections: usize,
}

fn plan_from_flags(args: ServeArgs) -> Plan {
    let single_unnamed = args.models.len() == 1 && !args.models[0].contains('=');
    let models = args
        .models
        .iter()
        .map(|spec| {
            let (name, path) = parse_model_spec(spec);
            let name = match (&args.served_model_name, single_unnamed) {
                (Some(n), true) => n.clone(),
                _ => name,
            };
            PlannedModel { id: name, path, engine: args.engine.clone(), keep_alive: args.keep_alive, pinned: false }
        })
        .collect();
    Plan {
        models,
        defaults: args.engine,
        host: args.host,
        port: args.port,
        admin_port: args.admin_port,
        models_root: args.models_root,
        drain_timeout: args.drain_timeout,
        max_queue: args.max_queue,
        max_stored_responses: args.max_stored_responses,
        security: Security {
            api_keys: args.api_keys,
            admin_api_keys: args.admin_api_keys,
            api_keys_file: args.api_keys_file,
            admin_host: args.admin_host,
            metrics_require_key: args.metrics_require_key,
        },
        request_timeout: args.request_timeout,
        keep_alive: args.keep_alive,
        allow_eviction: args.allow_eviction,
        data_dir: args.data_dir,
        max_batch_file_bytes: args.max_batch_file_bytes,
        batch_concurrency: args.batch_concurrency,
        tls: args.tls_cert.zip(args.tls_key),
        header_timeout: args.header_timeout,
        max_connections: args.max_connections,
    }
}

fn plan_from_file(path: &std::path::Path, flags: ServeArgs) -> Result<Plan, String> {
    let cfg = ConfigFile::read(path)?;
    let defaults = cfg.engine.apply(&flags.engine)?;
    let keep_alive = cfg.keep_alive.or(flags.keep_alive);
    let models = cfg
        .models
        .iter()
        .map(|m| Ok(PlannedModel { id: m.id(), path: m.path.clone(), engine: m.engine.apply(&defaults)?, keep_alive: m.keep_alive.or(keep_alive), pinned: m.pinned.unwrap_or(false) }))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Plan {
        models,
        defaults,
        host: cfg.host.unwrap_or(flags.host),
        port: cfg.port.unwrap_or(flags.port),
        admin_port: cfg.admin_port.unwrap_or(flags.admin_port),
        models_root: cfg.models_root.unwrap_or(flags.models_root),
        drain_timeout: cfg.drain_timeout.unwrap_or(flags.drain_timeout),
        max_queue: cfg.max_queue.unwrap_or(flags.max_queue),
        max_stored_responses: cfg.max_stored_responses.unwrap_or(flags.max_stored_responses),
        security: Security {
            api_keys: Vec::new(),
            admin_api_keys: Vec::new(),
            api_keys_file: cfg.api_keys_file.or(flags.api_keys_file),
            admin_host: cfg.admin_host.unwrap_or(flags.admin_host),
            metrics_require_key: cfg.metrics_require_key.unwrap_or(flags.metrics_require_key),
        },
        request_timeout: cfg.request_timeout.or(flags.request_timeout),
        keep_alive,
        tls: cfg.tls_cert.zip(cfg.tls_key).or(flags.tls_cert.zip(flags.tls_key)),
        header_timeout: cfg.header_timeout.unwrap_or(flags.header_timeout),
        max_connections: cfg.max_connections.unwrap_or(flags.max_connections),
        allow_eviction: cfg.allow_eviction.unwrap_or(flags.allow_eviction),
        data_dir: cfg.data_dir.unwrap_or(flags.data_dir),
        max_batch_file_bytes: cfg.max_batch_file_bytes.unwrap_or(flags.max_batch_file_bytes),
        batch_concurrency: cfg.batch_concurrency.unwrap_or(flags.batch_concurrency),
    })
}

pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // With --config (exclusive), the flags hold only their defaults, which the file overrides.
    let plan = match args.config.clone() {
        Some(path) => plan_from_file(&path, args)?,
        None => plan_from_flags(args),
    };
    // The recorder must exist before the engines register their metric handles.
    let metrics = rill_server::prometheus::metrics_recorder()?;
    let responses = std::sync::Arc::new(rill_server::responses::store::ResponseStore::new(plan.max_stored_responses));
    let keys = plan.security.keys()?;
    let admin_ip: std::net::IpAddr = plan.security.admin_host.parse().map_err(|e| format!("--admin-host {:?}: {e}", plan.security.admin_host))?;
    if !admin_ip.is_loopback() && !keys.guards(Scope::Admin) {
        return Err(format!("the admin API would listen on {admin_ip}, which is not loopback, without a key: give --admin-api-key (or an admin-scoped key in --api-keys-file)").into());
    }
    let key_store = KeyStore::new(keys);
    let request_timeout = plan.request_timeout.map(rill_server::openai::validate::parse_timeout).transpose().map_err(|e| format!("--request-timeout: {e}"))?;
    let batches = rill_server::batch::BatchApi::open(&plan.data_dir, plan.max_batch_file_bytes, plan.batch_concurrency).map_err(|e| format!("--data-dir {}: {e}", plan.data_dir.display()))?;
    let state = AppState { metrics: Some(metrics), responses, batches: Some(std::sync::Arc::new(batches)), keys: key_store.clone(), metrics_require_key: plan.security.metrics_require_key, request_timeout, ..AppState::default() };
    let admin = AdminState {
        app: state.clone(),
        states: Default::default(),
        models_root: plan.models_root.clone(),
        defaults: plan.defaults.settings(),
        max_queue: plan.max_queue,
        keep_alive: plan.keep_alive.map(Duration::from_secs),
        drain_timeout: Duration::from_secs(plan.drain_timeout),
        loopback: admin_ip.is_loopback(),
    };
    state.models.allow_eviction.store(plan.allow_eviction, std::sync::atomic::Ordering::Relaxed);
    for PlannedModel { id, path, engine, keep_alive, pinned } in &plan.models {
        let (name, version) = rill_server::registry::split_version(id);
        let version = version.unwrap_or(rill_server::registry::DEFAULT_VERSION);
        if !rill_server::registry::valid_name(name) || !rill_server::registry::valid_name(version) {
            return Err(format!("model {id:?}: a name and a version are 1-128 characters of letters, digits, '.', '_' or '-'").into());
        }
        let model = ServedModel::load(name, path, &engine.settings(), plan.max_queue, Some(std::sync::Arc::downgrade(&state.models))).map_err(|e| format!("{}: {e}", path.display()))?.versioned(version).with_keep_alive(keep_alive.map(Duration::from_secs)).pinned(*pinned);
        tracing::info!(model = %name, version = %version, kv_tokens = model.info.kv_cache_tokens, "model loaded");
        let model = state.add(model)?;
        admin.states.insert(model.id(), ModelState::Ready);
    }

    let addr: SocketAddr = format!("{}:{}", plan.host, plan.port).parse().map_err(|e| format!("bad host/port: {e}"))?;
    let admin_addr = SocketAddr::new(admin_ip, plan.admin_port);
    let drain_timeout = Duration::from_secs(plan.drain_timeout);
    let tls = plan.tls.as_ref().map(|(cert, key)| Tls::load(cert, key)).transpose().map_err(|e| format!("TLS: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serve_options = ServeOptions { tls: tls.clone(), header_timeout: Duration::from_secs(plan.header_timeout.max(1)), max_connections: plan.max_connections.max(1) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let admin_listener = tokio::net::TcpListener::bind(admin_addr).await.map_err(|e| format!("cannot listen on {admin_addr}: {e}"))?;
        let names: Vec<String> = state.models.all().iter().map(|m| if m.version == rill_server::registry::DEFAULT_VERSION { m.name.clone() } else { m.id() }).collect();
        eprintln!("rill: serving {} on {scheme}://{} (admin API on {scheme}://{})", names.join(", "), listener.local_addr()?, admin_listener.local_addr()?);
        tokio::spawn(reload_on_sighup(plan.security, key_store, tls));
        tokio::spawn(state.models.clone().housekeeping());
        // SIGTERM or SIGINT: stop accepting (and /ready says 503), let requests in flight finish
        // up to the drain timeout, then end the rest with an `abort` finish and exit.
        let (signalled_tx, signalled) = tokio::sync::watch::channel(false);
        let draining = state.draining.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
            eprintln!("rill: shutting down: finishing requests in flight (up to {drain_timeout:?})");
            let _ = signalled_tx.send(true);
        });
        let until_signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let admin_server = serve(admin_listener, rill_server::admin::router(admin), serve_options.clone(), until_signalled(signalled.clone()));
        let api_router = router(state.clone());
        // Batches a previous run left unfinished go on where their output ends.
        if let Some(batches) = &state.batches {
            for id in batches.unfinished() {
                eprintln!("rill: resuming batch {id}");
                rill_server::batch::runner::start(state.clone(), batches.clone(), id);
            }
        }
        let api_server = serve(listener, api_router, serve_options, until_signalled(signalled.clone()));
        let servers = async { tokio::join!(api_server, admin_server) };
        let deadline = async {
            until_signalled(signalled).await;
            tokio::time::sleep(drain_timeout).await;
            for model in state.models.all() {
                tracing::warn!(model = %model.id(), "drain timeout: aborting requests in flight");
                if let Some(handle) = model.engine.handle() {
                    handle.abort_all();
                }
            }
            // Time for the final events to reach the clients.
            tokio::time::sleep(FINAL_EVENTS_GRACE).await;
        };
        tokio::select! {
            (a, b) = servers => {
                a?;
                b?;
            }
            () = deadline => eprintln!("rill: drain timeout: exiting with connections still open"),
        }
        eprintln!("rill: stopped");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// SIGHUP rereads the keys file and the TLS files, without dropping connections; files that do
/// not load keep what is in force.
async fn reload_on_sighup(security: Security, store: KeyStore, tls: Option<Tls>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        if security.api_keys_file.is_some() {
            match security.keys() {
                Ok(keys) => {
                    store.replace(keys);
                    eprintln!("rill: API keys reloaded");
                }
                Err(e) => eprintln!("rill: API keys not reloaded, the previous keys stay in force: {e}"),
            }
        }
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => eprintln!("rill: TLS certificate reloaded"),
                Err(e) => eprintln!("rill: TLS certificate not reloaded, the previous one stays in use: {e}"),
            }
        }
    }
}

/// How long aborted requests get to send their final events before the process exits.
const FINAL_EVENTS_GRACE: Duration = Duration::from_secs(2);

/// SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and systemd send).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
