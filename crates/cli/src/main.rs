//! `rill`: the command line. `rill serve` runs the OpenAI-compatible HTTP server; `rill generate`
//! runs prompts from the command line through the same loading path; `rill bench` load-tests any
//! OpenAI-compatible server.

mod bench_engine;
mod check;
mod config_file;
mod generate;
mod options;
mod perplexity;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "A fast, safe LLM server",
    after_help = "Examples:\n  rill serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf --served-model-name smollm2\n  rill generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt 'The capital of France is'\n  rill bench --base-url http://127.0.0.1:8080/v1 --endpoint chat --concurrency 1,16\n  rill perplexity --model models/SmolLM2-135M-Instruct.Q4_1.gguf --file text.txt --ctx 512\n\nLogs go to stderr: RILL_LOG sets the filter (default: warn, and info from rill itself)."
)]
struct Cli {
    /// Log lines as text for people or as JSON objects (one per line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// What is logged when RILL_LOG is not set: warnings from everything, and rill's own progress
/// (models loaded, canaries rolled back, engines put to sleep, batches ended).
const DEFAULT_LOG_FILTER: &str = "warn,rill_server=info,rill_cli=info,rill_engine=info,rill_model=info";

#[derive(Subcommand)]
enum Command {
    /// Generate text from one prompt and print it as it is produced.
    Generate(generate::GenerateArgs),
    /// Serve the OpenAI-compatible HTTP API.
    Serve(Box<serve::ServeArgs>),
    /// Load-test any OpenAI-compatible server (rill, llama.cpp's llama-server, ...) over HTTP.
    Bench(rill_bench::BenchArgs),
    /// Check a backend against the CPU reference: every kernel on random inputs, then greedy
    /// tokens of a model end to end (and optionally logits against a reference file).
    CheckBackend(check::CheckBackendArgs),
    /// Measure the executor alone: prefill tok/s and decode tok/s at several batch sizes, with
    /// the arithmetic rate and memory traffic they imply.
    BenchEngine(bench_engine::BenchEngineArgs),
    /// Score a text's perplexity as llama.cpp's llama-perplexity does, and the KL divergence
    /// from a llama-perplexity log-probability file.
    Perplexity(perplexity::PerplexityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Bench(args) => rill_bench::run(args),
        Command::CheckBackend(args) => check::run(args),
        Command::BenchEngine(args) => bench_engine::run(args),
        Command::Perplexity(args) => perplexity::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
