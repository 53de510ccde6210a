//! Backend conformance: every `Backend` op run on fresh random inputs by a candidate backend and
//! by a reference (the CPU oracle), the outputs compared by relative L2 error against named
//! tolerances. Output buffers are poisoned with NaN first, so an element a kernel forgot to write
//! fails the check. Generic over both backends: CI runs it CPU-vs-CPU (SIMD kernels against the
//! reference twins) and `scripts/gpu-check.sh` runs it CUDA-vs-CPU through `rill check-backend`.

use crate::{quant, Activation, AttentionParams, Backend, BackendResult, DType, KvDType, MatrixSource, RopeParams, SharedBytes};

mod attention;
mod sample;

/// Named tolerances on ‖candidate − reference‖ / ‖reference‖.
pub mod tolerance {
    /// Elementwise ops: the same f32 arithmetic, at most an FMA's rounding apart.
    pub const ELEMENTWISE: f64 = 1e-6;
    /// GeGLU: the CPU looks GELU up in ggml's table of f16 inputs and outputs (as llama.cpp's
    /// CPU does); a backend computing it in f32 differs by that rounding (~2e-4 relative).
    pub const GELU: f64 = 2e-3;
    /// RMSNorm and RoPE: reductions in another order, library sin/cos.
    pub const NORM_ROPE: f64 = 1e-5;
    /// Dequantized rows (embedding gather): exact up to an FMA in `d·q + m`.
    pub const DEQUANT: f64 = 1e-6;
    /// Matmuls: the reference multiplies dequantized weights by f32 activations; candidates may
    /// round activations to 8-bit blocks (CPU integer kernels, ~3e-3 on random data) or weights
    /// and activations to bf16 (GPU tensor-core path, ~4e-3).
    pub const MATMUL: f64 = 1e-2;
    /// Attention over an f16 or f32 cache. The CPU twin keeps ggml's f16 value accumulator over
    /// the first 256 positions (to match llama.cpp bit for bit), which alone is up to 2.5e-3
    /// from exact math (`cpu_attention_is_close_to_exact_math` in backend-cpu); a backend that
    /// accumulates in f32 is that far from the twin, plus summation order and split merging.
    pub const ATTENTION: f64 = 1e-2;
    /// Sampled token ids (`rel_err` is the fraction of rows whose token differs): exact. The
    /// logits are distinct by construction, far apart next to an ulp of `exp`, so the only
    /// arithmetic backends may differ in cannot move a decision.
    pub const SAMPLE: f64 = 0.0;
}

/// The outcome of one op on one case.
#[derive(Debug, Clone)]
pub struct Check {
    pub op: &'static str,
    pub case: String,
    /// ‖candidate − reference‖ / ‖reference‖; infinite when an output is not finite.
    pub rel_err: f64,
    pub tolerance: f64,
    /// A backend error instead of an output.
    pub error: Option<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.rel_err <= self.tolerance
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed() { "ok  " } else { "FAIL" };
        match &self.error {
            Some(e) => write!(f, "{verdict} {:<12} {:<40} error: {e}", self.op, self.case),
            None => write!(f, "{verdict} {:<12} {:<40} rel err {:.2e} (tolerance {:.0e})", self.op, self.case, self.rel_err, self.tolerance),
        }
    }
}

/// ‖c − r‖ / ‖r‖ over the whole output; infinite if `c` has a NaN or infinity where `r` is finite.
pub fn rel_err(reference: &[f32], candidate: &[f32]) -> f64 {
    if reference.len() != candidate.len() {
        return f64::INFINITY;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&r, &c) in reference.iter().zip(candidate) {
        if !c.is_finite() && r.is_finite() {
            return f64::INFINITY;
        }
        diff += (c as f64 - r as f64).powi(2);
        norm += (r as f64).powi(2);
    }
    diff.sqrt() / norm.sqrt().max(1e-30)
}

/// Every matrix dtype a backend is expected to multiply.
pub const MATRIX_DTYPES: [DType; 15] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::IQ4NL,
    DType::Q2K,
    DType::Q3K,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
    DType::IQ4XS,
];

/// Runs every check; `seed` draws the inputs (use a fresh one per run).
pub fn run<R: Backend, C: Backend>(reference: &R, candidate: &C, seed: u64) -> Vec<Check> {
    let mut h = Harness { r: reference, c: candidate, rng: Rng::new(seed), checks: Vec::new() };
    h.elementwise();
    h.rope();
    for vocab in [1000, 5000] {
        h.sample(vocab);
    }
    for dtype in MATRIX_DTYPES {
        h.embed(dtype);
        for rows in [1, 2, 5, 8, 9, 33] {
            h.matmul(dtype, rows);
        }
    }
    h.matmul_many(DType::Q4_1, 3);
    h.matmul_many(DType::Q8_0, 17);
    for (kv_dtype, head_dim) in [(KvDType::F16, 64), (KvDType::F16, 128), (KvDType::F32, 64)] {
        h.attention(kv_dtype, head_dim, AttentionParams::causal(head_dim));
    }
    // Gemma's layers: a pre-scaled query (scale 1), Gemma 2's soft cap, a sliding window.
    h.attention(KvDType::F16, 256, AttentionParams { scale: 1.0, softcap: 50.0, window: 64, ..AttentionParams::causal(256) });
    h.attention(KvDType::F16, 128, AttentionParams { window: 200, ..AttentionParams::causal(128) });
    if candidate.graphs_supported() {
        h.graph_replay();
    }
    h.checks
}

/// SplitMix64: seeded test data without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.unit() * scale).collect()
    }
}

/// One buffer on each backend.
struct Both<R: Backend, C: Backend> {
    r: R::Buffer,
    c: C::Buffer,
    len: usize,
}

struct Harness<'a, R: Backend, C: Backend> {
    r: &'a R,
    c: &'a C,
    rng: Rng,
    checks: Vec<Check>,
}

impl<R: Backend, C: Backend> Harness<'_, R, C> {
    fn buffer(&self, data: &[f32]) -> BackendResult<Both<R, C>> {
        let (mut r, mut c) = (self.r.alloc(data.len())?, self.c.alloc(data.len())?);
        self.r.write(&mut r, data)?;
        self.c.write(&mut c, data)?;
        Ok(Both { r, c, len: data.len() })
    }

    fn random(&mut self, len: usize, scale: f32) -> BackendResult<Both<R, C>> {
        let data = self.rng.vec(len, scale);
        self.buffer(&data)
    }

    /// An output buffer full of NaN, so unwritten elements fail the comparison.
    fn poisoned(&self, len: usize) -> BackendResult<Both<R, C>> {
        self.buffer(&vec![f32::NAN; len])
    }

    fn indices(&self, data: &[u32]) -> BackendResult<(R::Indices, C::Indices)> {
        let (mut r, mut c) = (self.r.alloc_indices(data.len().max(1))?, self.c.alloc_indices(data.len().max(1))?);
        self.r.write_indices(&mut r, data)?;
        self.c.write_indices(&mut c, data)?;
        Ok((r, c))
    }

    fn matrix(&self, dtype: DType, rows: usize, cols: usize, weights: &[f32]) -> BackendResult<(R::Matrix, C::Matrix)> {
        let mut bytes = vec![0u8; dtype.row_bytes(cols).expect("whole blocks") * rows];
        let row_bytes = bytes.len() / rows;
        for (src, dst) in weights.chunks_exact(cols).zip(bytes.chunks_exact_mut(row_bytes)) {
            quant::quantize_row(dtype, src, dst).expect("supported dtype");
        }
        let bytes = SharedBytes::from_vec(bytes);
        let source = |name: &str| MatrixSource { name: name.into(), dtype, rows, cols, bytes: bytes.clone() };
        Ok((self.r.upload_matrix(source("reference"))?, self.c.upload_matrix(source("candidate"))?))
    }

    /// Weights with a different magnitude per row, as real layers have.
    fn weights(&mut self, rows: usize, cols: usize) -> Vec<f32> {
        let mut w = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            let scale = 0.05 + self.rng.unit().abs();
            w.extend((0..cols).map(|_| self.rng.unit() * scale));
        }
        w
    }

    fn read(&self, b: &Both<R, C>) -> BackendResult<(Vec<f32>, Vec<f32>)> {
        let (mut r, mut c) = (vec![0.0; b.len], vec![0.0; b.len]);
        self.r.read(&b.r, &mut r)?;
        self.c.read(&b.c, &mut c)?;
        Ok((r, c))
    }

    /// Runs `f`, reads `out` from both backends and records the comparison.
    fn check(&mut self, op: &'static str, case: String, tolerance: f64, f: impl FnOnce(&mut Self) -> BackendResult<Both<R, C>>) {
        let outcome = f(self).and_then(|out| self.read(&out));
        let check = match outcome {
            Ok((r, c)) => Check { op, case, rel_err: rel_err(&r, &c), tolerance, error: None },
            Err(e) => Check { op, case, rel_err: f64::INFINITY, tolerance, error: Some(e.to_string()) },
        };
        self.checks.push(check);
    }

    fn elementwise(&mut self) {
        let len = 4099;
        self.check("add", format!("len {len}"), tolerance::ELEMENTWISE, |h| {
            let (x, y) = (h.rng.vec(len, 3.0), h.rng.vec(len, 3.0));
            let mut out = h.buffer(&x)?;
            let y = h.buffer(&y)?;
            h.r.add(&mut out.r, &y.r, len)?;
            h.c.add(&mut out.c, &y.c, len)?;
            Ok(out)
        });
        for (act, tol) in [(Activation::Silu, tolerance::ELEMENTWISE), (Activation::GeluTanh, tolerance::GELU)] {
            self.check("glu", format!("{act:?} len {len}"), tol, |h| {
                let (g, u) = (h.random(len, 12.0)?, h.random(len, 2.0)?);
                let mut out = h.poisoned(len)?;
                h.r.glu(act, &g.r, &u.r, len, &mut out.r)?;
                h.c.glu(act, &g.c, &u.c, len, &mut out.c)?;
                Ok(out)
            });
        }
        self.check("scale", format!("len {len}"), tolerance::ELEMENTWISE, |h| {
            let mut x = h.random(len, 3.0)?;
            h.r.scale(&mut x.r, 23.9, len)?;
            h.c.scale(&mut x.c, 23.9, len)?;
            Ok(x)
        });
        self.check("softcap", format!("len {len}"), tolerance::NORM_ROPE, |h| {
            let mut x = h.random(len, 80.0)?;
            h.r.softcap(&mut x.r, 30.0, len)?;
            h.c.softcap(&mut x.c, 30.0, len)?;
            Ok(x)
        });
        let (rows, dim) = (5, 576);
        self.check("add_bias", format!("{rows}x{dim}"), tolerance::ELEMENTWISE, |h| {
            let mut out = h.random(rows * dim, 1.0)?;
            let bias = h.random(dim, 1.0)?;
            h.r.add_bias(&mut out.r, &bias.r, rows, dim)?;
            h.c.add_bias(&mut out.c, &bias.c, rows, dim)?;
            Ok(out)
        });
        self.check("gather_rows", "4 of 10 rows of 96".into(), tolerance::ELEMENTWISE, |h| {
            let x = h.random(10 * 96, 1.0)?;
            let (ir, ic) = h.indices(&[3, 0, 9, 3])?;
            let mut out = h.poisoned(4 * 96)?;
            h.r.gather_rows(&x.r, &ir, 4, 96, &mut out.r)?;
            h.c.gather_rows(&x.c, &ic, 4, 96, &mut out.c)?;
            Ok(out)
        });
        for (rows, dim) in [(7, 576), (3, 4096), (1, 64)] {
            self.check("rms_norm", format!("{rows}x{dim}"), tolerance::NORM_ROPE, |h| {
                let x = h.random(rows * dim, 4.0)?;
                let w = h.random(dim, 1.5)?;
                let mut out = h.poisoned(rows * dim)?;
                h.r.rms_norm(&x.r, &w.r, 1e-5, rows, dim, &mut out.r)?;
                h.c.rms_norm(&x.c, &w.c, 1e-5, rows, dim, &mut out.c)?;
                Ok(out)
            });
        }
    }

    fn rope(&mut self) {
        for (neox, head_dim, rot_dim, scaled) in [(false, 64, 64, false), (true, 64, 64, false), (true, 128, 128, false), (false, 128, 64, false), (true, 96, 64, true)] {
            let (rows, heads) = (6, 4);
            let mut rope = RopeParams::new(rot_dim, 10_000.0, neox);
            if scaled {
                // LongRoPE: per-pair factors and a magnitude correction; linear scaling.
                let freq_factors = (0..rot_dim / 2).map(|i| 1.0 + 0.3 * i as f32).collect();
                rope = RopeParams { freq_scale: 0.25, freq_factors, mscale: 1.19, ..rope };
            }
            let kind = if neox { "neox" } else { "normal" };
            let extra = if scaled { ", factors, linear 4, mscale" } else { "" };
            self.check("rope", format!("{kind} head_dim {head_dim} rot {rot_dim}{extra}"), tolerance::NORM_ROPE, |h| {
                let positions: Vec<u32> = (0..rows).map(|_| h.rng.below(8192) as u32).collect();
                let (pr, pc) = h.indices(&positions)?;
                let mut x = h.random(rows * heads * head_dim, 2.0)?;
                h.r.rope(&mut x.r, &pr, rows, heads, head_dim, &rope)?;
                h.c.rope(&mut x.c, &pc, rows, heads, head_dim, &rope)?;
                Ok(x)
            });
        }
    }

    fn embed(&mut self, dtype: DType) {
        let (vocab, cols, n) = (300, 256, 9);
        self.check("embed", format!("{dtype:?} {vocab}x{cols}, {n} tokens"), tolerance::DEQUANT, |h| {
            let w = h.weights(vocab, cols);
            let (mr, mc) = h.matrix(dtype, vocab, cols, &w)?;
            let mut tokens: Vec<u32> = (0..n).map(|_| h.rng.below(vocab) as u32).collect();
            tokens[0] = 0;
            tokens[n - 1] = vocab as u32 - 1;
            let (tr, tc) = h.indices(&tokens)?;
            let mut out = h.poisoned(n * cols)?;
            h.r.embed(&mr, &tr, n, &mut out.r)?;
            h.c.embed(&mc, &tc, n, &mut out.c)?;
            Ok(out)
        });
    }

    fn matmul(&mut self, dtype: DType, rows: usize) {
        let (out_features, cols) = (320, 512);
        self.check("matmul", format!("{dtype:?} {out_features}x{cols}, {rows} rows"), tolerance::MATMUL, |h| {
            let w = h.weights(out_features, cols);
            let (mr, mc) = h.matrix(dtype, out_features, cols, &w)?;
            let x = h.random(rows * cols, 1.0)?;
            let mut out = h.poisoned(rows * out_features)?;
            h.r.matmul(&x.r, &mr, rows, &mut out.r)?;
            h.c.matmul(&x.c, &mc, rows, &mut out.c)?;
            Ok(out)
        });
    }

    /// q/k/v-shaped matrices sharing one input; the three outputs compared as one.
    fn matmul_many(&mut self, dtype: DType, rows: usize) {
        let (cols, shapes) = (256, [192, 64, 64]);
        self.check("matmul_many", format!("{dtype:?} q/k/v from {cols}, {rows} rows"), tolerance::MATMUL, |h| {
            let x = h.random(rows * cols, 1.0)?;
            let mut mats = Vec::new();
            let mut outs = Vec::new();
            for o in shapes {
                let w = h.weights(o, cols);
                mats.push(h.matrix(dtype, o, cols, &w)?);
                outs.push(h.poisoned(rows * o)?);
            }
            {
                let mut jobs: Vec<_> = mats.iter().zip(outs.iter_mut()).map(|(m, o)| (&m.0, &mut o.r)).collect();
                h.r.matmul_many(&x.r, rows, &mut jobs)?;
            }
            {
                let mut jobs: Vec<_> = mats.iter().zip(outs.iter_mut()).map(|(m, o)| (&m.1, &mut o.c)).collect();
                h.c.matmul_many(&x.c, rows, &mut jobs)?;
            }
            // Concatenate the three outputs into one buffer pair for the comparison.
            let total: usize = shapes.iter().map(|o| rows * o).sum();
            let (mut r, mut c) = (Vec::with_capacity(total), Vec::with_capacity(total));
            for o in &outs {
                let (ro, co) = h.read(o)?;
                r.extend(ro);
                c.extend(co);
            }
            let mut both = h.buffer(&r)?;
            h.c.write(&mut both.c, &c)?;
            Ok(both)
        });
    }

    /// Records rms_norm → matmul → SiLU·up once, then replays it on new inputs written into
    /// the same buffers: the replay must compute on the new data.
    fn graph_replay(&mut self) {
        let (rows, dim, ff) = (4, 256, 320);
        self.check("graph", format!("record, new inputs, replay ({rows} rows)"), tolerance::MATMUL, |h| {
            let (gate_w, up_w) = (h.weights(ff, dim), h.weights(ff, dim));
            let (gate_w, up_w) = (h.matrix(DType::Q4_0, ff, dim, &gate_w)?, h.matrix(DType::Q4_0, ff, dim, &up_w)?);
            let norm_w = h.random(dim, 1.0)?;
            let mut x = h.random(rows * dim, 1.0)?;
            let (mut normed, mut gate, mut up, mut out) = (h.poisoned(rows * dim)?, h.poisoned(rows * ff)?, h.poisoned(rows * ff)?, h.poisoned(rows * ff)?);
            let key = 0x6a11;
            h.c.begin_capture(key)?;
            let recorded = (|| {
                h.c.rms_norm(&x.c, &norm_w.c, 1e-5, rows, dim, &mut normed.c)?;
                h.c.matmul(&normed.c, &gate_w.1, rows, &mut gate.c)?;
                h.c.matmul(&normed.c, &up_w.1, rows, &mut up.c)?;
                h.c.glu(Activation::Silu, &gate.c, &up.c, rows * ff, &mut out.c)
            })();
            h.c.end_capture(key)?;
            recorded?;
            let fresh = h.rng.vec(rows * dim, 1.0);
            h.r.write(&mut x.r, &fresh)?;
            h.c.write(&mut x.c, &fresh)?;
            h.c.write(&mut out.c, &vec![f32::NAN; rows * ff])?;
            if !h.c.replay(key)? {
                return Err(crate::BackendError::Device("replay found no recording".into()));
            }
            h.r.rms_norm(&x.r, &norm_w.r, 1e-5, rows, dim, &mut normed.r)?;
            h.r.matmul(&normed.r, &gate_w.0, rows, &mut gate.r)?;
            h.r.matmul(&normed.r, &up_w.0, rows, &mut up.r)?;
            h.r.glu(Activation::Silu, &gate.r, &up.r, rows * ff, &mut out.r)?;
            Ok(out)
        });
    }
}
