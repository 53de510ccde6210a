//! The CPU backend's `WorkerPool` against rayon on the calls a step makes: per-call overhead of
//! fork-join with empty tasks, with tasks that need every thread at once (a rendezvous: a pool
//! that runs tasks on fewer threads than it has would stall), and with 64 tasks of 2 µs.
//!
//! `cargo bench --bench worker_pool`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rayon::prelude::*;
use rill_backend_cpu::WorkerPool;

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn pools(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let pool = WorkerPool::new(threads).unwrap();
    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let arrived = AtomicUsize::new(0);
    // Each task waits (up to 50 ms) until a whole round of `threads` tasks has arrived.
    let rendezvous = |_: usize| {
        let mine = arrived.fetch_add(1, Ordering::AcqRel);
        let goal = (mine / threads + 1) * threads;
        let t = Instant::now();
        while arrived.load(Ordering::Acquire) < goal && t.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    };
    let work = |_: usize| spin_for(Duration::from_micros(2));
    let empty = |i: usize| {
        std::hint::black_box(i);
    };
    type Case<'a> = (&'a str, usize, &'a (dyn Fn(usize) + Sync));
    let cases: [Case; 3] = [("empty", threads, &empty), ("rendezvous", threads, &rendezvous), ("64x2us", 64, &work)];
    let mut g = c.benchmark_group("fork_join");
    for (name, tasks, job) in cases {
        g.bench_function(BenchmarkId::new("WorkerPool", name), |b| b.iter(|| pool.for_each(tasks, job)));
        g.bench_function(BenchmarkId::new("rayon", name), |b| b.iter(|| rayon_pool.install(|| (0..tasks).into_par_iter().for_each(job))));
    }
    // An idle server's first call: the workers have parked.
    g.bench_function("WorkerPool/after_park", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(Duration::from_millis(2));
                let t = Instant::now();
                pool.for_each(threads, &rendezvous);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, pools);
criterion_main!(benches);
