//! `rill`: the command line. `rill serve` runs the OpenAI-compatible HTTP server; `rill generate`
//! runs prompts from the command line through the same loading path; `rill bench` load-tests any
//! OpenAI-compatible server.

use rill_server::{bench, generate, serve};

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
    Serve(serve::ServeArgs),
    /// Load-test any OpenAI-compatible server (rill, llama.cpp's llama-server, ...) over HTTP.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RILL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
