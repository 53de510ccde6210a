//! `POST /v1/completions`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rill_engine::SampledToken;

use super::generation::{collect, response_id, sse, submit, Chunk};
use crate::app::{AppState, ServedModel};
use crate::choices::ChoiceUpdate;
use crate::openai::error::ApiError;
use crate::openai::types::{CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, TopLogprobs, Usage};
use crate::openai::validate::{validate_completion, ModelLimits, PromptInput};
use crate::openai::unix_time;
use crate::routes::json_body::JsonBody;

pub fn limits(m: &ServedModel) -> ModelLimits {
    ModelLimits { vocab_size: m.vocab_size, max_model_len: m.max_model_len, max_n: rill_engine::MAX_N }
}

pub fn model_for(state: &AppState, name: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
    state.model(name).ok_or_else(|| ApiError::not_found_model(name.unwrap_or("")))
}

pub async fn completions(State(state): State<AppState>, JsonBody(req): JsonBody<CompletionRequest>) -> Result<Response, ApiError> {
    let model = model_for(&state, req.model.as_deref())?;
    let mut v = validate_completion(req, &limits(&model))?;
    let prompt = match &v.prompt {
        PromptInput::Text(t) => model.tokenizer.encode(t, true).map_err(|e| ApiError::invalid("prompt", e.to_string()))?,
        PromptInput::Tokens(t) => t.clone(),
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    v.fit_context(prompt.len(), model.max_model_len)?;
    let echo = if v.echo { model.tokenizer.decode(&prompt, false) } else { String::new() };
    let n = v.params.n.max(1);
    let want_logprobs = v.params.logprobs;
    let run = submit(&model, prompt, v.params.clone(), &v.stop)?;
    let (id, created, name) = (response_id("cmpl"), unix_time(), model.name.clone());

    if !v.stream {
        let c = collect(run, n).await?;
        let choices = (0..n)
            .map(|i| CompletionChoice {
                index: i,
                text: format!("{echo}{}", c.texts[i]),
                logprobs: want_logprobs.map(|_| logprobs(&model, &c.tokens[i], echo.chars().count())),
                finish_reason: Some(c.finish_reasons[i]),
            })
            .collect();
        let usage = Usage::from_engine(&c.usage);
        return Ok(Json(CompletionResponse::new(id, created, name, choices, Some(usage))).into_response());
    }

    let include_usage = v.include_usage;
    let chunks = async_stream::stream! {
        let mut run = run;
        let chunk = |choices: Vec<CompletionChoice>, usage| Chunk::Data(CompletionResponse::new(id.clone(), created, name.clone(), choices, usage));
        if !echo.is_empty() {
            for i in 0..n {
                yield chunk(vec![CompletionChoice { index: i, text: echo.clone(), logprobs: None, finish_reason: None }], None);
            }
        }
        let mut offsets = vec![echo.chars().count(); n];
        while !run.choices.all_done() {
            let Some(event) = run.stream.recv().await else { break };
            for update in run.choices.on_event(event) {
                match update {
                    ChoiceUpdate::Text { index, text, tokens } => {
                        if text.is_empty() && (tokens.is_empty() || want_logprobs.is_none()) {
                            continue;
                        }
                        let lp = want_logprobs.map(|_| logprobs(&model, &tokens, offsets[index]));
                        offsets[index] += text.chars().count();
                        yield chunk(vec![CompletionChoice { index, text, logprobs: lp, finish_reason: None }], None);
                    }
                    ChoiceUpdate::Finished { index, reason } => {
                        yield chunk(vec![CompletionChoice { index, text: String::new(), logprobs: None, finish_reason: Some(reason) }], None);
                    }
                    ChoiceUpdate::Failed(e) => yield Chunk::Error(e.into()),
                }
            }
        }
        if include_usage {
            yield chunk(vec![], Some(Usage::from_engine(&run.choices.usage())));
        }
    };
    Ok(sse(chunks))
}

/// Completions-shaped logprobs for `tokens`, whose text starts at character `offset` of the
/// choice text (OpenAI counts characters, not bytes).
fn logprobs(model: &ServedModel, tokens: &[SampledToken], mut offset: usize) -> CompletionLogprobs {
    let piece = |id: u32| String::from_utf8_lossy(model.tokenizer.token_to_piece(id).unwrap_or_default()).into_owned();
    let mut out = CompletionLogprobs::default();
    for t in tokens {
        let text = piece(t.token);
        let top = TopLogprobs::new(t.top_logprobs.iter().map(|&(id, lp)| (piece(id), lp)));
        out.push(text.clone(), t.logprob.unwrap_or(f32::NAN), top, offset);
        offset += text.chars().count();
    }
    out
}
