//! `rill generate`: load a model, run one prompt (raw or through the chat template), stream the
//! text to stdout, and finish with one timing line on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_backend_cpu::CpuBackend;
use rill_model::chat_template::ChatMessage;
use rill_model::generate::{generate, GenerateParams};
use rill_model::loader::{load, LoadOptions, LoadedModel};
use rill_model::tokenizer::IncrementalDecoder;

#[derive(Args)]
pub struct GenerateArgs {
    /// Path to a GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Raw prompt text (no chat template).
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    prompt: Option<String>,
    /// A user message, rendered through the model's chat template.
    #[arg(long)]
    chat: Option<String>,
    /// Optional system message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
}

/// Loading faster than this shows no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);

pub fn run(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(format!("--temperature must be a finite number >= 0, got {}", args.temperature).into());
    }
    let backend = CpuBackend::new(args.threads)?;
    let model = load_with_progress(&args, backend)?;
    let LoadedModel { mut transformer, tokenizer, chat_template } = model;

    let (text, add_special) = match (&args.prompt, &args.chat) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(user)) => {
            let template = chat_template.as_ref().ok_or("this model has no chat template: use --prompt")?;
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage { role: "system".into(), content: system.clone() });
            }
            messages.push(ChatMessage { role: "user".into(), content: user.clone() });
            // The template writes any BOS itself.
            (template.render(&messages, true)?, false)
        }
        (None, None) => unreachable!("clap requires --prompt or --chat"),
    };
    let prompt = tokenizer.encode(&text, add_special)?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        seed: args.seed,
        stop_tokens: if args.ignore_eos { Vec::new() } else { tokenizer.eos_token_ids().to_vec() },
        top_logprobs: 0,
    };

    let mut out = std::io::stdout().lock();
    let mut decoder = IncrementalDecoder::new(&tokenizer, true);
    let stats = generate(&mut transformer, &prompt, &params, |tok| {
        let piece = decoder.push(tok.id);
        // A closed stdout (e.g. `| head`) must not abort generation with a panic.
        let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
    })?;
    let _ = writeln!(out, "{}", decoder.flush()).and_then(|_| out.flush());
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s",
        stats.prompt_tokens,
        stats.prefill_tokens_per_sec(),
        stats.generated_tokens,
        stats.decode_tokens_per_sec()
    );
    Ok(())
}

fn load_with_progress(args: &GenerateArgs, backend: CpuBackend) -> Result<LoadedModel<CpuBackend>, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} tensors").expect("static template").progress_chars("=> "));
    bar.set_message(args.model.display().to_string());
    let mut progress = |done: usize, total: usize| {
        if bar.is_hidden() && started.elapsed() > PROGRESS_DELAY {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let model = load(&args.model, backend, &LoadOptions::default(), &mut progress);
    bar.finish_and_clear();
    Ok(model?)
}
