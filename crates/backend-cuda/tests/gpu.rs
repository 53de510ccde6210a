//! GPU smoke tests: every op against the CPU backend's reference mode on small random inputs,
//! plus graph capture/replay. They need a GPU, so they are `#[ignore]`d: `cargo test` lists them
//! without running them, and `scripts/gpu-check.sh` runs them (`--include-ignored`) on a GPU
//! machine, where a missing device is a failure. (The no-GPU errors are checked by the crate's
//! unit tests, which do run here.) Tolerances: embedding exact; GEMV (<= 32 rows), elementwise 1e-5 and
//! attention 1e-2 (the CPU twin keeps ggml's f16 value accumulator over the first 256
//! positions, ~2.5e-3 from exact math; the GPU accumulates in f32); cuBLAS bf16 (> 32 rows) 1.5e-2 of sum |w x|; sampled token ids
//! exact (on logits without near-ties).

use rill_backend::{quant, Activation, AttentionBatch, AttentionParams, Backend, DType, DrawParams, KvDType, KvLayout, MatrixSource, RopeParams, SharedBytes};
use rill_backend_cpu::CpuBackend;
use rill_backend_cuda::{probe, CudaBackend};

/// Device 0; these tests fail without one (they are ignored unless asked for).
fn gpu() -> CudaBackend {
    if let Err(why) = probe(0) {
        panic!("this test needs a CUDA device: {why}");
    }
    CudaBackend::new(0).expect("probe found a device, so the backend must open")
}

struct Rng(u64);
impl Rng {
    fn f(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f(lo, hi)).collect()
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.f(0.0, 1.0) * n as f32) as u32 % n.max(1)
    }
}

fn to_gpu(g: &CudaBackend, v: &[f32]) -> rill_backend_cuda::CudaBuffer {
    let mut b = g.alloc(v.len()).unwrap();
    g.write(&mut b, v).unwrap();
    b
}
fn idx_gpu(g: &CudaBackend, v: &[u32]) -> rill_backend_cuda::CudaIndices {
    let mut b = g.alloc_indices(v.len()).unwrap();
    g.write_indices(&mut b, v).unwrap();
    b
}
fn from_gpu(g: &CudaBackend, b: &rill_backend_cuda::CudaBuffer, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    g.read(b, &mut v).unwrap();
    v
}

fn matrix(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> MatrixSource {
    let rb = dtype.row_bytes(cols).unwrap();
    let mut bytes = vec![0u8; rows * rb];
    for r in 0..rows {
        let w = rng.vec(cols, -1.0, 1.0);
        quant::quantize_row(dtype, &w, &mut bytes[r * rb..(r + 1) * rb]).unwrap();
    }
    MatrixSource { name: format!("{dtype}"), dtype, rows, cols, bytes: SharedBytes::from_vec(bytes) }
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
    }
}

/// Every matrix type (the conformance harness's list).
const TYPES: [DType; 15] = rill_backend::conformance::MATRIX_DTYPES;

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn matmul_matches_the_float_reference() {
    let g = gpu();
    let cpu = CpuBackend::reference(1).unwrap();
    let mut rng = Rng(1);
    for dtype in TYPES {
        for cols in [512, if dtype.block_len() == 1 { 100 } else { 1024 }] {
            let wrows = 37;
            let src = matrix(&mut rng, dtype, wrows, cols);
            let (wc, wg) = (cpu.upload_matrix(src.clone()).unwrap(), g.upload_matrix(src.clone()).unwrap());
            let rb = dtype.row_bytes(cols).unwrap();
            let deq: Vec<Vec<f32>> = (0..wrows)
                .map(|o| {
                    let mut v = vec![0.0; cols];
                    quant::dequantize_row(dtype, &src.bytes[o * rb..(o + 1) * rb], &mut v).unwrap();
                    v
                })
                .collect();
            for rows in [1, 2, 3, 5, 8, 9, 20, 33, 70] {
                let x = rng.vec(rows * cols, -1.0, 1.0);
                let mut want = vec![0.0; rows * wrows];
                cpu.matmul(&x, &wc, rows, &mut want).unwrap();
                let mut out = g.alloc(rows * wrows).unwrap();
                g.matmul(&to_gpu(&g, &x), &wg, rows, &mut out).unwrap();
                let got = from_gpu(&g, &out, rows * wrows);
                let tol = if rows <= 32 { 1e-5 } else { 1.5e-2 };
                for r in 0..rows {
                    for o in 0..wrows {
                        let scale: f32 = deq[o].iter().zip(&x[r * cols..(r + 1) * cols]).map(|(a, b)| (a * b).abs()).sum();
                        let (gv, wv) = (got[r * wrows + o], want[r * wrows + o]);
                        assert!((gv - wv).abs() <= tol * scale + 1e-6, "{dtype} cols {cols} rows {rows}: out[{r},{o}] {gv} vs {wv} (scale {scale})");
                    }
                }
            }
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn matmul_many_equals_separate_matmuls() {
    let g = gpu();
    let mut rng = Rng(2);
    let cols = 256;
    let mats: Vec<_> = [(DType::Q4_1, 64), (DType::Q4_1, 16), (DType::Q6K, 16), (DType::Q4_1, 40)]
        .into_iter()
        .map(|(t, r)| g.upload_matrix(matrix(&mut rng, t, r, cols)).unwrap())
        .collect();
    for rows in [1, 4, 12, 40] {
        let x = to_gpu(&g, &rng.vec(rows * cols, -1.0, 1.0));
        let mut outs: Vec<_> = mats.iter().map(|m| g.alloc(rows * m.rows()).unwrap()).collect();
        {
            let mut jobs: Vec<_> = mats.iter().zip(outs.iter_mut()).collect();
            g.matmul_many(&x, rows, &mut jobs).unwrap();
        }
        for (m, o) in mats.iter().zip(&outs) {
            let mut single = g.alloc(rows * m.rows()).unwrap();
            g.matmul(&x, m, rows, &mut single).unwrap();
            assert_eq!(from_gpu(&g, o, rows * m.rows()), from_gpu(&g, &single, rows * m.rows()), "rows {rows}");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn embed_is_bit_exact() {
    let g = gpu();
    let cpu = CpuBackend::reference(1).unwrap();
    let mut rng = Rng(3);
    for dtype in TYPES {
        let cols = if dtype.block_len() == 1 { 100 } else { 512 };
        let src = matrix(&mut rng, dtype, 50, cols);
        let (wc, wg) = (cpu.upload_matrix(src.clone()).unwrap(), g.upload_matrix(src).unwrap());
        let toks: Vec<u32> = (0..7).map(|_| rng.below(50)).collect();
        let mut want = vec![0.0; 7 * cols];
        cpu.embed(&wc, &toks, 7, &mut want).unwrap();
        let mut out = g.alloc(7 * cols).unwrap();
        g.embed(&wg, &idx_gpu(&g, &toks), 7, &mut out).unwrap();
        assert_eq!(from_gpu(&g, &out, 7 * cols), want, "{dtype}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn elementwise_ops_match_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::reference(1).unwrap();
    let mut rng = Rng(4);
    let (rows, dim) = (5, 576);
    let x = rng.vec(rows * dim, -3.0, 3.0);
    let w = rng.vec(dim, -1.0, 1.0);
    let (xg, wg) = (to_gpu(&g, &x), to_gpu(&g, &w));

    let mut want = vec![0.0; rows * dim];
    cpu.rms_norm(&x, &w, 1e-5, rows, dim, &mut want).unwrap();
    let mut out = g.alloc(rows * dim).unwrap();
    g.rms_norm(&xg, &wg, 1e-5, rows, dim, &mut out).unwrap();
    close(&from_gpu(&g, &out, rows * dim), &want, 1e-5, "rms_norm");

    let y = rng.vec(rows * dim, -1.0, 1.0);
    // GELU: the CPU looks it up in ggml's f16 table, the GPU computes it: f16 rounding apart.
    for (act, tol) in [(Activation::Silu, 1e-5), (Activation::GeluTanh, 2e-3)] {
        let mut want = vec![0.0; rows * dim];
        cpu.glu(act, &x, &y, rows * dim, &mut want).unwrap();
        g.glu(act, &xg, &to_gpu(&g, &y), rows * dim, &mut out).unwrap();
        close(&from_gpu(&g, &out, rows * dim), &want, tol, &format!("glu {act:?}"));
    }

    let (mut want, mut scaled) = (x.clone(), to_gpu(&g, &x));
    cpu.scale(&mut want, 7.25, rows * dim).unwrap();
    g.scale(&mut scaled, 7.25, rows * dim).unwrap();
    assert_eq!(from_gpu(&g, &scaled, rows * dim), want, "scale");
    let (mut want, mut capped) = (x.clone(), to_gpu(&g, &x));
    cpu.softcap(&mut want, 2.5, rows * dim).unwrap();
    g.softcap(&mut capped, 2.5, rows * dim).unwrap();
    close(&from_gpu(&g, &capped, rows * dim), &want, 1e-5, "softcap");

    let mut want = x.clone();
    cpu.add(&mut want, &y, rows * dim).unwrap();
    let mut sum = to_gpu(&g, &x);
    g.add(&mut sum, &to_gpu(&g, &y), rows * dim).unwrap();
    assert_eq!(from_gpu(&g, &sum, rows * dim), want, "add");

    let mut want = x.clone();
    cpu.add_bias(&mut want, &w, rows, dim).unwrap();
    let mut biased = to_gpu(&g, &x);
    g.add_bias(&mut biased, &wg, rows, dim).unwrap();
    assert_eq!(from_gpu(&g, &biased, rows * dim), want, "add_bias");

    let sel = vec![4u32, 0, 2];
    let mut want = vec![0.0; 3 * dim];
    cpu.gather_rows(&x, &sel, 3, dim, &mut want).unwrap();
    let mut out3 = g.alloc(3 * dim).unwrap();
    g.gather_rows(&xg, &idx_gpu(&g, &sel), 3, dim, &mut out3).unwrap();
    assert_eq!(from_gpu(&g, &out3, 3 * dim), want, "gather_rows");

    for (neox, rot_dim, scaled) in [(false, 64, false), (true, 64, false), (true, 32, false), (true, 64, true)] {
        let (heads, hd) = (3, 64);
        let mut rope = RopeParams::new(rot_dim, 10_000.0, neox);
        if scaled {
            // LongRoPE-like factors, linear scaling and a magnitude correction.
            rope = RopeParams { freq_scale: 0.5, freq_factors: (0..rot_dim / 2).map(|i| 1.0 + i as f32 * 0.25).collect(), mscale: 1.19, ..rope };
        }
        let q = rng.vec(rows * heads * hd, -2.0, 2.0);
        let pos = vec![0u32, 1, 17, 4095, 30000];
        let mut want = q.clone();
        cpu.rope(&mut want, &pos, rows, heads, hd, &rope).unwrap();
        let mut qg = to_gpu(&g, &q);
        g.rope(&mut qg, &idx_gpu(&g, &pos), rows, heads, hd, &rope).unwrap();
        close(&from_gpu(&g, &qg, rows * heads * hd), &want, 1e-5, "rope");
    }
}

struct Case {
    dtype: KvDType,
    heads: usize,
    kv_heads: usize,
    hd: usize,
}

/// Random K/V written through write_kv on both backends, then attention for `tokens`
/// (sequence, position) over shuffled block tables.
fn attention_case(g: &CudaBackend, cpu: &CpuBackend, rng: &mut Rng, c: &Case, params: &AttentionParams, tokens: &[(u32, u32)], seqs: usize) {
    let (bs, max_blocks) = (16, 40);
    let num_blocks = seqs * max_blocks + 3;
    let layout = KvLayout { layers: 2, num_blocks, block_size: bs, kv_heads: c.kv_heads, head_dim: c.hd, dtype: c.dtype };
    let (mut kc, mut kg) = (cpu.alloc_kv_cache(layout).unwrap(), g.alloc_kv_cache(layout).unwrap());
    let slots = num_blocks * bs;
    let row = c.kv_heads * c.hd;
    let k = rng.vec(slots * row, -1.0, 1.0);
    let v = rng.vec(slots * row, -1.0, 1.0);
    let all: Vec<u32> = (0..slots as u32).collect();
    cpu.write_kv(&mut kc, 1, &k, &v, &all, slots).unwrap();
    g.write_kv(&mut kg, 1, &to_gpu(g, &k), &to_gpu(g, &v), &idx_gpu(g, &all), slots).unwrap();
    let mut blocks: Vec<u32> = (0..num_blocks as u32).collect();
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let tables = blocks[..seqs * max_blocks].to_vec();
    let positions: Vec<u32> = tokens.iter().map(|t| t.1).collect();
    let token_seq: Vec<u32> = tokens.iter().map(|t| t.0).collect();
    let n = tokens.len();
    let q = rng.vec(n * c.heads * c.hd, -2.0, 2.0);
    let zeros = vec![0u32; n];
    let batch = AttentionBatch::<CpuBackend> {
        num_tokens: n,
        num_seqs: seqs,
        positions: &positions,
        token_seq: &token_seq,
        slots: &zeros,
        block_tables: &tables,
        max_blocks_per_seq: max_blocks,
    };
    let mut want = vec![0.0; n * c.heads * c.hd];
    cpu.attention(&kc, 1, &q, c.heads, params, &batch, &mut want).unwrap();
    let (pg, sg, zg, tg) = (idx_gpu(g, &positions), idx_gpu(g, &token_seq), idx_gpu(g, &zeros), idx_gpu(g, &tables));
    let gb = AttentionBatch::<CudaBackend> {
        num_tokens: n,
        num_seqs: seqs,
        positions: &pg,
        token_seq: &sg,
        slots: &zg,
        block_tables: &tg,
        max_blocks_per_seq: max_blocks,
    };
    let mut out = g.alloc(n * c.heads * c.hd).unwrap();
    g.attention(&kg, 1, &to_gpu(g, &q), c.heads, params, &gb, &mut out).unwrap();
    let what = format!("{:?} {}/{} heads hd {}, {n} tokens, {params:?}", c.dtype, c.heads, c.kv_heads, c.hd);
    close(&from_gpu(g, &out, n * c.heads * c.hd), &want, 1e-2, &what);
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn attention_matches_the_cpu() {
    let g = gpu();
    let cpu = CpuBackend::reference(2).unwrap();
    let mut rng = Rng(5);
    for dtype in [KvDType::F16, KvDType::F32] {
        for (heads, kv_heads, hd) in [(4, 4, 64), (8, 2, 128), (9, 3, 64), (16, 1, 128), (2, 1, 256), (6, 2, 80)] {
            let c = Case { dtype, heads, kv_heads, hd };
            let causal = AttentionParams::causal(hd);
            // Gemma 2's layers: a pre-scaled query, a soft cap, a sliding window.
            let gemma = AttentionParams { scale: 1.0, softcap: 50.0, window: 40, ..causal };
            for params in [causal, gemma, AttentionParams { window: 300, ..causal }] {
                // Decode: one token per sequence, positions around block and split edges.
                let decode: Vec<(u32, u32)> = [0u32, 15, 16, 255, 256, 639].iter().enumerate().map(|(s, &p)| (s as u32, p)).collect();
                attention_case(&g, &cpu, &mut rng, &c, &params, &decode, 6);
                // Mixed: a prompt chunk of sequence 1 (positions 100..170) between decode tokens.
                let mut mixed = vec![(0u32, 300u32)];
                mixed.extend((100..170).map(|p| (1u32, p)));
                mixed.push((2, 5));
                mixed.extend((0..3).map(|p| (3u32, p)));
                attention_case(&g, &cpu, &mut rng, &c, &params, &mixed, 4);
            }
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn a_captured_step_replays_with_new_inputs() {
    let g = gpu();
    let mut rng = Rng(6);
    let (cols, wrows) = (256, 96);
    let w = g.upload_matrix(matrix(&mut rng, DType::Q4_1, wrows, cols)).unwrap();
    let norm = to_gpu(&g, &rng.vec(cols, 0.5, 1.5));
    let mut x = g.alloc(cols).unwrap();
    let mut normed = g.alloc(cols).unwrap();
    let mut out = g.alloc(wrows).unwrap();
    let step = |x: &rill_backend_cuda::CudaBuffer, normed: &mut rill_backend_cuda::CudaBuffer, out: &mut rill_backend_cuda::CudaBuffer| {
        g.rms_norm(x, &norm, 1e-5, 1, cols, normed).unwrap();
        g.matmul(normed, &w, 1, out).unwrap();
    };
    assert!(g.graphs_supported());
    assert!(!g.replay(7).unwrap(), "nothing recorded yet");
    g.write(&mut x, &rng.vec(cols, -1.0, 1.0)).unwrap();
    g.begin_capture(7).unwrap();
    step(&x, &mut normed, &mut out);
    g.end_capture(7).unwrap();
    for _ in 0..3 {
        let input = rng.vec(cols, -1.0, 1.0);
        g.write(&mut x, &input).unwrap();
        assert!(g.replay(7).unwrap());
        let replayed = from_gpu(&g, &out, wrows);
        step(&x, &mut normed, &mut out);
        assert_eq!(from_gpu(&g, &out, wrows), replayed, "a replay computes what the ops compute");
    }
    // Allocation is refused while capturing; that capture is discarded and the stream stays usable.
    g.begin_capture(8).unwrap();
    step(&x, &mut normed, &mut out);
    assert!(g.alloc(4).is_err());
    g.end_capture(8).unwrap();
    assert!(!g.replay(8).unwrap(), "a failed capture is not kept");
    step(&x, &mut normed, &mut out);
    g.synchronize().unwrap();
    assert!(g.replay(7).unwrap(), "other recordings survive");
}

/// Recording a key again replaces its graph (with a replay of the old one still possibly
/// running when the new recording starts); a failed re-recording leaves the key empty.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn recording_a_key_again_replaces_its_graph() {
    let g = gpu();
    let mut rng = Rng(8);
    let cols = 256;
    let norm = to_gpu(&g, &rng.vec(cols, 0.5, 1.5));
    let x = to_gpu(&g, &rng.vec(cols, -1.0, 1.0));
    let (mut first, mut second, mut direct) = (g.alloc(cols).unwrap(), g.alloc(cols).unwrap(), g.alloc(cols).unwrap());
    g.rms_norm(&x, &norm, 1e-5, 1, cols, &mut direct).unwrap();
    let want = from_gpu(&g, &direct, cols);
    g.begin_capture(5).unwrap();
    g.rms_norm(&x, &norm, 1e-5, 1, cols, &mut first).unwrap();
    g.end_capture(5).unwrap();
    assert!(g.replay(5).unwrap());
    g.begin_capture(5).unwrap();
    g.rms_norm(&x, &norm, 1e-5, 1, cols, &mut second).unwrap();
    g.end_capture(5).expect("recording a key that has a graph");
    assert_eq!(from_gpu(&g, &first, cols), want, "the first recording ran");
    g.write(&mut first, &vec![0.0; cols]).unwrap();
    assert!(g.replay(5).unwrap());
    assert_eq!(from_gpu(&g, &second, cols), want, "the new recording writes its own output");
    assert_eq!(from_gpu(&g, &first, cols), vec![0.0; cols], "the old recording is gone");
    g.begin_capture(5).unwrap();
    g.rms_norm(&x, &norm, 1e-5, 1, cols, &mut second).unwrap();
    assert!(g.alloc(4).is_err());
    g.end_capture(5).unwrap();
    assert!(!g.replay(5).unwrap(), "a failed re-recording keeps neither graph");
    g.synchronize().unwrap();
}

/// `sample` against the CPU twin: token ids must be equal. Logits are a random permutation of
/// evenly spaced values (no near-ties), over vocabularies below, at and well past one 1024-wide
/// tile, with masked tokens; then a row with the largest vocabulary of the models we serve.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn sample_matches_the_cpu_twin() {
    let g = gpu();
    let cpu = CpuBackend::reference(1).unwrap();
    assert!(g.samples_on_device() && !cpu.samples_on_device());
    let mut rng = Rng(7);
    let settings: [(f32, u32, f32); 10] =
        [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.6, 0, 1.0), (1.0, 50, 1.0), (1.0, 0, 0.9), (0.8, 20, 0.7), (1.1, 1, 1.0), (1.0, 0, 0.0), (1.5, 7, 0.5), (f32::INFINITY, 0, 1.0)];
    for vocab in [5, 1000, 1024, 3000, 128_256] {
        let rows = if vocab > 10_000 { settings.len() } else { 4 * settings.len() };
        let mut logits = Vec::with_capacity(rows * vocab);
        let mut params = Vec::new();
        for r in 0..rows {
            let (temperature, top_k, top_p) = settings[r % settings.len()];
            let spread = rng.f(4.0, 40.0);
            let mut row: Vec<f32> = (0..vocab).map(|j| spread * (j as f32 / vocab as f32 - 0.5)).collect();
            for i in (1..vocab).rev() {
                row.swap(i, rng.below(i as u32 + 1) as usize);
            }
            if r % 4 == 3 && vocab > 10 {
                for _ in 0..vocab / 8 {
                    let i = rng.below(vocab as u32) as usize;
                    row[i] = if i.is_multiple_of(2) { f32::NEG_INFINITY } else { f32::NAN };
                }
            }
            logits.extend_from_slice(&row);
            params.push(DrawParams { temperature, top_k, top_p, min_p: 0.0, uniform: rng.f(0.0, 1.0) });
        }
        let mut want = vec![0u32; rows];
        cpu.sample(&logits, rows, vocab, &params, &mut want).unwrap();
        let mut out = idx_gpu(&g, &vec![u32::MAX; rows]);
        g.sample(&to_gpu(&g, &logits), rows, vocab, &params, &mut out).unwrap();
        let mut got = vec![0u32; rows];
        g.read_indices(&out, &mut got).unwrap();
        for r in 0..rows {
            assert_eq!(got[r], want[r], "vocab {vocab}, row {r}: {:?}", params[r]);
        }
    }
    // More rows than the parameter buffer holds at first: it grows.
    let (rows, vocab) = (1500, 64);
    let logits: Vec<f32> = (0..rows * vocab).map(|i| ((i * 7919) % 1009) as f32 * 0.01).collect();
    let params: Vec<DrawParams> = (0..rows).map(|r| DrawParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: (r % 97) as f32 / 97.0 }).collect();
    let mut want = vec![0u32; rows];
    cpu.sample(&logits, rows, vocab, &params, &mut want).unwrap();
    let mut out = g.alloc_indices(rows).unwrap();
    let lg = to_gpu(&g, &logits);
    g.sample(&lg, rows, vocab, &params, &mut out).unwrap();
    let mut got = vec![0u32; rows];
    g.read_indices(&out, &mut got).unwrap();
    assert_eq!(got, want);
    // Refused while capturing (it uploads its parameters); the stream stays usable.
    g.begin_capture(99).unwrap();
    assert!(g.sample(&lg, 1, vocab, &params[..1], &mut out).is_err());
    assert!(g.read_indices(&out, &mut got[..1]).is_err());
    g.end_capture(99).unwrap();
    assert!(!g.replay(99).unwrap());
    assert!(g.read_indices(&out, &mut got).is_ok());
}

/// The mixture-of-experts ops against the CPU backend's reference mode: the same experts chosen
/// (peaked router logits, no near-ties) with weights within 1e-5, each slot's expert matmul as
/// the CPU's (GEMV tolerance: at most 32 slots), the weighted sum and the shared expert's gate.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs them"]
fn expert_ops_match_the_cpu() {
    use rill_backend::ExpertRoute;
    let g = gpu();
    let cpu = CpuBackend::reference(1).unwrap();
    let mut rng = Rng(7);
    let (rows, experts, used, cols, m) = (6, 8, 2, 256, 40);
    for normalize in [true, false] {
        let route = ExpertRoute { experts, used, normalize, scale: 1.0 };
        // Distinct logits a whole unit apart per row: the top-k cannot tie.
        let logits: Vec<f32> = (0..rows * experts).map(|i| ((i * 5 + i / experts) % experts) as f32 + rng.f(0.0, 0.1)).collect();
        let (mut ids_c, mut w_c) = (vec![0u32; rows * used], vec![0f32; rows * used]);
        cpu.route_experts(&logits, rows, &route, &mut ids_c, &mut w_c).unwrap();
        let (mut ids_g, mut w_g) = (g.alloc_indices(rows * used).unwrap(), g.alloc(rows * used).unwrap());
        g.route_experts(&to_gpu(&g, &logits), rows, &route, &mut ids_g, &mut w_g).unwrap();
        let mut ids = vec![0u32; rows * used];
        g.read_indices(&ids_g, &mut ids).unwrap();
        assert_eq!(ids, ids_c, "chosen experts");
        close(&from_gpu(&g, &w_g, rows * used), &w_c, 1e-5, "expert weights");

        let sources: Vec<MatrixSource> = (0..experts).map(|_| matrix(&mut rng, DType::Q4K, m, cols)).collect();
        let wc: Vec<_> = sources.iter().map(|s| cpu.upload_matrix(s.clone()).unwrap()).collect();
        let wg: Vec<_> = sources.iter().map(|s| g.upload_matrix(s.clone()).unwrap()).collect();
        let x = rng.vec(rows * cols, -1.0, 1.0);
        let mut y_c = vec![0.0; rows * used * m];
        cpu.matmul_experts(&x, false, rows, used, &ids_c, &wc, &mut y_c).unwrap();
        let mut y_g = g.alloc(rows * used * m).unwrap();
        g.matmul_experts(&to_gpu(&g, &x), false, rows, used, &ids_g, &wg, &mut y_g).unwrap();
        let y = from_gpu(&g, &y_g, rows * used * m);
        close(&y, &y_c, 1e-4, "expert matmul");

        let mut out_c = vec![0.0; rows * m];
        cpu.combine_experts(&y, &w_c, rows, used, m, &mut out_c).unwrap();
        let mut out_g = g.alloc(rows * m).unwrap();
        g.combine_experts(&to_gpu(&g, &y), &to_gpu(&g, &w_c), rows, used, m, &mut out_g).unwrap();
        close(&from_gpu(&g, &out_g, rows * m), &out_c, 1e-6, "combine");

        let (gate, shared) = (rng.vec(rows, -3.0, 3.0), rng.vec(rows * m, -1.0, 1.0));
        cpu.add_gated(&mut out_c, &shared, &gate, rows, m).unwrap();
        g.add_gated(&mut out_g, &to_gpu(&g, &shared), &to_gpu(&g, &gate), rows, m).unwrap();
        close(&from_gpu(&g, &out_g, rows * m), &out_c, 1e-5, "shared expert gate");
    }
}
