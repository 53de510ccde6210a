//! `POST /v1/completions`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rill_engine::SampledToken;

use super::routing::{model_for, VersionTag};
use super::generation::{collect, next_event, response_id, sse, submit, Arrival, Chunk};
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

#[utoipa::path(post, path = "/v1/completions", operation_id = "createCompletion", tag = "inference", request_body = CompletionRequest,
    responses((status = 200, description = "The completion; with `stream: true`, server-sent events of chunks of the same shape ending with `data: [DONE]`.",
        content((CompletionResponse = "application/json"), (CompletionResponse = "text/event-stream")))))]
pub async fn completions(State(state): State<AppState>, tag: VersionTag, arrival: Arrival, JsonBody(req): JsonBody<CompletionRequest>) -> Result<Response, ApiError> {
    let model = model_for(&state, &tag, req.model.as_deref()).await?;
    let mut v = validate_completion(req, &limits(&model))?;
    let ctx = arrival.context(v.timeout)?;
    if let Some(g) = &v.grammar {
        v.params.constraint = Some(super::generation::compile_grammar(&model, &g.spec, g.param)?);
    }
    // Every prompt is tokenized and fitted before any is submitted: one bad prompt fails the
    // request with nothing running.
    let mut prepared = Vec::with_capacity(v.prompts.len());
    for p in &v.prompts {
        let prompt = match p {
            PromptInput::Text(t) => model.tokenizer.encode(t, true).map_err(|e| ApiError::invalid("prompt", e.to_string()))?,
            PromptInput::Tokens(t) => t.clone(),
        };
        if prompt.is_empty() {
            return Err(ApiError::invalid("prompt", "the prompt is empty"));
        }
        let params = v.params_for(prompt.len(), model.max_model_len)?;
        let echo = if v.echo { model.tokenizer.decode(&prompt, false) } else { String::new() };
        prepared.push((prompt, params, echo));
    }
    let n = v.params.n.max(1);
    let want_logprobs = v.params.logprobs;
    let echoes: Vec<String> = prepared.iter().map(|(_, _, e)| e.clone()).collect();
    let mut runs = Vec::with_capacity(prepared.len());
    for (prompt, params, _) in prepared {
        runs.push(submit(&model, prompt, params, &v.stop, &ctx)?);
    }
    let (id, created, name) = (response_id("cmpl"), unix_time(), model.echo.clone());

    if !v.stream {
        // Choice `p·n + i` is choice `i` of prompt `p`, as OpenAI numbers them.
        // Each prompt collected on its own task, so none waits on another's stream.
        let tasks: Vec<_> = runs.into_iter().map(|r| tokio::spawn(collect(r, n))).collect();
        let mut collected = Vec::with_capacity(tasks.len());
        for t in tasks {
            collected.push(t.await.map_err(|e| ApiError::internal(e.to_string()))??);
        }
        let mut choices = Vec::with_capacity(collected.len() * n);
        let mut usage = rill_engine::Usage::default();
        for (p, c) in collected.iter().enumerate() {
            let echo = &echoes[p];
            choices.extend((0..n).map(|i| CompletionChoice {
                index: p * n + i,
                text: format!("{echo}{}", c.texts[i]),
                logprobs: want_logprobs.map(|_| logprobs(&model, &c.tokens[i], echo.chars().count())),
                finish_reason: Some(c.finish_reasons[i]),
            }));
            add_usage(&mut usage, &c.usage);
        }
        return Ok(Json(CompletionResponse::new(id, created, name, choices, Some(Usage::from_engine(&usage)))).into_response());
    }

    let include_usage = v.include_usage;
    // Each prompt's events are forwarded into one channel, tagged with the prompt.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut choices = Vec::with_capacity(runs.len());
    for (p, run) in runs.into_iter().enumerate() {
        let (mut stream, deadline, tx) = (run.stream, run.deadline, tx.clone());
        choices.push(run.choices);
        tokio::spawn(async move {
            while let Some(event) = next_event(&mut stream, deadline).await {
                let failed = matches!(event, rill_engine::StreamEvent::Failed(_));
                if tx.send((p, event)).is_err() || failed {
                    break;
                }
            }
        });
    }
    drop(tx);
    let chunks = async_stream::stream! {
        let mut choices = choices;
        let chunk = |choices: Vec<CompletionChoice>, usage| Chunk::Data(CompletionResponse::new(id.clone(), created, name.clone(), choices, usage));
        for (p, echo) in echoes.iter().enumerate() {
            if !echo.is_empty() {
                for i in 0..n {
                    yield chunk(vec![CompletionChoice { index: p * n + i, text: echo.clone(), logprobs: None, finish_reason: None }], None);
                }
            }
        }
        let mut offsets: Vec<usize> = echoes.iter().flat_map(|e| std::iter::repeat_n(e.chars().count(), n)).collect();
        while !choices.iter().all(|c| c.all_done()) {
            let Some((p, event)) = rx.recv().await else { break };
            for update in choices[p].on_event(event) {
                match update {
                    ChoiceUpdate::Text { index, text, tokens } => {
                        if text.is_empty() && (tokens.is_empty() || want_logprobs.is_none()) {
                            continue;
                        }
                        let index = p * n + index;
                        let lp = want_logprobs.map(|_| logprobs(&model, &tokens, offsets[index]));
                        offsets[index] += text.chars().count();
                        yield chunk(vec![CompletionChoice { index, text, logprobs: lp, finish_reason: None }], None);
                    }
                    ChoiceUpdate::Finished { index, reason } => {
                        yield chunk(vec![CompletionChoice { index: p * n + index, text: String::new(), logprobs: None, finish_reason: Some(reason) }], None);
                    }
                    ChoiceUpdate::Failed(e) => yield Chunk::Error(e.into()),
                }
            }
        }
        if include_usage {
            let mut usage = rill_engine::Usage::default();
            choices.iter().for_each(|c| add_usage(&mut usage, &c.usage()));
            yield chunk(vec![], Some(Usage::from_engine(&usage)));
        }
    };
    Ok(sse(chunks))
}

/// `total += u`, for a request of several prompts.
fn add_usage(total: &mut rill_engine::Usage, u: &rill_engine::Usage) {
    total.prompt_tokens += u.prompt_tokens;
    total.completion_tokens += u.completion_tokens;
    total.cached_tokens += u.cached_tokens;
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
