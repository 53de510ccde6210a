//! The backend conformance harness (`rill_backend::conformance`) on the CPU: the SIMD/integer
//! kernels against their reference twins, and the harness itself against backends with planted
//! faults, so a pass means something when `rill check-backend` runs it on a GPU.

use rill_backend::conformance::{run, Check};
use rill_backend::{Activation, AttentionBatch, AttentionParams, Backend, BackendResult, DrawParams, KvLayout, MatrixSource, RopeParams};
use rill_backend_cpu::{CpuBackend, CpuKvCache, CpuMatrix};

fn failures(checks: &[Check]) -> Vec<String> {
    checks.iter().filter(|c| !c.passed()).map(|c| c.to_string()).collect()
}

#[test]
fn fast_cpu_kernels_conform_to_the_reference() {
    let (reference, fast) = (CpuBackend::reference(2).unwrap(), CpuBackend::new(2).unwrap());
    for seed in [1, 2] {
        let checks = run(&reference, &fast, seed);
        checks.iter().for_each(|c| eprintln!("{c}"));
        assert!(checks.len() > 60, "only {} checks ran", checks.len());
        assert!(failures(&checks).is_empty(), "{:#?}", failures(&checks));
    }
}

/// What the planted fault breaks.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// The last element of every matmul output is left unwritten (NaN from the poisoning).
    MatmulTail,
    /// Attention output scaled by 1.03: a small but real numerical error (3 %).
    AttentionScale,
    /// Sampling walks the kept tokens from the far end (`1 - uniform`): same distribution,
    /// different tokens.
    SampleMirrored,
}

/// The CPU backend with one fault planted.
struct Faulty(CpuBackend, Fault);

impl Backend for Faulty {
    type Buffer = Vec<f32>;
    type Indices = Vec<u32>;
    type Matrix = CpuMatrix;
    type KvCache = CpuKvCache;
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn alloc(&self, len: usize) -> BackendResult<Vec<f32>> {
        self.0.alloc(len)
    }
    fn alloc_indices(&self, len: usize) -> BackendResult<Vec<u32>> {
        self.0.alloc_indices(len)
    }
    fn write(&self, dst: &mut Vec<f32>, src: &[f32]) -> BackendResult<()> {
        self.0.write(dst, src)
    }
    fn write_indices(&self, dst: &mut Vec<u32>, src: &[u32]) -> BackendResult<()> {
        self.0.write_indices(dst, src)
    }
    fn read(&self, src: &Vec<f32>, dst: &mut [f32]) -> BackendResult<()> {
        self.0.read(src, dst)
    }
    fn upload_matrix(&self, source: MatrixSource) -> BackendResult<CpuMatrix> {
        self.0.upload_matrix(source)
    }
    fn alloc_kv_cache(&self, layout: KvLayout) -> BackendResult<CpuKvCache> {
        self.0.alloc_kv_cache(layout)
    }
    fn embed(&self, table: &CpuMatrix, tokens: &Vec<u32>, n: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        self.0.embed(table, tokens, n, out)
    }
    fn rms_norm(&self, x: &Vec<f32>, w: &Vec<f32>, eps: f32, rows: usize, dim: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        self.0.rms_norm(x, w, eps, rows, dim, out)
    }
    fn matmul(&self, x: &Vec<f32>, w: &CpuMatrix, rows: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        let keep = out[rows * w.rows() - 1];
        self.0.matmul(x, w, rows, out)?;
        if self.1 == Fault::MatmulTail {
            out[rows * w.rows() - 1] = keep;
        }
        Ok(())
    }
    fn add_bias(&self, x: &mut Vec<f32>, bias: &Vec<f32>, rows: usize, dim: usize) -> BackendResult<()> {
        self.0.add_bias(x, bias, rows, dim)
    }
    fn rope(&self, x: &mut Vec<f32>, positions: &Vec<u32>, rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
        self.0.rope(x, positions, rows, heads, head_dim, rope)
    }
    fn write_kv(&self, cache: &mut CpuKvCache, layer: usize, k: &Vec<f32>, v: &Vec<f32>, slots: &Vec<u32>, n: usize) -> BackendResult<()> {
        self.0.write_kv(cache, layer, k, v, slots, n)
    }
    fn attention(&self, cache: &CpuKvCache, layer: usize, q: &Vec<f32>, heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, Self>, out: &mut Vec<f32>) -> BackendResult<()> {
        let inner = AttentionBatch {
            num_tokens: batch.num_tokens,
            num_seqs: batch.num_seqs,
            positions: batch.positions,
            token_seq: batch.token_seq,
            slots: batch.slots,
            block_tables: batch.block_tables,
            max_blocks_per_seq: batch.max_blocks_per_seq,
        };
        self.0.attention(cache, layer, q, heads, params, &inner, out)?;
        if self.1 == Fault::AttentionScale {
            out.iter_mut().for_each(|v| *v *= 1.03);
        }
        Ok(())
    }
    fn glu(&self, act: Activation, gate: &Vec<f32>, up: &Vec<f32>, len: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        self.0.glu(act, gate, up, len, out)
    }
    fn scale(&self, x: &mut Vec<f32>, factor: f32, len: usize) -> BackendResult<()> {
        self.0.scale(x, factor, len)
    }
    fn softcap(&self, x: &mut Vec<f32>, cap: f32, len: usize) -> BackendResult<()> {
        self.0.softcap(x, cap, len)
    }
    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, len: usize) -> BackendResult<()> {
        self.0.add(x, y, len)
    }
    fn gather_rows(&self, x: &Vec<f32>, rows: &Vec<u32>, n: usize, dim: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        self.0.gather_rows(x, rows, n, dim, out)
    }
    fn sample(&self, logits: &Vec<f32>, rows: usize, vocab: usize, params: &[DrawParams], out: &mut Vec<u32>) -> BackendResult<()> {
        if self.1 == Fault::SampleMirrored {
            let mirrored: Vec<DrawParams> = params.iter().map(|p| DrawParams { uniform: 1.0 - p.uniform, ..*p }).collect();
            return self.0.sample(logits, rows, vocab, &mirrored, out);
        }
        self.0.sample(logits, rows, vocab, params, out)
    }
    fn read_indices(&self, src: &Vec<u32>, dst: &mut [u32]) -> BackendResult<()> {
        self.0.read_indices(src, dst)
    }
}

#[test]
fn the_harness_catches_unwritten_outputs_and_small_errors() {
    let reference = CpuBackend::reference(1).unwrap();
    let tail = run(&reference, &Faulty(CpuBackend::reference(1).unwrap(), Fault::MatmulTail), 3);
    let failed: Vec<&Check> = tail.iter().filter(|c| !c.passed()).collect();
    assert!(!failed.is_empty() && failed.iter().all(|c| c.op.starts_with("matmul")), "{:#?}", failures(&tail));
    assert!(failed.iter().all(|c| c.rel_err.is_infinite()));

    let scaled = run(&reference, &Faulty(CpuBackend::reference(1).unwrap(), Fault::AttentionScale), 4);
    let failed: Vec<&Check> = scaled.iter().filter(|c| !c.passed()).collect();
    // Every attention check, and nothing else.
    assert_eq!(failed.len(), scaled.iter().filter(|c| c.op == "attention").count(), "{:#?}", failures(&scaled));
    assert!(failed.len() >= 15, "{:#?}", failures(&scaled));
    assert!(failed.iter().all(|c| c.op == "attention" && (c.rel_err - 0.03).abs() < 1e-4));

    // Greedy rows still agree; most sampled rows do not.
    let mirrored = run(&reference, &Faulty(CpuBackend::reference(1).unwrap(), Fault::SampleMirrored), 5);
    let failed: Vec<&Check> = mirrored.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 2, "{:#?}", failures(&mirrored));
    assert!(failed.iter().all(|c| c.op == "sample" && c.rel_err > 0.2 && c.rel_err < 0.8), "{:#?}", failures(&mirrored));
}

/// How far the CPU's attention (ggml's f16 value accumulator over the first 256 positions) is
/// from exact math on the same f16 cache: the error a backend accumulating in f32 (the GPU)
/// shows against the CPU twin, which `conformance::tolerance::ATTENTION` must allow. Also
/// checks the score variants against their definitions: a soft cap `c·tanh(s/c)` on the scaled
/// score, and a sliding window of the last `w` keys.
#[test]
fn cpu_attention_is_close_to_exact_math() {
    use half::f16;
    let (heads, kv_heads, hd, block_size) = (8, 2, 64, 16);
    let backend = CpuBackend::reference(1).unwrap();
    let mut worst = 0f64;
    let causal = AttentionParams::causal(hd);
    let cases = [(17usize, causal), (255, causal), (300, causal), (1100, causal), (300, AttentionParams { softcap: 0.5, window: 100, ..causal }), (1100, AttentionParams { window: 700, ..causal })];
    for (len, params) in cases {
        let layout = KvLayout { layers: 1, num_blocks: len.div_ceil(block_size), block_size, kv_heads, head_dim: hd, dtype: rill_backend::KvDType::F16 };
        let mut state = 0x2545_f491_4f6c_dd1du64 ^ len as u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let kv_len = len * kv_heads * hd;
        let (k, v): (Vec<f32>, Vec<f32>) = ((0..kv_len).map(|_| 2.0 * rnd()).collect(), (0..kv_len).map(|_| 2.0 * rnd()).collect());
        let q: Vec<f32> = (0..heads * hd).map(|_| 2.0 * rnd()).collect();
        let mut cache = backend.alloc_kv_cache(layout).unwrap();
        let slots: Vec<u32> = (0..len as u32).collect();
        backend.write_kv(&mut cache, 0, &k, &v, &slots, len).unwrap();
        let table: Vec<u32> = (0..layout.num_blocks as u32).collect();
        let (pos, seq, slot) = (vec![len as u32 - 1], vec![0u32], vec![len as u32 - 1]);
        let batch = AttentionBatch { num_tokens: 1, num_seqs: 1, positions: &pos, token_seq: &seq, slots: &slot, block_tables: &table, max_blocks_per_seq: table.len() };
        let mut out = vec![0f32; heads * hd];
        backend.attention(&cache, 0, &q, heads, &params, &batch, &mut out).unwrap();
        // Exact: f16-rounded q, K, V in f64.
        let r = |x: f32| f16::from_f32(x).to_f64();
        let mut exact = vec![0f64; heads * hd];
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let first = params.first_position(len - 1);
            let score = |p: usize| {
                let s = (0..hd).map(|d| r(q[h * hd + d]) * r(k[(p * kv_heads + g) * hd + d])).sum::<f64>() * params.scale as f64;
                if params.softcap > 0.0 { params.softcap as f64 * (s / params.softcap as f64).tanh() } else { s }
            };
            let scores: Vec<f64> = (first..len).map(score).collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let total: f64 = w.iter().sum();
            for d in 0..hd {
                exact[h * hd + d] = (first..len).map(|p| w[p - first] * r(v[(p * kv_heads + g) * hd + d])).sum::<f64>() / total;
            }
        }
        let exact32: Vec<f32> = exact.iter().map(|&x| x as f32).collect();
        let err = rill_backend::conformance::rel_err(&exact32, &out);
        eprintln!("context {len}, {params:?}: rel err {err:.2e}");
        worst = worst.max(err);
    }
    assert!(worst <= rill_backend::conformance::tolerance::ATTENTION / 2.0, "CPU attention is {worst:.2e} from exact math");
}
