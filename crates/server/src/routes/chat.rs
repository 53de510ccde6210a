//! `POST /v1/chat/completions`: the model's chat template renders the messages (and tools), the
//! request runs like a completion, and each choice's text becomes an assistant turn: reasoning,
//! content and tool calls (`assistant_output`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rill_engine::{Constraint, SampledToken};
use rill_model::chat_template::{tool_call_lark, ChatTemplate, RenderOptions};
use rill_model::grammar::GrammarSpec;

use super::completions::limits;
use super::routing::{model_for, VersionTag};
use super::generation::compile_grammar;
use super::generation::{collect, response_id, sse, submit, Arrival, Chunk};
use crate::app::{AppState, ServedModel};
use crate::assistant_output::{AssistantOutput, Parts, ToolParsing};
use crate::choices::ChoiceUpdate;
use crate::openai::error::ApiError;
use crate::openai::types::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatDelta, ChatLogprobs, ChatTokenLogprob,
    ChatTopLogprob, FunctionCall, FunctionCallDelta, ToolCallDelta, ToolCallObject, Usage,
};
use crate::openai::unix_time;
use crate::openai::validate::{validate_chat, ValidatedChat};
use crate::reasoning::ReasoningSplitter;
use crate::routes::json_body::JsonBody;
use crate::tool_calls::ToolCall;

#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "createChatCompletion", tag = "inference", request_body = ChatCompletionRequest,
    responses((status = 200, description = "The completion; with `stream: true`, server-sent events of chunks ending with `data: [DONE]`.",
        content((ChatCompletionResponse = "application/json"), (ChatCompletionChunk = "text/event-stream")))))]
pub async fn chat_completions(State(state): State<AppState>, tag: VersionTag, arrival: Arrival, JsonBody(req): JsonBody<ChatCompletionRequest>) -> Result<Response, ApiError> {
    let model = model_for(&state, &tag, req.model.as_deref()).await?;
    let mut v = validate_chat(req, &limits(&model))?;
    let ctx = arrival.context(v.timeout)?;
    let PreparedChat { prompt, output } = prepare(&model, &mut v)?;
    let n = v.params.n.max(1);
    let want_logprobs = v.params.logprobs.is_some();
    let run = submit(&model, prompt, v.params.clone(), &v.stop, &ctx)?;
    let (id, created, name) = (response_id("chatcmpl"), unix_time(), model.echo.clone());

    if !v.stream {
        let c = collect(run, n).await?;
        let choices = (0..n)
            .map(|i| {
                let parts = output.clone().whole(&c.texts[i]);
                let finish_reason = finish_reason(c.finish_reasons[i], !parts.calls.is_empty());
                ChatChoice { index: i, message: message(parts), logprobs: want_logprobs.then(|| logprobs(&model, &c.tokens[i])), finish_reason: Some(finish_reason) }
            })
            .collect();
        return Ok(Json(ChatCompletionResponse::new(id, created, name, choices, Usage::from_engine(&c.usage))).into_response());
    }

    let include_usage = v.include_usage;
    let chunks = async_stream::stream! {
        let mut run = run;
        let chunk = |choice: Option<ChatChunkChoice>, usage| Chunk::Data(ChatCompletionChunk::new(id.clone(), created, name.clone(), choice.into_iter().collect(), usage));
        let choice = |index, delta, logprobs, finish_reason| Some(ChatChunkChoice { index, delta, logprobs, finish_reason });
        let mut outputs: Vec<AssistantOutput> = vec![output; n];
        for i in 0..n {
            yield chunk(choice(i, ChatDelta { role: Some("assistant"), content: Some(String::new()), ..ChatDelta::default() }, None, None), None);
        }
        while !run.choices.all_done() {
            let Some(event) = run.next_event().await else { break };
            for update in run.choices.on_event(event) {
                match update {
                    ChoiceUpdate::Text { index, text, tokens } => {
                        let lp = (want_logprobs && !tokens.is_empty()).then(|| logprobs(&model, &tokens));
                        let first_call = outputs[index].calls;
                        let parts = outputs[index].push(&text);
                        for (delta, logprobs) in deltas(parts, first_call, lp) {
                            yield chunk(choice(index, delta, logprobs, None), None);
                        }
                    }
                    ChoiceUpdate::Finished { index, reason } => {
                        let first_call = outputs[index].calls;
                        for (delta, _) in deltas(outputs[index].finish(), first_call, None) {
                            yield chunk(choice(index, delta, None, None), None);
                        }
                        let reason = finish_reason(reason, outputs[index].calls > 0);
                        yield chunk(choice(index, ChatDelta::default(), None, Some(reason)), None);
                    }
                    ChoiceUpdate::Failed(e) => yield Chunk::Error(e.into()),
                }
            }
        }
        if include_usage {
            yield chunk(None, Some(Usage::from_engine(&run.choices.usage())));
        }
    };
    Ok(sse(chunks))
}

/// A chat request ready to run: the prompt's tokens (`max_tokens` fitted to the context), and the
/// chain each choice's text goes through.
pub struct PreparedChat {
    pub prompt: Vec<u32>,
    pub output: AssistantOutput,
}

/// Renders the conversation and its tools through the model's template, sets the grammar the
/// output is held to, and tokenizes. Shared by chat completions and Responses.
pub fn prepare(model: &ServedModel, v: &mut ValidatedChat) -> Result<PreparedChat, ApiError> {
    let template = model.chat_template.as_ref().ok_or_else(|| ApiError::invalid("messages", "this model has no chat template: use /v1/completions"))?;
    v.params.constraint = constraint(model, template, v)?;
    let tools = v.tools.as_ref().map_or(&[][..], |t| &t.definitions[..]);
    let options = RenderOptions { add_generation_prompt: true, tools, variables: &v.template_variables, now: None };
    let text = template.render_with(&v.messages, &options).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    // A thinking model's output splits into reasoning and answer; a template may open the span.
    let splitter = model.reasoning.clone().map(|m| {
        let inside = text.trim_end().ends_with(&m.open);
        ReasoningSplitter::new(m, inside)
    });
    let parsing = v.tools.as_ref().map(|t| ToolParsing { format: template.tool_call_format(), parallel: t.parallel });
    let output = AssistantOutput::new(&model.name, splitter, parsing);
    // The template writes BOS itself where the model wants one.
    let prompt = model.tokenizer.encode(&text, false).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    v.fit_context(prompt.len(), model.max_model_len)?;
    Ok(PreparedChat { prompt, output })
}

/// What the output is held to: forced tool calls, the `response_format`, or (with tools the model
/// may call) either calls or the formatted answer.
fn constraint(model: &ServedModel, template: &ChatTemplate, v: &ValidatedChat) -> Result<Option<Constraint>, ApiError> {
    let Some(tools) = &v.tools else {
        return v.grammar.as_ref().map(|g| compile_grammar(model, &g.spec, g.param)).transpose();
    };
    let answer = match v.grammar.as_ref().map(|g| (g.param, &g.spec)) {
        None => None,
        Some((_, GrammarSpec::JsonSchema(schema))) => Some(schema.clone()),
        Some((_, GrammarSpec::JsonObject)) => Some(serde_json::json!({ "type": "object" })),
        Some((param, _)) => return Err(ApiError::invalid(param, "only a JSON answer format can be combined with tools")),
    };
    let (functions, answer) = match tools.forced_functions() {
        Some(_) if answer.is_some() => {
            let param = v.grammar.as_ref().map_or("response_format", |g| g.param);
            return Err(ApiError::invalid(param, "an answer format cannot be combined with a required or named tool_choice"));
        }
        Some(forced) => (forced, None),
        None if answer.is_some() => (tools.functions.clone(), answer),
        None => return Ok(None),
    };
    let grammars = model.grammars().map_err(|e| ApiError::invalid("tools", e))?;
    let lark = tool_call_lark(template.tool_call_format(), &functions, tools.parallel, answer.as_ref(), |s| grammars.lark_literal(s));
    compile_grammar(model, &GrammarSpec::Lark(lark), "tools").map(Some)
}

/// A choice that called tools and stopped on its own finished with `tool_calls`.
pub fn finish_reason(reason: &'static str, called: bool) -> &'static str {
    if called && reason == "stop" {
        "tool_calls"
    } else {
        reason
    }
}

/// A call's id, unique within this process (OpenAI's `call_…`).
pub fn call_id() -> String {
    super::generation::item_id("call")
}

/// The assistant message of a whole choice: content is `null` when the turn is only calls.
fn message(parts: Parts) -> AssistantMessage {
    let tool_calls: Vec<ToolCallObject> = parts.calls.into_iter().map(|c| ToolCallObject { id: call_id(), kind: "function", function: FunctionCall { name: c.name, arguments: c.arguments } }).collect();
    let content = (!parts.content.is_empty() || tool_calls.is_empty()).then_some(parts.content);
    AssistantMessage { role: "assistant", content, reasoning_content: (!parts.reasoning.is_empty()).then_some(parts.reasoning), tool_calls }
}

/// The chunks one piece of output streams as: reasoning and content (with the tokens' logprobs)
/// in one, then each call as OpenAI streams them, its id and name first, then its arguments.
/// `first_call` is the index of the first new call within the choice.
fn deltas(parts: Parts, first_call: usize, logprobs: Option<ChatLogprobs>) -> Vec<(ChatDelta, Option<ChatLogprobs>)> {
    let mut out = Vec::new();
    if !parts.content.is_empty() || !parts.reasoning.is_empty() || logprobs.is_some() {
        let text = ChatDelta { content: (!parts.content.is_empty()).then_some(parts.content), reasoning_content: (!parts.reasoning.is_empty()).then_some(parts.reasoning), ..ChatDelta::default() };
        out.push((text, logprobs));
    }
    for (k, ToolCall { name, arguments }) in parts.calls.into_iter().enumerate() {
        let index = first_call + k;
        let head = ToolCallDelta { index, id: Some(call_id()), kind: Some("function"), function: FunctionCallDelta { name: Some(name), arguments: Some(String::new()) } };
        let args = ToolCallDelta { index, id: None, kind: None, function: FunctionCallDelta { name: None, arguments: Some(arguments) } };
        out.push((ChatDelta { tool_calls: Some(vec![head]), ..ChatDelta::default() }, None));
        out.push((ChatDelta { tool_calls: Some(vec![args]), ..ChatDelta::default() }, None));
    }
    out
}

fn logprobs(model: &ServedModel, tokens: &[SampledToken]) -> ChatLogprobs {
    let piece = |id: u32| model.tokenizer.token_to_piece(id).unwrap_or_default();
    let content = tokens
        .iter()
        .map(|t| {
            let top = t.top_logprobs.iter().map(|&(id, lp)| ChatTopLogprob::from_piece(piece(id), lp)).collect();
            ChatTokenLogprob::from_piece(piece(t.token), t.logprob.unwrap_or(f32::NAN), top)
        })
        .collect();
    ChatLogprobs { content }
}
