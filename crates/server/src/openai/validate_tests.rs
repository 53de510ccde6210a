//! Validation: how fields map onto `SamplingParams`, and which `param` each rejection names.

use rill_engine::SamplingParams;
use rill_model::chat_template::ChatMessage as TemplateMessage;
use serde_json::{json, Value};

use super::error::{parse_json, ApiError};
use super::validate::*;

const LIMITS: ModelLimits = ModelLimits { vocab_size: 1000, max_model_len: 2048, max_n: 8 };

fn completion(body: Value) -> Result<ValidatedCompletion, ApiError> {
    validate_completion(parse_json(body.to_string().as_bytes()).expect("parses"), &LIMITS)
}

fn chat(body: Value) -> Result<ValidatedChat, ApiError> {
    validate_chat(parse_json(body.to_string().as_bytes()).expect("parses"), &LIMITS)
}

/// `body` merged over a minimal valid request.
fn with(base: Value, extra: Value) -> Value {
    let mut b = base;
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

#[test]
fn minimal_requests_get_openai_defaults() {
    let v = completion(json!({"model": "m", "prompt": "Hi"})).unwrap();
    assert_eq!(v.model.as_deref(), Some("m"));
    assert_eq!(v.prompts, [PromptInput::Text("Hi".into())]);
    assert_eq!(v.params, SamplingParams::default());
    assert_eq!((v.stop.len(), v.echo, v.stream, v.include_usage), (0, false, false, false));
    let v = chat(user("Hi")).unwrap();
    assert_eq!(v.model, None);
    assert_eq!(v.messages, vec![TemplateMessage::new("user", "Hi")]);
    assert_eq!(v.params, SamplingParams::default());
}

#[test]
fn every_completion_field_reaches_the_params() {
    let v = completion(json!({
        "prompt": [[5, 6, 7]], "max_tokens": 16, "temperature": 0.0, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "n": 3,
        "stream": true, "stream_options": {"include_usage": true}, "stop": "\n\n", "presence_penalty": 0.5,
        "frequency_penalty": -0.5, "repetition_penalty": 1.1, "logit_bias": {"9": 1.5, "2": -100}, "logprobs": 5,
        "seed": -1, "ignore_eos": true, "min_tokens": 4, "stop_token_ids": [999], "best_of": 3, "suffix": ""
    }))
    .unwrap();
    let expected = SamplingParams {
        n: 3,
        temperature: 0.0,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        repetition_penalty: 1.1,
        logit_bias: vec![(2, -100.0), (9, 1.5)],
        seed: Some(u64::MAX),
        max_tokens: Some(16),
        min_tokens: 4,
        stop_token_ids: vec![999],
        ignore_eos: true,
        logprobs: Some(5),
        constraint: None,
        speculative: None,
    };
    assert_eq!(v.params, expected);
    assert_eq!(v.prompts, [PromptInput::Tokens(vec![5, 6, 7])]);
    assert_eq!(v.stop, vec!["\n\n".to_string()]);
    assert!(v.stream && v.include_usage);
    assert!(completion(json!({"prompt": "x", "echo": true})).unwrap().echo);
    assert_eq!(completion(json!({"prompt": ["only"]})).unwrap().prompts, [PromptInput::Text("only".into())]);
    // A list: one entry per prompt, n choices each.
    let two = completion(json!({"prompt": ["a", "b"], "n": 2})).unwrap();
    assert_eq!(two.prompts, [PromptInput::Text("a".into()), PromptInput::Text("b".into())]);
    assert_eq!(completion(json!({"prompt": [[1], [2]]})).unwrap().prompts, [PromptInput::Tokens(vec![1]), PromptInput::Tokens(vec![2])]);
    // include_usage defaults to off; an explicit false stays off.
    let v = completion(json!({"prompt": "x", "stream": true, "stream_options": {}})).unwrap();
    assert!(v.stream && !v.include_usage);
}

#[test]
fn chat_fields_reach_the_params() {
    let v = chat(with(user("Hi"), json!({"logprobs": true, "top_logprobs": 20, "max_tokens": 9, "stop": ["a", "b"]}))).unwrap();
    assert_eq!((v.params.logprobs, v.params.max_tokens), (Some(20), Some(9)));
    assert_eq!(v.stop, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(chat(with(user("Hi"), json!({"logprobs": true}))).unwrap().params.logprobs, Some(0));
    assert_eq!(chat(with(user("Hi"), json!({"logprobs": false, "top_logprobs": 0}))).unwrap().params.logprobs, None);
    // max_completion_tokens wins over the deprecated max_tokens.
    let v = chat(with(user("Hi"), json!({"max_tokens": 9, "max_completion_tokens": 30}))).unwrap();
    assert_eq!(v.params.max_tokens, Some(30));
}

#[test]
fn chat_messages_become_template_messages() {
    let v = chat(json!({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": null},
        {"role": "tool", "content": "42"},
        {"role": "system", "content": ""}
    ]}))
    .unwrap();
    let expected = [("system", "Be brief."), ("user", "one\ntwo"), ("assistant", ""), ("tool", "42"), ("system", "")];
    assert_eq!(v.messages, expected.map(|(r, c)| TemplateMessage::new(r, c)).to_vec());
}

/// Each case must be rejected with status 400 and this `param`.
fn assert_rejected(cases: &[(Result<impl std::fmt::Debug, ApiError>, &str)]) {
    for (result, param) in cases {
        let e = result.as_ref().expect_err(param);
        assert_eq!((e.status, e.kind), (400, "invalid_request_error"), "{e}");
        assert_eq!(e.param.as_deref(), Some(*param), "{e}");
    }
}

#[test]
fn completion_rejections_name_the_param() {
    let p = |extra: Value| completion(with(json!({"prompt": "x"}), extra));
    let many = |n: usize, len: usize| json!((0..n).map(|i| format!("{i:0len$}")).collect::<Vec<_>>());
    let bias: serde_json::Map<String, Value> = (0..301).map(|i| (i.to_string(), json!(1.0))).collect();
    assert_rejected(&[
        (completion(json!({"model": "m"})), "prompt"),
        (completion(json!({"prompt": ""})), "prompt"),
        (completion(json!({"prompt": []})), "prompt"),
        (completion(json!({"prompt": [[]]})), "prompt"),
        (completion(json!({"prompt": ["a", ""]})), "prompt"),
        (completion(json!({"prompt": vec!["a"; 65]})), "prompt"),
        (completion(json!({"prompt": ["a", "b"], "n": 65})), "prompt"),
        (completion(json!({"prompt": [1, 1000]})), "prompt"),
        (p(json!({"n": 9})), "n"),
        (p(json!({"n": 0})), "n"),
        (p(json!({"max_tokens": 0})), "max_tokens"),
        (p(json!({"temperature": -1})), "temperature"),
        (p(json!({"temperature": 2.5})), "temperature"),
        (p(json!({"top_p": 0})), "top_p"),
        (p(json!({"top_k": -2})), "top_k"),
        (p(json!({"min_p": 2})), "min_p"),
        (p(json!({"presence_penalty": 3})), "presence_penalty"),
        (p(json!({"frequency_penalty": -3})), "frequency_penalty"),
        (p(json!({"repetition_penalty": 0})), "repetition_penalty"),
        (p(json!({"logit_bias": {"1000": 1}})), "logit_bias"),
        (p(json!({"logit_bias": {"1": 101}})), "logit_bias"),
        (p(json!({"logit_bias": {"one": 1}})), "logit_bias"),
        (p(json!({"logit_bias": {"-1": 1}})), "logit_bias"),
        (p(json!({"logit_bias": {"1": 1, "01": 2}})), "logit_bias"),
        (p(json!({ "logit_bias": bias })), "logit_bias"),
        (p(json!({"logprobs": 6})), "logprobs"),
        (p(json!({"logprobs": 1, "echo": true})), "echo"),
        (p(json!({"min_tokens": 5, "max_tokens": 4})), "min_tokens"),
        (p(json!({"stop_token_ids": [1000]})), "stop_token_ids"),
        (p(json!({"stop_token_ids": vec![1; 257]})), "stop_token_ids"),
        (p(json!({"stop": ""})), "stop"),
        (p(json!({"stop": ["a", ""]})), "stop"),
        (p(json!({ "stop": many(17, 1) })), "stop"),
        (p(json!({ "stop": many(1, 257) })), "stop"),
        (p(json!({"stream_options": {"include_usage": true}})), "stream_options"),
        (p(json!({"stream": false, "stream_options": {}})), "stream_options"),
        (p(json!({"suffix": "end"})), "suffix"),
        (p(json!({"best_of": 2})), "best_of"),
    ]);
    // The limits themselves are allowed.
    let bias: serde_json::Map<String, Value> = (0..300).map(|i| (i.to_string(), json!(1.0))).collect();
    assert!(p(json!({ "logit_bias": bias, "stop": many(16, 256), "n": 8, "logprobs": 5 })).is_ok());
}

#[test]
fn chat_rejections_name_the_param() {
    let c = |extra: Value| chat(with(user("x"), extra));
    assert_rejected(&[
        (chat(json!({"model": "m"})), "messages"),
        (chat(json!({"messages": []})), "messages"),
        (chat(json!({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})), "messages[1].role"),
        (chat(json!({"messages": [{"role": "user"}]})), "messages[0].content"),
        (chat(json!({"messages": [{"role": "user", "content": null}]})), "messages[0].content"),
        (
            chat(json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]}]})),
            "messages[0].content[1]",
        ),
        (chat(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]})), "messages[0].content[0]"),
        (c(json!({"top_logprobs": 2})), "top_logprobs"),
        (c(json!({"logprobs": true, "top_logprobs": 21})), "top_logprobs"),
        (c(json!({"max_tokens": 0})), "max_tokens"),
        (c(json!({"max_completion_tokens": 0, "max_tokens": 5})), "max_completion_tokens"),
        (c(json!({"n": 9})), "n"),
        (c(json!({"temperature": 1e39})), "temperature"),
        (c(json!({"stop": vec!["a"; 17]})), "stop"),
        (c(json!({"stream_options": {"include_usage": true}})), "stream_options"),
        (c(json!({"tools": [{"type": "function", "function": {"name": "f g"}}]})), "tools[0].function.name"),
        (c(json!({"response_format": {"type": "xml"}})), "response_format"),
        (c(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})), "response_format"),
        (c(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}})), "response_format"),
    ]);
}

#[test]
fn messages_of_a_rejection_say_what_is_wrong() {
    let e = completion(json!({"prompt": "x", "n": 9})).unwrap_err();
    assert_eq!(e.message, "n must be at most 8, got 9");
    let e = completion(json!({"prompt": [3, 1234]})).unwrap_err();
    assert_eq!(e.message, "prompt contains token id 1234, outside the vocabulary of 1000 tokens");
    let e = chat(json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})).unwrap_err();
    assert_eq!(e.message, "only text content parts are supported, got type \"input_audio\"");
    let e = chat(with(user("x"), json!({"max_completion_tokens": 0}))).unwrap_err();
    assert_eq!(e.message, "max_completion_tokens must be at least 1, got 0");
}

#[test]
fn check_context_fits_max_tokens_to_the_window() {
    assert_eq!(check_context(10, Some(20), 2048).unwrap(), 20);
    assert_eq!(check_context(10, None, 2048).unwrap(), 2038);
    assert_eq!(check_context(2000, Some(48), 2048).unwrap(), 48);
    assert_eq!(check_context(2047, None, 2048).unwrap(), 1);
    for (prompt, max_tokens) in [(2000, Some(49)), (2048, None), (3000, None), (2048, Some(1)), (1, Some(usize::MAX))] {
        let e = check_context(prompt, max_tokens, 2048).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("context_length_exceeded")), "{prompt} {max_tokens:?}");
    }
}

#[test]
fn tools_are_used_unless_tool_choice_is_none() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    assert_eq!(chat(with(user("x"), json!({"tools": tools, "tool_choice": "none"}))).unwrap().tools, None);
    let v = chat(with(user("x"), json!({"tools": tools, "tool_choice": "auto"}))).unwrap();
    assert_eq!(v.tools.unwrap().functions[0].name, "f");
}

#[test]
fn assistant_tool_calls_and_tool_results_reach_the_template() {
    let messages = json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
    ]);
    let v = chat(json!({"model": "m", "messages": messages})).unwrap();
    assert_eq!(v.messages[1].tool_calls[0].arguments, json!({"x": 1}));
    assert_eq!(v.messages[2].tool_call_id.as_deref(), Some("c1"));
    let stray = json!([{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]);
    assert_eq!(chat(json!({"model": "m", "messages": stray})).unwrap_err().param.as_deref(), Some("messages[0].tool_calls"));
    let reserved = chat(with(user("x"), json!({"chat_template_kwargs": {"messages": []}}))).unwrap_err();
    assert_eq!(reserved.param.as_deref(), Some("chat_template_kwargs"));
}

#[test]
fn fit_context_sets_max_tokens_and_names_the_prompt() {
    let v = completion(json!({"prompt": "x"})).unwrap();
    assert_eq!(v.params_for(48, 64).map(|p| p.max_tokens), Ok(Some(16)));
    let mut v = chat(with(user("x"), json!({"max_completion_tokens": 100}))).unwrap();
    let e = v.fit_context(2000, 2048).unwrap_err();
    assert_eq!((e.param.as_deref(), e.code.as_deref()), (Some("messages"), Some("context_length_exceeded")));
    let v = completion(json!({"prompt": "x", "max_tokens": 100})).unwrap();
    assert_eq!(v.params_for(2048, 2048).unwrap_err().param.as_deref(), Some("prompt"));
    // min_tokens must still fit once max_tokens comes from the context.
    let v = completion(json!({"prompt": "x", "min_tokens": 20})).unwrap();
    assert_eq!(v.params_for(2040, 2048).unwrap_err().param.as_deref(), Some("min_tokens"));
    assert_eq!(v.params_for(2000, 2048).map(|p| p.max_tokens), Ok(Some(48)));
}
