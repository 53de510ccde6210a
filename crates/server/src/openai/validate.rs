//! Request → validated request: everything checkable without the tokenizer, each failure a 400
//! naming the OpenAI `param`. Ranges of the sampling knobs live in one place,
//! `SamplingParams::validate`; this file adds what is about the API rather than the sampler
//! (required fields, shapes, counts, caps against abuse, fields we refuse rather than ignore).
//!
//! Tokenization and chat templating are the caller's; after them `fit_context` (or
//! `check_context`) fixes `max_tokens` against the context window.

use std::collections::HashMap;

use rill_engine::SamplingParams;
use rill_model::chat_template::{ChatMessage as TemplateMessage, MessageToolCall};
use rill_model::grammar::GrammarSpec;

use super::error::ApiError;
use super::tools::{tool_use, ToolUse};
use super::types::{ChatCompletionRequest, ChatMessage, RequestToolCall, StructuredOutputs, CompletionRequest, ContentPart, GenerationFields, MessageContent, Prompt, ResponseFormat, Stop};

/// vLLM allows any number of stop strings; OpenAI 4. Matching cost grows with count × length.
pub const MAX_STOP_STRINGS: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;
/// OpenAI documents no cap; each entry costs a logit write per sampled token.
pub const MAX_LOGIT_BIAS_ENTRIES: usize = 300;
pub const MAX_STOP_TOKEN_IDS: usize = 256;
/// OpenAI's limit on completions' integer `logprobs`.
pub const MAX_COMPLETION_LOGPROBS: usize = 5;
/// OpenAI's limit on chat's `top_logprobs` (also the engine's).
pub const MAX_TOP_LOGPROBS: usize = rill_engine::MAX_LOGPROBS;

/// What validation needs to know about the served model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    pub vocab_size: usize,
    /// Context length: prompt plus generated tokens.
    pub max_model_len: usize,
    /// Most choices per request this server allows (at most `rill_engine::MAX_N`).
    pub max_n: usize,
}

/// A grammar the request holds its output to, and the field that asked for it (named in a 400
/// if it does not compile).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestGrammar {
    pub param: &'static str,
    pub spec: GrammarSpec,
}

/// The completions prompt: text to tokenize, or token ids already checked against the vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCompletion {
    /// `None`: the client named no model; the caller picks its default (as vLLM).
    pub model: Option<String>,
    /// One or more prompts (a list is answered with `n` choices per prompt, in order).
    pub prompts: Vec<PromptInput>,
    /// `params.logprobs` is completions' `logprobs`: `Some(k)` returns `k` alternatives per token.
    pub params: SamplingParams,
    pub stop: Vec<String>,
    pub echo: bool,
    pub stream: bool,
    /// Streaming only: send a final chunk with the usage.
    pub include_usage: bool,
    /// What `structured_outputs` holds the output to (compiled by the route).
    pub grammar: Option<RequestGrammar>,
    /// The request's own `timeout`.
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedChat {
    pub model: Option<String>,
    /// Roles checked (`developer` becomes `system`, which templates know), content as text.
    pub messages: Vec<TemplateMessage>,
    /// `params.logprobs` is `Some(top_logprobs)` exactly when chat's `logprobs` is true.
    pub params: SamplingParams,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// What `response_format` or `structured_outputs` holds the output to (compiled by the
    /// route, which has the model).
    pub grammar: Option<RequestGrammar>,
    /// The tools the model may call, if any.
    pub tools: Option<ToolUse>,
    /// The request's own `timeout`.
    pub timeout: Option<std::time::Duration>,
    /// `chat_template_kwargs`, in the request's order.
    pub template_variables: Vec<(String, serde_json::Value)>,
}

impl ValidatedCompletion {
    /// The parameters for a prompt of `prompt_tokens` tokens: `max_tokens` fitted to the context.
    pub fn params_for(&self, prompt_tokens: usize, max_model_len: usize) -> Result<SamplingParams, ApiError> {
        let mut params = self.params.clone();
        fit(&mut params, prompt_tokens, max_model_len, "prompt")?;
        Ok(params)
    }
}

impl ValidatedChat {
    /// Sets `params.max_tokens` for a rendered prompt of `prompt_tokens` tokens; returns it.
    pub fn fit_context(&mut self, prompt_tokens: usize, max_model_len: usize) -> Result<usize, ApiError> {
        fit(&mut self.params, prompt_tokens, max_model_len, "messages")
    }
}

/// The effective `max_tokens`: the one asked for if prompt + it fits the context, else 400
/// `context_length_exceeded`; without one, the rest of the context. A prompt that fills the
/// context is rejected either way (not a single token could be generated).
pub fn check_context(prompt_tokens: usize, max_tokens: Option<usize>, max_model_len: usize) -> Result<usize, ApiError> {
    let room = max_model_len.saturating_sub(prompt_tokens);
    match max_tokens {
        _ if room == 0 => Err(ApiError::context_length_exceeded(max_model_len, prompt_tokens, max_tokens)),
        Some(m) if m > room => Err(ApiError::context_length_exceeded(max_model_len, prompt_tokens, max_tokens)),
        Some(m) => Ok(m),
        None => Ok(room),
    }
}

fn fit(params: &mut SamplingParams, prompt_tokens: usize, max_model_len: usize, param: &str) -> Result<usize, ApiError> {
    let max_tokens = check_context(prompt_tokens, params.max_tokens, max_model_len).map_err(|e| e.with_param(param))?;
    if params.min_tokens > max_tokens {
        let msg = format!("min_tokens ({}) exceeds the {max_tokens} tokens left in the context", params.min_tokens);
        return Err(ApiError::invalid("min_tokens", msg));
    }
    params.max_tokens = Some(max_tokens);
    Ok(max_tokens)
}

pub fn validate_completion(req: CompletionRequest, limits: &ModelLimits) -> Result<ValidatedCompletion, ApiError> {
    let prompts = prompt_inputs(req.prompt, limits.vocab_size)?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "suffix is not supported"));
    }
    let n = req.generation.n.unwrap_or(1);
    if prompts.len() > 1 && n * prompts.len() > limits.max_n {
        let msg = format!("{} prompts × n {n} is more than {} choices", prompts.len(), limits.max_n);
        return Err(ApiError::invalid("prompt", msg));
    }
    if let Some(best_of) = req.best_of.filter(|&b| b != n) {
        let msg = format!("best_of must equal n (no server-side reranking); got best_of {best_of}, n {n}");
        return Err(ApiError::invalid("best_of", msg));
    }
    if let Some(k) = req.logprobs.filter(|&k| k > MAX_COMPLETION_LOGPROBS) {
        return Err(ApiError::invalid("logprobs", format!("logprobs must be between 0 and {MAX_COMPLETION_LOGPROBS}, got {k}")));
    }
    let echo = req.echo.unwrap_or(false);
    if echo && req.logprobs.is_some() {
        return Err(ApiError::invalid("echo", "echo together with logprobs is not supported (no prompt logprobs)"));
    }
    let g = generation(req.generation, req.max_tokens.map(|m| ("max_tokens", m)), req.logprobs, limits)?;
    Ok(ValidatedCompletion {
        model: req.model,
        prompts,
        params: g.params,
        stop: g.stop,
        echo,
        stream: g.stream,
        include_usage: g.include_usage,
        grammar: g.grammar,
        timeout: g.timeout,
    })
}

pub fn validate_chat(req: ChatCompletionRequest, limits: &ModelLimits) -> Result<ValidatedChat, ApiError> {
    let messages = chat_messages(req.messages)?;
    let tools = tool_use(req.tools, req.tool_choice, req.parallel_tool_calls)?;
    let template_variables: Vec<(String, serde_json::Value)> = req.chat_template_kwargs.unwrap_or_default().into_iter().collect();
    if let Some((name, _)) = template_variables.iter().find(|(k, _)| rill_model::chat_template::RESERVED_VARIABLES.contains(&k.as_str())) {
        return Err(ApiError::invalid("chat_template_kwargs", format!("{name:?} is set by the server and cannot be passed")));
    }
    let format = req.response_format.map(response_format).transpose()?.flatten();
    let logprobs = req.logprobs.unwrap_or(false);
    if let Some(k) = req.top_logprobs {
        if k > MAX_TOP_LOGPROBS {
            return Err(ApiError::invalid("top_logprobs", format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}")));
        }
        if k > 0 && !logprobs {
            return Err(ApiError::invalid("top_logprobs", "top_logprobs requires logprobs to be true"));
        }
    }
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => Some(("max_completion_tokens", m)),
        (None, m) => m.map(|m| ("max_tokens", m)),
    };
    let g = generation(req.generation, max_tokens, logprobs.then(|| req.top_logprobs.unwrap_or(0)), limits)?;
    Ok(ValidatedChat {
        model: req.model,
        messages,
        params: g.params,
        stop: g.stop,
        stream: g.stream,
        include_usage: g.include_usage,
        grammar: match (format, g.grammar) {
            (Some(_), Some(other)) => return Err(ApiError::invalid(other.param, "response_format and a structured output cannot both be given")),
            (Some(spec), None) => Some(RequestGrammar { param: "response_format", spec }),
            (None, other) => other,
        },
        tools,
        timeout: g.timeout,
        template_variables,
    })
}

/// `response_format` as a grammar: `None` for `text`.
fn response_format(f: ResponseFormat) -> Result<Option<GrammarSpec>, ApiError> {
    match f.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(GrammarSpec::JsonObject)),
        "json_schema" => {
            let schema = f.json_schema.and_then(|j| j.schema);
            let schema = schema.ok_or_else(|| ApiError::invalid("response_format", "response_format of type json_schema needs json_schema.schema"))?;
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ApiError::invalid("response_format", "json_schema.schema must be a JSON Schema object"));
            }
            Ok(Some(GrammarSpec::JsonSchema(schema)))
        }
        other => Err(ApiError::invalid("response_format", format!("response_format type {other:?} is not supported (text, json_object, json_schema)"))),
    }
}

/// The largest `temperature` OpenAI's API accepts.
const MAX_TEMPERATURE: f32 = 2.0;

struct Generation {
    params: SamplingParams,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    grammar: Option<RequestGrammar>,
    timeout: Option<std::time::Duration>,
}

/// The shared fields checked and turned into engine parameters, with the two an endpoint spells
/// its own way: `max_tokens` (and which field it came from: chat has two names for it) and the
/// number of logprobs alternatives.
fn generation(f: GenerationFields, max_tokens: Option<(&'static str, usize)>, logprobs: Option<usize>, limits: &ModelLimits) -> Result<Generation, ApiError> {
    let n = f.n.unwrap_or(1);
    if n > limits.max_n {
        return Err(ApiError::invalid("n", format!("n must be at most {}, got {n}", limits.max_n)));
    }
    if let Some((param, 0)) = max_tokens {
        return Err(ApiError::invalid(param, format!("{param} must be at least 1, got 0")));
    }
    // OpenAI's range (the engine itself takes any non-negative temperature, as vLLM does).
    if let Some(t) = f.temperature.filter(|t| *t > MAX_TEMPERATURE) {
        return Err(ApiError::invalid("temperature", format!("temperature must be between 0 and 2, got {t}")));
    }
    let stream = f.stream.unwrap_or(false);
    if f.stream_options.is_some() && !stream {
        return Err(ApiError::invalid("stream_options", "stream_options is only allowed when stream is true"));
    }
    let include_usage = stream && f.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let stop_token_ids = f.stop_token_ids.unwrap_or_default();
    if stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
        return Err(ApiError::invalid("stop_token_ids", format!("at most {MAX_STOP_TOKEN_IDS} stop_token_ids are allowed")));
    }
    let defaults = SamplingParams::default();
    let params = SamplingParams {
        n,
        temperature: f.temperature.unwrap_or(defaults.temperature),
        top_k: f.top_k.unwrap_or(defaults.top_k),
        top_p: f.top_p.unwrap_or(defaults.top_p),
        min_p: f.min_p.unwrap_or(defaults.min_p),
        presence_penalty: f.presence_penalty.unwrap_or(defaults.presence_penalty),
        frequency_penalty: f.frequency_penalty.unwrap_or(defaults.frequency_penalty),
        repetition_penalty: f.repetition_penalty.unwrap_or(defaults.repetition_penalty),
        logit_bias: logit_bias(f.logit_bias.unwrap_or_default())?,
        // Negative seeds (OpenAI allows any int64) map one-to-one onto u64.
        seed: f.seed.map(|s| s as u64),
        max_tokens: max_tokens.map(|(_, m)| m),
        min_tokens: f.min_tokens.unwrap_or(0),
        stop_token_ids,
        ignore_eos: f.ignore_eos.unwrap_or(false),
        logprobs,
        // Set by the route from `response_format` once the model has compiled it.
        constraint: None,
        speculative: f.speculative,
    };
    params.validate(limits.vocab_size)?;
    let stop = stop_strings(f.stop)?;
    let grammar = structured_outputs(f.structured_outputs, f.guided_json, f.guided_regex, f.guided_grammar, f.guided_choice)?;
    let timeout = f.timeout.map(|t| parse_timeout(t).map_err(|m| ApiError::invalid("timeout", m))).transpose()?;
    Ok(Generation { params, stop, stream, include_usage, grammar, timeout })
}

/// The longest request timeout accepted (a day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// A timeout in seconds, as the `timeout` field and the `x-request-timeout` header give it.
pub fn parse_timeout(seconds: f64) -> Result<std::time::Duration, String> {
    if !(seconds > 0.0 && seconds <= MAX_TIMEOUT_SECS) {
        return Err(format!("timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}, got {seconds}"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// vLLM's `structured_outputs` (or its `guided_*` fields) as a grammar: at most one kind.
fn structured_outputs(
    so: Option<StructuredOutputs>,
    json: Option<serde_json::Value>,
    regex: Option<String>,
    grammar: Option<String>,
    choice: Option<Vec<String>>,
) -> Result<Option<RequestGrammar>, ApiError> {
    let so = so.unwrap_or_default();
    let mut specs: Vec<(&'static str, GrammarSpec)> = Vec::new();
    for (param, json) in [("structured_outputs.json", so.json), ("guided_json", json)] {
        if let Some(schema) = json {
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ApiError::invalid(param, "expected a JSON Schema object"));
            }
            specs.push((param, GrammarSpec::JsonSchema(schema)));
        }
    }
    for (param, rx) in [("structured_outputs.regex", so.regex), ("guided_regex", regex)] {
        specs.extend(rx.map(|r| (param, GrammarSpec::Regex(r))));
    }
    for (param, lark) in [("structured_outputs.grammar", so.grammar), ("guided_grammar", grammar)] {
        specs.extend(lark.map(|g| (param, GrammarSpec::Lark(g))));
    }
    for (param, choice) in [("structured_outputs.choice", so.choice), ("guided_choice", choice)] {
        if let Some(options) = choice {
            if options.is_empty() {
                return Err(ApiError::invalid(param, "choice needs at least one option"));
            }
            specs.push((param, GrammarSpec::Regex(options.iter().map(|o| regex_literal(o)).collect::<Vec<_>>().join("|"))));
        }
    }
    if so.json_object == Some(true) {
        specs.push(("structured_outputs.json_object", GrammarSpec::JsonObject));
    }
    match specs.len() {
        0 => Ok(None),
        1 => Ok(specs.pop().map(|(param, spec)| RequestGrammar { param, spec })),
        _ => Err(ApiError::invalid(specs[1].0, format!("only one structured output may be asked for, got {} and {}", specs[0].0, specs[1].0))),
    }
}

/// `s` matched literally by a regex.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(')');
    out
}

/// `{"50256": -100}` → sorted `(token, bias)` pairs (ranges are checked by `SamplingParams`).
fn logit_bias(map: HashMap<String, f32>) -> Result<Vec<(u32, f32)>, ApiError> {
    if map.len() > MAX_LOGIT_BIAS_ENTRIES {
        return Err(ApiError::invalid("logit_bias", format!("logit_bias may have at most {MAX_LOGIT_BIAS_ENTRIES} entries, got {}", map.len())));
    }
    let mut pairs = Vec::with_capacity(map.len());
    for (key, bias) in map {
        let token: u32 = key
            .parse()
            .map_err(|_| ApiError::invalid("logit_bias", format!("logit_bias keys must be token ids, got {key:?}")))?;
        pairs.push((token, bias));
    }
    pairs.sort_by_key(|&(token, _)| token);
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ApiError::invalid("logit_bias", format!("token id {} appears more than once in logit_bias", w[0].0)));
    }
    Ok(pairs)
}

fn stop_strings(stop: Option<Stop>) -> Result<Vec<String>, ApiError> {
    let stops = stop.map(Stop::into_vec).unwrap_or_default();
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid("stop", format!("at most {MAX_STOP_STRINGS} stop strings are allowed, got {}", stops.len())));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop strings must not be empty"));
    }
    if let Some(s) = stops.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid("stop", format!("stop strings may be at most {MAX_STOP_BYTES} bytes, got {}", s.len())));
    }
    Ok(stops)
}

/// Most prompts one completions request may list.
pub const MAX_PROMPTS: usize = 64;

fn prompt_inputs(prompt: Option<Prompt>, vocab_size: usize) -> Result<Vec<PromptInput>, ApiError> {
    let inputs: Vec<PromptInput> = match prompt {
        None => return Err(ApiError::invalid("prompt", "prompt is required")),
        Some(Prompt::Text(s)) => vec![PromptInput::Text(s)],
        Some(Prompt::Texts(v)) => v.into_iter().map(PromptInput::Text).collect(),
        Some(Prompt::Tokens(t)) => vec![PromptInput::Tokens(t)],
        Some(Prompt::TokenBatch(v)) => v.into_iter().map(PromptInput::Tokens).collect(),
    };
    if inputs.is_empty() || inputs.len() > MAX_PROMPTS {
        return Err(ApiError::invalid("prompt", format!("prompt lists must hold 1 to {MAX_PROMPTS} prompts, got {}", inputs.len())));
    }
    inputs.into_iter().map(|p| prompt_input(p, vocab_size)).collect()
}

fn prompt_input(input: PromptInput, vocab_size: usize) -> Result<PromptInput, ApiError> {
    let empty = match &input {
        PromptInput::Text(s) => s.is_empty(),
        PromptInput::Tokens(t) => t.is_empty(),
    };
    if empty {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    if let PromptInput::Tokens(tokens) = &input {
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
            let msg = format!("prompt contains token id {bad}, outside the vocabulary of {vocab_size} tokens");
            return Err(ApiError::invalid("prompt", msg));
        }
    }
    Ok(input)
}

fn chat_messages(messages: Option<Vec<ChatMessage>>) -> Result<Vec<TemplateMessage>, ApiError> {
    let messages = messages.unwrap_or_default();
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    messages.into_iter().enumerate().map(|(i, m)| chat_message(i, m)).collect()
}

fn chat_message(i: usize, m: ChatMessage) -> Result<TemplateMessage, ApiError> {
    let role = match m.role.as_str() {
        // OpenAI's newer name for system instructions; chat templates only know "system".
        "developer" => "system",
        r @ ("system" | "user" | "assistant" | "tool") => r,
        other => {
            let msg = format!("unknown role {other:?}; expected system, developer, user, assistant or tool");
            return Err(ApiError::invalid(format!("messages[{i}].role"), msg));
        }
    };
    let content = match m.content {
        Some(MessageContent::Text(s)) => s,
        Some(MessageContent::Parts(parts)) => text_parts(i, parts)?,
        None if role == "assistant" => String::new(),
        None => return Err(ApiError::invalid(format!("messages[{i}].content"), "content is required")),
    };
    let mut message = TemplateMessage::new(role, content);
    message.name = m.name;
    if role == "tool" {
        message.tool_call_id = m.tool_call_id;
    }
    let calls = m.tool_calls.unwrap_or_default();
    if !calls.is_empty() && role != "assistant" {
        return Err(ApiError::invalid(format!("messages[{i}].tool_calls"), "only assistant messages carry tool_calls"));
    }
    message.tool_calls = calls.into_iter().enumerate().map(|(j, c)| tool_call(i, j, c)).collect::<Result<_, _>>()?;
    Ok(message)
}

/// A call the assistant made, as templates want it: arguments as an object where they parse.
fn tool_call(i: usize, j: usize, c: RequestToolCall) -> Result<MessageToolCall, ApiError> {
    let param = format!("messages[{i}].tool_calls[{j}]");
    let f = c.function.ok_or_else(|| ApiError::invalid(format!("{param}.function"), "a tool call needs a `function`"))?;
    let name = f.name.ok_or_else(|| ApiError::invalid(format!("{param}.function.name"), "a tool call needs the function's `name`"))?;
    let arguments = match f.arguments {
        Some(serde_json::Value::String(s)) => serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)),
        Some(v) => v,
        None => serde_json::json!({}),
    };
    Ok(MessageToolCall { id: c.id.unwrap_or_default(), name, arguments })
}

/// Text parts joined by newlines (as vLLM flattens them for string-content templates).
fn text_parts(i: usize, parts: Vec<ContentPart>) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        if part.kind != "text" {
            return Err(ApiError::invalid(param, format!("only text content parts are supported, got type {:?}", part.kind)));
        }
        texts.push(part.text.ok_or_else(|| ApiError::invalid(param, "a text content part needs a `text` string"))?);
    }
    Ok(texts.join("\n"))
}
