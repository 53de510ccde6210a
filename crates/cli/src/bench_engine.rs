//! `rill bench-engine`: the executor's speed without HTTP or scheduling — prefill tok/s with the
//! arithmetic rate it implies, and decode tok/s at several batch sizes with the memory traffic
//! it implies (weights once per step plus every sequence's K/V). On a dummy model with a real
//! architecture's shapes (`--load-format dummy --model configs/models/llama-3-8b.json`) this
//! measures a GPU without carrying weights. Greedy tokens are picked on the host from the
//! logits read back, so the figures include that round trip, as serving does.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rill_backend::Backend;
use rill_engine::ForwardBatch;
use rill_model::Transformer;

use rill_server::device::{with_backend, BackendJob};
use crate::options::ModelArgs;

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Args, Debug, Clone)]
pub struct BenchEngineArgs {
    /// A GGUF file, an HF directory, or a config JSON with --load-format dummy.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub engine: ModelArgs,
    /// Decode batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub batch: Vec<usize>,
    /// Context each decoding sequence holds before the timed steps.
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// Timed decode steps per batch size.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Prompt lengths of the prefill measurements, comma-separated (0: none).
    #[arg(long, value_delimiter = ',', default_value = "512,2048")]
    pub prefill_tokens: Vec<usize>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Untimed decode steps before each measurement (graph recording, caches).
const WARMUP_STEPS: usize = 3;

#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeResult {
    pub batch: usize,
    pub tokens_per_sec: f64,
    pub step_ms: f64,
    /// Weights plus K/V read per step over the step time.
    pub gb_per_sec: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PrefillResult {
    pub tokens: usize,
    pub tokens_per_sec: f64,
    /// Matmul and attention FLOPs over the time.
    pub tflops: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchEngineReport {
    pub device: String,
    pub model: String,
    pub weight_bytes_per_step: usize,
    pub prefill: Vec<PrefillResult>,
    pub decode: Vec<DecodeResult>,
}

pub fn run(mut args: BenchEngineArgs) -> CliResult {
    let max_batch = args.batch.iter().copied().max().unwrap_or(1);
    if args.batch.contains(&0) || args.steps == 0 || args.context == 0 {
        return Err("--batch sizes, --steps and --context must be positive".into());
    }
    // Room for every decoding sequence plus the prefill sequence, and a step of the largest batch.
    let per_seq = args.context + WARMUP_STEPS + args.steps + 1;
    args.engine.kv_cache_tokens = Some(args.engine.kv_cache_tokens.unwrap_or(0).max(max_batch * (per_seq + 16) + args.prefill_tokens.iter().copied().max().unwrap_or(0) + 16));
    args.engine.kv_cache_bytes = None;
    args.engine.max_num_seqs = args.engine.max_num_seqs.max(max_batch);
    let report = with_backend(&args.engine.device, args.engine.threads, Job { args: &args })??;
    println!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

struct Job<'a> {
    args: &'a BenchEngineArgs,
}

impl BackendJob for Job<'_> {
    type Output = Result<BenchEngineReport, Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, backend: B) -> Self::Output {
        let args = self.args;
        let device = backend.name().to_string();
        let loading = Instant::now();
        let mut model = args.engine.settings().load_on(&args.model, backend)?.transformer;
        eprintln!("bench-engine: loaded {} on {device} in {:.1} s", args.model.display(), loading.elapsed().as_secs_f64());
        let weight_bytes = model.decode_weight_bytes();
        let mut prefills = Vec::new();
        for &n in args.prefill_tokens.iter().filter(|&&n| n > 0) {
            let r = prefill(&mut model, n)?;
            eprintln!("bench-engine: prefill {n}: {:.0} tok/s", r.tokens_per_sec);
            prefills.push(r);
        }
        let mut decode = Vec::new();
        for &b in &args.batch {
            let r = decode_at(&mut model, b, args.context, args.steps, weight_bytes)?;
            eprintln!("bench-engine: batch {b}: {:.1} tok/s", r.tokens_per_sec);
            decode.push(r);
        }
        Ok(BenchEngineReport { device, model: args.model.display().to_string(), weight_bytes_per_step: weight_bytes, prefill: prefills, decode })
    }
}

/// Synthetic token ids, away from the special tokens at either end of the vocabulary.
fn token(i: usize, vocab: usize) -> u32 {
    (1000 + i * 7919 % 50_000).min(vocab - 1) as u32
}

/// One sequence of `n` tokens from position 0 in chunks of the step capacity; timed to the
/// logits of the last chunk (reading them waits for all the work).
fn prefill<B: Backend>(model: &mut Transformer<B>, n: usize) -> Result<PrefillResult, Box<dyn std::error::Error>> {
    let (layout, cap, cfg) = (model.kv_layout(), model.capacity(), model.config().clone());
    let prompt: Vec<u32> = (0..n).map(|i| token(i, cfg.vocab_size)).collect();
    // Blocks after those the decode measurements use: the last ones of the pool.
    let needed = n.div_ceil(layout.block_size);
    if needed > layout.num_blocks || n >= cfg.context_length {
        return Err(format!("--prefill-tokens {n} exceeds the KV cache or the context length {}", cfg.context_length).into());
    }
    let blocks: Vec<u32> = (layout.num_blocks - needed..layout.num_blocks).map(|b| b as u32).collect();
    let mut batch = ForwardBatch::new(layout.block_size, blocks.len());
    let mut run = |model: &mut Transformer<B>| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let mut done = 0;
        while done < n {
            let end = (done + cap.max_tokens).min(n);
            batch.clear();
            batch.push_sequence(&prompt[done..end], done, &blocks[..end.div_ceil(layout.block_size)], end == n)?;
            model.forward(&batch)?;
            done = end;
        }
        Ok(started.elapsed().as_secs_f64())
    };
    run(model)?; // warm-up
    let secs = run(model)?;
    let matmul_flops = 2.0 * model.decode_weight_elements() as f64 * n as f64;
    let attention_flops = 4.0 * (cfg.heads * cfg.head_dim * cfg.layers) as f64 * (n as f64 * (n as f64 + 1.0) / 2.0);
    Ok(PrefillResult { tokens: n, tokens_per_sec: n as f64 / secs, tflops: (matmul_flops + attention_flops) / secs / 1e12 })
}

/// `b` sequences prefilled to `context` tokens, then timed decode steps of one token each.
fn decode_at<B: Backend>(model: &mut Transformer<B>, b: usize, context: usize, steps: usize, weight_bytes: usize) -> Result<DecodeResult, Box<dyn std::error::Error>> {
    let (layout, cap, cfg) = (model.kv_layout(), model.capacity(), model.config().clone());
    let per_seq = (context + WARMUP_STEPS + steps + 1).div_ceil(layout.block_size);
    if context + WARMUP_STEPS + steps >= cfg.context_length {
        return Err(format!("--context + steps exceed the model's context length {}", cfg.context_length).into());
    }
    let tables: Vec<Vec<u32>> = (0..b).map(|s| (s * per_seq..(s + 1) * per_seq).map(|x| x as u32).collect()).collect();
    let width = per_seq;
    let mut batch = ForwardBatch::new(layout.block_size, width);
    // Prefill every sequence (untimed), a chunk of the step capacity at a time.
    let mut next: Vec<u32> = vec![0; b];
    for s in 0..b {
        let prompt: Vec<u32> = (0..context).map(|i| token(i + 31 * s, cfg.vocab_size)).collect();
        let mut done = 0;
        while done < context {
            let end = (done + cap.max_tokens).min(context);
            batch.clear();
            batch.push_sequence(&prompt[done..end], done, &tables[s], end == context)?;
            let logits = model.forward(&batch)?;
            if end == context {
                next[s] = argmax(logits);
            }
            done = end;
        }
    }
    let vocab = cfg.vocab_size;
    let mut step = |model: &mut Transformer<B>, pos: usize| -> Result<(), Box<dyn std::error::Error>> {
        batch.clear();
        for (s, table) in tables.iter().enumerate() {
            batch.push_sequence(&[next[s]], pos, table, true)?;
        }
        let logits = model.forward(&batch)?;
        for (s, row) in logits.chunks_exact(vocab).enumerate() {
            next[s] = argmax(row);
        }
        Ok(())
    };
    for i in 0..WARMUP_STEPS {
        step(model, context + i)?;
    }
    let started = Instant::now();
    for i in 0..steps {
        step(model, context + WARMUP_STEPS + i)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let avg_ctx = context + WARMUP_STEPS + steps / 2;
    let kv_bytes = b * avg_ctx * cfg.layers * 2 * cfg.kv_dim() * layout.dtype.bytes();
    let step_secs = secs / steps as f64;
    Ok(DecodeResult { batch: b, tokens_per_sec: (b * steps) as f64 / secs, step_ms: step_secs * 1e3, gb_per_sec: (weight_bytes + kv_bytes) as f64 / step_secs / 1e9 })
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap_or(0)
}

/// The results as a markdown table.
pub fn table(r: &BenchEngineReport) -> String {
    let mut out = format!("| {} on {} | tok/s | detail |\n|---|---:|---|\n", r.model, r.device);
    for p in &r.prefill {
        out += &format!("| prefill {} tokens | {:.0} | {:.1} TFLOP/s |\n", p.tokens, p.tokens_per_sec, p.tflops);
    }
    for d in &r.decode {
        out += &format!("| decode batch {} | {:.1} | {:.2} ms/step, {:.0} GB/s (weights {:.2} GB + KV per step) |\n", d.batch, d.tokens_per_sec, d.step_ms, d.gb_per_sec, r.weight_bytes_per_step as f64 / 1e9);
    }
    out
}
