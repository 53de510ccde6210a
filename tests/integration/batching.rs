//! Batch invariance on the real default model: a prompt's tokens do not depend on what else
//! shares its steps — run alone, all together, arriving staggered, under preemption, after a
//! prefix-cache hit, and with seeded sampling.

use std::sync::atomic::Ordering;

use rill_backend::KvDType;
use rill_engine::{EngineHandle, GenerateRequest, RequestStream, SamplingParams, StreamEvent, Usage};
use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_model::tokenizer::Tokenizer;

use crate::common;

const NEW_TOKENS: usize = 12;


fn options(kv_cache_tokens: usize) -> LoadOptions {
    LoadOptions { kv_budget: KvBudget::Tokens(kv_cache_tokens), block_size: 16, kv_dtype: KvDType::F16, capacity: StepCapacity { max_tokens: 256, max_seqs: 16 }, chat_template: None, ..LoadOptions::default() }
}

fn request(tok: &Tokenizer, prompt: &str, params: &SamplingParams) -> GenerateRequest {
    GenerateRequest { prompt: tok.encode(prompt, true).unwrap(), params: params.clone(), priority: 0, tenant: None }
}

fn greedy() -> SamplingParams {
    SamplingParams { temperature: 0.0, max_tokens: Some(NEW_TOKENS), ignore_eos: true, ..SamplingParams::default() }
}

fn drain(stream: &mut RequestStream) -> (Vec<u32>, Usage) {
    let mut tokens = Vec::new();
    loop {
        match stream.blocking_recv().expect("terminal event") {
            StreamEvent::Token { token: t, .. } => tokens.push(t.token),
            StreamEvent::Finished { usage, .. } => return (tokens, usage),
            StreamEvent::Failed(e) => panic!("request failed: {e}"),
        }
    }
}

fn one_at_a_time(h: &EngineHandle, tok: &Tokenizer, params: &SamplingParams) -> Vec<Vec<u32>> {
    common::prompts().iter().map(|p| drain(&mut h.submit(request(tok, p, params)).unwrap()).0).collect()
}

fn all_together(h: &EngineHandle, tok: &Tokenizer, params: &SamplingParams) -> Vec<Vec<u32>> {
    let mut streams: Vec<_> = common::prompts().iter().map(|p| h.submit(request(tok, p, params)).unwrap()).collect();
    streams.iter_mut().map(|s| drain(s).0).collect()
}

#[test]
fn greedy_tokens_do_not_depend_on_the_batch() {
    let (engine, tok) = common::default_engine(&options(4096));
    let h = engine.handle();
    let alone = one_at_a_time(&h, &tok, &greedy());
    assert!(alone.iter().all(|t| t.len() == NEW_TOKENS));

    assert_eq!(all_together(&h, &tok, &greedy()), alone, "all 16 submitted together");

    // Staggered: each new request arrives once the previous one has produced a token, so
    // prefills join running decodes.
    let mut streams = Vec::new();
    let mut firsts = Vec::new();
    for p in common::prompts() {
        let mut s = h.submit(request(&tok, &p, &greedy())).unwrap();
        match s.blocking_recv() {
            Some(StreamEvent::Token { token: t, .. }) => firsts.push(t.token),
            other => panic!("expected a first token, got {other:?}"),
        }
        streams.push(s);
    }
    let staggered: Vec<Vec<u32>> = streams.iter_mut().zip(firsts).map(|(s, first)| [vec![first], drain(s).0].concat()).collect();
    assert_eq!(staggered, alone, "staggered arrivals");

    // The same prompt again is served from the prefix cache, with the same tokens.
    let hits_before = h.stats().prefix_hit_tokens.load(Ordering::Relaxed);
    let (tokens, usage) = drain(&mut h.submit(request(&tok, &common::prompts()[13], &greedy())).unwrap());
    assert!(usage.cached_tokens >= 16, "a {}-token prompt seen before should hit whole blocks: {usage:?}", usage.prompt_tokens);
    assert!(h.stats().prefix_hit_tokens.load(Ordering::Relaxed) > hits_before);
    assert_eq!(tokens, alone[13], "after a prefix-cache hit");
}

#[test]
fn greedy_tokens_survive_preemption() {
    let (engine, tok) = common::default_engine(&options(4096));
    let alone = one_at_a_time(&engine.handle(), &tok, &greedy());
    drop(engine);
    // 12 blocks of 16 tokens: far fewer than 16 sequences of up to ~30 tokens need at once.
    let (engine, tok) = common::default_engine(&options(12 * 16));
    let h = engine.handle();
    assert_eq!(all_together(&h, &tok, &greedy()), alone, "under preemption");
    assert!(h.stats().preemptions.load(Ordering::Relaxed) > 0, "the pool was meant to force preemption");
}

#[test]
fn seeded_sampling_does_not_depend_on_the_batch() {
    let (engine, tok) = common::default_engine(&options(4096));
    let h = engine.handle();
    let sampled = SamplingParams { temperature: 0.8, seed: Some(1234), ..greedy() };
    let alone = one_at_a_time(&h, &tok, &sampled);
    assert_eq!(all_together(&h, &tok, &sampled), alone);
    let greedy_tokens = one_at_a_time(&h, &tok, &greedy());
    assert_ne!(alone, greedy_tokens, "temperature 0.8 should change some continuation");
}

#[test]
fn n_choices_match_single_requests_with_their_seeds() {
    let (engine, tok) = common::default_engine(&options(4096));
    let h = engine.handle();
    let prompt = &common::prompts()[13];
    let seeded = |seed| SamplingParams { temperature: 0.8, seed: Some(seed), ..greedy() };
    let single = |seed| drain(&mut h.submit(request(&tok, prompt, &seeded(seed))).unwrap()).0;
    let expected = [single(1234), single(rill_engine::choice_seed(1234, 1))];

    let params = SamplingParams { n: 2, ..seeded(1234) };
    let mut stream = h.submit(request(&tok, prompt, &params)).unwrap();
    let mut choices = vec![Vec::new(), Vec::new()];
    let mut cached = [0; 2];
    while let Some(ev) = stream.blocking_recv() {
        match ev {
            StreamEvent::Token { index, token } => choices[index].push(token.token),
            StreamEvent::Finished { index, usage, .. } => cached[index] = usage.cached_tokens,
            StreamEvent::Failed(e) => panic!("{e}"),
        }
    }
    assert_eq!(choices, expected);
    assert_ne!(choices[0], choices[1], "independent seeds per choice");
    assert!(cached[1] >= 16, "the second choice shares the prompt's full blocks: {cached:?}");
}

/// A mixture of experts routes each token on its own: with Qwen2-MoE's tiny model (routed
/// experts and the shared one) 16 prompts submitted together get the tokens and the logprob
/// bits each gets alone, though the steps mix their tokens over every expert.
#[test]
fn mixture_of_experts_logprobs_do_not_depend_on_the_batch() {
    let path = rill::testing::repo_root().join("tests/fixtures/models/qwen2moe.Q8_0.gguf");
    let model = rill_model::loader::load(&path, rill_backend_cpu::CpuBackend::new(2).unwrap(), &options(4096), &mut |_, _| {}).unwrap();
    let tok = model.tokenizer;
    let engine = common::engine_of(model.transformer, tok.eos_token_ids(), "qwen2moe");
    let h = engine.handle();
    let params = SamplingParams { logprobs: Some(3), ..greedy() };
    let bits = |stream: &mut RequestStream| -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        loop {
            match stream.blocking_recv().expect("terminal event") {
                StreamEvent::Token { token: t, .. } => out.push((t.token, t.logprob.expect("logprobs asked").to_bits())),
                StreamEvent::Finished { .. } => return out,
                StreamEvent::Failed(e) => panic!("request failed: {e}"),
            }
        }
    };
    let alone: Vec<_> = common::prompts().iter().map(|p| bits(&mut h.submit(request(&tok, p, &params)).unwrap())).collect();
    assert!(alone.iter().all(|t| t.len() == NEW_TOKENS));
    let mut streams: Vec<_> = common::prompts().iter().map(|p| h.submit(request(&tok, p, &params)).unwrap()).collect();
    let together: Vec<_> = streams.iter_mut().map(bits).collect();
    assert_eq!(together, alone);
}
