//! One concurrency level as a closed loop: `concurrency` workers, each sending its next request
//! when its previous one ends, until the level's requests are sent or its time limit passes
//! (requests still running then are dropped, which cancels them on the server, and count as
//! failed).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::client::{BenchClient, RequestSpec};
use super::prompt::{next_word_count, PromptWords};
use super::stats::{aggregate, LevelResult, RequestResult};
use super::BenchConfig;

/// A request's prompt and, when the server could count them, its tokens.
#[derive(Clone)]
pub struct Prompt {
    pub text: String,
    pub tokens: Option<u64>,
}

/// Turns `--prompt-tokens` into a number of words: measured with the server's tokenizer when
/// it has one, else one token per word.
pub struct Calibration {
    /// `None` until the first try; `Some(false)` once the server failed to tokenize.
    tokenize: Option<bool>,
    words_per_token: f64,
}

/// Tries per prompt to hit the exact token count before keeping the closest.
const FIT_TRIES: usize = 6;

impl Calibration {
    pub fn new(use_tokenize: bool) -> Calibration {
        Calibration { tokenize: if use_tokenize { None } else { Some(false) }, words_per_token: 1.0 }
    }

    /// Whether prompt lengths were measured by the server's tokenizer.
    pub fn measured(&self) -> bool {
        self.tokenize == Some(true)
    }

    /// The prompts of one level, `count` of them, about `cfg.prompt_tokens` tokens each.
    pub async fn prompts(&mut self, client: &BenchClient, model: &str, cfg: &BenchConfig, level: usize, count: usize) -> Vec<Prompt> {
        if let Some(text) = &cfg.prompt_text {
            let tokens = client.count_tokens(model, text).await.map(|t| t as u64);
            return vec![Prompt { text: text.clone(), tokens }; count];
        }
        let target = cfg.prompt_tokens;
        let mut out = Vec::with_capacity(count);
        for index in 0..count {
            let mut words = ((target as f64 * self.words_per_token).round() as usize).max(1);
            let mut best: Option<(usize, Prompt)> = None;
            let mut tried = HashSet::new();
            while self.tokenize != Some(false) && tried.len() < FIT_TRIES && tried.insert(words) {
                let text = PromptWords::text(cfg.seed, level, index, words);
                let Some(tokens) = client.count_tokens(model, &text).await else {
                    self.tokenize = Some(false);
                    break;
                };
                self.tokenize = Some(true);
                if tokens > 0 {
                    self.words_per_token = words as f64 / tokens as f64;
                }
                let miss = tokens.abs_diff(target);
                if best.as_ref().is_none_or(|(m, _)| miss < *m) {
                    best = Some((miss, Prompt { text, tokens: Some(tokens as u64) }));
                }
                if miss == 0 {
                    break;
                }
                words = next_word_count(words, tokens, target);
            }
            out.push(match best {
                Some((_, p)) => p,
                None => Prompt { text: PromptWords::text(cfg.seed, level, index, words), tokens: None },
            });
        }
        out
    }
}

/// Runs one level's `prompts` (one request each) at `concurrency`.
pub async fn run_level(client: &BenchClient, model: &str, cfg: &BenchConfig, concurrency: usize, prompts: Vec<Prompt>) -> LevelResult {
    let requests = prompts.len();
    let prompts = Arc::new(prompts);
    let next = Arc::new(AtomicUsize::new(0));
    let model: Arc<str> = model.into();
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + cfg.level_timeout);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(requests) {
        let (client, prompts, next, model) = (client.clone(), prompts.clone(), next.clone(), model.clone());
        let (endpoint, max_tokens, stream, json_schema) = (cfg.endpoint, cfg.max_tokens, cfg.stream, cfg.json_schema);
        workers.spawn(async move {
            let mut results: Vec<RequestResult> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= prompts.len() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                let prompt = &prompts[i];
                let spec = RequestSpec { endpoint, model: &model, prompt: &prompt.text, max_tokens, stream, json_schema };
                match tokio::time::timeout_at(deadline, client.generate(&spec, prompt.tokens)).await {
                    Ok(r) => results.push(r),
                    Err(_) => {
                        results.push(Err("cancelled at the level time limit".into()));
                        break;
                    }
                }
            }
            results
        });
    }
    let mut results = Vec::with_capacity(requests);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(r) => results.extend(r),
            Err(e) => results.push(Err(format!("worker failed: {e}"))),
        }
    }
    aggregate(concurrency, requests, &results, start.elapsed())
}
