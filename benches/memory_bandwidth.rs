//! STREAM-like memory bandwidth: copy, scale, add and triad over three f32 arrays much larger
//! than the last-level cache, plus a read-only sum (what decode does with the weights), on one
//! thread and on all physical cores (each thread its own contiguous slice).
//!
//! ```sh
//! cargo bench --bench memory_bandwidth
//! RILL_BW_MIB=512 RILL_BW_REPEATS=10 RILL_BW_THREADS=4 cargo bench --bench memory_bandwidth
//! ```
//!
//! Byte counting follows STREAM: copy and scale move 2 arrays (one read, one write), add and triad
//! 3 (two reads, one write), sum 1; write-allocate traffic is not counted. The figure is the best
//! of `RILL_BW_REPEATS` runs. Settings: `RILL_BW_MIB` (MiB per array, default 256),
//! `RILL_BW_REPEATS` (default 5), `RILL_BW_THREADS` (default: one per physical core).

use std::hint::black_box;
use std::time::Instant;

const SCALAR: f32 = 3.0;

#[derive(Clone, Copy)]
enum Kernel {
    Copy,
    Scale,
    Add,
    Triad,
    Sum,
}

impl Kernel {
    const ALL: [Kernel; 5] = [Kernel::Copy, Kernel::Scale, Kernel::Add, Kernel::Triad, Kernel::Sum];

    fn name(self) -> &'static str {
        match self {
            Kernel::Copy => "copy",
            Kernel::Scale => "scale",
            Kernel::Add => "add",
            Kernel::Triad => "triad",
            Kernel::Sum => "sum (read-only)",
        }
    }

    /// Arrays touched per element (STREAM convention).
    fn arrays(self) -> usize {
        match self {
            Kernel::Copy | Kernel::Scale => 2,
            Kernel::Add | Kernel::Triad => 3,
            Kernel::Sum => 1,
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(default)
}

/// Sum with 16 independent lanes so the compiler can vectorize it.
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = a.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (s, x) in acc.iter_mut().zip(c) {
            *s += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One kernel over one slice of each array (the same range in all three).
fn run_slice(k: Kernel, a: &mut [f32], b: &mut [f32], c: &mut [f32]) -> f32 {
    match k {
        Kernel::Copy => c.copy_from_slice(a),
        Kernel::Scale => b.iter_mut().zip(c.iter()).for_each(|(b, c)| *b = SCALAR * c),
        Kernel::Add => c.iter_mut().zip(a.iter().zip(b.iter())).for_each(|(c, (a, b))| *c = a + b),
        Kernel::Triad => a.iter_mut().zip(b.iter().zip(c.iter())).for_each(|(a, (b, c))| *a = b + SCALAR * c),
        Kernel::Sum => return sum(a),
    }
    0.0
}

/// Runs `k` once over the whole arrays on `threads` threads; returns seconds.
fn run(k: Kernel, threads: usize, a: &mut [f32], b: &mut [f32], c: &mut [f32]) -> f64 {
    let start = Instant::now();
    if threads == 1 {
        black_box(run_slice(k, a, b, c));
    } else {
        let per = a.len().div_ceil(threads);
        std::thread::scope(|s| {
            for ((a, b), c) in a.chunks_mut(per).zip(b.chunks_mut(per)).zip(c.chunks_mut(per)) {
                s.spawn(move || black_box(run_slice(k, a, b, c)));
            }
        });
    }
    start.elapsed().as_secs_f64()
}

fn physical_cores() -> usize {
    // The same count the CPU backend uses for its pool.
    rill_backend_cpu::WorkerPool::new(0).map(|p| p.threads()).unwrap_or(1)
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let mib = env_usize("RILL_BW_MIB", 256);
    let repeats = env_usize("RILL_BW_REPEATS", 5);
    let all = env_usize("RILL_BW_THREADS", physical_cores());
    let n = mib * 1024 * 1024 / 4;
    println!("memory_bandwidth: 3 arrays of {mib} MiB f32 ({n} elements), best of {repeats}, 1 and {all} threads");

    // First touch in parallel, by the same slices the kernels use.
    let (mut a, mut b, mut c) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let per = n.div_ceil(all);
    std::thread::scope(|s| {
        for ((a, b), c) in a.chunks_mut(per).zip(b.chunks_mut(per)).zip(c.chunks_mut(per)) {
            s.spawn(move || {
                a.fill(1.0);
                b.fill(2.0);
                c.fill(0.0);
            });
        }
    });

    let mut thread_counts = vec![1];
    if all > 1 {
        thread_counts.push(all);
    }
    let mut rows = Vec::new();
    for k in Kernel::ALL {
        let mut gbs = Vec::new();
        for &threads in &thread_counts {
            let best = (0..repeats).map(|_| run(k, threads, &mut a, &mut b, &mut c)).fold(f64::MAX, f64::min);
            gbs.push((k.arrays() * n * 4) as f64 / best / 1e9);
        }
        println!("  {:<16} {}", k.name(), gbs.iter().zip(&thread_counts).map(|(g, t)| format!("{t:>2} thr {g:>7.1} GB/s")).collect::<Vec<_>>().join("   "));
        rows.push((k, gbs));
    }
    // Keep the arrays observable so the kernels are not optimized away.
    black_box((&a, &b, &c));

    println!();
    println!("Markdown (GB/s, STREAM byte counting, {mib} MiB arrays, best of {repeats}):");
    println!();
    let head: Vec<String> = thread_counts.iter().map(|t| format!("{t} thread{}", if *t == 1 { "" } else { "s" })).collect();
    println!("| kernel | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(thread_counts.len()));
    for (k, gbs) in rows {
        println!("| {} | {} |", k.name(), gbs.iter().map(|g| format!("{g:.1}")).collect::<Vec<_>>().join(" | "));
    }
}
