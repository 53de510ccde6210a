//! A small fork-join worker pool with low per-call overhead.
//!
//! `for_each(tasks, job)` runs `job(task)` for every task in `0..tasks`; the calling thread works
//! too, and tasks are claimed dynamically from one atomic counter. The pool's persistent workers
//! (`rill-cpu-{i}`) wait for work by spinning briefly on a state word, then park, so back-to-back
//! calls (one decode step is hundreds of them) cost a few hundred nanoseconds while an idle
//! server burns no CPU.
//!
//! Protocol. One call at a time owns the pool (`call_lock`). The caller writes the job (a
//! type-erased pointer), the task count and `entry = generation` (open, no one inside), then
//! publishes them with a Release store of `state = (generation << PART_BITS) | participants`.
//! A worker whose index is below `participants` joins the call by incrementing the active count
//! in `entry` with a CAS that succeeds only while `entry` still names that generation and is not
//! closed; then it reads the job, claims tasks, and leaves with a Release decrement. The caller,
//! once the task counter is exhausted, closes `entry` and spins until its active count is zero
//! (Acquire) before it returns, so no worker touches the job after `for_each` returns. A worker
//! that arrives late (still waking up, or descheduled on a busy machine) finds the call closed
//! and skips it: the caller never waits for a worker that holds no task.
//!
//! Sleep. A worker sets its `sleeping` flag, re-reads `state` (both SeqCst), and parks only if it
//! has not changed; the caller stores `state` (SeqCst) and then swaps each participant's
//! `sleeping` to false, unparking it if it was set. Either the worker sees the new state or the
//! caller sees the flag, so no wake-up is lost.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::collections::BTreeSet;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(100);
/// Low bits of `state` hold the participant count of the current call.
const PART_BITS: u32 = 16;
const PART_MASK: u64 = (1 << PART_BITS) - 1;
/// Most threads a pool may have (the participant count must fit `PART_BITS`).
const MAX_THREADS: usize = PART_MASK as usize + 1;
/// `entry` = `(generation << ENTRY_GEN_SHIFT) | CLOSED? | active workers`.
const ENTRY_GEN_SHIFT: u32 = 24;
const CLOSED: u64 = 1 << 23;
const ACTIVE_MASK: u64 = CLOSED - 1;

type Job = dyn Fn(usize) + Sync;

thread_local! {
    /// True on pool workers and on a caller while it runs its share of tasks: a `for_each` from
    /// here runs inline instead of waiting on a pool that is busy with the enclosing call.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Keeps hot atomics on their own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

struct WorkerSlot {
    sleeping: AtomicBool,
    thread: Thread,
}

struct Shared {
    /// `(generation << PART_BITS) | participants`.
    state: Padded<AtomicU64>,
    /// Next task to claim.
    next: Padded<AtomicUsize>,
    /// The current call's generation (low 40 bits), whether it is closed to new workers, and how
    /// many workers are inside it.
    entry: Padded<AtomicU64>,
    /// Tasks in the current call.
    tasks: AtomicUsize,
    /// The current job, lifetime erased. Written only by the caller holding `call_lock` while no
    /// worker is inside a call (`entry` active count zero after closing); read only by workers
    /// between joining a call through `entry` and leaving it.
    job: UnsafeCell<Option<*const Job>>,
    /// Set by the first panicking task: the rest of the call's tasks are skipped.
    poisoned: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    /// Filled once at start-up, before any call.
    slots: Vec<Padded<WorkerSlot>>,
}

// SAFETY: every field but `job` is Sync by itself. `job` is accessed under the protocol described
// in the module docs: the single writer (the caller owning `call_lock`) and the readers (the
// workers inside one call) are ordered by the Release/Acquire pairs on `state` and `entry`, and
// the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above; the pointee is Sync.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs tasks of the current call until none is left.
    ///
    /// # Safety
    /// The caller must own the current call or have joined it through `entry`, so `job` is set
    /// and its referent outlives this function.
    unsafe fn run_tasks(&self) {
        // SAFETY: see the function's contract.
        let job = unsafe { &*(*self.job.get()).expect("a call is in progress") };
        let tasks = self.tasks.load(Ordering::Relaxed);
        let was_in_job = IN_JOB.with(|f| f.replace(true));
        loop {
            let task = self.next.0.fetch_add(1, Ordering::Relaxed);
            if task >= tasks || self.poisoned.load(Ordering::Relaxed) {
                break;
            }
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| job(task))) {
                self.poisoned.store(true, Ordering::Relaxed);
                let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(payload);
                }
            }
        }
        IN_JOB.with(|f| f.set(was_in_job));
    }
}

pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: usize,
    /// One `for_each` at a time owns the workers; concurrent callers queue here.
    call_lock: Mutex<()>,
    handles: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// `threads` workers in all, counting the calling thread (0: one per physical core).
    pub fn new(threads: usize) -> io::Result<WorkerPool> {
        let threads = if threads == 0 { physical_cores() } else { threads };
        if threads > MAX_THREADS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{threads} threads, at most {MAX_THREADS}")));
        }
        let spawned = threads - 1;
        // The shared state holds the workers' `Thread` handles, so spawn first and hand each
        // worker the finished state through a start channel.
        let mut handles = Vec::with_capacity(spawned);
        let mut start_txs = Vec::with_capacity(spawned);
        for i in 0..spawned {
            let (start_tx, start_rx) = std::sync::mpsc::channel::<Arc<Shared>>();
            let spawned = thread::Builder::new().name(format!("rill-cpu-{i}")).spawn(move || {
                // The pool is being dropped before it finished starting when the sender is gone.
                if let Ok(shared) = start_rx.recv() {
                    worker_loop(&shared, i);
                }
            });
            match spawned {
                Ok(h) => {
                    handles.push(h);
                    start_txs.push(start_tx);
                }
                Err(e) => {
                    drop(start_txs); // the started workers see a closed channel and exit
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(e);
                }
            }
        }
        let slots = handles
            .iter()
            .map(|h| Padded(WorkerSlot { sleeping: AtomicBool::new(false), thread: h.thread().clone() }))
            .collect();
        let shared = Arc::new(Shared {
            state: Padded(AtomicU64::new(0)),
            next: Padded(AtomicUsize::new(0)),
            entry: Padded(AtomicU64::new(0)),
            tasks: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            poisoned: AtomicBool::new(false),
            panic: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            slots,
        });
        for tx in start_txs {
            // A worker only disappears early if it panicked, which `worker_loop` never does.
            let _ = tx.send(shared.clone());
        }
        Ok(WorkerPool { shared, threads, call_lock: Mutex::new(()), handles })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job(task)` for every task in `0..tasks` across the pool; the calling thread works
    /// too; returns when all are done. Tasks are claimed dynamically (atomic counter). A panic in
    /// a job is propagated to the caller after all workers finished (no deadlock, pool stays
    /// usable); the remaining tasks of that call may be skipped. A call from inside a job (of any
    /// pool) runs inline on the calling thread.
    pub fn for_each(&self, tasks: usize, job: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        if tasks == 1 || self.threads == 1 || IN_JOB.with(|f| f.get()) {
            (0..tasks).for_each(job);
            return;
        }
        let guard = self.call_lock.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        let participants = (self.threads - 1).min(tasks - 1);
        // SAFETY (lifetime erasure): the pointer is cleared below before this function returns,
        // and we return only after closing `entry` and seeing no worker inside, i.e. after every
        // worker stopped touching it. No worker is inside an earlier call (that call waited
        // too), so this write races with no read.
        unsafe {
            let erased: *const Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(job);
            *sh.job.get() = Some(erased);
        }
        sh.tasks.store(tasks, Ordering::Relaxed);
        sh.next.0.store(0, Ordering::Relaxed);
        sh.poisoned.store(false, Ordering::Relaxed);
        let generation = (sh.state.0.load(Ordering::Relaxed) >> PART_BITS).wrapping_add(1);
        sh.entry.0.store(generation << ENTRY_GEN_SHIFT, Ordering::Relaxed);
        sh.state.0.store((generation << PART_BITS) | participants as u64, Ordering::SeqCst);
        for slot in &sh.slots[..participants] {
            if slot.0.sleeping.swap(false, Ordering::SeqCst) {
                slot.0.thread.unpark();
            }
        }
        // SAFETY: we own the current call and `job` is set.
        unsafe { sh.run_tasks() };
        sh.entry.0.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        while sh.entry.0.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
            spins = spins.wrapping_add(1);
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                // Workers were descheduled (an oversubscribed machine): let them run.
                thread::yield_now();
            }
        }
        // SAFETY: no participant is running any more.
        unsafe { *sh.job.get() = None };
        let payload = if sh.poisoned.load(Ordering::Relaxed) {
            sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take()
        } else {
            None
        };
        drop(guard);
        if let Some(payload) = payload {
            panic::resume_unwind(payload);
        }
    }

    /// Splits `data` into chunks of `chunk` elements (the last may be shorter) and runs
    /// `job(chunk_index, chunk)` for each across the pool, like `for_each`.
    pub fn for_each_chunk_mut<T: Send>(&self, data: &mut [T], chunk: usize, job: &(dyn Fn(usize, &mut [T]) + Sync)) {
        assert!(chunk > 0, "chunk size 0");
        let len = data.len();
        let base = DisjointPtr(data.as_mut_ptr());
        self.for_each(len.div_ceil(chunk), &|i| {
            let start = i * chunk;
            let n = chunk.min(len - start);
            // SAFETY: each task index is run exactly once, so the chunks handed out are disjoint
            // sub-slices of `data`, which stays mutably borrowed for the whole call.
            let c = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
            job(i, c);
        });
    }
}

/// A pointer into a buffer that pool tasks write through, each task its own disjoint elements;
/// the `for_each` call that uses it returns only after every task finished.
pub(crate) struct DisjointPtr<T>(pub(crate) *mut T);
// SAFETY: users hand each task elements no other task touches, of a buffer (of `T: Send`) that
// outlives the pool call.
unsafe impl<T: Send> Sync for DisjointPtr<T> {}
unsafe impl<T: Send> Send for DisjointPtr<T> {}
impl<T> Clone for DisjointPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DisjointPtr<T> {}
impl<T> DisjointPtr<T> {
    /// A method, so closures capture the wrapper (which is `Sync`), not the bare pointer.
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

fn worker_loop(sh: &Shared, index: usize) {
    IN_JOB.with(|f| f.set(true));
    let mut seen = 0u64;
    loop {
        let state = wait_for_change(sh, index, seen);
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = state;
        if index < (state & PART_MASK) as usize && join(sh, (state >> PART_BITS) << ENTRY_GEN_SHIFT) {
            // SAFETY: we joined the call published in `state` (Acquire) before it was closed;
            // its owner waits for us to leave before it clears the job.
            unsafe { sh.run_tasks() };
            sh.entry.0.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Enters the call whose `entry` generation bits are `generation`, unless it is over or closed.
fn join(sh: &Shared, generation: u64) -> bool {
    let mut e = sh.entry.0.load(Ordering::Relaxed);
    loop {
        // Also false when the CLOSED bit is set.
        if e & !ACTIVE_MASK != generation {
            return false;
        }
        match sh.entry.0.compare_exchange_weak(e, e + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => e = now,
        }
    }
}

/// Spins, then parks, until `state` differs from `seen` (or shutdown); returns the new state.
fn wait_for_change(sh: &Shared, index: usize, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = sh.state.0.load(Ordering::Acquire);
        if state != seen || sh.shutdown.load(Ordering::Relaxed) {
            return state;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(128) && start.elapsed() > SPIN {
            break;
        }
    }
    let slot = &sh.slots[index].0;
    loop {
        slot.sleeping.store(true, Ordering::SeqCst);
        let state = sh.state.0.load(Ordering::SeqCst);
        if state != seen || sh.shutdown.load(Ordering::SeqCst) {
            slot.sleeping.store(false, Ordering::Relaxed);
            return state;
        }
        thread::park();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::SeqCst);
        // A new generation with no participants: spinning workers notice the change.
        let generation = (sh.state.0.load(Ordering::Relaxed) >> PART_BITS).wrapping_add(1);
        sh.state.0.store(generation << PART_BITS, Ordering::SeqCst);
        for slot in &sh.slots {
            slot.0.thread.unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Physical cores this process may run on: unique `core_cpus_list` (or `thread_siblings_list`)
/// sets of the CPUs in its affinity mask, capped by `available_parallelism` (which honours cgroup
/// CPU quotas); `available_parallelism` alone where sysfs is not readable.
pub fn physical_cores() -> usize {
    let logical = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    sysfs_physical_cores().map_or(logical, |p| p.clamp(1, logical))
}

fn sysfs_physical_cores() -> Option<usize> {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_owned())))
        .and_then(|list| parse_cpu_list(&list));
    let cpus = match allowed {
        Some(cpus) => cpus,
        None => {
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
            parse_cpu_list(online.trim())?
        }
    };
    let mut cores = BTreeSet::new();
    for cpu in cpus {
        let topo = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let siblings = std::fs::read_to_string(format!("{topo}/core_cpus_list"))
            .or_else(|_| std::fs::read_to_string(format!("{topo}/thread_siblings_list")))
            .ok()?;
        cores.insert(siblings.trim().to_owned());
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn counts(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
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
                let c = counts(tasks);
                pool.for_each(tasks, &|t| {
                    c[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1), "threads {threads}, tasks {tasks}");
            }
        }
    }

    #[test]
    fn many_back_to_back_calls() {
        let pool = WorkerPool::new(4).unwrap();
        let total = AtomicUsize::new(0);
        for call in 0..10_000 {
            let tasks = call % 7;
            let c = counts(tasks);
            pool.for_each(tasks, &|t| {
                c[t].fetch_add(1, Ordering::Relaxed);
                total.fetch_add(1, Ordering::Relaxed);
            });
            assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1), "call {call}");
        }
        assert_eq!(total.load(Ordering::Relaxed), (0..10_000).map(|c| c % 7).sum::<usize>());
    }

    #[test]
    fn calls_after_the_workers_parked() {
        let pool = WorkerPool::new(3).unwrap();
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(5)); // longer than the spin: workers park
            let c = counts(10);
            pool.for_each(10, &|t| {
                c[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1));
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
            let c = counts(100);
            pool.for_each(100, &|t| {
                c[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1));
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
                        let c = counts(17);
                        pool.for_each(17, &|t| {
                            c[t].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 1));
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

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(physical_cores() >= 1);
        assert!(physical_cores() <= thread::available_parallelism().unwrap().get());
    }

    /// Per-call overhead against rayon (for information):
    /// `cargo test -p rill-backend-cpu --release pool_overhead -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn pool_overhead() {
        use rayon::prelude::*;
        let threads = physical_cores().max(2);
        let pool = WorkerPool::new(threads).unwrap();
        let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let spin_for = |d: Duration| {
            let t = Instant::now();
            while t.elapsed() < d {
                std::hint::spin_loop();
            }
        };
        // Tasks that wait for one another: every thread must take one (a true fork-join).
        let arrived = AtomicUsize::new(0);
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
        type Case<'a> = (&'a str, usize, usize, &'a (dyn Fn(usize) + Sync));
        let cases: [Case; 3] = [
            ("empty tasks", threads, 200_000, &empty),
            ("rendezvous tasks (all threads must join)", threads, 50_000, &rendezvous),
            ("64 tasks of 2 us", 64, 5_000, &work),
        ];
        for (name, tasks, calls, job) in cases {
            let mut ours = f64::MAX;
            let mut theirs = f64::MAX;
            for _ in 0..3 {
                arrived.store(0, Ordering::Relaxed);
                let t = Instant::now();
                for _ in 0..calls {
                    pool.for_each(tasks, job);
                }
                ours = ours.min(t.elapsed().as_nanos() as f64 / calls as f64);
                arrived.store(0, Ordering::Relaxed);
                let t = Instant::now();
                for _ in 0..calls {
                    rayon_pool.install(|| (0..tasks).into_par_iter().for_each(job));
                }
                theirs = theirs.min(t.elapsed().as_nanos() as f64 / calls as f64);
            }
            println!("{threads} threads, {tasks} {name}: WorkerPool {ours:.0} ns/call, rayon install+into_par_iter {theirs:.0} ns/call");
        }
        // Waking parked workers (an idle server's first call).
        let mut wake = Duration::ZERO;
        for _ in 0..50 {
            thread::sleep(Duration::from_millis(2));
            arrived.store(0, Ordering::Relaxed);
            let t = Instant::now();
            pool.for_each(threads, &rendezvous);
            wake += t.elapsed();
        }
        println!("rendezvous after the workers parked: WorkerPool {:.1} us/call", wake.as_secs_f64() * 1e6 / 50.0);
    }
}
