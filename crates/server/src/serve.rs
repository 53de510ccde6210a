//! `rill serve`: load the model, start its engine thread, and serve the OpenAI-compatible API on
//! a loopback listener by default.

use std::net::SocketAddr;

use clap::Args;
use rill_model::loader::LoadedModel;
use rill_model::runner::ModelRunner;

use crate::app::{router, AppState, ServedModel};
use crate::options::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Name clients use in the `model` field (default: the file name without `.gguf`).
    #[arg(long)]
    served_model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Waiting requests per model beyond which new ones get 503 with Retry-After.
    #[arg(long, default_value_t = crate::app::DEFAULT_MAX_QUEUE)]
    max_queue: usize,
}

pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let name = match &args.served_model_name {
        Some(n) => n.clone(),
        None => args.model.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
    };
    // The recorder must exist before the engine registers its metric handles.
    let metrics = metrics_recorder()?;
    let LoadedModel { transformer, tokenizer, chat_template } = args.model.load()?;
    let max_model_len = transformer.config().context_length;
    let kv = transformer.kv_layout();
    tracing::info!(model = %name, kv_tokens = kv.num_blocks * kv.block_size, "model loaded");
    let engine = ModelRunner::new(transformer, tokenizer.eos_token_ids().to_vec()).start(&name);
    let state = AppState { metrics: Some(metrics), ..AppState::default() };
    state.add(ServedModel::with_queue(name.clone(), engine, tokenizer, chat_template, max_model_len, args.max_queue));

    let addr: SocketAddr = format!("{}:{}", args.host, args.port).parse().map_err(|e| format!("bad --host/--port: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        eprintln!("rill: serving {name} on http://{}", listener.local_addr()?);
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// Seconds buckets for latency histograms (1 ms to 2 min), token-count buckets for step sizes.
const SECONDS_BUCKETS: [f64; 16] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const TOKEN_BUCKETS: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// Installs the process-wide Prometheus recorder that `/metrics` renders.
pub fn metrics_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_tokens".into()), &TOKEN_BUCKETS))
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
