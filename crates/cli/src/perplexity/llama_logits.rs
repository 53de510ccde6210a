//! The log-probability file llama.cpp's `llama-perplexity --kl-divergence-base FILE` writes
//! (`tools/perplexity/perplexity.cpp`), read as hostile input: `"_logits_"`, then `n_ctx` (u32),
//! `n_vocab` and `n_chunk` (i32), the `n_chunk · n_ctx` scored tokens (i32), then per chunk one
//! record per scored position (positions `n_ctx/2 .. n_ctx-1`, each predicting the next token):
//! two f32 (`scale`, `min_log_prob`) and `n_vocab` u16 rounded up to even, where a token's
//! log-probability is `scale · q + min_log_prob` (values below `max − 16` are stored as 0).

use std::io::Read;

/// The header and tokens; the records are read one at a time.
pub struct LlamaLogits<R> {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    /// `[n_chunk · n_ctx]`, as llama.cpp scored them (before it puts BOS first in a chunk).
    pub tokens: Vec<u32>,
    reader: R,
    record: Vec<u8>,
}

/// One scored position's log-probabilities.
pub struct Record<'a> {
    scale: f32,
    min_log_prob: f32,
    quantized: &'a [u8],
}

impl Record<'_> {
    /// The log-probability of token `id`.
    pub fn log_prob(&self, id: usize) -> f32 {
        let q = u16::from_le_bytes([self.quantized[2 * id], self.quantized[2 * id + 1]]);
        self.scale * q as f32 + self.min_log_prob
    }
}

impl<R: Read> LlamaLogits<R> {
    pub fn open(mut reader: R) -> Result<Self, String> {
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).map_err(|e| format!("reading the header: {e}"))?;
        if &magic != b"_logits_" {
            return Err("not a llama-perplexity log-probability file (no \"_logits_\" header)".into());
        }
        let mut word = || -> Result<u32, String> {
            let mut b = [0u8; 4];
            reader.read_exact(&mut b).map_err(|e| format!("reading the header: {e}"))?;
            Ok(u32::from_le_bytes(b))
        };
        let (n_ctx, n_vocab, n_chunk) = (word()? as usize, word()? as usize, word()? as usize);
        if !(2..=1 << 20).contains(&n_ctx) || !(1..=1 << 22).contains(&n_vocab) || !(1..=1 << 20).contains(&n_chunk) || n_ctx * n_chunk > 1 << 28 {
            return Err(format!("implausible header: n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk}"));
        }
        let mut raw = vec![0u8; 4 * n_ctx * n_chunk];
        reader.read_exact(&mut raw).map_err(|e| format!("reading {} tokens: {e}", n_ctx * n_chunk))?;
        let tokens = raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let record = vec![0u8; 2 * (2 * n_vocab.div_ceil(2) + 4)];
        Ok(LlamaLogits { n_ctx, n_vocab, n_chunk, tokens, reader, record })
    }

    /// Scored positions per chunk (llama.cpp scores the second half, bar the last token).
    #[cfg(test)]
    pub fn records_per_chunk(&self) -> usize {
        self.n_ctx - 1 - self.n_ctx / 2
    }

    /// The next record, in file order (chunk by chunk, position by position).
    pub fn next_record(&mut self) -> Result<Record<'_>, String> {
        self.reader.read_exact(&mut self.record).map_err(|e| format!("reading a log-probability record: {e}"))?;
        let f = |i: usize| f32::from_le_bytes([self.record[i], self.record[i + 1], self.record[i + 2], self.record[i + 3]]);
        let (scale, min_log_prob) = (f(0), f(4));
        if !scale.is_finite() || !min_log_prob.is_finite() {
            return Err(format!("a record with scale {scale} and minimum {min_log_prob}"));
        }
        Ok(Record { scale, min_log_prob, quantized: &self.record[8..8 + 2 * self.n_vocab] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as llama.cpp writes it: 1 chunk of 4 tokens, a vocabulary of 3 (padded to 4).
    fn file() -> Vec<u8> {
        let mut f = b"_logits_".to_vec();
        for w in [4u32, 3, 1] {
            f.extend(w.to_le_bytes());
        }
        for t in [7u32, 1, 2, 0] {
            f.extend(t.to_le_bytes());
        }
        // n_ctx/2 = 2: one record (position 2 predicting position 3).
        f.extend(0.5f32.to_le_bytes());
        f.extend((-10f32).to_le_bytes());
        for q in [0u16, 20, 18, 0] {
            f.extend(q.to_le_bytes());
        }
        f
    }

    #[test]
    fn reads_what_llama_perplexity_writes() {
        let f = file();
        let mut l = LlamaLogits::open(&f[..]).unwrap();
        assert_eq!((l.n_ctx, l.n_vocab, l.n_chunk, l.tokens.clone()), (4, 3, 1, vec![7, 1, 2, 0]));
        assert_eq!(l.records_per_chunk(), 1);
        let r = l.next_record().unwrap();
        assert_eq!([r.log_prob(0), r.log_prob(1), r.log_prob(2)], [-10.0, 0.0, -1.0]);
        assert!(l.next_record().is_err(), "past the end");
    }

    #[test]
    fn rejects_other_files_and_truncation() {
        assert!(LlamaLogits::open(&b"GGUF\0\0\0\0"[..]).is_err());
        let f = file();
        assert!(LlamaLogits::open(&f[..30]).is_err(), "tokens cut short");
        let mut huge = f.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(LlamaLogits::open(&huge[..]).is_err(), "an n_ctx that would allocate without bound");
    }
}
