//! The engine thread with a fake executor: event streams, aborts, failures, shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use super::*;
use crate::{AdmissionError, SamplingParams, SpeculationConfig};

const EOS: u32 = 0;

/// Samples `last token + 1` (wrapping to 1 at 50, never EOS unless the prompt asks for it by
/// ending in 99); fails every step while `fail` is set.
struct FakeExecutor {
    fail_steps: Arc<AtomicUsize>,
    /// When set, each step announces itself (with its number of sequences) and waits for a permit.
    gate: Option<(mpsc::Sender<usize>, mpsc::Receiver<()>)>,
}

impl Executor for FakeExecutor {
    type SeqState = ();

    fn start_sequence(&mut self, _: &SamplingParams, _: u64, _: &[u32]) {}

    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut ()]) -> Result<Vec<SampledToken>, ExecuteError> {
        assert_eq!(samplers.len(), batch.drafts.len());
        if let Some((entered, permits)) = &self.gate {
            let _ = entered.send(batch.num_seqs);
            let _ = permits.recv();
        }
        if self.fail_steps.load(Ordering::SeqCst) > 0 {
            self.fail_steps.fetch_sub(1, Ordering::SeqCst);
            return Err(ExecuteError::message("injected failure"));
        }
        Ok(batch.verify(|_, row| {
            let last = batch.token_ids[batch.logits_rows[row] as usize];
            let token = if last == 99 { EOS } else { last % 50 + 1 };
            SampledToken { token, logprob: None, top_logprobs: vec![] }
        }))
    }

    fn eos_token_ids(&self) -> &[u32] {
        &[EOS]
    }

    fn max_model_len(&self) -> usize {
        64
    }
}

fn engine(num_blocks: usize) -> (Engine, Arc<AtomicUsize>) {
    engine_with(num_blocks, SpeculationConfig::default())
}

fn engine_with(num_blocks: usize, speculation: SpeculationConfig) -> (Engine, Arc<AtomicUsize>) {
    let fail = Arc::new(AtomicUsize::new(0));
    let cfg = SchedulerConfig { max_num_batched_tokens: 16, max_num_seqs: 4, block_size: 4, num_blocks, kv_window: None, speculation };
    (Engine::start(FakeExecutor { fail_steps: fail.clone(), gate: None }, cfg, 0, "fake"), fail)
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest { prompt, params: SamplingParams { max_tokens: Some(max_tokens), ..SamplingParams::default() }, priority: 0, tenant: None }
}

fn collect(stream: &mut RequestStream) -> (Vec<u32>, StreamEvent) {
    let mut tokens = Vec::new();
    loop {
        match stream.blocking_recv().expect("a terminal event before the stream closes") {
            StreamEvent::Token { token: t, .. } => tokens.push(t.token),
            terminal => {
                assert!(stream.blocking_recv().is_none(), "nothing after the terminal event");
                return (tokens, terminal);
            }
        }
    }
}

#[test]
fn many_requests_each_get_their_tokens_and_one_terminal_event() {
    let (engine, _) = engine(64);
    let h = engine.handle();
    let mut streams: Vec<_> = (0..10).map(|i| h.submit(request(vec![10 + i, 20 + i], 5)).unwrap()).collect();
    for (i, s) in streams.iter_mut().enumerate() {
        let (tokens, end) = collect(s);
        let first = (20 + i as u32) % 50 + 1;
        assert_eq!(tokens, (0..5).map(|k| (first - 1 + k) % 50 + 1).collect::<Vec<_>>());
        assert_eq!(end, StreamEvent::Finished { index: 0, reason: FinishReason::Length, usage: Usage { prompt_tokens: 2, completion_tokens: 5, cached_tokens: 0 } });
    }
}

#[test]
fn eos_stops_without_being_streamed() {
    let (engine, _) = engine(64);
    let mut s = engine.handle().submit(request(vec![5, 99], 10)).unwrap();
    let (tokens, end) = collect(&mut s);
    assert!(tokens.is_empty());
    assert!(matches!(end, StreamEvent::Finished { reason: FinishReason::Stop, usage: Usage { completion_tokens: 1, .. }, .. }));
}

/// An engine whose executor announces each step (with its number of sequences) and waits for
/// a permit: tests choose what happens between steps.
fn gated_engine(num_blocks: usize) -> (Engine, mpsc::Receiver<usize>, mpsc::Sender<()>) {
    let (entered_tx, entered) = mpsc::channel();
    let (permit, permits) = mpsc::channel();
    let executor = FakeExecutor { fail_steps: Arc::new(AtomicUsize::new(0)), gate: Some((entered_tx, permits)) };
    let cfg = SchedulerConfig { max_num_batched_tokens: 16, max_num_seqs: 4, block_size: 4, num_blocks, kv_window: None, speculation: SpeculationConfig::default() };
    (Engine::start(executor, cfg, 0, "gated"), entered, permit)
}

const STEP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[test]
fn abort_and_dropped_receivers_end_requests() {
    // 16 blocks of 4: exactly one context of 64 tokens.
    let (engine, entered, permit) = gated_engine(16);
    let permit = permit; // dropped before the engine, so a failed assertion cannot hang the join
    let h = engine.handle();
    let mut long = h.submit(request(vec![1], 60)).unwrap();
    entered.recv_timeout(STEP_WAIT).unwrap();
    h.abort(long.id);
    permit.send(()).unwrap();
    let (tokens, end) = collect(&mut long);
    assert_eq!((tokens.len(), end.clone()), (1, StreamEvent::Finished { index: 0, reason: FinishReason::Abort, usage: Usage { prompt_tokens: 1, completion_tokens: 1, cached_tokens: 0 } }));

    // A dropped receiver is noticed at the next step and its blocks come back at once, long
    // before the 60 tokens it asked for could have been generated.
    let mut dropped = h.submit(request(vec![2], 60)).unwrap();
    entered.recv_timeout(STEP_WAIT).unwrap();
    permit.send(()).unwrap();
    assert!(matches!(dropped.blocking_recv(), Some(StreamEvent::Token { .. })));
    entered.recv_timeout(STEP_WAIT).unwrap();
    assert!(h.stats().kv_blocks_used.load(Ordering::SeqCst) > 0);
    drop(dropped);
    permit.send(()).unwrap();
    // That step's token found no receiver: the request ends there, and the engine goes idle.
    assert!(entered.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "the engine kept stepping a dropped request");
    assert_eq!(h.stats().kv_blocks_used.load(Ordering::SeqCst), 0);
    assert_eq!(h.stats().running.load(Ordering::SeqCst), 0);

    // The engine keeps serving: a request needing the whole pool runs without preempting.
    let pump = std::thread::spawn(move || {
        while entered.recv_timeout(STEP_WAIT).is_ok() {
            if permit.send(()).is_err() {
                break;
            }
        }
    });
    let mut big = h.submit(request(vec![3; 8], 56)).unwrap();
    assert!(matches!(collect(&mut big).1, StreamEvent::Finished { reason: FinishReason::Length, usage: Usage { completion_tokens: 56, .. }, .. }));
    assert_eq!(h.stats().preemptions.load(Ordering::SeqCst), 0);
    drop(engine);
    pump.join().unwrap();
}

#[test]
fn gauges_are_exact_whenever_a_client_can_read_them() {
    // The executor waits for a permit each step, so the test reads the gauges at a known point:
    // the engine blocked inside a step, every event of the steps before it sent. A request is
    // counted (running or waiting) exactly until its client can see its `Finished`, and as
    // running from the step that computes it.
    // 4 sequences at a time in a pool of 8 blocks of 4: queueing and preemption both happen.
    let (engine, entered, permit) = gated_engine(8);
    // Dropped before the engine (a failed assertion must not leave its thread waiting).
    let permit = permit;
    let h = engine.handle();
    // The first request's step holds the engine while the others are submitted, so from the
    // next step on the engine has seen every submission.
    let mut streams = vec![h.submit(request(vec![1, 2, 3], 5)).unwrap()];
    entered.recv_timeout(std::time::Duration::from_secs(10)).expect("the first step starts");
    streams.extend((1..10).map(|i| h.submit(request(vec![1 + i, 2, 3], 5 + i as usize)).unwrap()));
    permit.send(()).unwrap();
    let mut finished = vec![false; streams.len()];
    let drain = |streams: &mut Vec<RequestStream>, finished: &mut Vec<bool>| {
        for (s, done) in streams.iter_mut().zip(finished.iter_mut()) {
            while let Ok(ev) = s.events.try_recv() {
                *done |= matches!(ev, StreamEvent::Finished { .. });
            }
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut steps = 0;
    while finished.contains(&false) {
        assert!(std::time::Instant::now() < deadline, "requests never finished");
        let Ok(in_step) = entered.recv_timeout(std::time::Duration::from_millis(20)) else {
            // No step in progress: the last requests may have just ended.
            drain(&mut streams, &mut finished);
            continue;
        };
        drain(&mut streams, &mut finished);
        let live = finished.iter().filter(|&&f| !f).count() as u64;
        let (running, waiting) = (h.stats().running.load(Ordering::SeqCst), h.stats().waiting.load(Ordering::SeqCst));
        assert_eq!(running + waiting, live, "step {steps}: {running} running + {waiting} waiting");
        // Every sequence of the step being computed counts as running already.
        assert!((in_step as u64..=4).contains(&running), "step {steps}: {in_step} sequences computing, {running} running");
        steps += 1;
        permit.send(()).unwrap();
    }
    assert_eq!((h.stats().running.load(Ordering::SeqCst), h.stats().waiting.load(Ordering::SeqCst)), (0, 0));
    assert!(h.stats().preemptions.load(Ordering::SeqCst) > 0, "the test should exercise preemption");
}

#[test]
fn executor_errors_fail_that_step_and_the_engine_keeps_serving() {
    let (engine, fail) = engine(64);
    let h = engine.handle();
    fail.store(1, Ordering::SeqCst);
    let mut a = h.submit(request(vec![1, 2], 3)).unwrap();
    assert!(matches!(collect(&mut a).1, StreamEvent::Failed(EngineError::Execution(e)) if e.to_string() == "injected failure"));
    let mut b = h.submit(request(vec![1, 2], 3)).unwrap();
    assert_eq!(collect(&mut b).0, vec![3, 4, 5]);
}

#[test]
fn impossible_requests_fail_at_once() {
    let (engine, _) = engine(4);
    let h = engine.handle();
    let mut too_long = h.submit(request(vec![1; 64], 4)).unwrap();
    assert!(matches!(collect(&mut too_long).1, StreamEvent::Failed(EngineError::PromptTooLong { prompt: 64, max_model_len: 64 })));
    let mut too_big = h.submit(request(vec![1; 10], 20)).unwrap();
    assert!(matches!(collect(&mut too_big).1, StreamEvent::Failed(EngineError::Admission(AdmissionError::NeverFits { .. }))));
}

#[test]
fn shutdown_fails_in_flight_requests_and_joins() {
    let (engine, _) = engine(64);
    let h = engine.handle();
    let mut s = h.submit(request(vec![1], 60)).unwrap();
    engine.shutdown();
    let (_, end) = collect(&mut s);
    assert!(matches!(end, StreamEvent::Failed(_) | StreamEvent::Finished { .. }));
    assert!(h.submit(request(vec![1], 1)).is_err(), "a stopped engine refuses work");
}

#[test]
fn n_choices_each_stream_and_finish_and_share_the_prompt_blocks() {
    let (engine, _) = engine(64);
    let h = engine.handle();
    let prompt: Vec<u32> = (1..=9).collect();
    let params = SamplingParams { max_tokens: Some(3), n: 3, ..SamplingParams::default() };
    let mut s = h.submit(GenerateRequest { prompt, params, priority: 0, tenant: None }).unwrap();
    let mut tokens = vec![Vec::new(); 3];
    let mut finished = [0; 3];
    while let Some(ev) = s.blocking_recv() {
        match ev {
            StreamEvent::Token { index, token } => tokens[index].push(token.token),
            StreamEvent::Finished { index, reason, usage } => {
                assert_eq!((reason, usage.completion_tokens), (FinishReason::Length, 3));
                finished[index] += 1;
            }
            StreamEvent::Failed(e) => panic!("{e}"),
        }
    }
    assert_eq!(finished, [1, 1, 1], "exactly one terminal event per choice");
    assert!(tokens.iter().all(|t| t == &vec![10, 11, 12]), "the fake samples deterministically: {tokens:?}");
    // Choices 1 and 2 found choice 0's two full prompt blocks in the cache.
    assert_eq!(h.stats().prefix_hit_tokens.load(Ordering::Relaxed), 16);
}

#[test]
fn abort_ends_every_choice() {
    let (engine, _) = engine(64);
    let h = engine.handle();
    let params = SamplingParams { max_tokens: Some(50), n: 2, ..SamplingParams::default() };
    let mut s = h.submit(GenerateRequest { prompt: vec![1, 2], params, priority: 0, tenant: None }).unwrap();
    h.abort(s.id);
    let mut aborted = 0;
    while let Some(ev) = s.blocking_recv() {
        if let StreamEvent::Finished { reason: FinishReason::Abort, .. } = ev {
            aborted += 1;
        }
    }
    assert_eq!(aborted, 2);
}

#[test]
fn speculation_emits_the_same_tokens_in_fewer_steps() {
    // The fake continues 1, 2, 3, … 50, 1, …: after "… 2 3" the prompt's own "2 3 4 5 6 …"
    // predicts what comes, so proposals are confirmed.
    let prompt: Vec<u32> = (1..=40).chain(1..=3).collect();
    let run = |speculation: SpeculationConfig, params: SamplingParams| {
        let (engine, _) = engine_with(64, speculation);
        let mut s = engine.handle().submit(GenerateRequest { prompt: prompt.clone(), params, priority: 0, tenant: None }).unwrap();
        let (tokens, end) = collect(&mut s);
        // The step that ended the request is counted once the thread is joined.
        let handle = engine.handle();
        engine.shutdown();
        let steps = handle.stats().steps.load(Ordering::Relaxed);
        (tokens, end, steps)
    };
    let params = SamplingParams { max_tokens: Some(20), ..SamplingParams::default() };
    let (plain, plain_end, plain_steps) = run(SpeculationConfig::default(), params.clone());
    assert_eq!(plain, (4..=23).collect::<Vec<_>>());
    let on = SpeculationConfig { default_on: true, ..SpeculationConfig::default() };
    let (spec, spec_end, spec_steps) = run(on, params.clone());
    assert_eq!((spec, spec_end), (plain.clone(), plain_end.clone()), "the same tokens and ending");
    assert!(spec_steps * 2 < plain_steps, "{spec_steps} steps with speculation, {plain_steps} without");
    // A request can turn it on where the model does not, or off where it does.
    let (_, _, steps) = run(SpeculationConfig::default(), SamplingParams { speculative: Some(true), ..params.clone() });
    assert_eq!(steps, spec_steps);
    let (tokens, _, steps) = run(on, SamplingParams { speculative: Some(false), ..params });
    assert_eq!((tokens, steps), (plain, plain_steps));
}

#[test]
fn speculation_stops_at_max_tokens_and_stop_tokens() {
    let on = SpeculationConfig { default_on: true, ..SpeculationConfig::default() };
    let (engine, _) = engine_with(64, on);
    let prompt: Vec<u32> = (1..=12).chain(1..=3).collect();
    // max_tokens cuts through a run of confirmed proposals.
    let mut s = engine.handle().submit(request(prompt.clone(), 6)).unwrap();
    let (tokens, end) = collect(&mut s);
    assert_eq!(tokens, vec![4, 5, 6, 7, 8, 9]);
    assert!(matches!(end, StreamEvent::Finished { reason: FinishReason::Length, usage: Usage { completion_tokens: 6, .. }, .. }));
    // A stop token among the confirmed proposals ends the choice there, unstreamed.
    let params = SamplingParams { max_tokens: Some(20), stop_token_ids: vec![7], ..SamplingParams::default() };
    let mut s = engine.handle().submit(GenerateRequest { prompt, params, priority: 0, tenant: None }).unwrap();
    let (tokens, end) = collect(&mut s);
    assert_eq!(tokens, vec![4, 5, 6]);
    assert!(matches!(end, StreamEvent::Finished { reason: FinishReason::Stop, usage: Usage { completion_tokens: 4, .. }, .. }));
}
