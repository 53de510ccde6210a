//! `rill`: the command line. `rill serve` runs the OpenAI-compatible HTTP server; `rill generate`
//! runs prompts from the command line through the same loading path; `rill bench` load-tests any
//! OpenAI-compatible server.

mod bench_engine;
mod check;
mod config_file;
mod generate;
mod options;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rill", version, about = "A fast, safe LLM server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RILL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Bench(args) => rill_bench::run(args),
        Command::CheckBackend(args) => check::run(args),
        Command::BenchEngine(args) => bench_engine::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
