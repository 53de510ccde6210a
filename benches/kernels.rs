//! CPU kernel microbenchmarks on the default model's shapes, so a regression shows per kernel:
//! the quantized matmul at decode (1 row: bound by reading weights, reported in weight GB/s)
//! and at batch/prefill sizes (bound by arithmetic, reported in GOP/s of multiply-adds × 2),
//! on every instruction set this CPU has; and activation quantization.
//!
//! `cargo bench --bench kernels` (all threads; `RILL_BENCH_THREADS=1` for one core).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rill_backend::{quant, DType, MatrixSource, SharedBytes};
use rill_backend_cpu::qmatmul::{self, Isa, Q8Activations};
use rill_backend_cpu::{CpuMatrix, MatmulMode, WorkerPool};

fn matrix(dtype: DType, rows: usize, cols: usize) -> CpuMatrix {
    let rb = dtype.row_bytes(cols).unwrap();
    let mut bytes = vec![0u8; rb * rows];
    let src: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.1).collect();
    for r in 0..rows {
        quant::quantize_row(dtype, &src, &mut bytes[r * rb..(r + 1) * rb]).unwrap();
    }
    CpuMatrix::new(MatrixSource { name: "w".into(), dtype, rows, cols, bytes: SharedBytes::from_vec(bytes) }).unwrap()
}

fn activations(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|i| ((i * 31 % 977) as f32 / 977.0 - 0.5) * 4.0).collect()
}

fn pool() -> WorkerPool {
    let threads = std::env::var("RILL_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    WorkerPool::new(threads).unwrap()
}

/// (name, dtype, output rows, input cols): SmolLM2-135M's projections and its LM head.
const SHAPES: [(&str, DType, usize, usize); 4] = [
    ("attn_q 576x576", DType::Q4_1, 576, 576),
    ("ffn_up 1536x576", DType::Q4_1, 1536, 576),
    ("ffn_down 576x1536", DType::Q4_1, 576, 1536),
    ("lm_head 49152x576", DType::Q8_0, 49152, 576),
];

fn decode(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("matmul decode (weight bytes/s)");
    for (name, dtype, m, k) in SHAPES {
        let w = matrix(dtype, m, k);
        let x = activations(1, k);
        let mut out = vec![0f32; m];
        g.throughput(Throughput::Bytes(dtype.row_bytes(k).unwrap() as u64 * m as u64));
        g.bench_function(BenchmarkId::new(name, "1 row"), |b| b.iter(|| w.matmul(&pool, MatmulMode::Integer, &x, 1, &mut out).unwrap()));
    }
    g.finish();
}

fn batched(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("matmul batched (ops/s)");
    g.sample_size(20);
    for (name, dtype, m, k) in SHAPES.into_iter().take(3) {
        let w = matrix(dtype, m, k);
        for rows in [16, 128, 512] {
            let x = activations(rows, k);
            let mut out = vec![0f32; rows * m];
            g.throughput(Throughput::Elements(2 * (m * k * rows) as u64));
            g.bench_function(BenchmarkId::new(name, format!("{rows} rows")), |b| {
                b.iter(|| w.matmul(&pool, MatmulMode::Integer, &x, rows, &mut out).unwrap())
            });
        }
    }
    g.finish();
}

/// One thread, one tile of 16 weight rows against 1 and 64 activation rows, per instruction set.
fn tile_per_isa(c: &mut Criterion) {
    let mut g = c.benchmark_group("tile 16 rows x 576 (ops/s, one thread)");
    let k = 576;
    let dtypes = [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4NL, DType::Q2K, DType::Q3K, DType::Q4K, DType::Q6K, DType::IQ4XS];
    for dtype in dtypes {
        let cols = if dtype.block_len() == 256 { 768 } else { k };
        let rb = dtype.row_bytes(cols).unwrap();
        let mut w = vec![0u8; rb * 16];
        let src = activations(1, cols);
        for r in 0..16 {
            quant::quantize_row(dtype, &src, &mut w[r * rb..(r + 1) * rb]).unwrap();
        }
        for rows in [1, 4, 64] {
            let mut acts = Q8Activations::default();
            acts.quantize(&activations(rows, cols), rows, cols);
            let mut out = vec![0f32; rows * 16];
            g.throughput(Throughput::Elements(2 * (16 * cols * rows) as u64));
            for isa in Isa::available() {
                let id = BenchmarkId::new(format!("{dtype} {}", isa.name()), format!("{rows} rows"));
                // The layout production multiplies on this ISA (Q4_K: interleaved at load).
                let interleaved = qmatmul::interleaves(isa, dtype).then(|| qmatmul::InterleavedQ4K::new(&w, 16, cols));
                // SAFETY: `isa` is available, `w` holds 16 rows, `out` holds rows × 16.
                g.bench_function(id, |b| {
                    b.iter(|| unsafe {
                        match &interleaved {
                            Some(iw) => qmatmul::tile_interleaved(isa, iw.groups(0, 16), 16, &acts, out.as_mut_ptr(), 16),
                            None => qmatmul::tile(isa, dtype, &w, 16, &acts, out.as_mut_ptr(), 16),
                        }
                    })
                });
            }
        }
    }
    g.finish();
}

fn quantize_activations(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantize activations (elements/s)");
    for rows in [1, 128] {
        let x = activations(rows, 576);
        let mut acts = Q8Activations::default();
        g.throughput(Throughput::Elements((rows * 576) as u64));
        g.bench_function(BenchmarkId::new("576 cols", format!("{rows} rows")), |b| b.iter(|| acts.quantize(&x, rows, 576)));
    }
    g.finish();
}

criterion_group!(benches, decode, batched, tile_per_isa, quantize_activations);
criterion_main!(benches);
