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
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

mod cores;

pub use cores::physical_cores;

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

#[cfg(test)]
mod tests;
