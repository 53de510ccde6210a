//! The pool's protocol under load: every task once, parked workers, panics, nesting, drops.

use super::*;
use std::sync::atomic::AtomicU32;

fn counts(n: usize) -> Vec<AtomicU32> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

/// Runs `tasks` tasks on `pool`: whether each ran exactly once.
fn each_task_runs_once(pool: &WorkerPool, tasks: usize) -> bool {
    let c = counts(tasks);
    pool.for_each(tasks, &|t| {
        c[t].fetch_add(1, Ordering::Relaxed);
    });
    c.iter().all(|x| x.load(Ordering::Relaxed) == 1)
}

#[test]
fn pool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<WorkerPool>();
}

#[test]
fn every_task_runs_exactly_once() {
    for threads in [1, 2, 3, 4, 8] {
        let pool = WorkerPool::new(threads).unwrap();
        assert_eq!(pool.threads(), threads);
        for tasks in [0, 1, 2, 3, 5, 7, 8, 9, 64, 1000, 10_007] {
            assert!(each_task_runs_once(&pool, tasks), "threads {threads}, tasks {tasks}");
        }
    }
}

#[test]
fn many_back_to_back_calls() {
    let pool = WorkerPool::new(4).unwrap();
    for call in 0..10_000 {
        assert!(each_task_runs_once(&pool, call % 7), "call {call}");
    }
}

#[test]
fn calls_after_the_workers_parked() {
    let pool = WorkerPool::new(3).unwrap();
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(5)); // longer than the spin: workers park
        assert!(each_task_runs_once(&pool, 10));
    }
}

#[test]
fn all_threads_take_part() {
    let pool = WorkerPool::new(3).unwrap();
    let seen = Mutex::new(std::collections::HashSet::new());
    // Tasks slow enough that every thread gets some.
    pool.for_each(30, &|_| {
        seen.lock().unwrap().insert(thread::current().id());
        thread::sleep(Duration::from_millis(2));
    });
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn panic_propagates_and_pool_stays_usable() {
    let pool = WorkerPool::new(4).unwrap();
    for bad in [0, 5, 99] {
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.for_each(100, &|t| {
                if t == bad {
                    panic!("task {t} fails");
                }
            });
        }));
        let msg = r.expect_err("the panic reaches the caller");
        assert_eq!(msg.downcast_ref::<String>().map(String::as_str), Some(format!("task {bad} fails").as_str()));
        assert!(each_task_runs_once(&pool, 100));
    }
    // Inline paths propagate too.
    assert!(panic::catch_unwind(AssertUnwindSafe(|| pool.for_each(1, &|_| panic!("one")))).is_err());
}

#[test]
fn nested_calls_run_inline() {
    let pool = WorkerPool::new(3).unwrap();
    let c = counts(8 * 8);
    pool.for_each(8, &|i| {
        pool.for_each(8, &|j| {
            c[i * 8 + j].fetch_add(1, Ordering::Relaxed);
        });
    });
    assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1));
}

#[test]
fn concurrent_callers_take_turns() {
    let pool = WorkerPool::new(3).unwrap();
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..500 {
                    assert!(each_task_runs_once(&pool, 17));
                }
            });
        }
    });
}

#[test]
fn drop_joins_workers() {
    let pool = WorkerPool::new(4).unwrap();
    let shared = Arc::downgrade(&pool.shared);
    pool.for_each(10, &|_| {});
    drop(pool);
    // Every worker held an `Arc<Shared>` until it exited; joined workers dropped theirs.
    assert!(shared.upgrade().is_none());
    // Drop right after start, and while workers are parked.
    drop(WorkerPool::new(4).unwrap());
    let pool = WorkerPool::new(2).unwrap();
    thread::sleep(Duration::from_millis(5));
    drop(pool);
}

#[test]
fn chunks_cover_the_slice() {
    let pool = WorkerPool::new(3).unwrap();
    for (len, chunk) in [(0, 4), (1, 4), (10, 3), (12, 3), (1000, 7)] {
        let mut v = vec![0usize; len];
        pool.for_each_chunk_mut(&mut v, chunk, &|i, c| c.iter_mut().enumerate().for_each(|(j, x)| *x += i * chunk + j + 1));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i + 1), "len {len} chunk {chunk}");
    }
}
