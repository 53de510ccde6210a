//! One sampling rule on the real default model: a seeded request gets the same tokens whether
//! its rows are drawn on the device path (`Backend::sample`, forced on the CPU, whose `sample`
//! runs the rule the CUDA kernel reproduces) or on the host path (the sampler's processors,
//! then the same rule), with `logprobs` on or off, and with a processor that changes nothing.

use rill_engine::{Engine, GenerateRequest, SamplingParams};
use rill_model::runner::ModelRunner;

use crate::common;

const PROMPTS: [&str; 4] = ["Once upon a time", "The three primary colors are", "def main():\n", "My favourite fruit is"];
const NEW_TOKENS: usize = 24;

fn engine(device_sampling: bool) -> (Engine, rill_model::tokenizer::Tokenizer) {
    let model = common::default_model();
    let mut runner = ModelRunner::new(model.transformer, model.tokenizer.eos_token_ids().to_vec());
    runner.set_device_sampling(device_sampling);
    (runner.start(if device_sampling { "device-path" } else { "host-path" }), model.tokenizer)
}

/// Every prompt submitted at once (they share steps), each choice's tokens.
fn tokens(engine: &Engine, prompts: &[Vec<u32>], params: &SamplingParams) -> Vec<Vec<u32>> {
    let streams: Vec<_> = prompts.iter().map(|p| engine.handle().submit(GenerateRequest { prompt: p.clone(), params: params.clone(), priority: 0, tenant: None }).unwrap()).collect();
    streams.into_iter().map(|s| s.collect(|_, _| {}).unwrap().remove(0).token_ids()).collect()
}

#[test]
fn a_seeded_request_gets_the_same_tokens_on_every_path() {
    let (device, tokenizer) = engine(true);
    let (host, _) = engine(false);
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| tokenizer.encode(p, true).unwrap()).collect();
    let sampled = [
        SamplingParams { temperature: 1.0, ..Default::default() },
        SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.9, ..Default::default() },
        SamplingParams { temperature: 1.2, min_p: 0.05, ..Default::default() },
    ];
    for base in sampled {
        let params = SamplingParams { seed: Some(1234), max_tokens: Some(NEW_TOKENS), ignore_eos: true, ..base };
        let want = tokens(&device, &prompts, &params);
        assert!(want.iter().all(|t| t.len() == NEW_TOKENS));
        // Sampled, not greedy: the seed matters.
        let greedy = tokens(&device, &prompts, &SamplingParams { temperature: 0.0, ..params.clone() });
        assert_ne!(want, greedy, "{params:?}");
        let with_logprobs = SamplingParams { logprobs: Some(2), ..params.clone() };
        let neutral_processor = SamplingParams { logit_bias: vec![(17, 0.0)], ..params.clone() };
        for (path, engine) in [("device path", &device), ("host path", &host)] {
            assert_eq!(tokens(engine, &prompts, &params), want, "{path}: {params:?}");
            assert_eq!(tokens(engine, &prompts, &with_logprobs), want, "{path}, with logprobs: {params:?}");
            assert_eq!(tokens(engine, &prompts, &neutral_processor), want, "{path}, with a neutral logit bias: {params:?}");
        }
        // And through the text a client reads.
        let text = |t: &[u32]| tokenizer.decode(t, true);
        let host_text: Vec<String> = tokens(&host, &prompts, &with_logprobs).iter().map(|t| text(t)).collect();
        assert_eq!(host_text, want.iter().map(|t| text(t)).collect::<Vec<_>>());
    }
}
