//! `rill bench`: a load generator for any OpenAI-compatible server (rill, llama.cpp's
//! llama-server, vLLM), so rill is measured the way its peers are, from the outside, over HTTP.
//!
//! Closed loop per concurrency level; synthetic prompts that differ per request so a prefix
//! cache cannot help; `ignore_eos` so every request generates `max_tokens`; token counts from
//! the server's own `usage`. Bounded: a request count per level and a time limit per level.

pub mod args;
pub mod client;
pub mod level;
pub mod prompt;
pub mod report;
pub mod sse;
pub mod stats;

use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

pub use args::BenchArgs;
use client::BenchClient;
use level::{run_level, Calibration};
use stats::LevelResult;

/// Which OpenAI endpoint the requests go to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /v1/completions` with a raw prompt.
    Completions,
    /// `POST /v1/chat/completions` with the prompt as one user message (the chat template adds
    /// tokens).
    Chat,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::Chat => "chat",
        }
    }
}

/// Everything one benchmark run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Up to and including `/v1`.
    pub base_url: String,
    /// `None`: the first model the server lists.
    pub model: Option<String>,
    pub concurrency: Vec<usize>,
    /// Requests per level; `None`: [`default_requests`].
    pub requests: Option<usize>,
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    pub stream: bool,
    pub endpoint: Endpoint,
    /// Wall-time limit of each level.
    pub level_timeout: Duration,
    pub seed: u64,
    pub api_key: Option<String>,
    /// Fit prompt lengths with the server's `/tokenize` when it has one.
    pub tokenize: bool,
    /// Chat requests carry a `response_format` JSON schema (constrained decoding).
    pub json_schema: bool,
    /// Every request's prompt, instead of synthetic ones of `prompt_tokens`.
    pub prompt_text: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: None,
            concurrency: vec![1, 4, 16, 64],
            requests: None,
            prompt_tokens: 128,
            max_tokens: 128,
            stream: true,
            endpoint: Endpoint::Completions,
            level_timeout: Duration::from_secs(600),
            seed: 0,
            api_key: None,
            tokenize: true,
            json_schema: false,
            prompt_text: None,
        }
    }
}

/// Requests at a level when not given: four rounds of the workers, at most 1024 (but at least
/// one per worker).
pub fn default_requests(concurrency: usize) -> usize {
    (4 * concurrency).min(1024).max(concurrency)
}

/// The run's parameters as they were used (the model resolved), for the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub base_url: String,
    pub model: String,
    pub endpoint: Endpoint,
    pub stream: bool,
    pub concurrency: Vec<usize>,
    pub requests: Option<usize>,
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    pub seed: u64,
    pub timeout_s: f64,
    /// `tokenize` when prompt lengths were fitted with the server's tokenizer, else `words`
    /// (one word taken as one token).
    pub prompt_calibration: &'static str,
    /// Requests held to a JSON schema.
    pub json_schema: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub parameters: Parameters,
    pub levels: Vec<LevelResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    #[error("{0} (pass --model to skip the model list)")]
    Model(String),
}

/// Runs every level of `cfg` in order against the server and returns the figures. Request
/// failures are part of the report, not errors; only an unusable configuration or an unknown
/// model name is an error.
pub async fn run_bench(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    run_bench_with(cfg, |_| {}).await
}

/// [`run_bench`], calling `on_level` after each level (for progress lines).
pub async fn run_bench_with(cfg: &BenchConfig, mut on_level: impl FnMut(&LevelResult)) -> Result<BenchReport, BenchError> {
    validate(cfg)?;
    let client = BenchClient::new(&cfg.base_url, cfg.api_key.clone()).map_err(BenchError::Config)?;
    let model = match &cfg.model {
        Some(m) => m.clone(),
        None => client.first_model().await.map_err(BenchError::Model)?,
    };
    let mut calibration = Calibration::new(cfg.tokenize);
    let mut levels = Vec::with_capacity(cfg.concurrency.len());
    for (index, &concurrency) in cfg.concurrency.iter().enumerate() {
        let requests = cfg.requests.unwrap_or_else(|| default_requests(concurrency));
        let prompts = calibration.prompts(&client, &model, cfg, index, requests).await;
        let result = run_level(&client, &model, cfg, concurrency, prompts).await;
        on_level(&result);
        levels.push(result);
    }
    let parameters = Parameters {
        base_url: cfg.base_url.clone(),
        model,
        endpoint: cfg.endpoint,
        stream: cfg.stream,
        concurrency: cfg.concurrency.clone(),
        requests: cfg.requests,
        prompt_tokens: cfg.prompt_tokens,
        max_tokens: cfg.max_tokens,
        seed: cfg.seed,
        timeout_s: cfg.level_timeout.as_secs_f64(),
        prompt_calibration: if calibration.measured() { "tokenize" } else { "words" },
        json_schema: cfg.json_schema,
    };
    Ok(BenchReport { parameters, levels })
}

/// Most workers and requests per level: the benchmark must stay bounded.
pub const MAX_CONCURRENCY: usize = 4096;
pub const MAX_REQUESTS: usize = 100_000;

fn validate(cfg: &BenchConfig) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Config(m));
    if cfg.concurrency.is_empty() {
        return bad("give at least one concurrency level".into());
    }
    if let Some(&c) = cfg.concurrency.iter().find(|&&c| c == 0 || c > MAX_CONCURRENCY) {
        return bad(format!("concurrency {c} is outside 1..={MAX_CONCURRENCY}"));
    }
    if let Some(r) = cfg.requests.filter(|&r| r == 0 || r > MAX_REQUESTS) {
        return bad(format!("requests {r} is outside 1..={MAX_REQUESTS}"));
    }
    if cfg.prompt_tokens == 0 || cfg.max_tokens == 0 {
        return bad("prompt tokens and max tokens must be at least 1".into());
    }
    if cfg.level_timeout.is_zero() {
        return bad("the level time limit must be positive".into());
    }
    // Built without TLS (it needs a C toolchain): benchmarks talk to local servers.
    if !cfg.base_url.starts_with("http://") {
        return bad(format!("the base URL must start with http:// (no TLS in this build), got {:?}", cfg.base_url));
    }
    Ok(())
}

/// `rill bench`: runs the levels, prints a table to stdout (stderr when the JSON goes to
/// stdout) and writes the JSON report if asked. Fails only when no request succeeded at all.
pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let json_out = args.json.clone();
    let cfg = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(run_bench_with(&cfg, |l| eprintln!("{}", report::progress_line(l))))?;
    let table = report::table(&report);
    match json_out.as_deref() {
        Some("-") => {
            eprint!("{table}");
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(path) => {
            print!("{table}");
            std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n").map_err(|e| format!("cannot write {path}: {e}"))?;
        }
        None => print!("{table}"),
    }
    if report.levels.iter().all(|l| l.ok == 0) {
        return Err("no request succeeded".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_request_counts_are_bounded() {
        assert_eq!(default_requests(1), 4);
        assert_eq!(default_requests(64), 256);
        assert_eq!(default_requests(512), 1024);
        assert_eq!(default_requests(2048), 2048);
    }

    #[test]
    fn bad_settings_are_refused_before_any_request() {
        let ok = BenchConfig::default();
        assert!(validate(&ok).is_ok());
        for cfg in [
            BenchConfig { concurrency: vec![], ..ok.clone() },
            BenchConfig { concurrency: vec![1, 0], ..ok.clone() },
            BenchConfig { requests: Some(0), ..ok.clone() },
            BenchConfig { max_tokens: 0, ..ok.clone() },
            BenchConfig { level_timeout: Duration::ZERO, ..ok.clone() },
            BenchConfig { base_url: "127.0.0.1:8080/v1".into(), ..ok.clone() },
        ] {
            assert!(matches!(validate(&cfg), Err(BenchError::Config(_))), "{cfg:?}");
        }
    }

    #[test]
    fn an_unreachable_server_fails_every_request_without_panicking() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = BenchConfig {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            model: Some("m".into()),
            concurrency: vec![2],
            requests: Some(3),
            prompt_tokens: 8,
            max_tokens: 4,
            ..BenchConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let report = rt.block_on(run_bench(&cfg)).unwrap();
        let level = &report.levels[0];
        assert_eq!((level.ok, level.failed), (0, 3));
        assert!(level.failures.keys().all(|r| r.starts_with("cannot connect")), "{:?}", level.failures);
        assert_eq!(report.parameters.prompt_calibration, "words");
    }
}
