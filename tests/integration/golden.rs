//! Golden tokens: rill's greedy output on the default model against llama.cpp's, recorded by
//! `scripts/gen-golden.sh` into `tests/golden/`. The rule (vLLM's for near-ties): token ids
//! match for the first 32 tokens on at least 7 of every 8 prompts; where they first diverge,
//! each side's token is in the other's top 5; matched positions agree on the logprob within
//! 0.1 nats.

use rill_model::chat_template::ChatMessage;
use rill_model::generate::{generate, GenerateParams, GeneratedToken};
use serde::Deserialize;

use crate::common;

const COMPARED_TOKENS: usize = 32;
const TOP_K: usize = 5;
const LOGPROB_TOLERANCE_NATS: f32 = 0.1;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    chat: bool,
    text: String,
    prompt_tokens: Vec<u32>,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    top_logprobs: Vec<Vec<(u32, f32)>>,
}

fn load_fixture() -> Fixture {
    let path = rill::testing::repo_root().join("tests/golden/smollm2-135m-q4_1.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden fixture")).expect("valid fixture")
}

#[test]
fn greedy_tokens_match_llama_cpp() {
    let fixture = load_fixture();
    let mut model = common::default_model();
    let mut exact = 0;
    let mut report = Vec::new();
    for case in &fixture.cases {
        let text = if case.chat {
            let messages = [ChatMessage { role: "user".into(), content: case.text.clone() }];
            model.chat_template.as_ref().expect("chat template").render(&messages, true).unwrap()
        } else {
            case.text.clone()
        };
        let prompt = model.tokenizer.encode(&text, true).unwrap();
        assert_eq!(prompt, case.prompt_tokens, "{}: prompt tokens differ from llama.cpp's", case.name);

        let n = case.tokens.len().min(COMPARED_TOKENS);
        let params = GenerateParams { max_tokens: n, temperature: 0.0, seed: 0, stop_tokens: vec![], top_logprobs: TOP_K };
        let mut ours: Vec<GeneratedToken> = Vec::new();
        generate(&mut model.transformer, &prompt, &params, |t| ours.push(t.clone())).unwrap();
        assert_eq!(ours.len(), n, "{}: generated {} tokens", case.name, ours.len());

        let matched = ours.iter().zip(&case.tokens).take_while(|(a, b)| a.id == **b).count();
        let mut max_logprob_diff = 0f32;
        for (i, t) in ours[..matched].iter().enumerate() {
            max_logprob_diff = max_logprob_diff.max((t.logprob - case.logprobs[i]).abs());
        }
        assert!(
            max_logprob_diff <= LOGPROB_TOLERANCE_NATS,
            "{}: logprob differs by {max_logprob_diff} nats at matched positions",
            case.name
        );
        if matched == n {
            exact += 1;
        } else {
            let (mine, theirs) = (&ours[matched], case.tokens[matched]);
            let in_their_top = case.top_logprobs[matched].iter().any(|&(id, _)| id == mine.id);
            let in_our_top = mine.top.iter().any(|&(id, _)| id == theirs);
            assert!(
                in_their_top && in_our_top,
                "{}: diverged at token {matched} (ours {}, llama.cpp {theirs}) outside each other's top {TOP_K}",
                case.name,
                mine.id
            );
        }
        report.push(format!("{}: {matched}/{n} tokens match, max |Δlogprob| {max_logprob_diff:.4}", case.name));
    }
    eprintln!("golden results:\n  {}", report.join("\n  "));
    assert!(
        exact * 8 >= fixture.cases.len() * 7,
        "only {exact} of {} prompts match for their first {COMPARED_TOKENS} tokens",
        fixture.cases.len()
    );
}
