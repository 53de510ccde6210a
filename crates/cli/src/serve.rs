//! `rill serve`: load the models, start one engine thread each, and serve the OpenAI-compatible
//! API and the admin API on loopback listeners by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rill_server::admin::{AdminState, ModelState};
use rill_server::app::{AppState, ServedModel};
use rill_server::routes::router;

use crate::config_file::ConfigFile;
use crate::options::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve: `PATH` or `NAME=PATH` (repeatable). The name defaults to the file name
    /// without `.gguf`.
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

/// Everything `serve` needs, from flags or from a config file.
struct Plan {
    models: Vec<(String, PathBuf, ModelArgs)>,
    defaults: ModelArgs,
    host: String,
    port: u16,
    admin_port: u16,
    models_root: PathBuf,
    drain_timeout: u64,
    max_queue: usize,
    max_stored_responses: usize,
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
            (name, path, args.engine.clone())
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
    }
}

fn plan_from_file(path: &std::path::Path, flags: ServeArgs) -> Result<Plan, String> {
    let cfg = ConfigFile::read(path)?;
    let defaults = cfg.engine.apply(&flags.engine)?;
    let models = cfg.models.iter().map(|m| Ok((m.name.clone(), m.path.clone(), m.engine.apply(&defaults)?))).collect::<Result<Vec<_>, String>>()?;
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
    let state = AppState { metrics: Some(metrics), responses, ..AppState::default() };
    let admin = AdminState {
        app: state.clone(),
        states: Default::default(),
        models_root: plan.models_root.clone(),
        defaults: plan.defaults.settings(),
        max_queue: plan.max_queue,
        drain_timeout: Duration::from_secs(plan.drain_timeout),
    };
    for (name, path, engine) in &plan.models {
        if state.models.contains_key(name) {
            return Err(format!("two models are named {name:?}").into());
        }
        let model = ServedModel::load(name, path, &engine.settings(), plan.max_queue).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(model = %name, kv_tokens = model.info.kv_cache_tokens, "model loaded");
        state.add(model);
        admin.states.insert(name.clone(), ModelState::Ready);
    }

    let addr: SocketAddr = format!("{}:{}", plan.host, plan.port).parse().map_err(|e| format!("bad host/port: {e}"))?;
    let admin_addr: SocketAddr = format!("{}:{}", plan.host, plan.admin_port).parse().map_err(|e| format!("bad admin port: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let admin_listener = tokio::net::TcpListener::bind(admin_addr).await.map_err(|e| format!("cannot listen on {admin_addr}: {e}"))?;
        let names: Vec<String> = state.models.iter().map(|m| m.name.clone()).collect();
        eprintln!("rill: serving {} on http://{} (admin API on http://{})", names.join(", "), listener.local_addr()?, admin_listener.local_addr()?);
        let admin_server = axum::serve(admin_listener, rill_server::admin::router(admin)).with_graceful_shutdown(shutdown_signal());
        let draining = state.draining.clone();
        let api_server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let (a, b) = tokio::join!(api_server, admin_server);
        a?;
        b?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
