//! `rill generate`: one prompt streamed to stdout with a timing line, or a file of prompts run
//! concurrently through the engine with an aggregate throughput line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rill_engine::{GenerateRequest, SamplingParams};
use rill_model::chat_template::{ChatMessage, ChatTemplate};
use rill_model::loader::KvBudget;
use rill_model::tokenizer::{IncrementalDecoder, Tokenizer};

use rill_server::load::StartedModel;

use crate::options::ModelArgs;

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Args)]
pub struct GenerateArgs {
    /// Path to a GGUF model file.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    engine: ModelArgs,
    /// Raw prompt text (no chat template).
    #[arg(long, group = "input")]
    prompt: Option<String>,
    /// A user message, rendered through the model's chat template.
    #[arg(long, group = "input")]
    chat: Option<String>,
    /// A file with one prompt per line, all run concurrently through the engine (raw text, or
    /// user messages with --lines-as-chat).
    #[arg(long, group = "input")]
    prompts_file: Option<PathBuf>,
    /// With --prompts-file: render each line through the chat template.
    #[arg(long, requires = "prompts_file")]
    lines_as_chat: bool,
    /// Optional system message for chat prompts.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
}

pub fn run(mut args: GenerateArgs) -> CliResult {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(format!("--temperature must be a finite number >= 0, got {}", args.temperature).into());
    }
    if args.prompt.is_none() && args.chat.is_none() && args.prompts_file.is_none() {
        return Err("give one of --prompt, --chat or --prompts-file".into());
    }
    if args.prompts_file.is_some() {
        return run_batch(&args);
    }
    // One sequence needs at most one context of KV, not a share of the machine's memory.
    if args.engine.kv_cache_tokens.is_none() && args.engine.kv_cache_bytes.is_none() {
        args.engine.kv_cache_tokens = Some(8192);
    }
    generate_one(&args)
}

/// One prompt through the engine (the path the server uses), streamed to stdout as it comes.
fn generate_one(args: &GenerateArgs) -> CliResult {
    let StartedModel { engine, tokenizer, chat_template, .. } = args.engine.settings().start_engine(&args.model, "generate")?;
    let text = match (&args.prompt, &args.chat) {
        (Some(p), _) => p.clone(),
        (None, Some(user)) => render_chat(chat_template.as_ref(), args.system.as_deref(), user)?,
        (None, None) => unreachable!("checked above"),
    };
    let prompt = tokenizer.encode(&text, true)?;
    let prompt_tokens = prompt.len();
    let started = Instant::now();
    let stream = engine.handle().submit(GenerateRequest { prompt, params: sampling_params(args), priority: 0, tenant: None })?;

    let mut out = std::io::stdout().lock();
    let mut decoder = IncrementalDecoder::continuing(&tokenizer, true);
    let mut first_token_at = None;
    let choices = stream.collect(|_, tok| {
        first_token_at.get_or_insert_with(Instant::now);
        let piece = decoder.push(tok.token);
        // A closed stdout (e.g. `| head`) must not abort generation with a panic.
        let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
    })?;
    let _ = writeln!(out, "{}", decoder.flush()).and_then(|_| out.flush());
    let generated = choices.first().map_or(0, |c| c.tokens.len());
    // The first token comes out of the prefill step; the decode rate is over the ones after it.
    let first = first_token_at.unwrap_or_else(Instant::now);
    let (prefill, decode) = ((first - started).as_secs_f64().max(1e-9), first.elapsed().as_secs_f64().max(1e-9));
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generated: {generated} tokens, {:.1} tok/s",
        prompt_tokens,
        prompt_tokens as f64 / prefill,
        generated.saturating_sub(1) as f64 / decode
    );
    engine.shutdown();
    Ok(())
}

/// The request `--temperature`, `--seed`, `--max-tokens` and `--ignore-eos` describe.
fn sampling_params(args: &GenerateArgs) -> SamplingParams {
    SamplingParams {
        temperature: args.temperature,
        seed: Some(args.seed),
        max_tokens: Some(args.max_tokens),
        ignore_eos: args.ignore_eos,
        ..SamplingParams::default()
    }
}

/// The chat template applied to one user message (the template writes any BOS itself, and
/// `encode` adds one only where the model asks for it).
fn render_chat(template: Option<&ChatTemplate>, system: Option<&str>, user: &str) -> Result<String, Box<dyn std::error::Error>> {
    let template = template.ok_or("this model has no chat template: use --prompt")?;
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", user));
    Ok(template.render(&messages, true)?)
}

/// Runs every prompt of the file through the engine at once and reports aggregate throughput.
fn run_batch(args: &GenerateArgs) -> CliResult {
    let path = args.prompts_file.as_ref().expect("batch mode");
    let lines: Vec<String> = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(format!("{} has no prompts", path.display()).into());
    }
    if args.engine.kv_cache_tokens.is_none() && args.engine.kv_cache_bytes.is_none() {
        eprintln!("KV cache: {:?} (set --kv-cache-tokens or --kv-cache-bytes to choose)", KvBudget::Auto);
    }
    let StartedModel { engine, tokenizer, chat_template, .. } = args.engine.settings().start_engine(&args.model, "generate")?;
    let prompts = lines
        .iter()
        .map(|l| {
            let text = if args.lines_as_chat { render_chat(chat_template.as_ref(), args.system.as_deref(), l)? } else { l.clone() };
            Ok(tokenizer.encode(&text, true)?)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let handle = engine.handle();
    let params = sampling_params(args);

    let started = Instant::now();
    let streams = prompts
        .iter()
        .map(|p| handle.submit(GenerateRequest { prompt: p.clone(), params: params.clone(), priority: 0, tenant: None }))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut prompt_tokens, mut generated) = (0, 0);
    let mut out = std::io::stdout().lock();
    // On a terminal only (indicatif draws nothing when stderr is not one); stdout stays the results.
    let bar = ProgressBar::new(prompts.len() as u64);
    bar.set_style(ProgressStyle::with_template("generating [{bar:30}] {pos}/{len} prompts, {msg} ({elapsed})").expect("static template").progress_chars("=> "));
    for (i, stream) in streams.into_iter().enumerate() {
        let text = collect_text(&tokenizer, stream)?;
        let (p, g) = (text.1.prompt_tokens, text.1.completion_tokens);
        prompt_tokens += p;
        generated += g;
        bar.suspend(|| {
            let _ = writeln!(out, "[{i}] {:?}", text.0);
        });
        bar.set_message(format!("{generated} tokens"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} prompts: {prompt_tokens} prompt tokens, {generated} generated tokens in {secs:.2} s | aggregate {:.1} generated tok/s, {:.1} total tok/s",
        prompts.len(),
        generated as f64 / secs,
        (prompt_tokens + generated) as f64 / secs
    );
    engine.shutdown();
    Ok(())
}

fn collect_text(tokenizer: &Tokenizer, stream: rill_engine::RequestStream) -> Result<(String, rill_engine::Usage), Box<dyn std::error::Error>> {
    let id = stream.id;
    let choices = stream.collect(|_, _| {}).map_err(|e| format!("request {id} failed: {e}"))?;
    let choice = choices.into_iter().next().ok_or("the request produced no choice")?;
    let mut decoder = IncrementalDecoder::new(tokenizer, true);
    let mut text: String = choice.tokens.iter().map(|t| decoder.push(t.token)).collect();
    text.push_str(&decoder.flush());
    Ok((text, choice.finish.map(|(_, usage)| usage).unwrap_or_default()))
}
