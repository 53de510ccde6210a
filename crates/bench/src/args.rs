//! `rill bench` flags and how they become a [`BenchConfig`].

use std::time::Duration;

use clap::{ArgAction, Args};

use super::{BenchConfig, Endpoint, MAX_CONCURRENCY, MAX_REQUESTS};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server's OpenAI base URL, up to and including /v1.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    pub base_url: String,
    /// The model field of every request (default: the first model GET /v1/models lists).
    #[arg(long)]
    pub model: Option<String>,
    /// Concurrency levels, run in order (closed loop: each worker sends its next request when
    /// the previous one ends).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub concurrency: Vec<usize>,
    /// Requests per level (default: 4 × concurrency, at most 1024).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Prompt length in tokens (fitted with the server's /tokenize when it has one, else one
    /// word per token).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens each request generates (sent with ignore_eos, so exactly this many).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Stream over SSE (needed for TTFT and inter-token latency).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub stream: bool,
    #[arg(long, value_enum, default_value_t = Endpoint::Completions)]
    pub endpoint: Endpoint,
    /// Wall-time limit of each level in seconds; requests still running then count as failed.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
    /// Write the JSON report to this file ("-": stdout, the table then goes to stderr).
    #[arg(long)]
    pub json: Option<String>,
    /// Seed of the synthetic prompts (the same seed gives the same prompts).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Do not call the server's /tokenize to fit prompt lengths.
    #[arg(long)]
    pub no_tokenize: bool,
    /// Constrained decoding: chat requests carry a `response_format` JSON schema (an array of at
    /// least 1000 short strings, which no output of `--max-tokens` completes), so every token is
    /// masked.
    #[arg(long)]
    pub json_schema: bool,
    /// Every request's prompt is this file's text (instead of synthetic prompts of
    /// --prompt-tokens): e.g. a text to edit or summarise.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt_tokens")]
    pub prompt_file: Option<std::path::PathBuf>,
}

impl BenchArgs {
    pub fn into_config(self) -> Result<BenchConfig, String> {
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 86_400.0) {
            return Err(format!("--timeout-s must be a number of seconds in (0, 86400], got {}", self.timeout_s));
        }
        if let Some(&c) = self.concurrency.iter().find(|&&c| c == 0 || c > MAX_CONCURRENCY) {
            return Err(format!("--concurrency {c} is outside 1..={MAX_CONCURRENCY}"));
        }
        if self.json_schema && self.endpoint != Endpoint::Chat {
            return Err("--json-schema needs --endpoint chat (response_format is a chat field)".into());
        }
        if let Some(r) = self.requests.filter(|&r| r == 0 || r > MAX_REQUESTS) {
            return Err(format!("--requests {r} is outside 1..={MAX_REQUESTS}"));
        }
        let prompt_text = match &self.prompt_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("--prompt-file {}: {e}", path.display()))?),
            None => None,
        };
        Ok(BenchConfig {
            base_url: self.base_url.trim_end_matches('/').to_string(),
            model: self.model,
            concurrency: self.concurrency,
            requests: self.requests,
            prompt_tokens: self.prompt_tokens,
            max_tokens: self.max_tokens,
            stream: self.stream,
            endpoint: self.endpoint,
            level_timeout: Duration::from_secs_f64(self.timeout_s),
            seed: self.seed,
            api_key: self.api_key,
            tokenize: !self.no_tokenize,
            json_schema: self.json_schema,
            prompt_text,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.bench.into_config()
    }

    #[test]
    fn defaults_and_flags() {
        let d = parse(&[]).unwrap();
        assert_eq!(d.concurrency, vec![1, 4, 16, 64]);
        assert!(d.stream && d.tokenize);
        assert_eq!((d.prompt_tokens, d.max_tokens, d.requests), (128, 128, None));
        let c = parse(&[
            "--base-url", "http://127.0.0.1:18090/v1/", "--concurrency", "16,64", "--stream", "false", "--endpoint", "chat",
            "--requests", "10", "--timeout-s", "2.5", "--no-tokenize",
        ])
        .unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:18090/v1");
        assert_eq!(c.concurrency, vec![16, 64]);
        assert!(!c.stream && !c.tokenize);
        assert_eq!(c.endpoint, Endpoint::Chat);
        assert_eq!(c.requests, Some(10));
        assert_eq!(c.level_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse(&["--timeout-s", "0"]).is_err());
        assert!(parse(&["--timeout-s", "nan"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--requests", "0"]).is_err());
        assert!(parse(&["--stream", "maybe"]).is_err());
    }
}
