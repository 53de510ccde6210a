//! The engine thread and its handle. One thread per model owns the scheduler, the block manager
//! and the executor; everything reaches it through a command channel and leaves through one event
//! channel per request. The hot loop is `step`: schedule → execute → update.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::executor::Executor;
use crate::kv::SeqId;
use crate::metrics::StepMetrics;
use crate::scheduler::{Schedule, Scheduler, SchedulerConfig};
use crate::{choice_seed, EngineError, ExecuteError, FinishReason, ForwardBatch, GenerateRequest, RequestId, SampledToken, StreamEvent, Usage};

enum Command {
    /// Boxed: a request is far larger than the other commands.
    Submit { id: RequestId, request: Box<GenerateRequest>, events: UnboundedSender<StreamEvent> },
    Abort(RequestId),
    AbortAll,
    Shutdown,
}

/// The receiving end of one request.
pub struct RequestStream {
    pub id: RequestId,
    events: UnboundedReceiver<StreamEvent>,
}

impl RequestStream {
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        self.events.recv().await
    }

    /// For callers outside an async runtime (the CLI, tests).
    pub fn blocking_recv(&mut self) -> Option<StreamEvent> {
        self.events.blocking_recv()
    }

    /// Waits for the whole request (outside an async runtime): every choice's tokens, finish
    /// reason and usage, calling `on_token(index, token)` as each arrives. A failed request (or
    /// an engine that stopped) is an error.
    pub fn collect(mut self, mut on_token: impl FnMut(usize, &SampledToken)) -> Result<Vec<Collected>, EngineError> {
        let mut choices: Vec<Collected> = Vec::new();
        loop {
            match self.events.blocking_recv() {
                Some(StreamEvent::Token { index, token }) => {
                    on_token(index, &token);
                    Collected::at(&mut choices, index).tokens.push(token);
                }
                Some(StreamEvent::Finished { index, reason, usage }) => Collected::at(&mut choices, index).finish = Some((reason, usage)),
                Some(StreamEvent::Failed(e)) => return Err(e),
                None if !choices.is_empty() && choices.iter().all(|c| c.finish.is_some()) => return Ok(choices),
                None => return Err(EngineError::ShutDown),
            }
        }
    }
}

/// One choice of a request, as [`RequestStream::collect`] gathers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    pub tokens: Vec<SampledToken>,
    /// Set once the choice has ended.
    pub finish: Option<(FinishReason, Usage)>,
}

impl Collected {
    /// Choice `index` of `choices`, growing the list to hold it.
    fn at(choices: &mut Vec<Collected>, index: usize) -> &mut Collected {
        if choices.len() <= index {
            choices.resize_with(index + 1, Collected::default);
        }
        &mut choices[index]
    }

    pub fn token_ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.token).collect()
    }
}

/// A cheap, cloneable way to talk to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    next_id: Arc<AtomicU64>,
    stats: Arc<EngineStats>,
}

/// Counters the engine thread updates once per step, readable from any thread without a lock.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub steps: AtomicU64,
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub kv_blocks_used: AtomicU64,
    pub preemptions: AtomicU64,
    pub prefix_hit_tokens: AtomicU64,
    /// Set when the engine loop has exited.
    pub stopped: std::sync::atomic::AtomicBool,
}

impl EngineHandle {
    /// Queues a request; its events arrive on the returned stream, tagged with the choice index
    /// (`params.n` choices). Dropping the stream aborts the request within one step.
    pub fn submit(&self, request: GenerateRequest) -> Result<RequestStream, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.commands.send(Command::Submit { id, request: Box::new(request), events: tx }).map_err(|_| EngineError::ShutDown)?;
        Ok(RequestStream { id, events: rx })
    }

    pub fn abort(&self, id: RequestId) {
        let _ = self.commands.send(Command::Abort(id));
    }

    /// Aborts every request in flight (a drain that timed out).
    pub fn abort_all(&self) {
        let _ = self.commands.send(Command::AbortAll);
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Whether the engine loop is still running.
    pub fn is_alive(&self) -> bool {
        !self.stats.stopped.load(Ordering::Relaxed)
    }
}

/// Owns the engine thread; dropping it (or `shutdown`) stops the thread and frees everything.
pub struct Engine {
    handle: EngineHandle,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread over `executor`. `salt` keeps prefix-cache hashes of different
    /// models apart.
    /// Metrics are labelled with `model`.
    pub fn start<E: Executor>(executor: E, cfg: SchedulerConfig, salt: u64, model: &str) -> Engine {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(EngineStats::default());
        // A sequence never holds more positions than the context length, so block tables need
        // no more columns than that (a fixed width also keeps recorded GPU steps replayable).
        let table_width = cfg.num_blocks.min(executor.max_model_len().div_ceil(cfg.block_size).max(1));
        let core = EngineCore {
            executor,
            scheduler: Scheduler::new(cfg, salt),
            active: HashMap::new(),
            batch: ForwardBatch::new(cfg.block_size, table_width),
            metrics: StepMetrics::new(model),
            stats: stats.clone(),
            unseeded_base: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
        };
        let thread = std::thread::Builder::new().name("rill-engine".into()).spawn(move || core.run(rx)).expect("spawn the engine thread");
        Engine { handle: EngineHandle { commands: tx, next_id: Arc::new(AtomicU64::new(0)), stats }, thread: Some(thread) }
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Stops the engine: in-flight requests fail, the thread is joined, memory released.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Choices of one request are sequences `request << CHOICE_BITS | index`.
const CHOICE_BITS: u32 = 8;
const _: () = assert!(crate::MAX_N <= 1 << CHOICE_BITS);

fn seq_id(request: RequestId, index: usize) -> SeqId {
    (request << CHOICE_BITS) | index as u64
}

fn request_of(seq: SeqId) -> RequestId {
    seq >> CHOICE_BITS
}

fn index_of(seq: SeqId) -> usize {
    (seq & ((1 << CHOICE_BITS) - 1)) as usize
}

/// One choice of a request being served.
struct Active<S> {
    sampler: S,
    events: UnboundedSender<StreamEvent>,
    stop_tokens: Vec<u32>,
    max_tokens: usize,
    prompt_len: usize,
    generated: usize,
    priority: i32,
    tenant: Option<crate::Tenant>,
    /// For choices 1..n: the prompt, held until choice 0 has computed it. Then this choice joins
    /// the scheduler and finds the prompt's full blocks in the prefix cache, sharing them by ref
    /// count; only the last partial block is recomputed.
    awaiting_first_choice: Option<Vec<u32>>,
    /// Set at admission, taken when first scheduled (queue-time metric).
    queued_since: Option<std::time::Instant>,
    /// Proposes tokens by n-gram lookup (`crate::speculation`).
    speculate: bool,
}

struct EngineCore<E: Executor> {
    executor: E,
    scheduler: Scheduler,
    active: HashMap<SeqId, Active<E::SeqState>>,
    batch: ForwardBatch,
    metrics: StepMetrics,
    stats: Arc<EngineStats>,
    /// Differs per engine start, so unseeded requests are not reproducible across restarts.
    unseeded_base: u64,
}

impl<E: Executor> EngineCore<E> {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            // Block only when there is nothing to compute.
            if self.active.is_empty() {
                match commands.recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut open = true;
            while let Ok(cmd) = commands.try_recv() {
                open &= self.handle(cmd);
            }
            if !open {
                break;
            }
            self.reap_cancelled();
            self.step();
        }
        self.stats.stopped.store(true, Ordering::Relaxed);
        for (_, a) in self.active.drain() {
            let _ = a.events.send(StreamEvent::Failed(EngineError::ShutDown));
        }
    }

    /// Returns false on shutdown.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit { id, request, events } => self.admit(id, *request, events),
            Command::Abort(id) => {
                let choices: Vec<SeqId> = self.active.keys().copied().filter(|&s| request_of(s) == id).collect();
                for seq in choices {
                    self.finish(seq, FinishReason::Abort);
                }
            }
            Command::AbortAll => {
                let all: Vec<SeqId> = self.active.keys().copied().collect();
                for seq in all {
                    self.finish(seq, FinishReason::Abort);
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn admit(&mut self, id: RequestId, req: GenerateRequest, events: UnboundedSender<StreamEvent>) {
        let max_len = self.executor.max_model_len();
        if req.prompt.len() >= max_len {
            let _ = events.send(StreamEvent::Failed(EngineError::PromptTooLong { prompt: req.prompt.len(), max_model_len: max_len }));
            return;
        }
        let max_tokens = req.params.max_tokens.unwrap_or(usize::MAX).min(max_len - req.prompt.len());
        let n = req.params.n.clamp(1, crate::MAX_N);
        if let Err(e) = self.scheduler.add_for(seq_id(id, 0), req.prompt.clone(), max_tokens, req.priority, req.tenant.clone()) {
            let _ = events.send(StreamEvent::Failed(e.into()));
            return;
        }
        let speculate = req.params.speculative.unwrap_or(self.scheduler.config().speculation.default_on);
        self.scheduler.set_speculative(seq_id(id, 0), speculate);
        let mut stop_tokens = req.params.stop_token_ids.clone();
        if !req.params.ignore_eos {
            stop_tokens.extend_from_slice(self.executor.eos_token_ids());
        }
        // Without a seed a request samples differently on every run (as OpenAI); with one, the
        // same seed always gives the same tokens.
        let base_seed = req.params.seed.unwrap_or_else(|| self.unseeded_base ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for index in 0..n {
            let sampler = self.executor.start_sequence(&req.params, choice_seed(base_seed, index), &req.prompt);
            let active = Active {
                sampler,
                events: events.clone(),
                stop_tokens: stop_tokens.clone(),
                max_tokens,
                prompt_len: req.prompt.len(),
                generated: 0,
                priority: req.priority,
                tenant: req.tenant.clone(),
                awaiting_first_choice: (index > 0).then(|| req.prompt.clone()),
                queued_since: Some(std::time::Instant::now()),
                speculate,
            };
            self.active.insert(seq_id(id, index), active);
        }
        self.publish_stats();
    }

    /// Once choice 0 of a request has computed its prompt, the other choices join the scheduler.
    fn release_other_choices(&mut self, first: SeqId) {
        let request = request_of(first);
        let waiting: Vec<SeqId> = self.active.iter().filter(|(&s, a)| request_of(s) == request && a.awaiting_first_choice.is_some()).map(|(&s, _)| s).collect();
        for seq in waiting {
            let a = self.active.get_mut(&seq).expect("listed above");
            let prompt = a.awaiting_first_choice.take().expect("listed above");
            if let Err(e) = self.scheduler.add_for(seq, prompt, a.max_tokens, a.priority, a.tenant.clone()) {
                let _ = a.events.send(StreamEvent::Failed(e.into()));
                self.active.remove(&seq);
                continue;
            }
            self.scheduler.set_speculative(seq, a.speculate);
        }
    }

    /// Aborts requests whose receiver is gone.
    fn reap_cancelled(&mut self) {
        let gone: Vec<SeqId> = self.active.iter().filter(|(_, a)| a.events.is_closed()).map(|(&id, _)| id).collect();
        for id in gone {
            self.finish(id, FinishReason::Abort);
        }
    }

    /// One engine step: schedule → execute → update.
    fn step(&mut self) {
        let started = std::time::Instant::now();
        let schedule = self.scheduler.schedule();
        if schedule.seqs.is_empty() {
            return;
        }
        // Admissions and preemptions take effect now: the gauges say so before this step's
        // tokens reach any client.
        self.publish_stats();
        for s in &schedule.seqs {
            if let Some(a) = self.active.get_mut(&s.id) {
                if let Some(queued) = a.queued_since.take() {
                    self.metrics.queue_seconds.record(queued.elapsed().as_secs_f64());
                }
            }
        }
        self.build_batch(&schedule);
        let sampling: Vec<SeqId> = schedule.seqs.iter().filter(|s| s.samples).map(|s| s.id).collect();
        let result = {
            let mut states: HashMap<SeqId, &mut E::SeqState> = self.active.iter_mut().filter(|(id, _)| sampling.contains(id)).map(|(&id, a)| (id, &mut a.sampler)).collect();
            let mut ordered: Vec<&mut E::SeqState> = sampling.iter().map(|id| states.remove(id).expect("scheduled sequences are active")).collect();
            self.executor.execute(&self.batch, &mut ordered)
        };
        match result.map(|tokens| (self.batch.verified_counts(&tokens), tokens)) {
            Ok((Some(counts), tokens)) => {
                // Each sampling sequence's tokens: its verified proposals, then one more.
                let mut counts = counts.into_iter();
                let mut emitted = Vec::with_capacity(sampling.len());
                for s in &schedule.seqs {
                    let n = if s.samples { counts.next().unwrap_or(1) } else { 0 };
                    self.scheduler.computed(s, n.saturating_sub(1));
                    if s.samples {
                        emitted.push(n);
                        self.metrics.record_speculation(s.drafts, n.saturating_sub(1));
                    }
                }
                let mut tokens = tokens.into_iter();
                for (id, n) in sampling.into_iter().zip(emitted) {
                    if index_of(id) == 0 && self.active.get(&id).is_some_and(|a| a.generated == 0) {
                        self.release_other_choices(id);
                    }
                    let mine: Vec<SampledToken> = tokens.by_ref().take(n).collect();
                    for (i, token) in mine.into_iter().enumerate() {
                        // Verified proposals already joined the scheduler's tokens.
                        if !self.accept(id, token, i + 1 == n) {
                            break;
                        }
                    }
                }
            }
            Ok((None, tokens)) => self.fail_step(&schedule, ExecuteError::message(format!("executor returned {} tokens for {} logits rows of {} sampling sequences", tokens.len(), self.batch.logits_rows.len(), sampling.len()))),
            Err(e) => self.fail_step(&schedule, e),
        }
        self.metrics.record_step(self.batch.num_tokens(), started.elapsed());
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.publish_stats();
    }

    fn publish_stats(&mut self) {
        self.metrics.record_state(&self.scheduler);
        let (st, sc) = (&self.stats, &self.scheduler);
        st.running.store(sc.num_running() as u64, Ordering::Relaxed);
        st.waiting.store(sc.num_waiting() as u64, Ordering::Relaxed);
        st.kv_blocks_used.store(sc.num_used_blocks() as u64, Ordering::Relaxed);
        st.preemptions.store(sc.total_preemptions(), Ordering::Relaxed);
        st.prefix_hit_tokens.store(sc.kv_stats().hit_tokens, Ordering::Relaxed);
    }

    fn build_batch(&mut self, schedule: &Schedule) {
        self.batch.clear();
        let mut tokens = Vec::new();
        for s in &schedule.seqs {
            tokens.clear();
            tokens.extend_from_slice(&self.scheduler.tokens(s.id)[s.start..s.start + s.len]);
            tokens.extend_from_slice(self.scheduler.draft(s.id));
            self.batch.push_with_drafts(&tokens, s.start, self.scheduler.block_table(s.id), s.samples, s.drafts).expect("the scheduler grew the block table to cover the chunk and its proposals");
        }
    }

    /// Fails every request with a choice in this step (all of its choices: a request fails as
    /// a whole).
    fn fail_step(&mut self, schedule: &Schedule, error: ExecuteError) {
        tracing::error!(%error, "executor failed; failing this step's requests");
        let failed: Vec<RequestId> = schedule.seqs.iter().map(|s| request_of(s.id)).collect();
        let seqs: Vec<SeqId> = self.active.keys().copied().filter(|&s| failed.contains(&request_of(s))).collect();
        let mut ended = Vec::new();
        for seq in seqs {
            ended.extend(self.active.remove(&seq));
            self.scheduler.remove(seq);
        }
        // As in `finish`: the gauges drop the failed requests before their clients hear of it.
        self.publish_stats();
        for a in ended {
            let _ = a.events.send(StreamEvent::Failed(error.clone().into()));
        }
    }

    /// Streams a sampled token (appended to the sequence when `append`: a verified proposal is
    /// in it already). Returns false when the choice ended.
    fn accept(&mut self, id: SeqId, token: SampledToken, append: bool) -> bool {
        let Some(a) = self.active.get_mut(&id) else { return false };
        a.generated += 1;
        let end = if a.stop_tokens.contains(&token.token) {
            Some(FinishReason::Stop)
        } else if a.events.send(StreamEvent::Token { index: index_of(id), token: token.clone() }).is_err() {
            Some(FinishReason::Abort)
        } else {
            (a.generated >= a.max_tokens).then_some(FinishReason::Length)
        };
        if let Some(reason) = end {
            self.finish(id, reason);
            return false;
        }
        if append {
            self.scheduler.append_token(id, token.token);
        }
        true
    }

    /// Ends a choice. The gauges drop it before its client hears of the end, so a client never
    /// reads a finished request as running.
    fn finish(&mut self, id: SeqId, reason: FinishReason) {
        let cached_tokens = self.scheduler.cached_prompt_tokens(id);
        self.scheduler.remove(id);
        let ended = self.active.remove(&id);
        self.publish_stats();
        if let Some(a) = ended {
            let usage = Usage { prompt_tokens: a.prompt_len, completion_tokens: a.generated, cached_tokens };
            let _ = a.events.send(StreamEvent::Finished { index: index_of(id), reason, usage });
        }
    }
}

#[cfg(test)]
mod tests;
