//! Wire types: OpenAI documentation examples parse, every accepted shape of the union fields,
//! wrong types are 400s naming the field, responses serialize to OpenAI's exact shapes.

use serde_json::{json, Value};

use super::error::parse_json;
use super::types::*;

fn completion(body: Value) -> CompletionRequest {
    parse_json(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn chat(body: Value) -> ChatCompletionRequest {
    parse_json(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// The `param` and message of parsing `body` as `T`, which must fail.
fn type_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: Value) -> (Option<String>, String) {
    let e = parse_json::<T>(body.to_string().as_bytes()).expect_err(&body.to_string());
    assert_eq!((e.status, e.kind), (400, "invalid_request_error"));
    (e.param, e.message)
}

#[test]
fn openai_docs_completion_example() {
    let req = completion(json!({
        "model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7, "temperature": 0
    }));
    assert_eq!(req.model.as_deref(), Some("gpt-3.5-turbo-instruct"));
    assert_eq!(req.prompt, Some(Prompt::Text("Say this is a test".into())));
    assert_eq!((req.max_tokens, req.generation.temperature), (Some(7), Some(0.0)));
    assert_eq!(req.generation.stream, None);
}

#[test]
fn every_completion_field_parses() {
    let req = completion(json!({
        "model": "m", "prompt": [1, 2, 3], "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
        "min_p": 0.05, "n": 2, "stream": true, "stream_options": {"include_usage": true, "continuous_usage_stats": false},
        "stop": ["\n", "###"], "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
        "logit_bias": {"50256": -100, "7": 2.5}, "logprobs": 3, "echo": true, "seed": -42, "ignore_eos": true,
        "user": "u-1", "min_tokens": 2, "stop_token_ids": [7], "suffix": null, "best_of": 2,
        "some_future_field": {"nested": [1]}
    }));
    assert_eq!(req.prompt, Some(Prompt::Tokens(vec![1, 2, 3])));
    assert_eq!((req.generation.top_k, req.generation.min_p, req.generation.n), (Some(40), Some(0.05), Some(2)));
    assert_eq!(req.generation.stream_options, Some(StreamOptions { include_usage: Some(true) }));
    assert_eq!(req.generation.stop, Some(Stop::Many(vec!["\n".into(), "###".into()])));
    assert_eq!(req.generation.logit_bias.as_ref().map(|m| m["50256"]), Some(-100.0));
    assert_eq!((req.logprobs, req.echo, req.generation.seed), (Some(3), Some(true), Some(-42)));
    assert_eq!((req.generation.ignore_eos, req.generation.min_tokens, req.best_of), (Some(true), Some(2), Some(2)));
    assert_eq!(req.generation.user.as_deref(), Some("u-1"));
}

#[test]
fn prompt_and_stop_shapes() {
    let prompt = |v: Value| completion(json!({ "prompt": v })).prompt;
    assert_eq!(prompt(json!("hi")), Some(Prompt::Text("hi".into())));
    assert_eq!(prompt(json!(["hi"])), Some(Prompt::Texts(vec!["hi".into()])));
    assert_eq!(prompt(json!(["a", "b"])), Some(Prompt::Texts(vec!["a".into(), "b".into()])));
    assert_eq!(prompt(json!([0, 4294967295u32])), Some(Prompt::Tokens(vec![0, u32::MAX])));
    assert_eq!(prompt(json!([[1, 2]])), Some(Prompt::TokenBatch(vec![vec![1, 2]])));
    assert_eq!(prompt(json!([])), Some(Prompt::Texts(vec![])));
    assert_eq!(prompt(json!(null)), None);
    let stop = |v: Value| completion(json!({ "stop": v })).generation.stop;
    assert_eq!(stop(json!("\n")), Some(Stop::One("\n".into())));
    assert_eq!(stop(json!(["a", "b"])), Some(Stop::Many(vec!["a".into(), "b".into()])));
    assert_eq!(stop(json!(null)), None);
    assert_eq!(Stop::One("x".into()).into_vec(), vec!["x".to_string()]);
}

#[test]
fn openai_docs_chat_examples() {
    let req = chat(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"}
        ]
    }));
    let messages = req.messages.unwrap();
    assert_eq!(messages[1].role, "user");
    assert_eq!(messages[1].content, Some(MessageContent::Text("Hello!".into())));
    // Content parts, logprobs, streaming and fields the SDK sends that we ignore.
    let req = chat(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "What's in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": null, "refusal": null}
        ],
        "logprobs": true, "top_logprobs": 2, "max_completion_tokens": 300, "stream": true,
        "stream_options": {"include_usage": true}, "store": false, "metadata": {"k": "v"}, "parallel_tool_calls": true,
        "response_format": {"type": "text"}, "tools": []
    }));
    let messages = req.messages.unwrap();
    let Some(MessageContent::Parts(parts)) = &messages[0].content else { panic!("{:?}", messages[0]) };
    assert_eq!(parts[0], ContentPart { kind: "text".into(), text: Some("What's in this image?".into()) });
    assert_eq!(parts[1], ContentPart { kind: "image_url".into(), text: None });
    assert_eq!(messages[0].name.as_deref(), Some("ann"));
    assert_eq!(messages[1].content, None);
    assert_eq!((req.logprobs, req.top_logprobs, req.max_completion_tokens), (Some(true), Some(2), Some(300)));
    assert_eq!(req.response_format.map(|f| f.kind).as_deref(), Some("text"));
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        (json!({"prompt": "x", "temperature": "hot"}), "temperature", "invalid type: string \"hot\""),
        (json!({"prompt": "x", "max_tokens": -1}), "max_tokens", "invalid value: integer `-1`"),
        (json!({"prompt": "x", "max_tokens": 1.5}), "max_tokens", "invalid type: floating point"),
        (json!({"prompt": "x", "stream": "yes"}), "stream", "expected a boolean"),
        (json!({"prompt": 5}), "prompt", "expected a string, an array of strings or an array of token ids"),
        (json!({"prompt": [1, "a"]}), "prompt", "array of token ids"),
        (json!({"prompt": [-1]}), "prompt[0]", "array of token ids"),
        (json!({"prompt": "x", "stop": 3}), "stop", "expected a string or an array of strings"),
        (json!({"prompt": "x", "stop": ["a", 1]}), "stop[1]", "expected a string or an array of strings"),
        (json!({"prompt": "x", "logit_bias": {"1": "up"}}), "logit_bias", "invalid type: string \"up\""),
        (json!({"prompt": "x", "logit_bias": [1]}), "logit_bias", "expected a map"),
        (json!({"prompt": "x", "logprobs": true}), "logprobs", "invalid type: boolean"),
        (json!({"prompt": "x", "stream_options": {"include_usage": 1}}), "stream_options", "expected a boolean"),
        (json!({"prompt": "x", "model": 7}), "model", "expected a string"),
        (json!({"prompt": "x", "seed": "1"}), "seed", "expected i64"),
    ];
    for (body, param, detail) in cases {
        let (got, message) = type_error::<CompletionRequest>(body.clone());
        assert_eq!(got.as_deref(), Some(param), "{body}");
        assert!(message.contains(param) && message.contains(detail), "{body}: {message}");
    }
}

#[test]
fn wrong_types_in_chat_name_the_message() {
    let cases = [
        (json!({"messages": "hi"}), "messages", "expected a sequence"),
        (json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 5}]}), "messages[1]", "content"),
        (json!({"messages": [{"content": "a"}]}), "messages[0]", "missing field `role`"),
        (json!({"messages": [{"role": 1, "content": "a"}]}), "messages[0]", "expected a string"),
        (json!({"messages": [{"role": "user", "content": [{"text": "a"}]}]}), "messages[0]", "missing field `type`"),
        (json!({"messages": [{"role": "user", "content": "a"}], "logprobs": 1}), "logprobs", "expected a boolean"),
        (json!({"messages": [{"role": "user", "content": "a"}], "top_logprobs": -1}), "top_logprobs", "invalid value"),
        (json!({"messages": [{"role": "user", "content": "a"}], "response_format": "json"}), "response_format", "invalid type"),
    ];
    for (body, param, detail) in cases {
        let (got, message) = type_error::<ChatCompletionRequest>(body.clone());
        assert_eq!(got.as_deref(), Some(param), "{body}");
        assert!(message.contains(detail), "{body}: {message}");
    }
}

#[test]
fn completion_response_shape() {
    let mut lp = CompletionLogprobs::default();
    lp.push(" test".into(), -0.25, TopLogprobs::new([(" test".into(), -0.25), (" trial".into(), -1.5), (" test".into(), -9.0)]), 18);
    let choice = CompletionChoice { index: 0, text: " test".into(), logprobs: Some(lp), finish_reason: Some("length") };
    let resp = CompletionResponse::new("cmpl-1".into(), 1_700_000_000, "m".into(), vec![choice], Some(Usage::new(5, 1)));
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({
            "id": "cmpl-1", "object": "text_completion", "created": 1_700_000_000u64, "model": "m",
            "choices": [{"index": 0, "text": " test", "finish_reason": "length", "logprobs": {
                "tokens": [" test"], "token_logprobs": [-0.25], "top_logprobs": [{" test": -0.25, " trial": -1.5}],
                "text_offset": [18]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        })
    );
    // Map order is the likeliest first, as given.
    let text = serde_json::to_string(&TopLogprobs::new([("b".into(), -0.1), ("a".into(), -0.2)])).unwrap();
    assert_eq!(text, r#"{"b":-0.1,"a":-0.2}"#);
    // A chunk: no usage key, explicit nulls.
    let chunk = CompletionResponse::new("cmpl-1".into(), 1, "m".into(), vec![CompletionChoice { index: 1, text: "x".into(), logprobs: None, finish_reason: None }], None);
    assert_eq!(
        serde_json::to_value(&chunk).unwrap(),
        json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
               "choices": [{"index": 1, "text": "x", "logprobs": null, "finish_reason": null}]})
    );
}

#[test]
fn chat_response_and_chunk_shapes() {
    let usage = Usage::from_engine(&rill_engine::Usage { prompt_tokens: 9, completion_tokens: 12, cached_tokens: 4 });
    let choice = ChatChoice { index: 0, message: AssistantMessage::new("Hello there!".into()), logprobs: None, finish_reason: Some("stop") };
    let resp = ChatCompletionResponse::new("chatcmpl-1".into(), 2, "m".into(), vec![choice], usage);
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 2, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 4}}
        })
    );
    let first = ChatChunkChoice { index: 0, delta: ChatDelta { role: Some("assistant"), content: Some("Hel".into()), ..ChatDelta::default() }, logprobs: None, finish_reason: None };
    let last = ChatChunkChoice { index: 0, delta: ChatDelta::default(), logprobs: None, finish_reason: Some("length") };
    let chunk = ChatCompletionChunk::new("chatcmpl-1".into(), 2, "m".into(), vec![first, last], None);
    assert_eq!(
        serde_json::to_value(&chunk).unwrap(),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 2, "model": "m", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "logprobs": null, "finish_reason": null},
            {"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}]})
    );
    let usage_chunk = ChatCompletionChunk::new("chatcmpl-1".into(), 2, "m".into(), vec![], Some(Usage::new(1, 2)));
    let v = serde_json::to_value(&usage_chunk).unwrap();
    assert_eq!((v["choices"].clone(), v["usage"]["total_tokens"].clone()), (json!([]), json!(3)));
}

#[test]
fn chat_logprobs_shape_keeps_raw_bytes() {
    // Half of "é" (0xC3 0xA9): the token text is lossy, the bytes are exact.
    let top = vec![ChatTopLogprob::from_piece(&[0xC3], -0.1), ChatTopLogprob::from_piece(b"e", -2.0)];
    let lp = ChatLogprobs { content: vec![ChatTokenLogprob::from_piece(&[0xC3], -0.1, top)] };
    assert_eq!(
        serde_json::to_value(&lp).unwrap(),
        json!({"content": [{"token": "\u{FFFD}", "logprob": -0.1f32, "bytes": [195], "top_logprobs": [
            {"token": "\u{FFFD}", "logprob": -0.1f32, "bytes": [195]}, {"token": "e", "logprob": -2.0, "bytes": [101]}]}]})
    );
}

#[test]
fn model_list_shape() {
    let list = ModelList::new(vec![ModelObject::new("qwen".into(), 5, "rill".into(), Some(4096))]);
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        json!({"object": "list", "data": [{"id": "qwen", "object": "model", "created": 5, "owned_by": "rill", "max_model_len": 4096}]})
    );
    let bare = serde_json::to_value(ModelObject::new("x".into(), 0, "rill".into(), None)).unwrap();
    assert!(bare.get("max_model_len").is_none());
}
