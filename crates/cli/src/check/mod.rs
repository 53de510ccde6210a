//! `rill check-backend`: is a backend computing the same function as the CPU oracle? Four
//! checks, each on fresh random data (the seed is printed so a failure can be replayed):
//! 1. every `Backend` op against `CpuBackend::reference` (`rill_backend::conformance`);
//! 2. end to end: greedy tokens of one model on the device and on the oracle, each prompt alone
//!    and all prompts batched through the engine (decode steps recorded as graphs on CUDA),
//!    compared with vLLM's near-tie rule;
//! 3. seeded sampling: the same tokens with `logprobs` on (the host path) and off (the device
//!    path where the backend samples on the device);
//! 4. optionally, logits of every position against a file another implementation wrote (HF
//!    `transformers` in `scripts/gpu-check.sh`).
//!
//! The command is generic over the backend, so CI runs it CPU-vs-CPU and a GPU machine runs it
//! CUDA-vs-CPU; it exits non-zero when any check fails.

pub mod logits;
pub mod parity;

use std::path::PathBuf;

use clap::Args;
use rill_backend::conformance;
use rill_backend::Backend;
use rill_backend_cpu::CpuBackend;
use rill_engine::{GenerateRequest, SampledToken, SamplingParams};
use rill_model::runner::ModelRunner;
use rill_model::source::LoadFormat;

use rill_server::device::{with_backend, BackendJob};
use crate::options::ModelArgs;

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Args, Debug, Clone)]
pub struct CheckBackendArgs {
    /// Seed of the random inputs (default: drawn from the clock and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Model of the end-to-end check: a GGUF file, an HF directory, or a config JSON (a dummy
    /// model: seeded random weights of `--dummy-dtype`).
    #[arg(long, default_value = "configs/models/tiny-llama.json")]
    pub model: PathBuf,
    #[command(flatten)]
    pub engine: ModelArgs,
    /// Random prompts in the end-to-end check.
    #[arg(long, default_value_t = 6)]
    pub prompts: usize,
    /// Greedy tokens per prompt.
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// JSON of reference logits ({"prompts": [[ids]], "logits": [[[f32; vocab]; len]]}) to
    /// compare every position's logits against.
    #[arg(long)]
    pub logits_reference: Option<PathBuf>,
    /// Only the kernel checks.
    #[arg(long, conflicts_with = "skip_kernels")]
    pub kernels_only: bool,
    /// Only the end-to-end checks.
    #[arg(long)]
    pub skip_kernels: bool,
}

pub fn run(mut args: CheckBackendArgs) -> CliResult {
    // The default model is a config for a dummy model.
    if args.engine.load_format == LoadFormat::Auto && args.model.extension().is_some_and(|e| e == "json") {
        args.engine.load_format = LoadFormat::Dummy;
    }
    let seed = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    println!("check-backend: device {}, seed {seed} (the CPU reference is the oracle; --device picks the backend checked)", args.engine.device);
    let failures = with_backend(&args.engine.device, args.engine.threads, CheckJob { args: &args, seed })??;
    if failures > 0 {
        return Err(format!("check-backend: {failures} check(s) failed (seed {seed})").into());
    }
    println!("check-backend: all checks passed");
    Ok(())
}

struct CheckJob<'a> {
    args: &'a CheckBackendArgs,
    seed: u64,
}

impl BackendJob for CheckJob<'_> {
    type Output = Result<usize, Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, candidate: B) -> Self::Output {
        let args = self.args;
        let reference = CpuBackend::reference(args.engine.threads)?;
        let mut failures = 0;
        if !args.skip_kernels {
            println!("== kernels: {} vs cpu reference", candidate.name());
            for check in conformance::run(&reference, &candidate, self.seed) {
                println!("{check}");
                failures += !check.passed() as usize;
            }
        }
        if args.kernels_only {
            return Ok(failures);
        }
        println!("== end to end: {} ({:?}), {} prompts x {} greedy tokens", args.model.display(), args.engine.load_format, args.prompts, args.tokens);
        let reference_model = args.engine.settings().load_on(&args.model, reference)?;
        let mut candidate_model = args.engine.settings().load_on(&args.model, candidate)?;
        let vocab = reference_model.transformer.config().vocab_size;
        let prompts = random_prompts(self.seed, args.prompts, vocab);
        if let Some(path) = &args.logits_reference {
            println!("== logits against {}", path.display());
            failures += logits::check_file(&mut candidate_model.transformer, path)?;
        }
        // Both models through the engine, the path users get: each prompt alone, then the
        // candidate with every prompt at once (decode steps recorded as graphs on CUDA).
        let (reference, candidate) = (start(reference_model, "check-backend-reference"), start(candidate_model, "check-backend"));
        let greedy = SamplingParams { temperature: 0.0, max_tokens: Some(args.tokens), logprobs: Some(5), ignore_eos: true, ..Default::default() };
        let mut expected = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let want = run_batched(&reference, std::slice::from_ref(prompt), &greedy)?.remove(0);
            let got = run_batched(&candidate, std::slice::from_ref(prompt), &greedy)?.remove(0);
            failures += report(&format!("prompt {i} ({} tokens) alone", prompt.len()), &want, &got);
            expected.push(want);
        }
        let batched = run_batched(&candidate, &prompts, &greedy)?;
        for (i, (want, got)) in expected.iter().zip(&batched).enumerate() {
            failures += report(&format!("prompt {i} in a batch of {}", prompts.len()), want, got);
        }
        failures += seeded_sampling(&candidate, &prompts, args.tokens)?;
        Ok(failures)
    }
}

/// Prompts of assorted lengths (1 token up to a few hundred) of random token ids.
fn random_prompts(seed: u64, count: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut state = seed ^ 0x0123_4567_89AB_CDEF;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const LENGTHS: [usize; 6] = [1, 7, 33, 120, 5, 300];
    (0..count).map(|i| (0..LENGTHS[i % LENGTHS.len()]).map(|_| (next() % vocab as u64) as u32).collect()).collect()
}

/// A loaded model's engine.
fn start<B: Backend>(model: rill_model::loader::LoadedModel<B>, name: &str) -> rill_engine::Engine {
    let eos = model.tokenizer.eos_token_ids().to_vec();
    ModelRunner::new(model.transformer, eos).start(name)
}

/// All prompts submitted at once through the engine with `params`; each one's tokens.
fn run_batched(engine: &rill_engine::Engine, prompts: &[Vec<u32>], params: &SamplingParams) -> Result<Vec<Vec<SampledToken>>, Box<dyn std::error::Error>> {
    let streams = prompts
        .iter()
        .map(|prompt| engine.handle().submit(GenerateRequest { prompt: prompt.clone(), params: params.clone(), priority: 0, tenant: None }))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = Vec::new();
    for stream in streams {
        let choice = stream.collect(|_, _| {})?.into_iter().next().ok_or("a request produced no choice")?;
        results.push(choice.tokens);
    }
    Ok(results)
}

/// One sampling rule: seeded sampled requests get the same tokens without `logprobs` (rows the
/// device samples, where the backend samples on the device) and with them (rows read back and
/// sampled on the host).
fn seeded_sampling(engine: &rill_engine::Engine, prompts: &[Vec<u32>], tokens: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let mut failures = 0;
    for (temperature, top_k, top_p, min_p) in [(1.0, 0, 1.0, 0.0), (0.8, 40, 0.9, 0.0), (1.2, 0, 1.0, 0.05)] {
        let params = SamplingParams { temperature, top_k, top_p, min_p, seed: Some(7), max_tokens: Some(tokens), ignore_eos: true, ..Default::default() };
        let (plain, with_logprobs) = (run_batched(engine, prompts, &params)?, run_batched(engine, prompts, &SamplingParams { logprobs: Some(1), ..params.clone() })?);
        let ids = |tokens: &[SampledToken]| tokens.iter().map(|t| t.token).collect::<Vec<_>>();
        let differ = plain.iter().zip(&with_logprobs).filter(|(a, b)| ids(a) != ids(b)).count();
        let verdict = if differ == 0 { "ok  " } else { "FAIL" };
        println!("{verdict} seeded sampling T {temperature} top-k {top_k} top-p {top_p} min-p {min_p}: {differ} of {} prompts differ with logprobs on", prompts.len());
        failures += usize::from(differ > 0);
    }
    Ok(failures)
}

/// Prints one comparison line; 1 if it failed.
fn report(what: &str, want: &[SampledToken], got: &[SampledToken]) -> usize {
    let p = parity::compare(want, got);
    let verdict = if p.passed() { "ok  " } else { "FAIL" };
    let tie = if p.matched < p.compared { if p.near_tie { " (then a near-tie)" } else { " (then a token outside the other's top 5)" } } else { "" };
    println!("{verdict} {what}: {}/{} tokens equal{tie}, max |Δ logprob| {:.4}", p.matched, p.compared, p.max_logprob_diff);
    !p.passed() as usize
}

#[cfg(test)]
mod tests {
    use super::random_prompts;

    #[test]
    fn prompts_are_seeded_and_in_the_vocabulary() {
        let a = random_prompts(7, 6, 100);
        assert_eq!(a, random_prompts(7, 6, 100));
        assert_ne!(a, random_prompts(8, 6, 100));
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [1, 7, 33, 120, 5, 300]);
        assert!(a.iter().flatten().all(|&t| t < 100));
    }
}
