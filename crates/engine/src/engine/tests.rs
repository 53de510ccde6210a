//! The engine thread with a fake executor: event streams, aborts, failures, shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::SamplingParams;

const EOS: u32 = 0;

/// Samples `last token + 1` (wrapping to 1 at 50, never EOS unless the prompt asks for it by
/// ending in 99); fails every step while `fail` is set.
struct FakeExecutor {
    fail_steps: Arc<AtomicUsize>,
}

impl Executor for FakeExecutor {
    type SeqState = ();

    fn start_sequence(&mut self, _: &SamplingParams, _: u64, _: &[u32]) {}

    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut ()]) -> Result<Vec<SampledToken>, String> {
        assert_eq!(samplers.len(), batch.logits_rows.len());
        if self.fail_steps.load(Ordering::SeqCst) > 0 {
            self.fail_steps.fetch_sub(1, Ordering::SeqCst);
            return Err("injected failure".into());
        }
        Ok(batch
            .logits_rows
            .iter()
            .map(|&row| {
                let last = batch.token_ids[row as usize];
                let token = if last == 99 { EOS } else { last % 50 + 1 };
                SampledToken { token, logprob: None, top_logprobs: vec![] }
            })
            .collect())
    }

    fn eos_token_ids(&self) -> &[u32] {
        &[EOS]
    }

    fn max_model_len(&self) -> usize {
        64
    }
}

fn engine(num_blocks: usize) -> (Engine, Arc<AtomicUsize>) {
    let fail = Arc::new(AtomicUsize::new(0));
    let cfg = SchedulerConfig { max_num_batched_tokens: 16, max_num_seqs: 4, block_size: 4, num_blocks };
    (Engine::start(FakeExecutor { fail_steps: fail.clone() }, cfg, 0, "fake"), fail)
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest { prompt, params: SamplingParams { max_tokens: Some(max_tokens), ..SamplingParams::default() }, priority: 0 }
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

#[test]
fn abort_and_dropped_receivers_end_requests() {
    let (engine, _) = engine(64);
    let h = engine.handle();
    let mut long = h.submit(request(vec![1], 60)).unwrap();
    h.abort(long.id);
    let (_, end) = collect(&mut long);
    assert!(matches!(end, StreamEvent::Finished { reason: FinishReason::Abort, .. }));
    drop(h.submit(request(vec![2], 60)).unwrap());
    // The engine keeps serving, and the dropped request's blocks come back: a request needing
    // the whole pool still runs.
    let mut big = h.submit(request(vec![3; 8], 56)).unwrap();
    assert!(matches!(collect(&mut big).1, StreamEvent::Finished { reason: FinishReason::Length, .. }));
}

#[test]
fn executor_errors_fail_that_step_and_the_engine_keeps_serving() {
    let (engine, fail) = engine(64);
    let h = engine.handle();
    fail.store(1, Ordering::SeqCst);
    let mut a = h.submit(request(vec![1, 2], 3)).unwrap();
    assert!(matches!(collect(&mut a).1, StreamEvent::Failed(m) if m.contains("injected")));
    let mut b = h.submit(request(vec![1, 2], 3)).unwrap();
    assert_eq!(collect(&mut b).0, vec![3, 4, 5]);
}

#[test]
fn impossible_requests_fail_at_once() {
    let (engine, _) = engine(4);
    let h = engine.handle();
    let mut too_long = h.submit(request(vec![1; 64], 4)).unwrap();
    assert!(matches!(collect(&mut too_long).1, StreamEvent::Failed(m) if m.contains("context length")));
    let mut too_big = h.submit(request(vec![1; 10], 20)).unwrap();
    assert!(matches!(collect(&mut too_big).1, StreamEvent::Failed(m) if m.contains("KV blocks")));
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
    let mut s = h.submit(GenerateRequest { prompt, params, priority: 0 }).unwrap();
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
    let mut s = h.submit(GenerateRequest { prompt: vec![1, 2], params, priority: 0 }).unwrap();
    h.abort(s.id);
    let mut aborted = 0;
    while let Some(ev) = s.blocking_recv() {
        if let StreamEvent::Finished { reason: FinishReason::Abort, .. } = ev {
            aborted += 1;
        }
    }
    assert_eq!(aborted, 2);
}
