//! `--load-format dummy`: a model of a config's shape with seeded random weights and a
//! byte-level tokenizer, for benchmarking and testing backends without real weights.
//!
//! Weights are generated once, at load, into heap buffers in the requested dtype (quantized
//! with `rill_backend::quant`'s own quantizers, so the blocks are valid). Each group of
//! [`ROWS_PER_CHUNK`] rows draws from its own ChaCha8 stream seeded by (seed, weight, chunk):
//! the bytes depend on the seed only, never on thread count or load order.
//!
//! Scales keep a deep stack finite and its output varied: matrix entries are uniform with
//! standard deviation `1/sqrt(cols)` (each matmul keeps its input's scale, so attention scores
//! are O(1)), norm weights are `1 ± 0.05` (the final one `4 ± 0.2`, for peaked logits), biases
//! within ±0.02.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::{quant, DType, MatrixSource, SharedBytes};

use crate::config::ModelConfig;
use crate::tokenizer::{pieces, TokenType, Tokenizer, TokenizerError, Vocab, VocabKind};
use crate::weights::{LayerWeight, TensorSource, Weight, WeightsError};

/// The dtypes dummy matrices can be generated in (every matrix type but Q5_K, which has no
/// reference quantizer here); their CLI names are GGUF's, lower-cased.
pub const DUMMY_DTYPES: [DType; 14] = without(rill_backend::conformance::MATRIX_DTYPES, DType::Q5K);

/// `all` without `skip` (which it holds once).
const fn without<const N: usize, const M: usize>(all: [DType; N], skip: DType) -> [DType; M] {
    let mut out = [DType::F32; M];
    let (mut i, mut j) = (0, 0);
    while i < N {
        if all[i] as u32 != skip as u32 {
            out[j] = all[i];
            j += 1;
        }
        i += 1;
    }
    assert!(j == M, "skip must be in the list once");
    out
}

/// Rows generated from one random stream (and the unit of parallel work).
pub const ROWS_PER_CHUNK: usize = 16;

/// The byte tokenizer's ids: 0..256 are the bytes, then these two.
pub const DUMMY_BOS: u32 = 256;
pub const DUMMY_EOS: u32 = 257;

/// `f32|f16|bf16|q4_0|q4_1|q5_0|q5_1|q8_0|iq4_nl|q2_k|q3_k|q4_k|q6_k|iq4_xs` (any case) → the dtype.
pub fn parse_dtype(name: &str) -> Result<DType, String> {
    DUMMY_DTYPES.iter().copied().find(|d| d.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
        let names: Vec<String> = DUMMY_DTYPES.iter().map(|d| d.name().to_ascii_lowercase()).collect();
        format!("unknown dummy dtype {name:?} (one of: {})", names.join(", "))
    })
}

/// Random weights for `cfg`, matrices in `dtype`.
#[derive(Debug, Clone)]
pub struct DummyWeights {
    cfg: ModelConfig,
    dtype: DType,
    seed: u64,
}

impl DummyWeights {
    pub fn new(cfg: ModelConfig, dtype: DType, seed: u64) -> Result<DummyWeights, String> {
        if !DUMMY_DTYPES.contains(&dtype) {
            return Err(format!("dummy weights cannot be {dtype}"));
        }
        Ok(DummyWeights { cfg, dtype, seed })
    }

    /// The bytes of matrix `w`, `rows` rows of `cols` values in this dtype.
    pub fn matrix_bytes(&self, w: Weight, rows: usize, cols: usize) -> Result<Vec<u8>, WeightsError> {
        let convert = |problem: String| WeightsError::Convert { name: name(w), problem };
        let row_bytes = self
            .dtype
            .row_bytes(cols)
            .ok_or_else(|| convert(format!("{cols} columns are not whole {} blocks of {}", self.dtype, self.dtype.block_len())))?;
        let total = row_bytes.checked_mul(rows).ok_or_else(|| convert(format!("{rows}x{cols} overflows")))?;
        let mut bytes = vec![0u8; total];
        if total == 0 {
            return Ok(bytes);
        }
        let half_width = (3.0 / cols as f32).sqrt(); // uniform(-a, a) has std a/sqrt(3)
        let chunks: Vec<(usize, &mut [u8])> = bytes.chunks_mut(row_bytes * ROWS_PER_CHUNK).enumerate().collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len());
        let mut groups: Vec<Vec<(usize, &mut [u8])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, chunk) in chunks {
            groups[i % threads].push((i, chunk));
        }
        let (dtype, seed, id) = (self.dtype, self.seed, weight_id(w));
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    s.spawn(move || {
                        let mut row = vec![0.0f32; cols];
                        for (i, chunk) in group {
                            let mut rng = stream(seed, id, i as u64);
                            for out in chunk.chunks_mut(row_bytes) {
                                row.iter_mut().for_each(|x| *x = rng.random_range(-half_width..half_width));
                                quant::quantize_row(dtype, &row, out).map_err(|e| e.to_string())?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("generator thread panicked".into()))).collect()
        });
        results.into_iter().collect::<Result<(), String>>().map_err(convert)?;
        Ok(bytes)
    }

    /// Norm weights near 1, biases near 0. The final norm is near 4, which scales the logits
    /// up: next-token distributions come out peaked as a trained model's are, so near-ties are
    /// rare and comparing two backends' greedy tokens stays a sharp check.
    pub fn vector_values(&self, w: Weight, len: usize) -> Vec<f32> {
        let mut rng = stream(self.seed, weight_id(w), 0);
        let (center, spread) = match w {
            Weight::OutputNorm => (4.0, 0.2),
            w if w.is_norm() => (1.0, 0.05),
            _ => (0.0, 0.02),
        };
        (0..len).map(|_| center + rng.random_range(-spread..spread)).collect()
    }
}

/// Dummy weights have no file names; this one is for messages.
fn name(w: Weight) -> String {
    format!("dummy:{}", w.hf_name(false))
}

/// A stable number per weight (the stream is keyed by it).
fn weight_id(w: Weight) -> u64 {
    match w {
        Weight::TokenEmbd => 0,
        Weight::OutputNorm => 1,
        Weight::Output => 2,
        Weight::Layer(i, lw) => {
            let k = LayerWeight::ALL.iter().position(|&x| x == lw).expect("every layer weight is listed") as u64;
            32 + i as u64 * 32 + k
        }
    }
}

/// splitmix64's finalizer: spreads nearby inputs over the whole seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stream(seed: u64, weight: u64, chunk: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed) ^ weight) ^ chunk))
}

impl TensorSource for DummyWeights {
    fn name(&self, w: Weight) -> String {
        name(w)
    }

    fn contains(&self, w: Weight) -> bool {
        match w {
            Weight::Output => !self.cfg.tied_embeddings,
            Weight::Layer(_, LayerWeight::QBias | LayerWeight::KBias | LayerWeight::VBias) => self.cfg.block().qkv_bias,
            _ => true,
        }
    }

    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError> {
        let bytes = self.matrix_bytes(w, rows, cols)?;
        Ok(MatrixSource { name: name(w), dtype: self.dtype, rows, cols, bytes: SharedBytes::from_vec(bytes) })
    }

    fn vector(&self, w: Weight, len: usize) -> Result<Vec<f32>, WeightsError> {
        Ok(self.vector_values(w, len))
    }
}

/// A byte-level tokenizer over `vocab_size` ids: 0..256 are the bytes, [`DUMMY_BOS`] `<s>`
/// and [`DUMMY_EOS`] `</s>` are control tokens, the rest are unused (they decode to nothing).
/// Any text encodes (one token per byte) and any id decodes.
pub fn byte_tokenizer(vocab_size: usize) -> Result<Tokenizer, TokenizerError> {
    if vocab_size < DUMMY_EOS as usize + 1 {
        return Err(TokenizerError::Invalid(format!("a byte tokenizer needs {} ids; the model has {vocab_size}", DUMMY_EOS + 1)));
    }
    let table = pieces::byte_to_char_table();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut types = vec![TokenType::Normal; 256];
    tokens.extend(["<s>".to_string(), "</s>".to_string()]);
    types.extend([TokenType::Control, TokenType::Control]);
    for i in tokens.len()..vocab_size {
        tokens.push(format!("<unused{i}>"));
        types.push(TokenType::Unused);
    }
    let (bos, eos, add_bos, add_eos) = (Some(DUMMY_BOS), Some(DUMMY_EOS), Some(true), Some(false));
    Tokenizer::from_vocab(Vocab { pre: "gpt-2".into(), bos, eos, add_bos, add_eos, ..Vocab::new(VocabKind::BytePairBpe, tokens, types) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::HfConfig;

    fn tiny_config() -> ModelConfig {
        let text = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 1536,
            "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 512}"#;
        HfConfig::parse(text).unwrap().to_model_config("tiny").unwrap()
    }

    #[test]
    fn dtype_names_parse() {
        assert_eq!(parse_dtype("bf16"), Ok(DType::BF16));
        assert_eq!(parse_dtype("Q4_K"), Ok(DType::Q4K));
        assert_eq!(parse_dtype("q6_k"), Ok(DType::Q6K));
        for dtype in DUMMY_DTYPES {
            assert_eq!(parse_dtype(&dtype.name().to_ascii_lowercase()), Ok(dtype));
        }
        let err = parse_dtype("q5_k").unwrap_err();
        assert!(err.contains("q4_k") && err.contains("q5_k"), "{err}");
        assert!(DummyWeights::new(tiny_config(), DType::Q5K, 0).is_err());
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let cfg = tiny_config();
        let w = Weight::Layer(1, LayerWeight::Down);
        let (rows, cols) = w.dims(&cfg);
        for dtype in DUMMY_DTYPES {
            let a = DummyWeights::new(cfg.clone(), dtype, 7).unwrap().matrix_bytes(w, rows, cols).unwrap();
            let b = DummyWeights::new(cfg.clone(), dtype, 7).unwrap().matrix_bytes(w, rows, cols).unwrap();
            let c = DummyWeights::new(cfg.clone(), dtype, 8).unwrap().matrix_bytes(w, rows, cols).unwrap();
            assert_eq!(a.len(), dtype.row_bytes(cols).unwrap() * rows);
            assert!(a == b, "{dtype}: same seed differs");
            assert!(a != c, "{dtype}: seeds 7 and 8 agree");
        }
        // Different weights of one model differ too, and vectors are seeded as well.
        let d = DummyWeights::new(cfg.clone(), DType::BF16, 7).unwrap();
        let up = Weight::Layer(1, LayerWeight::Up);
        let (r, c) = up.dims(&cfg);
        assert_ne!(d.matrix_bytes(up, r, c).unwrap(), d.matrix_bytes(Weight::Layer(1, LayerWeight::Gate), r, c).unwrap());
        let norm = Weight::Layer(0, LayerWeight::AttnNorm);
        assert_eq!(d.vector_values(norm, 8), d.vector_values(norm, 8));
        assert!(d.vector_values(norm, 512).iter().all(|&x| (0.95..=1.05).contains(&x)));
    }

    #[test]
    fn values_have_the_intended_scale() {
        let cfg = tiny_config();
        let d = DummyWeights::new(cfg.clone(), DType::F32, 1).unwrap();
        let (rows, cols) = Weight::TokenEmbd.dims(&cfg);
        let bytes = d.matrix_bytes(Weight::TokenEmbd, rows, cols).unwrap();
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let std = (values.iter().map(|v| v * v).sum::<f32>() / values.len() as f32).sqrt();
        let want = 1.0 / (cols as f32).sqrt();
        assert!((std / want - 1.0).abs() < 0.02, "std {std}, want {want}");
    }

    #[test]
    fn k_quants_need_whole_super_blocks() {
        let d = DummyWeights::new(tiny_config(), DType::Q4K, 0).unwrap();
        assert!(matches!(d.matrix_bytes(Weight::TokenEmbd, 4, 576), Err(WeightsError::Convert { .. })));
    }

    #[test]
    fn byte_tokenizer_round_trips_any_text() {
        let t = byte_tokenizer(300).unwrap();
        assert_eq!(t.vocab_size(), 300);
        let text = "héllo <s> wörld\n😀";
        let ids = t.encode(text, true).unwrap();
        assert_eq!(ids[0], DUMMY_BOS);
        assert_eq!(ids.len(), 1 + text.len() - "<s>".len() + 1);
        assert_eq!(t.decode(&ids, true), text.replace("<s>", ""));
        assert_eq!(t.decode(&ids, false), format!("<s>{text}"));
        assert_eq!(t.encode_with("<s>", false, false).unwrap(), vec![b'<' as u32, b's' as u32, b'>' as u32]);
        assert_eq!(t.decode(&[299, 298, 5000], false), "");
        assert_eq!(t.eos_token_ids(), &[DUMMY_EOS]);
        assert!(byte_tokenizer(257).is_err());
    }
}
