//! `rill perplexity`: a model's perplexity over a text, scored as llama.cpp's `llama-perplexity`
//! scores it (chunks of `--ctx` tokens, BOS first where the vocabulary adds one; each token of a
//! chunk's second half predicted from everything before it in the chunk). With
//! `--kl-divergence-base FILE`, a file `llama-perplexity --kl-divergence-base` wrote, it scores
//! that file's tokens and reports the KL divergence from llama.cpp's distribution at every scored
//! position, with llama.cpp's formula: how far rill's arithmetic is from llama.cpp's, in the
//! units llama.cpp users compare quantizations in.

mod llama_logits;

use std::path::PathBuf;

use clap::Args;
use rill_backend::Backend;
use rill_engine::ForwardBatch;
use rill_model::loader::LoadedModel;
use rill_server::load::LoadedJob;

use crate::options::ModelArgs;
use llama_logits::{LlamaLogits, Record};

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Args, Debug, Clone)]
pub struct PerplexityArgs {
    /// A GGUF file or an HF directory.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub engine: ModelArgs,
    /// The text to score.
    #[arg(long, required_unless_present = "kl_divergence_base", conflicts_with = "kl_divergence_base")]
    pub file: Option<PathBuf>,
    /// A log-probability file of `llama-perplexity --kl-divergence-base`: its tokens are scored
    /// and rill's distributions compared with its own.
    #[arg(long, value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Tokens per chunk (a base file states its own).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Most chunks to score (0: all).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
}

/// Running sums over the scored positions.
#[derive(Default)]
struct Scores {
    nll: f64,
    nll_base: f64,
    kld: Vec<f64>,
    same_top: usize,
    count: usize,
}

impl Scores {
    /// Scores one position: rill's `logits` for the next token `next`, and llama.cpp's record
    /// of the same position where there is one.
    fn add(&mut self, logits: &[f32], next: usize, base: Option<&Record<'_>>) {
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_sum = top + logits.iter().map(|&l| (l as f64 - top).exp()).sum::<f64>().ln();
        let log_prob = |i: usize| logits[i] as f64 - log_sum;
        self.nll -= log_prob(next);
        self.count += 1;
        if let Some(base) = base {
            self.nll_base -= base.log_prob(next) as f64;
            // llama.cpp's sum: over the tokens whose base log-probability is above -16.
            let (mut kld, mut best_base, mut best) = (0f64, (f32::NEG_INFINITY, 0), (f32::NEG_INFINITY, 0));
            for (i, &l) in logits.iter().enumerate() {
                let b = base.log_prob(i);
                if b > best_base.0 {
                    best_base = (b, i);
                }
                if l > best.0 {
                    best = (l, i);
                }
                if b > -16.0 {
                    kld += (b as f64).exp() * (b as f64 - log_prob(i));
                }
            }
            self.kld.push(kld);
            self.same_top += (best.1 == best_base.1) as usize;
        }
    }

    fn report(&mut self) -> String {
        let n = self.count.max(1) as f64;
        let mut out = format!("scored {} positions: perplexity {:.4}", self.count, (self.nll / n).exp());
        if !self.kld.is_empty() {
            self.kld.sort_by(f64::total_cmp);
            let pct = |p: f64| self.kld[((self.kld.len() - 1) as f64 * p).round() as usize];
            let mean = self.kld.iter().sum::<f64>() / self.kld.len() as f64;
            out += &format!(
                " (the base's {:.4})\nKL divergence from the base: mean {mean:.6}, median {:.6}, 99% {:.6}, max {:.6}; same top token {:.2}%",
                (self.nll_base / n).exp(),
                pct(0.5),
                pct(0.99),
                pct(1.0),
                100.0 * self.same_top as f64 / self.kld.len() as f64
            );
        }
        out
    }
}

pub fn run(mut args: PerplexityArgs) -> CliResult {
    let base = match &args.kl_divergence_base {
        Some(path) => Some(LlamaLogits::open(std::io::BufReader::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?))?),
        None => None,
    };
    if let Some(b) = &base {
        args.ctx = b.n_ctx;
    }
    if args.ctx < 4 {
        return Err("--ctx must be at least 4".into());
    }
    args.engine.kv_cache_tokens = Some(args.ctx + 16);
    args.engine.kv_cache_bytes = None;
    let settings = args.engine.settings();
    let report = settings.with_loaded(&args.model, Job { args: &args, base })??;
    println!("{report}");
    Ok(())
}

struct Job<'a> {
    args: &'a PerplexityArgs,
    base: Option<LlamaLogits<std::io::BufReader<std::fs::File>>>,
}

impl LoadedJob for Job<'_> {
    type Output = Result<String, Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, model: LoadedModel<B>) -> Self::Output {
        let Job { args, mut base } = self;
        let LoadedModel { mut transformer, tokenizer, .. } = model;
        let (ctx, vocab) = (args.ctx, transformer.config().vocab_size);
        let tokens = match (&base, &args.file) {
            (Some(b), _) => {
                if b.n_vocab != vocab {
                    return Err(format!("the base file has a vocabulary of {}, the model {vocab}", b.n_vocab).into());
                }
                b.tokens.clone()
            }
            (None, Some(path)) => tokenizer.encode(&std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?, false)?,
            (None, None) => unreachable!("clap requires one"),
        };
        let mut chunks = base.as_ref().map_or(tokens.len() / ctx, |b| b.n_chunk);
        if args.chunks > 0 {
            chunks = chunks.min(args.chunks);
        }
        if chunks == 0 {
            return Err(format!("the text holds {} tokens, less than one chunk of {ctx}", tokens.len()).into());
        }
        if ctx > transformer.config().context_length {
            return Err(format!("--ctx {ctx} exceeds the model's context length {}", transformer.config().context_length).into());
        }
        let (layout, cap) = (transformer.kv_layout(), transformer.capacity());
        let table: Vec<u32> = (0..ctx.div_ceil(layout.block_size) as u32).collect();
        let mut batch = ForwardBatch::new(layout.block_size, table.len());
        let first = ctx / 2;
        let mut scores = Scores::default();
        for c in 0..chunks {
            let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
            if let (true, Some(bos)) = (tokenizer.adds_bos(), tokenizer.bos_id()) {
                chunk[0] = bos;
            }
            // The first half only fills the cache; then every position's logits, a step of
            // at most `max_seqs` rows at a time.
            let mut done = 0;
            while done < ctx - 1 {
                let scoring = done >= first;
                let end = if scoring { (done + cap.max_seqs.min(cap.max_tokens)).min(ctx - 1) } else { (done + cap.max_tokens).min(first) };
                batch.clear();
                let drafts = if scoring { end - done - 1 } else { 0 };
                batch.push_with_drafts(&chunk[done..end], done, &table, scoring, drafts)?;
                let logits = transformer.forward(&batch)?;
                if scoring {
                    for (i, row) in logits.chunks_exact(vocab).enumerate() {
                        let record = match base.as_mut() {
                            Some(b) => Some(b.next_record()?),
                            None => None,
                        };
                        scores.add(row, chunk[done + i + 1] as usize, record.as_ref());
                    }
                }
                done = end;
            }
            eprintln!("perplexity: chunk {}/{chunks}: {:.4}", c + 1, (scores.nll / scores.count as f64).exp());
        }
        Ok(scores.report())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-chunk base file (n_ctx 4, one record) holding the log-probabilities of `logits` as
    /// llama.cpp quantizes them: `scale = (max − min) / 65535` over the logits, `q = (l − min) / scale`.
    fn base_of(logits: &[f32; 3]) -> Vec<u8> {
        let mut f = b"_logits_".to_vec();
        for w in [4u32, 3, 1, 0, 0, 0, 0] {
            f.extend(w.to_le_bytes());
        }
        let (max, min) = (logits.iter().copied().fold(f32::MIN, f32::max), logits.iter().copied().fold(f32::MAX, f32::min));
        let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        let scale = (max - min) / 65535.0;
        f.extend(scale.to_le_bytes());
        f.extend((min - max - log_sum).to_le_bytes());
        for l in logits.iter().chain(&[0.0]) {
            f.extend((((l - min) / scale).round() as u16).to_le_bytes());
        }
        f
    }

    #[test]
    fn kl_divergence_is_zero_for_the_same_distribution_and_llama_cpps_sum_otherwise() {
        let base = [2.0f32, 0.5, -1.0];
        let mut same = Scores::default();
        let file = base_of(&base);
        let mut l = LlamaLogits::open(&file[..]).unwrap();
        same.add(&base, 0, Some(&l.next_record().unwrap()));
        assert!(same.kld[0].abs() < 1e-4, "{} (only the file's 16-bit rounding)", same.kld[0]);
        assert_eq!(same.same_top, 1);

        let other = [0.5f32, 2.0, -1.0];
        let mut s = Scores::default();
        let mut l = LlamaLogits::open(&file[..]).unwrap();
        s.add(&other, 0, Some(&l.next_record().unwrap()));
        let log_softmax = |x: &[f32; 3]| {
            let z = x.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
            x.map(|v| v as f64 - z)
        };
        let (p, q) = (log_softmax(&base), log_softmax(&other));
        let want: f64 = (0..3).map(|i| p[i].exp() * (p[i] - q[i])).sum();
        assert!((s.kld[0] - want).abs() < 1e-4, "{} vs {want}", s.kld[0]);
        assert_eq!(s.same_top, 0);
    }

    #[test]
    fn perplexity_of_a_uniform_model_is_the_vocabulary() {
        let mut s = Scores::default();
        for next in 0..4 {
            s.add(&[0.0; 4], next, None);
        }
        assert!(s.report().contains("perplexity 4.0000"), "{}", s.report());
    }
}
