//! `POST /v1/chat/completions`: the model's chat template renders the messages, then the
//! request runs like a completion.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rill_engine::SampledToken;

use super::completions::{limits, model_for};
use super::generation::compile_grammar;
use super::generation::{collect, response_id, sse, submit, Chunk};
use crate::app::{AppState, ServedModel};
use crate::choices::ChoiceUpdate;
use crate::openai::error::ApiError;
use crate::openai::types::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatDelta, ChatLogprobs, ChatTokenLogprob,
    ChatTopLogprob, Usage,
};
use crate::openai::unix_time;
use crate::openai::validate::validate_chat;
use crate::reasoning::{ReasoningSplitter, Split};
use crate::routes::json_body::JsonBody;

pub async fn chat_completions(State(state): State<AppState>, JsonBody(req): JsonBody<ChatCompletionRequest>) -> Result<Response, ApiError> {
    let model = model_for(&state, req.model.as_deref())?;
    let mut v = validate_chat(req, &limits(&model))?;
    if let Some(spec) = v.grammar.take() {
        v.params.constraint = Some(compile_grammar(&model, &spec, "response_format")?);
    }
    let template = model.chat_template.as_ref().ok_or_else(|| ApiError::invalid("messages", "this model has no chat template: use /v1/completions"))?;
    let text = template.render(&v.messages, true).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    // A thinking model's output splits into reasoning and answer; a template may open the span.
    let splitter = model.reasoning.clone().map(|m| {
        let inside = text.trim_end().ends_with(&m.open);
        ReasoningSplitter::new(m, inside)
    });
    // The template writes BOS itself where the model wants one.
    let prompt = model.tokenizer.encode(&text, false).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    v.fit_context(prompt.len(), model.max_model_len)?;
    let n = v.params.n.max(1);
    let want_logprobs = v.params.logprobs.is_some();
    let run = submit(&model, prompt, v.params.clone(), &v.stop)?;
    let (id, created, name) = (response_id("chatcmpl"), unix_time(), model.name.clone());

    if !v.stream {
        let c = collect(run, n).await?;
        let choices = (0..n)
            .map(|i| ChatChoice {
                index: i,
                message: message(splitter.clone(), &c.texts[i]),
                logprobs: want_logprobs.then(|| logprobs(&model, &c.tokens[i])),
                finish_reason: Some(c.finish_reasons[i]),
            })
            .collect();
        return Ok(Json(ChatCompletionResponse::new(id, created, name, choices, Usage::from_engine(&c.usage))).into_response());
    }

    let include_usage = v.include_usage;
    let chunks = async_stream::stream! {
        let mut run = run;
        let chunk = |choice: Option<ChatChunkChoice>, usage| Chunk::Data(ChatCompletionChunk::new(id.clone(), created, name.clone(), choice.into_iter().collect(), usage));
        let delta = |index, role, content: Option<String>, logprobs, finish_reason| ChatChunkChoice { index, delta: ChatDelta { role, content, reasoning_content: None }, logprobs, finish_reason };
        let split = |index, s: Split, logprobs| ChatChunkChoice {
            index,
            delta: ChatDelta { role: None, content: (!s.content.is_empty()).then_some(s.content), reasoning_content: (!s.reasoning.is_empty()).then_some(s.reasoning) },
            logprobs,
            finish_reason: None,
        };
        let mut splitters: Vec<Option<ReasoningSplitter>> = vec![splitter; n];
        for i in 0..n {
            yield chunk(Some(delta(i, Some("assistant"), Some(String::new()), None, None)), None);
        }
        while !run.choices.all_done() {
            let Some(event) = run.stream.recv().await else { break };
            for update in run.choices.on_event(event) {
                match update {
                    ChoiceUpdate::Text { index, text, tokens } => {
                        if text.is_empty() && (tokens.is_empty() || !want_logprobs) {
                            continue;
                        }
                        let lp = want_logprobs.then(|| logprobs(&model, &tokens));
                        match &mut splitters[index] {
                            Some(s) => {
                                let parts = s.push(&text);
                                if !parts.content.is_empty() || !parts.reasoning.is_empty() || lp.is_some() {
                                    yield chunk(Some(split(index, parts, lp)), None);
                                }
                            }
                            None => yield chunk(Some(delta(index, None, Some(text), lp, None)), None),
                        }
                    }
                    ChoiceUpdate::Finished { index, reason } => {
                        if let Some(parts) = splitters[index].as_mut().map(ReasoningSplitter::finish).filter(|p| !p.content.is_empty() || !p.reasoning.is_empty()) {
                            yield chunk(Some(split(index, parts, None)), None);
                        }
                        yield chunk(Some(delta(index, None, None, None, Some(reason))), None)
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

/// The assistant message of a whole choice: its `<think>` span apart where the model has one.
fn message(splitter: Option<ReasoningSplitter>, text: &str) -> AssistantMessage {
    let Some(mut s) = splitter else { return AssistantMessage::new(text.to_string()) };
    let (mut a, b) = (s.push(text), s.finish());
    a.content.push_str(&b.content);
    a.reasoning.push_str(&b.reasoning);
    AssistantMessage { reasoning_content: (!a.reasoning.is_empty()).then_some(a.reasoning), ..AssistantMessage::new(a.content) }
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
